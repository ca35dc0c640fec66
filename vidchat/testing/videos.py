"""Synthetic test videos with known content, written in-process with PyAV.

Every frame shows, in display orientation:
- a top band that encodes the frame's index in binary: `INDEX_BITS` black/white cells spanning the
  full width (most significant bit left, white = 1). The cells are laid out relative to the frame
  size, so `read_frame_index` reads them after lossy compression and after any resize that keeps
  the aspect ratio;
- below the band, on a grey background, a red square moving left → right in the upper half and a
  blue circle moving top → bottom in the lower half. Their positions are a function of the frame's
  presentation time, so a variable-frame-rate video shows real motion, and they never overlap.
  `SyntheticVideo.boxes` holds every frame's box of every shape; `SyntheticVideo.masks` its pixels.

Helpers at the end build the bad inputs that `vidchat.video` must reject.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

INDEX_BITS = 12  # frames 0 … 4095
BAND_FRACTION = 1 / 6  # of the frame height, holds the index code
BACKGROUND_RGB = (128, 128, 128)
RED_SQUARE = "red square"
BLUE_CIRCLE = "blue circle"
SHAPE_RGB = {RED_SQUARE: (230, 20, 20), BLUE_CIRCLE: (20, 20, 230)}

# Matroska stores timestamps in milliseconds: times are written in ms there so they are exact.
_MILLISECOND_CONTAINERS = {".webm", ".mkv"}


@dataclass(frozen=True, eq=False)
class SyntheticVideo:
    path: str
    codec: str
    width: int  # display size (after the rotation metadata is applied)
    height: int
    pts_s: np.ndarray  # [N] float64, presentation time of every frame, the first at 0
    boxes: dict[str, np.ndarray]  # shape name → [N, 4] int64 (x1, y1, x2, y2), end-exclusive, display pixels

    @property
    def n_frames(self) -> int:
        return len(self.pts_s)

    def masks(self, frame_index: int) -> dict[str, np.ndarray]:
        """Shape name → [height, width] bool: the pixels each shape covers in that frame."""
        return {
            name: _shape_mask(name, boxes[frame_index], (self.width, self.height))
            for name, boxes in self.boxes.items()
        }


def write_video(
    path: str | os.PathLike,
    *,
    n_frames: int = 20,
    fps: float = 10.0,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    pts_s: np.ndarray | list[float] | None = None,
    pix_fmt: str | None = None,
    rotation_deg: int = 0,
    faststart: bool = False,
    codec_options: dict[str, str] | None = None,
) -> SyntheticVideo:
    """Encode a synthetic video; the container comes from the file suffix (.mp4, .mov, .webm, .mkv,
    .avi, .flv, .wmv, .ts, .gif …).

    size: (width, height) as displayed. pts_s: explicit presentation times (seconds, strictly
    increasing, on a 1 ms grid) for a variable frame rate; otherwise frame i is at i / fps.
    rotation_deg: display-matrix rotation (counter-clockwise, a multiple of 90); the frames are stored
    turned the other way so that the video *displays* the usual picture. faststart: MP4/MOV index
    before the frame data, as streaming sites write it (a cut copy then keeps its index). pix_fmt:
    by default yuvj420p for mjpeg, yuv444p when a side is odd (4:2:0 needs even sizes in x264/x265),
    else yuv420p. codec_options: encoder options (e.g. {"preset": "ultrafast"} to make an 8K frame cheap).
    """
    path = str(path)
    width, height = size
    if n_frames > 2**INDEX_BITS:
        raise ValueError(f"at most {2**INDEX_BITS} frames fit the index code")
    suffix = Path(path).suffix.lower()
    rate = Fraction(fps).limit_denominator(1001)
    if pts_s is None:
        time_base = Fraction(1, 1000) if suffix in _MILLISECOND_CONTAINERS else 1 / rate
        pts = [round(Fraction(i) / rate / time_base) for i in range(n_frames)]
    else:
        if suffix == ".avi":
            raise ValueError("AVI has no per-frame timestamps: a variable frame rate needs mp4/mov/mkv/webm")
        time_base = Fraction(1, 1000)
        pts = [round(Fraction(t).limit_denominator(10**6) / time_base) for t in pts_s]
        if len(pts) != n_frames or np.any(np.diff(pts) <= 0):
            raise ValueError("pts_s must hold n_frames strictly increasing times, at least 1 ms apart")
    times = np.array([float((p - pts[0]) * time_base) for p in pts])  # [N]
    boxes = _shape_boxes(times, size)

    turns = (rotation_deg // 90) % 4
    coded_w, coded_h = (height, width) if turns % 2 else (width, height)
    if pix_fmt is None:
        odd = coded_w % 2 or coded_h % 2
        pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv444p" if odd else "yuv420p"

    with av.open(path, "w", options={"movflags": "+faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, pix_fmt
        if codec_options:
            stream.codec_context.options = dict(codec_options)
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        if turns:
            stream.set_display_rotation(rotation_deg)
        for i in range(n_frames):
            picture = draw_frame(i, {name: b[i] for name, b in boxes.items()}, size)  # [H, W, 3]
            # Stored frames are turned clockwise so that the player's counter-clockwise turn restores them.
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(picture, -turns)), format="rgb24")
            frame.pts, frame.time_base = pts[i], time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return SyntheticVideo(path=path, codec=codec, width=width, height=height, pts_s=times, boxes=boxes)


def draw_frame(frame_index: int, boxes: dict[str, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """One [height, width, 3] uint8 RGB picture: index band on top, shapes in their boxes."""
    width, height = size
    picture = np.empty((height, width, 3), np.uint8)
    picture[:] = BACKGROUND_RGB
    band_h = _band_height(height)
    for bit in range(INDEX_BITS):
        x1, x2 = _cell_edges(bit, width)
        on = (frame_index >> (INDEX_BITS - 1 - bit)) & 1
        picture[:band_h, x1:x2] = 255 if on else 0
    for name, box in boxes.items():
        picture[_shape_mask(name, box, size)] = SHAPE_RGB[name]
    return picture


def read_frame_index(frame_rgb: np.ndarray) -> int:
    """Decode the index band of a [h, w, 3] frame (any size with the original aspect ratio).

    Reads the middle of every cell; raises ValueError when a cell is neither clearly black nor clearly
    white, so a wrong frame can never pass as a right one.
    """
    height, width = frame_rgb.shape[:2]
    band_h = height * BAND_FRACTION
    luma = frame_rgb.astype(np.float32).mean(axis=2)  # [h, w]
    y1, y2 = int(band_h * 0.25), max(int(band_h * 0.75), int(band_h * 0.25) + 1)
    index = 0
    for bit in range(INDEX_BITS):
        left, right = bit * width / INDEX_BITS, (bit + 1) * width / INDEX_BITS
        x1 = int(left + (right - left) * 0.3)
        x2 = max(int(left + (right - left) * 0.7), x1 + 1)
        level = float(luma[y1:y2, x1:x2].mean())
        if 70 < level < 185:
            raise ValueError(f"index cell {bit} is grey ({level:.0f}): not a synthetic frame, or too small")
        index = index * 2 + (level >= 128)
    return index


def _band_height(height: int) -> int:
    return max(1, round(height * BAND_FRACTION))


def _cell_edges(bit: int, width: int) -> tuple[int, int]:
    return round(bit * width / INDEX_BITS), round((bit + 1) * width / INDEX_BITS)


def _shape_boxes(times_s: np.ndarray, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boxes [N, 4] of both shapes; each moves linearly in time from one edge to the other."""
    width, height = size
    band_h = _band_height(height)
    half_h = (height - band_h) // 2
    side = max(2, min(width // 4, half_h))
    progress = times_s / times_s[-1] if times_s[-1] > 0 else np.zeros_like(times_s)  # [N] in [0, 1]

    square_x = np.round(progress * (width - side)).astype(np.int64)
    square_y = np.full_like(square_x, band_h + (half_h - side) // 2)
    circle_x = np.full_like(square_x, (width - side) // 2)
    circle_y = np.round(band_h + half_h + progress * (height - band_h - half_h - side)).astype(np.int64)
    return {
        RED_SQUARE: np.stack([square_x, square_y, square_x + side, square_y + side], axis=1),
        BLUE_CIRCLE: np.stack([circle_x, circle_y, circle_x + side, circle_y + side], axis=1),
    }


def _shape_mask(name: str, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    x1, y1, x2, y2 = (int(v) for v in box)
    mask = np.zeros((height, width), bool)
    if name == RED_SQUARE:
        mask[y1:y2, x1:x2] = True
        return mask
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    return ((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2) <= r**2


# ---- bad inputs ----------------------------------------------------------------------------------


def write_empty_file(path: str | os.PathLike) -> str:
    Path(path).write_bytes(b"")
    return str(path)


def write_text_file(path: str | os.PathLike) -> str:
    Path(path).write_text("This is a text file with a video's name.\n" * 20)
    return str(path)


def write_png_file(path: str | os.PathLike, size: tuple[int, int] = (64, 48)) -> str:
    """A still PNG image, whatever the suffix of `path`."""
    boxes = {name: b[0] for name, b in _shape_boxes(np.zeros(1), size).items()}
    picture = draw_frame(0, boxes, size)  # [H, W, 3]
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    return str(path)


def write_audio_only(path: str | os.PathLike, seconds: float = 1.0, rate: int = 16000) -> str:
    """An AAC sine tone in an mp4 container, with no video stream."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        samples = np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate).astype(np.float32)
        chunk = 1024
        for start in range(0, len(samples), chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


def write_no_frames(path: str | os.PathLike, codec: str = "mjpeg", size: tuple[int, int] = (64, 48)) -> str:
    """A container with a video stream that holds no frame.

    AVI keeps the empty video stream; an MP4/MOV written this way holds no stream at all.
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        container.start_encoding()  # writes the header although no frame follows
    return str(path)


def write_unknown_codec(path: str | os.PathLike) -> str:
    """An AVI whose video codec tag (fourcc) names no codec FFmpeg knows."""
    write_video(path, codec="mjpeg", n_frames=4)
    data = Path(path).read_bytes()
    # The fourcc appears in the stream header and in the bitmap header.
    Path(path).write_bytes(data.replace(b"MJPG", b"QQQQ"))
    return str(path)


def truncated_copy(src: str | os.PathLike, dst: str | os.PathLike, keep_fraction: float) -> str:
    """The first `keep_fraction` of the bytes of `src`, as an interrupted upload or copy leaves it."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])
    return str(dst)


def garbled_copy(
    src: str | os.PathLike, dst: str | os.PathLike, start_fraction: float, end_fraction: float, seed: int = 0
) -> str:
    """A copy of `src` whose bytes between the two fractions of its length are replaced by random bytes."""
    data = bytearray(Path(src).read_bytes())
    start, end = int(len(data) * start_fraction), int(len(data) * end_fraction)
    data[start:end] = np.random.default_rng(seed).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return str(dst)


def write_random_bytes(path: str | os.PathLike, size_bytes: int = 4096, seed: int = 0) -> str:
    """Noise: no container signature, no structure."""
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, size_bytes, dtype=np.uint8).tobytes())
    return str(path)


def write_fake_header(path: str | os.PathLike, size_bytes: int = 4096) -> str:
    """An MP4 signature ("ftyp" box) followed by noise: looks like a video to a sniffer, opens as none."""
    head = (24).to_bytes(4, "big") + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"
    noise = np.random.default_rng(1).integers(0, 256, size_bytes - len(head), dtype=np.uint8).tobytes()
    Path(path).write_bytes(head + noise)
    return str(path)


def forged_duration_copy(src: str | os.PathLike, dst: str | os.PathLike, factor: int) -> str:
    """A copy of the MP4 `src` whose movie and media headers (mvhd, mdhd, version 0) claim `factor` times its
    duration; the frame tables are left as they are."""
    data = bytearray(Path(src).read_bytes())
    for box in (b"mvhd", b"mdhd"):
        at = data.find(box)
        if at < 0 or data[at + 4] != 0:
            raise ValueError(f"no version-0 {box.decode()} box in {src}")
        duration = int.from_bytes(data[at + 20 : at + 24], "big")  # after version/flags, two dates, timescale
        data[at + 20 : at + 24] = min(duration * factor, 2**32 - 1).to_bytes(4, "big")
    Path(dst).write_bytes(bytes(data))
    return str(dst)
