"""A live source's frames as vidchat keeps them: at a set rate, the newest seconds in memory (what a question about
"now" sees), and every kept frame in an H.264 mp4 on disk (what stopping turns into an ordinary video).

Frames come with their time (seconds after the source's first frame: the stream's presentation times, or the
server's arrival times for a webcam) and are kept at `fps` on average: a frame is kept when it is due, with a quarter
of a step of tolerance, so a webcam's jittery arrivals at the set rate are all kept and a 30 fps stream is thinned to
the rate. Memory holds at most `window_s` seconds of frames, at the model's frame size; the file grows on disk until
`max_duration_s` or `max_bytes`, when the recording is full and keeps nothing more.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vidchat.video import Clip, SamplingConfig, VideoInfo, bytes_text, clock_text, frame_size

_MS = 1000
_RECORDINGS = itertools.count(1)


@dataclass(frozen=True)
class RecordingSettings:
    fps: float = 2.0  # frames kept per second
    window_s: float = 16.0  # the newest seconds kept in memory: what a question about now sees
    max_duration_s: float = 3600.0  # the recording is full after this long ...
    max_bytes: int = 2 * 1024**3  # ... or this many bytes of video on disk
    max_pixels: int = 256 * 28 * 28  # frames in memory are scaled down (aspect kept) to this many pixels
    max_width: int = 1280  # the file's frames are scaled down to this box
    max_height: int = 720

    def __post_init__(self) -> None:
        if not 0.2 <= self.fps <= 30:
            raise ValueError(f"fps must be between 0.2 and 30, got {self.fps}")
        if not self.window_s * self.fps >= 2:
            raise ValueError(f"the window must hold at least two frames, got {self.window_s} s at {self.fps} fps")


@dataclass(frozen=True, eq=False)
class KeptFrame:
    number: int  # 0, 1, 2 … in the order kept: its frame index in the recording's file
    t_s: float  # seconds after the source's first frame (the file's clock)
    picture: np.ndarray  # [h, w, 3] uint8 RGB at the model's frame size


class Recording:
    """The kept frames of one live source: the newest in memory, all of them in `path` (an mp4)."""

    def __init__(self, path: str | Path, settings: RecordingSettings = RecordingSettings()):
        self.path = Path(path)
        self.settings = settings
        self.window: deque[KeptFrame] = deque()
        self.kept = 0
        self.received = 0
        self.full = ""  # why nothing more is kept (a limit reached), "" while it records
        self.source_size: tuple[int, int] | None = None  # (width, height) of the file's frames
        self._origin_s: float | None = None  # the source's time of its first frame: the file's zero
        self._due_s = 0.0
        self._last_s = -np.inf
        self._closed = False
        self.bytes_written = 0  # of encoded video (the file's own size lags behind its write buffer)
        self._id = f"live-{next(_RECORDINGS)}-{hashlib.sha256(str(self.path).encode()).hexdigest()[:12]}"
        self._file: av.container.OutputContainer | None = None
        self._encoder = None

    # ---- frames in ----

    def add(self, picture: np.ndarray, t_s: float) -> KeptFrame | None:
        """Offer a frame ([H, W, 3] uint8 RGB) at `t_s` on the source's clock (the recording's counts from the
        first frame offered): the kept frame, or None when it is not due, not newer than the last one, or the
        recording is full or closed."""
        self.received += 1
        self._origin_s = t_s if self._origin_s is None else self._origin_s
        t_s -= self._origin_s
        step = 1 / self.settings.fps
        if self.full or self._closed or not t_s > self._last_s or t_s < self._due_s - step / 4:
            return None
        if self.kept and t_s > self.settings.max_duration_s:
            self.full = f"The recording reached its limit of {clock_text(self.settings.max_duration_s)}."
            return None
        self._write(picture, t_s)
        if self.bytes_written > self.settings.max_bytes:
            self.full = f"The recording reached its limit of {bytes_text(self.settings.max_bytes)}."
        self._due_s = max(self._due_s + step, t_s + step / 2)  # on average `fps`; no burst after a gap
        self._last_s = t_s
        width, height = self.source_size
        small = frame_size(width, height, 1, SamplingConfig(max_pixels=self.settings.max_pixels, min_pixels=1))
        kept = KeptFrame(self.kept, t_s, _resized(picture, small))
        self.kept += 1
        self.window.append(kept)
        while self.window and self.window[0].t_s < t_s - self.settings.window_s:
            self.window.popleft()
        return kept

    def _write(self, picture: np.ndarray, t_s: float) -> None:
        if self._file is None:
            height, width = picture.shape[:2]
            scale = min(1.0, self.settings.max_width / width, self.settings.max_height / height)
            # even sides, as 4:2:0 needs
            self.source_size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = av.open(str(self.path), "w", format="mp4")
            self._encoder = self._file.add_stream("libx264", rate=Fraction(self.settings.fps).limit_denominator(1000))
            self._encoder.width, self._encoder.height = self.source_size
            self._encoder.pix_fmt = "yuv420p"
            self._encoder.codec_context.time_base = Fraction(1, _MS)  # true times, not a constant rate
            self._encoder.options = {"crf": "23", "preset": "veryfast", "tune": "zerolatency"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_resized(picture, self.source_size)), format="rgb24")
        frame.pts = round(t_s * _MS)
        frame.time_base = Fraction(1, _MS)
        packets = self._encoder.encode(frame)
        self.bytes_written += sum(packet.size for packet in packets)
        self._file.mux(packets)

    # ---- what the model sees ----

    @property
    def duration_s(self) -> float:
        return self.window[-1].t_s if self.window else 0.0

    def latest(self) -> KeptFrame | None:
        return self.window[-1] if self.window else None

    def clip(self, since_s: float = -np.inf, at_least: int = 2) -> Clip:
        """The frames in memory after `since_s` (at least the newest `at_least`) as a Clip in the recording's clock:
        a window of the recording so far (`span_s`), its own content key."""
        frames = list(self.window)
        first = min(len(frames) - at_least, next((i for i, f in enumerate(frames) if f.t_s > since_s), len(frames)))
        frames = frames[max(0, first) :]
        if not frames:
            raise ValueError("clip() before any frame was kept")
        times = np.array([f.t_s for f in frames])  # [T]
        width, height = self.source_size
        info = VideoInfo(
            path=str(self.path), container="mp4", codec="h264", width=width, height=height,
            duration_s=self.duration_s, frame_count=self.kept, avg_fps=self.settings.fps, size_bytes=0,
            pixel_format="yuv420p",
        )  # fmt: skip
        return Clip(
            frames=np.stack([f.picture for f in frames]),  # [T, h, w, 3]
            times_s=times,
            frame_indices=np.array([f.number for f in frames], dtype=np.int64),
            info=info,
            sampling=replace(SamplingConfig(), fps=self.settings.fps, max_pixels=self.settings.max_pixels),
            content_hash=f"{self._id}-{frames[0].number}-{frames[-1].number}",
            span_s=(float(times[0]), float(times[-1])),
        )

    @property
    def nbytes(self) -> int:
        return sum(f.picture.nbytes for f in self.window)

    # ---- the end ----

    def close(self) -> Path | None:
        """Finish the file: its path, or None when no frame was kept. Nothing is kept afterwards."""
        if self._file is not None and not self._closed:
            self._file.mux(self._encoder.encode(None))
            self._file.close()
        self._closed = True
        return self.path if self.kept else None


def _resized(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h, w, 3] at `size` (width, height): area-averaged, as sampling scales frames."""
    if (picture.shape[1], picture.shape[0]) == tuple(size):
        return picture
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
