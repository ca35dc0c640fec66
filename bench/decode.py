"""Time to a ready clip: `vidchat.video.sample` (PyAV) against plain decord `get_batch`, on long 1280×720 videos.

The videos are made here: one minute of FFmpeg's `testsrc2` at 1280×720, 30 fps, H.264 (x264 veryfast, 1 Mbit/s,
B-frames) with a keyframe every 250 frames, then copied end to end (no re-encoding) into 1-, 10- and
60-minute files. Both readers sample at vidchat's default (2 fps, at most 768 frames, resized to the
per-frame pixel budget):
- vidchat: `sample(path)`, everything it does for an upload (hash, probe, index, decode, resize);
- decord: `VideoReader(path, width, height)` at the same output size, the same 768 frame indices (chosen from
  decord's own timestamps), one `get_batch`: the way vidchat decoded before.
Each measurement runs in a fresh process (its peak RSS is its own), the file in the page cache; medians of
`--runs` runs, alternating the readers so that both see the same machine load.

    python bench/decode.py [--runs 3] [--minutes 1 10 60] [--work /tmp/vidchat-decode-bench]

Needs the `ffmpeg` program and decord (`pip install -r bench/requirements.txt`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "decode.json"


def make_videos(work: Path, minutes: list[int]) -> dict[int, Path]:
    work.mkdir(parents=True, exist_ok=True)
    one = work / "1min.mp4"
    if not one.exists():
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
             "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1M", "-pix_fmt", "yuv420p",
             "-g", "250", "-keyint_min", "250", "-sc_threshold", "0", str(one)],
            check=True,
        )  # fmt: skip
    paths = {}
    for length in minutes:
        path = work / f"{length}min.mp4"
        if not path.exists():
            listing = work / f"{length}min.txt"
            listing.write_text(f"file '{one.name}'\n" * length)
            subprocess.run(
                ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                 "-c", "copy", str(path)],
                check=True,
            )  # fmt: skip
        paths[length] = path
    return paths


def child(reader: str, path: str) -> None:
    """One measurement in this process: prints {"seconds", "frames", "peak_rss_mib", ...} as JSON."""
    sys.path.insert(0, str(ROOT))
    if reader == "vidchat":
        from vidchat.video import sample

        start = time.perf_counter()
        clip = sample(path)
        seconds = time.perf_counter() - start
        extra = {"frames": len(clip.frames), "size": list(clip.frames.shape[1:3]), "keyframes_only": clip.keyframes_only}
    else:
        import decord  # its own FFmpeg; no PyAV in this process

        from vidchat.video import SamplingConfig, choose_frames, frame_size

        start = time.perf_counter()
        probe = decord.VideoReader(path, ctx=decord.cpu(0))
        starts = probe.get_frame_timestamp(range(len(probe)))[:, 0]
        starts = starts - starts[0]
        duration = float(starts[-1] + (starts[1] - starts[0]))
        indices = choose_frames(starts, duration, SamplingConfig())
        height, width = probe[0].shape[:2]
        out_width, out_height = frame_size(width, height, len(indices), SamplingConfig())
        del probe
        reader_at_size = decord.VideoReader(path, ctx=decord.cpu(0), width=out_width, height=out_height)
        frames = reader_at_size.get_batch(indices.tolist()).asnumpy()
        seconds = time.perf_counter() - start
        extra = {"frames": len(frames), "size": list(frames.shape[1:3]), "keyframes_only": False}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_mib, **extra}))


def measure(reader: str, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", reader, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--minutes", type=int, nargs="+", default=[1, 10, 60])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vidchat-decode-bench"))
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    videos = make_videos(args.work, args.minutes)
    rows = []
    for minutes, path in videos.items():
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        runs = {"vidchat": [], "decord": []}
        for _ in range(args.runs):
            for reader in runs:
                runs[reader].append(measure(reader, path))
        vidchat_s = statistics.median(r["seconds"] for r in runs["vidchat"])
        decord_s = statistics.median(r["seconds"] for r in runs["decord"])
        row = {
            "minutes": minutes,
            "file_mib": round(path.stat().st_size / 2**20, 1),
            "vidchat_s": round(vidchat_s, 3),
            "decord_s": round(decord_s, 3),
            "ratio": round(decord_s / vidchat_s, 2),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs["vidchat"]), 1),
            "decord_peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs["decord"]), 1),
            "vidchat_frames": runs["vidchat"][0]["frames"],
            "decord_frames": runs["decord"][0]["frames"],
            "vidchat_keyframes_only": runs["vidchat"][0]["keyframes_only"],
            "frame_size_hw": runs["vidchat"][0]["size"],
            "all_vidchat_s": [round(r["seconds"], 3) for r in runs["vidchat"]],
            "all_decord_s": [round(r["seconds"], 3) for r in runs["decord"]],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{'minutes':>7} {'vidchat s':>10} {'decord s':>9} {'ratio':>6} {'vidchat MiB':>12} {'decord MiB':>11} frames")
    for row in rows:
        print(
            f"{row['minutes']:>7} {row['vidchat_s']:>10.2f} {row['decord_s']:>9.2f} {row['ratio']:>6.1f} "
            f"{row['peak_rss_mib']:>12.0f} {row['decord_peak_rss_mib']:>11.0f} "
            f"{row['vidchat_frames']}{' (keyframes)' if row['vidchat_keyframes_only'] else ''} / {row['decord_frames']}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "what": "time to a ready clip at the default sampling (2 fps, 768-frame cap), 1280x720 30 fps H.264, GOP 250",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "load_average_1m_at_end": os.getloadavg()[0]},
        "runs": args.runs,
        "results": rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
