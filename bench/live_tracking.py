"""Live SAM 2 speed: milliseconds per frame of `LiveTracker.step`, one object tracked on 1280×720 frames.

Models, random weights (a forward pass costs the same whatever the weights' values), saved and loaded through
`MaskDecoder.from_pretrained` like a downloaded checkpoint:
- tiny: the tests' 1.2 M-parameter SAM 2 (`vidchat.testing.sam2.tiny_sam2_video_config`), 128² input;
- hiera-tiny-512: the real sam2.1-hiera-tiny architecture at a 512² input (`hiera_tiny_config(512)`).
The object-score head is made to say "present" so that the prompt is found and every frame tracked (the
computation does not change). A step is all a live frame costs: the picture resized to SAM 2's input, the image
encoder, memory attention, the mask decoder, the memory encoder, the mask back at 1280×720 and the trimming of
spent memory. Each run adds the object on a first frame and times every following step; after one warm-up run,
the median over all timed steps of all runs, their mean (other work on the machine only ever adds outliers) and
each run's median. `stored_frames` and `held_bytes`: what the tracker holds after the last step (flat from the
16th frame on).

    python bench/live_tracking.py [--runs 3] [--frames 30] [--models tiny hiera-tiny-512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vidchat.segment import FramePrompt, LiveTracker, MaskDecoder  # noqa: E402
from vidchat.testing.sam2 import build_sam2_video, hiera_tiny_config, tiny_sam2_video_config  # noqa: E402
from vidchat.testing.videos import RED_SQUARE, draw_frame  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "live_tracking.json"
FRAME_SIZE = (1280, 720)  # (width, height)
MODELS = {"tiny": tiny_sam2_video_config, "hiera-tiny-512": lambda: hiera_tiny_config(512)}


def moving_square(size: tuple[int, int], frames: int) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """`frames` pictures of the synthetic red square moving right, and its box on the first."""
    width, height = size
    side = height // 4
    boxes = [np.array([x, height // 3, x + side, height // 3 + side]) for x in np.linspace(0, width - side, frames)]
    pictures = [draw_frame(i, {RED_SQUARE: box.astype(int)}, size) for i, box in enumerate(boxes)]
    return pictures, tuple(float(v) for v in boxes[0].astype(int))


def measure(decoder: MaskDecoder, size: tuple[int, int], frames: int = 30, runs: int = 3) -> dict:
    """Step times (ms) of `runs` runs of `frames` frames each, one object added on a frame before them."""
    pictures, box = moving_square(size, frames + 1)
    steps, run_medians = [], []
    for run in range(-1, runs):  # run -1 warms up (oneDNN kernels, allocator) and is not counted
        tracker = LiveTracker(decoder)
        tracker.add(1, FramePrompt(None, box=box), [pictures[0]])
        times = []
        for picture in pictures[1:]:
            start = time.perf_counter()
            tracker.step(picture)
            times.append((time.perf_counter() - start) * 1000)
        if run >= 0:
            steps += times
            run_medians.append(round(statistics.median(times), 2))
        stored_frames, held_bytes = tracker.stored_frames(), tracker.nbytes
        tracker.close()
    return {
        "ms_per_frame": statistics.median(steps),
        "ms_per_frame_mean": statistics.mean(steps),
        "ms_per_frame_run_medians": run_medians,
        "stored_frames": stored_frames,
        "held_bytes": held_bytes,
    }


def sam2_ms_per_frame(decoder: MaskDecoder, size: tuple[int, int], frames: int = 30, runs: int = 3) -> float:
    """Median milliseconds per `LiveTracker.step` on `size` (width, height) pictures, one object added first.

    The decoder must find the object at the first frame's box (random weights: see `present`)."""
    return measure(decoder, size, frames, runs)["ms_per_frame"]


def present(decoder: MaskDecoder) -> MaskDecoder:
    """The decoder with its object-score head saying "present" on every frame."""
    head = decoder.model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(10.0)
    return decoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30, help="timed steps per run")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidchat-bench-live-") as work:
        for name in args.models:
            config = MODELS[name]()
            decoder = present(MaskDecoder.from_pretrained(str(build_sam2_video(Path(work) / name, config))))
            result = measure(decoder, FRAME_SIZE, args.frames, args.runs)
            rows.append(
                {
                    "model": name,
                    "image_size": config.image_size,
                    "device": str(decoder.device),
                    "dtype": str(decoder.dtype).removeprefix("torch."),
                    "frame_size": list(FRAME_SIZE),
                    "frames": args.frames,
                    "runs": args.runs,
                    **{key: round(value, 2) if isinstance(value, float) else value for key, value in result.items()},
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    keys = ["model", "image_size", "ms_per_frame", "ms_per_frame_mean", "stored_frames", "held_bytes"]
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[key]) for key in keys))
    document = {
        "what": "LiveTracker.step, one object, 1280x720 frames, random weights",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "torch": torch.__version__,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
