"""What zoom costs and what it sees: the coarse pass against the coarse pass plus a dense look, on long clips.

Setup (all measured here, side by side in one run, medians of `--runs`):
- clips: 60 and 180 minutes of synthetic haystack (64×48 px, 2 fps, H.264 with a keyframe every 10 s, no index codes)
  with a 2-second yellow needle planted where a coarse sample sees it (a needle between coarse samples draws no
  attention: nothing can point there, with or without zoom), at 61.8 % of the clip;
- model: Qwen3-VL-2B widths (LLM 2048 wide, 16 heads of 128; vision 1024 wide) with random weights and reduced depth:
  3 LLM layers (so that the selector's scoring layer is layer 0, where `vidchat.testing.needle.rig_attention` rigs the
  question's attention to the needle) and 6 vision layers;
- the app's defaults otherwise: 768 coarse frames at most, the attention selector, zoom at 2 fps (at most 32 frames
  a window), answers of 8 tokens, no grounding request.

Per clip:
- `coarse_interval_s`: the sampling interval around the needle without zoom; `zoom_interval_s`: with zoom (the
  largest gap between the dense frames inside the needle);
- `first_s`: the first question without zoom, from the upload (decoding, encoding, selection, answer);
  `zoom_extra_s`: what the dense look adds to it, the same question timed with and without zoom on the same opened
  video (the question-agnostic baseline, decoding and encoding the window, the second selection, the longer
  prefill); `zoom_extra_ratio` = zoom_extra_s / first_s;
- `visual_tokens`, `visual_tokens_zoom`: the visual tokens the answer saw without and with zoom;
- `follow_up_prefix_hit`: a zoomed follow-up reused the cached video prefix (no prefix computed again) and the window.

    python bench/zoom.py [--runs 3] [--minutes 60 180]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from vidchat.session import ChatSession, SessionSettings  # noqa: E402
from vidchat.testing.models import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, build_qwen3_vl  # noqa: E402
from vidchat.testing.needle import (  # noqa: E402
    NEEDLE_QUESTION,
    needle_patches,
    rig_attention,
    seen_needle_start,
    write_needle_video,
)
from vidchat.vlm import TokenCache, VideoLLM  # noqa: E402
from vidchat.zoom import ZoomSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "zoom.json"
FOLLOW_UP = "And the yellow flash, how long does it last?"
SOURCE_FPS = 2.0
DEPTH = 0.618  # where the needle is, as a share of the clip


def build_model(folder: Path) -> Path:
    text = QWEN3_VL_2B_TEXT | dict(num_hidden_layers=3)
    vision = QWEN3_VL_2B_VISION | dict(depth=6, deepstack_visual_indexes=[1, 3, 5])
    return build_qwen3_vl(folder, text=text, vision=vision)


def ask(session: ChatSession, question: str):
    return [event for event in session.ask(question)][-1]


def measure(llm: VideoLLM, needle, settings: SessionSettings, runs: int) -> dict:
    firsts, extras, plain_answers, zoomed = [], [], [], []
    for _ in range(runs):
        llm.cache = TokenCache(llm.cache.max_bytes)  # nothing encoded before: each run starts from the upload
        start = time.perf_counter()
        session = ChatSession.open(needle.path, llm, replace(settings, zoom=replace(settings.zoom, on=False)))
        open_s = time.perf_counter() - start
        start = time.perf_counter()
        plain = ask(session, NEEDLE_QUESTION)
        plain_s = time.perf_counter() - start
        # the same upload with zoom on (opening is the same: not timed again), its window not encoded before
        llm.cache = TokenCache(llm.cache.max_bytes)
        zoom_session = ChatSession.open(needle.path, llm, settings)
        start = time.perf_counter()
        answer = ask(zoom_session, NEEDLE_QUESTION)
        zoom_s = time.perf_counter() - start
        firsts.append(open_s + plain_s)
        extras.append(zoom_s - plain_s)
        plain_answers.append(plain)
        zoomed.append((zoom_session, answer))
    session, answer = zoomed[-1]
    plain = plain_answers[-1]
    coarse_times = session.clip.times_s
    around = np.searchsorted(coarse_times, needle.start_s)
    coarse_interval_s = float(coarse_times[around] - coarse_times[around - 1])
    covering = [look for look in answer.zoom if look.window.start_s <= needle.start_s and needle.end_s <= look.window.end_s]
    zoom_interval_s = None
    if covering:
        times = covering[0].times_s
        inside = times[(times >= needle.start_s - 1) & (times <= needle.end_s + 1)]
        zoom_interval_s = float(np.diff(inside).max())

    calls = []
    original = llm.video_prefix
    llm.video_prefix = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        follow = ask(session, FOLLOW_UP)
    finally:
        del llm.video_prefix
    reused = bool(follow.zoom) and bool(answer.zoom) and follow.zoom[0] is answer.zoom[0]
    first_s = statistics.median(firsts)
    extra_s = statistics.median(extras)
    return {
        "minutes": round(needle.duration_s / 60),
        "needle_s": [needle.start_s, needle.end_s],
        "windows": [[look.window.start_s, look.window.end_s] for look in answer.zoom],
        "window_covers_needle": bool(covering),
        "coarse_interval_s": round(coarse_interval_s, 3),
        "zoom_interval_s": None if zoom_interval_s is None else round(zoom_interval_s, 3),
        "first_s": round(first_s, 2),
        "zoom_extra_s": round(extra_s, 2),
        "zoom_extra_ratio": round(extra_s / first_s, 3),
        "visual_tokens": len(plain.selection.keep_indices),
        "visual_tokens_zoom": len(answer.selection.keep_indices),
        "follow_up_prefix_hit": not calls and reused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--minutes", type=float, nargs="+", default=[60, 180])
    args = parser.parse_args()
    settings = SessionSettings(max_new_tokens=8, ground_objects=False, zoom=ZoomSettings())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model = str(build_model(Path(folder) / "model"))
        for minutes in args.minutes:
            llm = VideoLLM.from_pretrained(model, device="cpu")  # rigged afresh for each clip's needle
            start_s = seen_needle_start(minutes * 60, SOURCE_FPS, DEPTH, settings.sampling)
            started = time.perf_counter()
            needle = write_needle_video(
                Path(folder) / f"haystack-{minutes:g}.mp4", seconds=minutes * 60, fps=SOURCE_FPS, needle_s=start_s,
                codes=False, gop=20,
            )  # fmt: skip
            print(f"{minutes:g} min haystack written in {time.perf_counter() - started:.1f} s", flush=True)
            rig = ChatSession.open(needle.path, llm, replace(settings, zoom=replace(settings.zoom, on=False)))
            rig_attention(llm, rig.tokens, needle_patches(rig.clip.times_s, rig.tokens.steps, needle), layer=0)
            rows.append(measure(llm, needle, settings, args.runs))
            print(json.dumps(rows[-1]), flush=True)
    keys = ["minutes", "coarse_interval_s", "zoom_interval_s", "first_s", "zoom_extra_s", "zoom_extra_ratio",
            "visual_tokens", "visual_tokens_zoom", "follow_up_prefix_hit"]  # fmt: skip
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[key]) for key in keys))
    RESULTS.write_text(json.dumps({"runs": args.runs, "source_fps": SOURCE_FPS, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
