"""vidchat web app: `python app.py [--model ID] [--sam ID] [--engine transformers|vllm --engine-url URL] [--port N]`.

Also the Hugging Face Space entry point (README front matter: `app_file: app.py`). The page appears at once;
the models load in the background and the page says when they are ready, or what is missing and how to get it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import replace
from pathlib import Path

from vidchat.livechat import LiveChatSettings
from vidchat.session import (
    DEFAULT_ASR,
    DEFAULT_MODEL,
    DEFAULT_SAM2,
    ENGINES,
    NO_ASR,
    QTSPLUS_CHECKPOINTS,
    SELECTORS,
    Engine,
    SessionSettings,
    UrlGuard,
    selector_settings,
)
from vidchat.ui import NO_MASKS, ServerLimits, VidchatApp

ASSETS = Path(__file__).resolve().parent / "assets"


def example_clips() -> list[tuple[str, str]]:
    """(clip, suggested question) pairs, generating the clips into assets/examples/ on first start."""
    spec = importlib.util.spec_from_file_location("make_examples", ASSETS / "make_examples.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module.ensure_examples()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="vidchat: grounded chat about a video, in the browser.")
    # Environment defaults, for a Hugging Face Space (its variables) where the command line is fixed.
    model = os.environ.get("VIDCHAT_MODEL", DEFAULT_MODEL)
    sam = os.environ.get("VIDCHAT_SAM", DEFAULT_SAM2)
    parser.add_argument(
        "--model",
        default=model,
        help=f"video model id or local folder (default {model}, $VIDCHAT_MODEL); with --engine vllm, the id the "
        "server serves it under, also read here for its vision tower and the selector's layers",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get("VIDCHAT_ENGINE", "transformers"),
        help="what answers: the model in this process (default) or a running vLLM server ($VIDCHAT_ENGINE)",
    )
    parser.add_argument(
        "--engine-url",
        metavar="URL",
        default=os.environ.get("VIDCHAT_ENGINE_URL"),
        help="the vLLM server's address, e.g. http://127.0.0.1:8000 ($VIDCHAT_ENGINE_URL)",
    )
    parser.add_argument(
        "--sam", default=sam, help=f"SAM 2 model id or folder, or '{NO_MASKS}' (default {sam}, $VIDCHAT_SAM)"
    )
    asr = os.environ.get("VIDCHAT_ASR", DEFAULT_ASR)
    parser.add_argument(
        "--asr",
        metavar="ID_OR_FOLDER",
        default=asr,
        help=f"speech recognizer (Whisper) for videos without subtitles, or '{NO_ASR}' (default {asr} on this "
        "machine, $VIDCHAT_ASR); subtitle tracks are read either way",
    )
    parser.add_argument(
        "--asr-url",
        metavar="URL",
        default=os.environ.get("VIDCHAT_ASR_URL"),
        help="a vLLM server that serves the --asr model, to hear speech there instead of in this process "
        "($VIDCHAT_ASR_URL)",
    )
    parser.add_argument(
        "--selector",
        choices=SELECTORS,
        default=os.environ.get("VIDCHAT_SELECTOR", "attention"),
        help="the visual-token selector questions start with (default attention, $VIDCHAT_SELECTOR); "
        "the page's settings change it per question",
    )
    parser.add_argument(
        "--qtsplus",
        metavar="ID_OR_FOLDER",
        default=os.environ.get("VIDCHAT_QTSPLUS"),
        help=f"QTSplus checkpoint for the qtsplus selector, e.g. {QTSPLUS_CHECKPOINTS[0]} ($VIDCHAT_QTSPLUS)",
    )
    parser.add_argument(
        "--no-zoom",
        action="store_true",
        default=os.environ.get("VIDCHAT_ZOOM") == "off",
        help="questions about long videos start without the closer look at the parts they need ($VIDCHAT_ZOOM=off); "
        "the page's settings change it per question",
    )
    parser.add_argument(
        "--allow-networks",
        nargs="+",
        metavar="CIDR",
        default=os.environ.get("VIDCHAT_ALLOW_NETWORKS", "").split(),
        help="private networks the server may fetch visitors' URLs from, e.g. 10.1.0.0/16 (an intranet; by default "
        "only public addresses; $VIDCHAT_ALLOW_NETWORKS, space-separated)",
    )
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also serve a temporary public *.gradio.live link")
    # On a Hugging Face Space (SPACE_ID is set there) visitors must not switch the models everyone shares.
    parser.add_argument(
        "--fixed-models",
        action="store_true",
        default="SPACE_ID" in os.environ,
        help="hide the model switch in the settings (default on a Hugging Face Space)",
    )
    defaults = ServerLimits()
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=os.environ.get("VIDCHAT_MAX_SESSIONS", str(defaults.max_sessions)),  # a string: argparse checks it
        help=f"browser sessions open at once (default {defaults.max_sessions}, $VIDCHAT_MAX_SESSIONS)",
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=os.environ.get("VIDCHAT_MEMORY_GB", f"{defaults.memory_bytes / 1024**3:g}"),
        help="memory for all sessions' frames, visual tokens, SAM 2 features and masks "
        f"(default {defaults.memory_bytes / 1024**3:g}, $VIDCHAT_MEMORY_GB)",
    )
    parser.add_argument(
        "--disk-gb",
        type=float,
        default=os.environ.get("VIDCHAT_DISK_GB", f"{defaults.disk_bytes / 1024**3:g}"),
        help=f"disk for all sessions' uploads and exports (default {defaults.disk_bytes / 1024**3:g}, $VIDCHAT_DISK_GB)",
    )
    parser.add_argument(
        "--live-sources",
        type=int,
        default=os.environ.get("VIDCHAT_LIVE_SOURCES", str(defaults.live_sources)),
        help="live sources (webcams, stream URLs) playing at once on this server; 0 turns them off "
        f"(default {defaults.live_sources}, $VIDCHAT_LIVE_SOURCES)",
    )
    live = LiveChatSettings()
    parser.add_argument(
        "--live-max-minutes",
        type=float,
        default=os.environ.get("VIDCHAT_LIVE_MAX_MINUTES", f"{live.recording.max_duration_s / 60:g}"),
        help="the longest a live source is recorded; it keeps no frame after that until it is stopped "
        f"(default {live.recording.max_duration_s / 60:g}, $VIDCHAT_LIVE_MAX_MINUTES)",
    )
    args = parser.parse_args(argv)
    try:
        engine = Engine(args.engine, args.engine_url, args.asr_url)
        url_guard = UrlGuard.allowing(args.allow_networks)
        limits = ServerLimits(
            max_sessions=args.max_sessions,
            memory_bytes=int(args.memory_gb * 1024**3),
            disk_bytes=int(args.disk_gb * 1024**3),
            turns_at_once=args.max_sessions if engine.kind == "vllm" else 1,  # vLLM batches every session's turn
            live_sources=args.live_sources,
        )
        if not args.live_max_minutes > 0:
            raise ValueError(f"--live-max-minutes must be positive, got {args.live_max_minutes:g}")
        live = replace(live, recording=replace(live.recording, max_duration_s=args.live_max_minutes * 60))
    except ValueError as error:
        parser.error(str(error))
    settings = SessionSettings()
    app = VidchatApp(
        model=args.model,
        sam=args.sam,
        qtsplus=args.qtsplus,
        asr=args.asr,
        settings=replace(
            settings,
            selector=selector_settings(args.selector, base=settings.selector),
            zoom=replace(settings.zoom, on=not args.no_zoom),
        ),
        examples=example_clips(),
        limits=limits,
        allow_model_change=not args.fixed_models,
        load=engine.load,
        url_guard=url_guard,
        live=live,
    )
    app.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
