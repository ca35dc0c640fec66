"""Needle in a haystack, in the V-NIAH style: is a short event in a long video found and placed in time, with the
coarse pass alone and with zoom?

For each haystack length and needle depth: a synthetic haystack (grey frames, 2 fps, H.264) with a 2-second yellow
needle at that depth of the clip, planted where a coarse sample sees it (a needle between the coarse samples draws no
attention, with or without zoom: the test is whether the answer can place it). The question asks when the screen
turns yellow; an answer is right when a time it gives (read like any answer's time links) is within `--tolerance`
seconds of the needle. Reported per row: the answer's times and whether they are right, without and with zoom, and
whether a zoom window covers the needle.

    python bench/needle.py [--model Qwen/Qwen3-VL-2B-Instruct] [--minutes 10 30 60] [--depths 0.1 0.5 0.9]

`--model` takes any Qwen3-VL or Qwen2.5-VL checkpoint (an id or a folder; see the README for downloading). Without
it, a tiny random Qwen3-VL whose attention is rigged to the needle (`vidchat.testing.needle`) runs: its windows are
meaningful, its answers are random words (no time in them), so its accuracy is 0 by construction.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from vidchat.session import ChatSession, SessionSettings  # noqa: E402
from vidchat.testing.models import build_qwen3_vl  # noqa: E402
from vidchat.testing.needle import needle_patches, rig_attention, seen_needle_start, write_needle_video  # noqa: E402
from vidchat.vlm import VideoLLM  # noqa: E402
from vidchat.zoom import ZoomSettings, coarse_interval_s  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "needle.json"
QUESTION = "When does the yellow flash happen? Give its time."
SOURCE_FPS = 2.0


def answer_row(session: ChatSession, needle, tolerance_s: float) -> dict:
    answer = [event for event in session.ask(QUESTION)][-1]
    times = [span.start_s for span in answer.groundings.times]
    right = any(needle.start_s - tolerance_s <= t <= needle.end_s + tolerance_s for t in times)
    covers = any(look.window.start_s <= needle.start_s and needle.end_s <= look.window.end_s for look in answer.zoom)
    return {
        "text": answer.text[:200],
        "times_s": times,
        "right": right,
        "windows": [[look.window.start_s, look.window.end_s] for look in answer.zoom],
        "window_covers_needle": covers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Qwen3-VL or Qwen2.5-VL checkpoint; default: a tiny rigged one")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 60])
    parser.add_argument("--depths", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    parser.add_argument("--tolerance", type=float, default=1.0, help="seconds around the needle that count as right")
    parser.add_argument("--size", default="64x48", help="haystack frame size, WxH")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    settings = SessionSettings(max_new_tokens=48, ground_objects=False, zoom=ZoomSettings())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or str(build_qwen3_vl(Path(folder) / "tiny"))
        for minutes in args.minutes:
            for depth in args.depths:
                seconds = minutes * 60
                needle = write_needle_video(
                    Path(folder) / f"haystack-{minutes:g}-{depth:g}.mp4", seconds=seconds, fps=SOURCE_FPS,
                    needle_s=seen_needle_start(seconds, SOURCE_FPS, depth, settings.sampling), size=size, codes=False, gop=20,
                )  # fmt: skip
                llm = VideoLLM.from_pretrained(model)
                plain = ChatSession.open(needle.path, llm, replace(settings, zoom=replace(settings.zoom, on=False)))
                if args.model is None:
                    seen = needle_patches(plain.clip.times_s, plain.tokens.steps, needle)
                    rig_attention(llm, plain.tokens, seen, layer=0)
                zoomed = ChatSession.open(needle.path, llm, settings)
                row = {
                    "minutes": minutes,
                    "depth": depth,
                    "needle_s": [needle.start_s, needle.end_s],
                    "coarse_interval_s": round(coarse_interval_s(plain.clip), 3),
                    "uniform": answer_row(plain, needle, args.tolerance),
                    "zoom": answer_row(zoomed, needle, args.tolerance),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("minutes | depth | coarse interval s | uniform right | zoom right | window covers needle")
    for row in rows:
        print(
            f"{row['minutes']:g} | {row['depth']:g} | {row['coarse_interval_s']} | {row['uniform']['right']} | "
            f"{row['zoom']['right']} | {row['zoom']['window_covers_needle']}"
        )
    for key in ("uniform", "zoom"):
        print(f"{key}: {sum(row[key]['right'] for row in rows)} of {len(rows)} right")
    RESULTS.write_text(
        json.dumps({"model": args.model or "tiny random Qwen3-VL, attention rigged to the needle",
                    "tolerance_s": args.tolerance, "rows": rows}, indent=2) + "\n"  # fmt: skip
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
