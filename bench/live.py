"""Live sources: the frame rate that reaches the session, how soon a question about now is answered, and memory over
ten minutes; from a fake 30 fps 1280×720 source through the webcam path and the URL path.

Sources (all on this machine):
- url: `ffmpeg -re` sends testsrc2 (1280×720, 30 fps, H.264, a keyframe a second) as RTMP (`-listen 1`, loopback,
  allowed by `--allow-networks`-style guard); `LiveChat.follow` reads it at the stream's presentation times.
- webcam: the app in headless Chromium, whose fake camera plays a 1280×720 30 fps y4m of the synthetic shapes; the
  page streams it (Gradio `stream_every` = 1 / fps) to the app's `LiveChat`, frames timed at their arrival.

Keys per row (`source`, `fps_set`):
- `fps_received`: frames kept per second of source time, over `--seconds` (the session keeps at most `fps_set`);
- `now_latency_s`: from the arrival of the newest frame a question about now sees to the first token of its answer,
  median of `--runs` questions, per model: `tiny` (the tests' checkpoint) and `qwen3_vl_2b_widths_3_layers`
  (Qwen3-VL-2B widths, 3 LLM layers and 6 vision layers, random weights) — fps 2 rows only;
- `rss_growth`: the process's resident memory at the end of `--minutes` (10) over its value after minute 2, minus 1,
  with a tracked object, a standing question checked every 3 s, and a question about now every minute — fps 2 rows;
- `sam2_ms_per_frame`: from bench/live_tracking.py (`LiveTracker.step`; tiny, and hiera-tiny at 512).

SAM 2 here is the tests' tiny one with its object-score head set to "present" (`tests.helpers.build_visible_sam2`),
so that the object the memory rows track is found on every frame of the test pattern.

    python bench/live.py [--sources url webcam] [--fps 1 2 5] [--seconds 30] [--minutes 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from vidchat.livechat import LiveChat, LiveChatSettings  # noqa: E402
from vidchat.recording import RecordingSettings  # noqa: E402
from vidchat.segment import MaskDecoder  # noqa: E402
from vidchat.session import SessionSettings  # noqa: E402
from vidchat.testing.models import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, build_qwen3_vl  # noqa: E402
from tests.helpers import build_visible_sam2  # noqa: E402
from vidchat.url_guard import UrlGuard  # noqa: E402
from vidchat.vlm import VideoLLM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "live.json"
TRACKING = Path(__file__).resolve().parent / "results" / "live_tracking.json"
LOOPBACK = UrlGuard.allowing(["127.0.0.1/32"])
QUESTION = "What is happening now?"
SETTINGS = SessionSettings(max_new_tokens=8, ground_objects=False)


def models(folder: Path) -> dict[str, Path]:
    return {
        "tiny": build_qwen3_vl(folder / "tiny"),
        "qwen3_vl_2b_widths_3_layers": build_qwen3_vl(
            folder / "2b",
            text=QWEN3_VL_2B_TEXT | dict(num_hidden_layers=3),
            vision=QWEN3_VL_2B_VISION | dict(depth=6, deepstack_visual_indexes=[1, 3, 5]),
        ),
    }


# ---- the URL path --------------------------------------------------------------------------------------


class RtmpSource:
    """ffmpeg sending a 1280×720 30 fps test pattern as RTMP, in real time, to the first client on a loopback port."""

    def __init__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"rtmp://127.0.0.1:{port}/live/s"
        self.process = subprocess.Popen(
            ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
             "-f", "flv", "-listen", "1", self.url],
        )  # fmt: skip
        time.sleep(1.0)  # listening

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class Arrivals:
    """Wraps a LiveChat's `add_frame`: the wall-clock time each kept frame arrived, by its time on the source."""

    def __init__(self, live: LiveChat):
        self.by_t_s: dict[float, float] = {}
        original = live.add_frame

        def add_frame(picture, t_s=None):
            arrived = time.perf_counter()
            kept = original(picture, t_s)
            if kept is not None:
                self.by_t_s[kept.t_s] = arrived
            return kept

        live.add_frame = add_frame


def now_latency_s(live: LiveChat, arrivals: Arrivals) -> float:
    """Asked as soon as a frame is kept: from that frame's arrival to the first piece of the answer."""
    kept = live.recording.kept
    while live.recording.kept == kept:
        time.sleep(0.005)
    turn = live.ask(QUESTION)
    next(turn)
    first = time.perf_counter()
    newest_s = float(live.chat.clip.times_s[-1])
    for _ in turn:  # the rest of the answer, not timed
        pass
    return first - arrivals.by_t_s[newest_s]


def fps_received(live: LiveChat, seconds: float) -> float:
    """Frames kept per second of source time, over `seconds` of a started source."""
    while live.recording.kept < 2:
        time.sleep(0.05)
    first_kept, first_s = live.recording.kept, live.recording.duration_s
    time.sleep(seconds)
    return round((live.recording.kept - first_kept) / (live.recording.duration_s - first_s), 3)


def now_latency(live: LiveChat, arrivals: Arrivals, runs: int) -> float:
    while live.recording.duration_s < live.settings.recording.window_s:
        time.sleep(0.1)  # a full window
    return round(statistics.median(now_latency_s(live, arrivals) for _ in range(runs)), 3)


def memory_growth(live: LiveChat, minutes: float) -> dict:
    """RSS each minute, with a tracked object, a standing question and a question about now every minute."""
    while live.recording.latest() is None:
        time.sleep(0.05)
    picture = live.recording.latest().picture
    live.point_at(picture.shape[1] / 2, picture.shape[0] / 2)
    live.watch("tell me when the picture turns black")
    if live.tracker is None or not live.tracker.object_ids:
        raise RuntimeError("the memory is measured with a tracked object: SAM 2 found none")
    rss = []
    for _ in range(int(minutes)):
        time.sleep(60)
        for _ in live.ask(QUESTION):
            pass
        rss.append(psutil.Process().memory_info().rss)
    return {
        "rss_mib_by_minute": [round(r / 2**20, 1) for r in rss],
        "rss_growth": round(max(rss[1:]) / rss[1] - 1, 4) if len(rss) > 2 else None,
        "kept": live.recording.kept,
        "tracker_stored_frames": live.tracker.stored_frames() if live.tracker else None,
    }


def measure(live: LiveChat, arrivals: Arrivals, row: dict, model: str, args) -> None:
    """Into `row`: with the tiny model, the rate received (and at 2 fps the memory); at 2 fps, the model's latency."""
    if model == "tiny":
        row["fps_received"] = fps_received(live, args.seconds)
    if row["fps_set"] == 2:
        row.setdefault("now_latency_s", {})[model] = now_latency(live, arrivals, args.runs)
        if model == "tiny" and args.minutes:
            row |= memory_growth(live, args.minutes)


def url_rows(args, llms: dict[str, VideoLLM], masks: MaskDecoder, folder: Path) -> list[dict]:
    rows = []
    for fps in args.fps:
        row = {"source": "url", "fps_set": fps}
        settings = LiveChatSettings(recording=RecordingSettings(fps=fps, window_s=8.0), check_every_s=3.0)
        for name, llm in llms.items() if fps == 2 else [("tiny", llms["tiny"])]:
            source = RtmpSource()
            try:
                live = LiveChat(llm, folder / f"url-{fps:g}-{name}", settings, SETTINGS, masks=masks)
                arrivals = Arrivals(live)
                live.follow(source.url, LOOPBACK)
                measure(live, arrivals, row, name, args)
                live.close()
            finally:
                source.close()
        print(row, flush=True)
        rows.append(row)
    return rows


# ---- the webcam path ---------------------------------------------------------------------------------------


def fake_camera(folder: Path) -> Path:
    """10 s of a 1280×720 30 fps test pattern as the y4m Chromium's fake camera plays (in a loop)."""
    path = folder / "camera.y4m"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-t", "10", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def webcam_rows(args, dirs: dict[str, Path], sam2_dir: Path, folder: Path) -> list[dict]:
    """The app in Chromium, its fake camera streaming to the page's webcam component of each rate."""
    from playwright.sync_api import sync_playwright

    from tests.helpers import CHROMIUM, CHROMIUM_ARGS, start_app, visitor
    from vidchat.ui.live import WEBCAM, webcam_id

    fake = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    camera = f"--use-file-for-fake-video-capture={fake_camera(folder)}"
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *fake, camera])
        for fps in args.fps:
            row = {"source": "webcam", "fps_set": fps}
            settings = LiveChatSettings(recording=RecordingSettings(fps=fps, window_s=8.0), check_every_s=3.0)
            for name in dirs if fps == 2 else ["tiny"]:
                app, url = start_app(model=str(dirs[name]), sam=str(sam2_dir), settings=SETTINGS, live=settings)
                try:
                    with visitor(browser, url, viewport={"width": 1440, "height": 1000}) as page:
                        page.get_by_label(WEBCAM, exact=True).check()
                        webcam = page.locator(f"#{webcam_id(int(fps))}")
                        webcam.get_by_text("Click to Access Webcam").click()
                        webcam.locator("[aria-label='capture photo']").click()
                        live = wait_for(
                            lambda: next((w.live for w in list(app.workspaces._items.values()) if w.live), None)
                        )
                        measure(live, Arrivals(live), row, name, args)
                finally:
                    app.close()
            print(row, flush=True)
            rows.append(row)
        browser.close()
    return rows


def wait_for(found, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := found():
            return value
        time.sleep(0.05)
    raise RuntimeError("the webcam's frames did not start a live source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=["url", "webcam"])
    parser.add_argument("--fps", type=float, nargs="+", default=[1, 2, 5])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tracking = json.loads(TRACKING.read_text())["rows"] if TRACKING.exists() else []
    sam2_ms = {row["model"]: row["ms_per_frame"] for row in tracking}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        dirs = models(folder)
        sam2_dir = build_visible_sam2(folder / "sam2")
        if "url" in args.sources:
            llms = {name: VideoLLM.from_pretrained(str(path), device="cpu") for name, path in dirs.items()}
            rows += url_rows(args, llms, MaskDecoder.from_pretrained(str(sam2_dir)), folder)
            del llms
        if "webcam" in args.sources:
            rows += webcam_rows(args, dirs, sam2_dir, folder)
    for row in rows:
        row["sam2_ms_per_frame"] = sam2_ms or None
    keys = ["source", "fps_set", "fps_received", "now_latency_s", "rss_growth", "sam2_ms_per_frame"]
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(json.dumps(row.get(key)) for key in keys))
    RESULTS.write_text(
        json.dumps(
            {
                "what": "live sources: frames reaching the session, latency of questions about now, memory",
                "device": f"CPU, {psutil.cpu_count()} cores ({platform.processor() or platform.machine()})",
                "source_video": "1280x720, 30 fps",
                "args": vars(args),
                "load_average_1m_at_end": round(psutil.getloadavg()[0], 2),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
