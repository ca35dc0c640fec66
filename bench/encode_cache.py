"""First question vs follow-up on the same video: what the visual-token cache saves.

A first question pays for decoding + sampling the video, the vision encoder and the answer; a follow-up
pays only for the answer (the prompt still holds every visual token: selection is off here). Measured side
by side in one run, medians of several runs, for a tiny model and for a model of Qwen3-VL-2B width with
fewer layers (random weights; the speed of a forward pass does not depend on the weights' values).

    python bench/encode_cache.py [--runs 3] [--frames 32] [--skip-real-width]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from vidchat.session import ChatSession, SessionSettings  # noqa: E402
from vidchat.testing.models import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, build_qwen3_vl  # noqa: E402
from vidchat.testing.videos import write_video  # noqa: E402
from vidchat.video import SamplingConfig  # noqa: E402
from vidchat.vlm import TokenCache, VideoLLM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "encode_cache.json"


def time_turns(llm: VideoLLM, video_path: str, settings: SessionSettings) -> dict:
    """Seconds to the first answer token and to the end of the answer, for a first question and a follow-up."""
    llm.cache = TokenCache(llm.cache.max_bytes)  # cold: the first question must encode
    start = time.perf_counter()
    session = ChatSession.open(video_path, llm, settings)
    timings = {"first": _time_answer(session, "What does the red square do?", start)}
    timings["follow_up"] = _time_answer(session, "What does it do next?", time.perf_counter())
    return timings


def _time_answer(session: ChatSession, question: str, start: float) -> dict:
    first_token = None
    for event in session.ask(question):
        if first_token is None:
            first_token = time.perf_counter() - start
    return {"ttft_s": first_token, "total_s": time.perf_counter() - start}


def bench(name: str, folder: Path, video_path: str, settings: SessionSettings, runs: int) -> dict:
    llm = VideoLLM.from_pretrained(str(folder))
    session = ChatSession.open(video_path, llm, settings)
    visual_tokens = session.tokens.embeddings.shape[0]
    samples = [time_turns(llm, video_path, settings) for _ in range(runs)]
    row = {"model": name, "frames": len(session.clip.times_s), "visual_tokens": visual_tokens, "runs": runs}
    for turn in ("first", "follow_up"):
        for metric in ("ttft_s", "total_s"):
            row[f"{turn}_{metric}"] = statistics.median(s[turn][metric] for s in samples)
    row["ttft_ratio"] = row["first_ttft_s"] / row["follow_up_ttft_s"]
    row["total_ratio"] = row["first_total_s"] / row["follow_up_total_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=32, help="frames sampled from the test video (2 fps)")
    parser.add_argument("--text-layers", type=int, default=2, help="LLM layers of the real-width model")
    parser.add_argument("--vision-layers", type=int, default=4, help="vision layers of the real-width model")
    parser.add_argument("--skip-real-width", action="store_true")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="vidchat-bench-"))
    video = write_video(work / "shapes.mp4", n_frames=args.frames * 5, fps=10.0, size=(640, 360))
    # no token selection here: both turns see every visual token, so the difference is the cached encoding
    settings = SessionSettings(
        sampling=SamplingConfig(fps=2.0, max_frames=args.frames), max_new_tokens=16, ground_objects=False, selector=None
    )
    models = {"tiny Qwen3-VL": build_qwen3_vl(work / "tiny")}
    if not args.skip_real_width:
        text = {**QWEN3_VL_2B_TEXT, "num_hidden_layers": args.text_layers}
        deepstack = list(range(min(3, args.vision_layers)))
        vision = {**QWEN3_VL_2B_VISION, "depth": args.vision_layers, "deepstack_visual_indexes": deepstack}
        name = f"Qwen3-VL-2B width, {args.text_layers}/28 LLM + {args.vision_layers}/24 vision layers"
        models[name] = build_qwen3_vl(work / "real_width", text=text, vision=vision)
    rows = [bench(name, folder, video.path, settings, args.runs) for name, folder in models.items()]

    header = f"{'model':<58} {'frames':>6} {'tokens':>6} {'1st TTFT':>9} {'f-up TTFT':>9} {'ratio':>6} {'1st tot':>8} {'f-up tot':>8}"
    print(header)
    for r in rows:
        print(
            f"{r['model']:<58} {r['frames']:>6} {r['visual_tokens']:>6} {r['first_ttft_s']:>8.2f}s "
            f"{r['follow_up_ttft_s']:>8.2f}s {r['ttft_ratio']:>5.1f}x {r['first_total_s']:>7.2f}s {r['follow_up_total_s']:>7.2f}s"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu", "max_new_tokens": 16}
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
