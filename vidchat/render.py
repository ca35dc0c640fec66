"""What the user sees and takes away: masks, points, boxes and labels drawn in each object's colour.

- `draw`: one frame with its overlays (translucent mask fill, mask contour, box, points, label).
- `write_video`: the clip's source video re-encoded as browser-playable H.264 with the overlays, at its own
  size and frame rate; each source frame shows the masks of the nearest sampled frame.
- `overlay_masks`: an object's masks on a range of sampled frames, each a small PNG data URL in its colour,
  for the page to lay over the playing video without re-encoding it (it asks for the frames near the playhead).
- `playable_copy`: the source video (with its sound) as H.264 mp4, for a player when browsers cannot play the
  source (MJPEG AVI, HEVC, ProRes …); see `browser_plays`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vidchat.errors import VideoError
from vidchat.segment import FramePrompt, Masklet, ObjectPrompt, place_prompts
from vidchat.video import Clip, VideoInfo, utf8_path

# Distinct on video and for the common colour-vision deficiencies (Okabe–Ito first, then Tableau).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (148, 103, 189),
    (188, 189, 34),
    (23, 190, 207),
    (227, 119, 194),
    (140, 86, 75),
)
# Half the colour, half the picture: the object stays recognisable under its mask.
MASK_OPACITY = 0.5
_OPACITY_256 = round(MASK_OPACITY * 256)  # the blend is done in integers: exact and reproducible
# Overlay PNGs this size at most on their longer side: the browser scales them to the player.
OVERLAY_MAX_SIDE = 640

Progress = Callable[[float, str], None]


def object_color(object_id: int) -> tuple[int, int, int]:
    """The RGB colour of an object, the same for its id everywhere (video, overlays, chat, JSON)."""
    return PALETTE[(object_id - 1) % len(PALETTE)]


def color_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# ---- drawing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overlay:
    """What is drawn for one object on one frame, in that frame's pixels."""

    object_id: int
    label: str  # "" draws no label
    mask: np.ndarray | None = None  # [H, W] bool
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    points: tuple[tuple[float, float], ...] = ()


def _line_width(height: int, width: int) -> int:
    return max(1, round(min(height, width) / 270))  # 2 px at 540p, 4 px at 1080p


def draw(frame: np.ndarray, overlays: Sequence[Overlay]) -> np.ndarray:
    """A copy of `frame` ([H, W, 3] uint8 RGB) with the overlays: fills first, then outlines, points, labels."""
    out = frame.copy()
    height, width = out.shape[:2]
    line = _line_width(height, width)
    for overlay in overlays:
        if overlay.mask is not None:
            color = np.array(object_color(overlay.object_id), np.uint32)
            inside = out[overlay.mask].astype(np.uint32)  # [N, 3]
            out[overlay.mask] = ((inside * (256 - _OPACITY_256) + color * _OPACITY_256 + 128) >> 8).astype(np.uint8)
    for overlay in overlays:
        color = object_color(overlay.object_id)
        if overlay.mask is not None and overlay.mask.any():
            contours, _ = cv2.findContours(overlay.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, color, line)
        if overlay.box is not None:
            x1, y1, x2, y2 = (round(v) for v in overlay.box)
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, line)
        for x, y in overlay.points:
            center = (round(x), round(y))
            cv2.circle(out, center, 4 * line, (255, 255, 255), -1)  # a white ring shows it on any colour
            cv2.circle(out, center, 3 * line, color, -1)
        if overlay.label:
            _draw_label(out, overlay, color, line)
    return out


_MAX_LABEL_CHARS = 48


def _draw_label(out: np.ndarray, overlay: Overlay, color: tuple[int, int, int], line: int) -> None:
    """The label on a bar of the object's colour, above the object's top-left corner (inside if no room)."""
    anchor = _anchor(overlay)
    if anchor is None:
        return
    scale = line * 0.4
    label = _drawable(overlay.label)
    (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, line)
    bar_h = text_h + baseline + 2 * line
    x, y = int(anchor[0]), int(anchor[1])
    top = y - bar_h if y - bar_h >= 0 else y
    cv2.rectangle(out, (x, top), (x + text_w + 2 * line, top + bar_h), color, -1)
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luma > 140 else (255, 255, 255)  # readable on light and dark colours
    cv2.putText(
        out, label, (x + line, top + line + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, line, cv2.LINE_AA
    )


def _drawable(label: str) -> str:
    """The label as OpenCV's Hershey font can draw it: printable ASCII (others become "?"), at most
    `_MAX_LABEL_CHARS`. Labels come from the model's words; OpenCV crashes the process (segmentation fault) on
    some strings, a NUL or a lone surrogate among them."""
    text = "".join(c if " " <= c <= "~" else "?" for c in label[: _MAX_LABEL_CHARS + 1])
    return text if len(text) <= _MAX_LABEL_CHARS else text[: _MAX_LABEL_CHARS - 1] + "~"


def _anchor(overlay: Overlay) -> tuple[float, float] | None:
    if overlay.box is not None:
        return overlay.box[0], overlay.box[1]
    if overlay.mask is not None and overlay.mask.any():
        rows = np.flatnonzero(overlay.mask.any(axis=1))
        cols = np.flatnonzero(overlay.mask.any(axis=0))
        return float(cols[0]), float(rows[0])
    if overlay.points:
        return overlay.points[0]
    return None


def frame_overlays(
    sampled_frame: int, clip: Clip, masklets: Mapping[int, Masklet], objects: Sequence[ObjectPrompt]
) -> list[Overlay]:
    """The overlays of one sampled frame in source pixels: each visible mask, and the box and points that
    prompted an object on that frame (the model's groundings, placed and checked as SAM 2 got them)."""
    masks = {i: m.mask(sampled_frame) for i, m in masklets.items() if m.visible[sampled_frame]}
    labels = {i: m.label for i, m in masklets.items()}
    prompts: dict[int, FramePrompt] = {}
    for obj in objects:
        labels.setdefault(obj.object_id, obj.label)
        placed, _ = place_prompts(obj, clip.times_s, clip.info.duration_s, clip.info.width, clip.info.height)
        if sampled_frame in placed:
            prompts[obj.object_id] = placed[sampled_frame]
    overlays = []
    for object_id in sorted(set(masks) | set(prompts)):
        prompt = prompts.get(object_id)
        box = prompt.box if prompt else None
        points = tuple((p.x, p.y) for p in prompt.points) if prompt else ()
        overlays.append(Overlay(object_id, labels[object_id], masks.get(object_id), box, points))
    return overlays


# ---- annotated video -----------------------------------------------------------------------------------


def write_video(
    out_path: str | os.PathLike,
    clip: Clip,
    masklets: Mapping[int, Masklet],
    objects: Sequence[ObjectPrompt] = (),
    progress: Progress | None = None,
) -> Path:
    """Re-encode the clip's source video with the overlays as an H.264 mp4 that browsers play.

    Source size (padded by a pixel to even sides, as 4:2:0 needs) and source frame rate; every source frame
    shows the overlays of the sampled frame nearest its time. A variable frame rate is written constant at
    the average rate.
    """
    out_path = Path(out_path)
    times_s = clip.times_s
    with utf8_path(clip.info.path) as source_path, av.open(source_path) as source:
        stream = source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        total = stream.frames or clip.info.frame_count
        stream.thread_type = "AUTO"  # decode in threads while x264 encodes
        with av.open(str(out_path), "w", options={"movflags": "+faststart"}) as target:
            encoder = None
            first_pts = None
            current, overlays = -1, []
            for index, frame in enumerate(source.decode(stream)):
                turns = round(frame.rotation / 90) % 4  # counter-clockwise, stored → displayed (as vidchat.video)
                picture = np.rot90(frame.to_ndarray(format="rgb24"), turns)  # [H, W, 3] as displayed
                # Times count from the first frame, like the clip's.
                first_pts = frame.pts if first_pts is None else first_pts
                t = float((frame.pts - first_pts) * frame.time_base) if frame.pts is not None else index / float(rate)
                nearest = int(np.argmin(np.abs(times_s - t)))
                if nearest != current:  # overlays change only at sampled frames: decode their masks once
                    current, overlays = nearest, frame_overlays(nearest, clip, masklets, objects)
                picture = _even(draw(picture, overlays))
                if encoder is None:
                    encoder = target.add_stream("libx264", rate=rate)
                    encoder.height, encoder.width = picture.shape[:2]
                    encoder.pix_fmt = "yuv420p"
                    encoder.options = {"crf": "23", "preset": "veryfast"}
                out_frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                out_frame.pts = index
                target.mux(encoder.encode(out_frame))
                if progress is not None:
                    progress(
                        min((index + 1) / max(total, 1), 1.0), f"Writing the annotated video: frame {index + 1}/{total}"
                    )
            if encoder is not None:
                target.mux(encoder.encode(None))
    return out_path


def _even(picture: np.ndarray) -> np.ndarray:
    """Pad the bottom row / right column (repeating the edge) so both sides are even."""
    height, width = picture.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return np.ascontiguousarray(picture)
    return np.pad(picture, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


# ---- JSON export ---------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike, document: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(document, indent=1))
    return path


# ---- UI overlays ---------------------------------------------------------------------------------------


def overlay_masks(
    masklet: Masklet, color: tuple[int, int, int], frames: range, max_side: int = OVERLAY_MAX_SIDE
) -> list[dict]:
    """The masklet on the sampled `frames` (those it has), for the page to draw over the player: per frame its
    index `i`, and where the object is visible its `box` (source pixels) and `png`, the mask as a PNG data URL
    (`color` at MASK_OPACITY, an opaque contour, transparent elsewhere) no larger than `max_side`."""
    scale = min(1.0, max_side / max(masklet.width, masklet.height))
    size = (max(1, round(masklet.width * scale)), max(1, round(masklet.height * scale)))  # (w, h)
    out = []
    for i in frames:
        if not 0 <= i < len(masklet.rles):
            continue
        if not masklet.visible[i]:
            out.append({"i": i, "box": None, "png": None})
            continue
        mask = cv2.resize(masklet.mask(i).astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0  # [h, w]
        out.append({"i": i, "box": list(masklet.box(i)), "png": _mask_png(mask, color)})
    return out


def _mask_png(mask: np.ndarray, color: tuple[int, int, int]) -> str:
    height, width = mask.shape
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[mask] = (*color, round(255 * MASK_OPACITY))
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgba, contours, -1, (*color, 255), _line_width(height, width))
    _, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


# ---- a copy for the browser's player ----------------------------------------------------------------------

# (file extension, codec) pairs that browsers play as they are (the ones Gradio's video component leaves alone).
_BROWSER_PLAYABLE = {
    (".mp4", "h264"),
    (".mp4", "av1"),
    (".webm", "vp8"),
    (".webm", "vp9"),
    (".webm", "av1"),
    (".ogg", "theora"),
}


# Browsers play 8-bit 4:2:0 only (10-bit H.264 and 4:4:4 play in none of them).
_BROWSER_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}


def browser_plays(info: VideoInfo) -> bool:
    return (Path(info.path).suffix.lower(), info.codec) in _BROWSER_PLAYABLE and info.pixel_format in _BROWSER_PIXEL_FORMATS


def playable_copy(info: VideoInfo, folder: Path) -> Path:
    """The video as `folder/<name>.mp4`: H.264 (copied when it already is, in another container), AAC sound, at
    its displayed orientation. Made with the ffmpeg program, which Gradio's video component also needs."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise VideoError("The browser cannot play this file and ffmpeg, which makes a playable copy, is not installed.")
    folder.mkdir(parents=True, exist_ok=True)
    out_path = folder / f"{Path(info.path).stem or 'video'}.mp4"
    if info.codec == "h264" and info.pixel_format in _BROWSER_PIXEL_FORMATS:
        video = ["-c:v", "copy"]
    else:  # 4:2:0 needs even sides
        video = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]
        video += ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2"]
    source = "file:" + os.path.abspath(info.path)  # a file, whatever its name looks like to ffmpeg ("http:…")
    command = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", source, "-map", "0:v:0", "-map", "0:a:0?", *video]
    command += ["-c:a", "aac", "-movflags", "+faststart", str(out_path)]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        out_path.unlink(missing_ok=True)
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise VideoError(f"A copy of {Path(info.path).name} that browsers play could not be made: {reason[0]}")
    return out_path
