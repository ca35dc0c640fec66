"""Example clips for the web app: small synthetic videos, each with a question worth asking about it.

The clips are generated, never committed: `python assets/make_examples.py` writes them into assets/examples/
(the app calls `ensure_examples` at start-up when they are missing). Each scene is drawn with OpenCV on a
numpy frame and encoded as browser-playable H.264 with PyAV, a few hundred kilobytes at most.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
WIDTH, HEIGHT = 480, 270
FPS = 15


@dataclass(frozen=True)
class Example:
    name: str
    question: str
    seconds: float
    draw: Callable[[float], np.ndarray]  # time in seconds → [HEIGHT, WIDTH, 3] uint8 RGB


def _sky(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    """A vertical gradient background, [HEIGHT, WIDTH, 3] uint8 RGB."""
    ramp = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]  # [H, 1, 1]
    rows = (1 - ramp) * np.array(top) + ramp * np.array(bottom)  # [H, 1, 3]
    return np.repeat(rows, WIDTH, axis=1).astype(np.uint8)


_SHAPES_BACKGROUND = _sky((236, 240, 245), (200, 210, 222))
_ROAD_BACKGROUND = _sky((140, 190, 235), (190, 220, 240))


def _shapes(t: float) -> np.ndarray:
    """A red square slides from left to right; a blue ball drops and bounces on the floor."""
    frame = _SHAPES_BACKGROUND.copy()
    cv2.rectangle(frame, (0, 230), (WIDTH, HEIGHT), (120, 128, 140), -1)  # the floor
    x = int(30 + (WIDTH - 110) * min(t / 5.0, 1.0))
    cv2.rectangle(frame, (x, 60), (x + 50, 110), (220, 40, 40), -1)
    period = 1.6  # a bounce every 1.6 s, the ball on the floor at 0.8 s, 2.4 s, 4.0 s, 5.6 s
    phase = ((t + period / 2) % period) / period  # 0 at the top, 0.5 on the floor
    height = 1 - (2 * phase - 1) ** 2  # 0 at the top, 1 on the floor
    y = int(130 + 75 * height)
    cv2.circle(frame, (340, y), 24, (40, 80, 220), -1, cv2.LINE_AA)
    return frame


def _car(frame: np.ndarray, x: int, y: int, body: tuple[int, int, int], facing: int) -> None:
    cv2.rectangle(frame, (x, y), (x + 90, y + 28), body, -1)
    roof = (x + 20, y - 20, x + 64, y) if facing > 0 else (x + 26, y - 20, x + 70, y)
    cv2.rectangle(frame, roof[:2], roof[2:], body, -1)
    window = (roof[0] + 5, roof[1] + 4, roof[2] - 5, roof[3] - 2)
    cv2.rectangle(frame, window[:2], window[2:], (200, 230, 250), -1)
    for wheel_x in (x + 20, x + 70):
        cv2.circle(frame, (wheel_x, y + 30), 11, (30, 30, 30), -1, cv2.LINE_AA)
        cv2.circle(frame, (wheel_x, y + 30), 4, (170, 170, 170), -1, cv2.LINE_AA)


def _road(t: float) -> np.ndarray:
    """A yellow car drives right, a green car drives left; they pass each other at 3 s."""
    frame = _ROAD_BACKGROUND.copy()
    cv2.rectangle(frame, (0, 150), (WIDTH, HEIGHT), (70, 72, 78), -1)
    for dash in range(0, WIDTH, 60):
        cv2.rectangle(frame, (dash, 205), (dash + 30, 209), (235, 235, 235), -1)
    cv2.circle(frame, (70, 55), 26, (255, 210, 60), -1, cv2.LINE_AA)  # the sun
    speed = (WIDTH - 90) / 6.0  # pixels per second: each car crosses the frame in 6 s
    _car(frame, int(speed * t), 165, (240, 190, 20), +1)
    _car(frame, int(WIDTH - 90 - speed * t), 222, (40, 160, 80), -1)
    return frame


def _clock(t: float) -> np.ndarray:
    """A clock hand sweeps a full turn; a lamp lights up from 2 s to 4 s."""
    frame = _sky((250, 246, 236), (236, 228, 210))
    center = (170, 135)
    cv2.circle(frame, center, 95, (255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(frame, center, 95, (60, 60, 70), 3, cv2.LINE_AA)
    for tick in range(12):
        angle = tick * math.pi / 6
        outer = (int(center[0] + 88 * math.sin(angle)), int(center[1] - 88 * math.cos(angle)))
        inner = (int(center[0] + 76 * math.sin(angle)), int(center[1] - 76 * math.cos(angle)))
        cv2.line(frame, inner, outer, (60, 60, 70), 3, cv2.LINE_AA)
    angle = 2 * math.pi * t / 6.0
    tip = (int(center[0] + 80 * math.sin(angle)), int(center[1] - 80 * math.cos(angle)))
    cv2.line(frame, center, tip, (200, 40, 40), 5, cv2.LINE_AA)
    lit = 2.0 <= t < 4.0
    cv2.rectangle(frame, (352, 200), (388, 230), (90, 90, 100), -1)
    cv2.circle(frame, (370, 160), 34, (255, 220, 80) if lit else (150, 150, 160), -1, cv2.LINE_AA)
    return frame


EXAMPLES = (
    Example("shapes", "When does the blue ball touch the floor?", 6.0, _shapes),
    Example("road", "When do the two cars pass each other?", 6.0, _road),
    Example("clock", "When is the lamp on?", 6.0, _clock),
)


def write_clip(path: Path, example: Example) -> Path:
    """Encode one example as H.264 (yuv420p, faststart) at FPS frames per second."""
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "26", "preset": "veryfast"}
        for index in range(round(example.seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(example.draw(index / FPS), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def ensure_examples(folder: Path = EXAMPLES_DIR) -> list[tuple[str, str]]:
    """(video path, suggested question) for every example, writing the clips that are missing."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("*\n")  # generated files: never committed
    listed = []
    for example in EXAMPLES:
        path = folder / f"{example.name}.mp4"
        if not path.is_file() or path.stat().st_size == 0:
            partial = path.with_suffix(".part.mp4")
            write_clip(partial, example)
            partial.replace(path)  # never leave a half-written clip under the real name
        listed.append((str(path), example.question))
    (folder / "questions.json").write_text(json.dumps({Path(p).name: q for p, q in listed}, indent=1))
    return listed


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES_DIR
    for video, question in ensure_examples(target):
        print(f"{video}  ({Path(video).stat().st_size // 1024} KiB)  {question}")
