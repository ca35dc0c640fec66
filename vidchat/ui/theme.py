"""The page's look: Gradio's Soft theme with system fonts, and the script and style in `static/`."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

STATIC = Path(__file__).resolve().parent / "static"
CSS = [STATIC / "vidchat.css", STATIC / "player.css", STATIC / "transcript.css", STATIC / "live.css"]
# In this order: core.js makes the namespace the others hook into.
SCRIPTS = [
    STATIC / name
    for name in ("core.js", "timeline.js", "overlay.js", "transcript.js", "page.js", "upload.js", "live.js")
]

# System fonts: the page needs nothing from the internet (offline machines, fast first paint).
_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
THEME = gr.themes.Soft(
    primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", radius_size="md", font=_FONTS, font_mono=_MONO
)


def head() -> str:
    """The page's scripts, inline in <head> (Gradio 6 takes them at launch)."""
    return "".join(f"<script>\n{script.read_text()}</script>\n" for script in SCRIPTS)
