"""What the user sees and takes away: masks, points, boxes and labels drawn in each object's colour.

- `draw`: one frame with its overlays (translucent mask fill, mask contour, box, points, label). Text (labels,
  burned captions) is drawn with Pillow in Noto Sans CJK, which has Chinese, Japanese and Korean as well as
  Latin, Greek and Cyrillic letters.
- `write_video`: the clip's source video re-encoded as browser-playable H.264 with the overlays, at its own
  size and frame rate, with the source's sound; each source frame shows the masks of the nearest sampled
  frame, and optionally the line spoken at its time.
- `write_srt`, `write_vtt` (`srt_text`, `vtt_text`): the transcript's lines as subtitle files.
- `overlay_masks`: an object's masks on a range of sampled frames, each a small PNG data URL in its colour,
  for the page to lay over the playing video without re-encoding it (it asks for the frames near the playhead).
- `playable_copy`: the source video (with its sound) as H.264 mp4, for a player when browsers cannot play the
  source (MJPEG AVI, HEVC, ProRes …); see `browser_plays`.
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import math
import os
import shutil
import subprocess
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidchat.errors import VideoError
from vidchat.segment import FramePrompt, Masklet, ObjectPrompt, place_prompts
from vidchat.speech import Segment, sound_decodes
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
LABEL_PX_PER_LINE = 12  # the label's font size, in pixels per outline width (24 px at 540p)


def _draw_label(out: np.ndarray, overlay: Overlay, color: tuple[int, int, int], line: int) -> None:
    """The label on a bar of the object's colour, above the object's top-left corner (inside if no room)."""
    anchor = _anchor(overlay)
    if anchor is None:
        return
    font = _text_font(LABEL_PX_PER_LINE * line)
    label = _label_text(overlay.label)
    top_px, bottom_px = _line_extent(font)
    bar_w, bar_h = math.ceil(font.getlength(label)) + 2 * line, bottom_px - top_px + 2 * line
    x, y = int(anchor[0]), int(anchor[1])
    top = y - bar_h if y - bar_h >= 0 else y
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luma > 140 else (255, 255, 255)  # readable on light and dark colours
    bar = Image.new("RGB", (bar_w, bar_h), color)
    ImageDraw.Draw(bar).text((line, line - top_px), label, font=font, fill=ink, anchor="ls")
    _paste(out, np.asarray(bar), x, top)


def _label_text(label: str) -> str:
    """The label on one line, at most `_MAX_LABEL_CHARS` characters (an ellipsis ends a longer one)."""
    text = " ".join(_printable(label[: _MAX_LABEL_CHARS + 1]).split())
    return text if len(text) <= _MAX_LABEL_CHARS else text[: _MAX_LABEL_CHARS - 1] + "…"


def _printable(text: str) -> str:
    """Text as a font draws it. Labels and captions come from the model's and the video's words: control
    characters (a NUL among them) become spaces, and lone surrogates, private-use and unassigned code points
    "?" (FreeType cannot take a surrogate, and no font has a glyph for the others). Newlines are kept."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc" and char != "\n":
            kept.append(" ")
        elif category in ("Cs", "Co", "Cn"):
            kept.append("?")
        else:
            kept.append(char)
    return "".join(kept)


def _paste(out: np.ndarray, picture: np.ndarray, x: int, y: int) -> None:
    """Copy `picture` ([h, w, 3]) into `out` with its top-left corner at (x, y); what falls outside is cut."""
    height, width = out.shape[:2]
    x1, y1 = max(x, 0), max(y, 0)
    x2, y2 = min(x + picture.shape[1], width), min(y + picture.shape[0], height)
    if x1 < x2 and y1 < y2:
        out[y1:y2, x1:x2] = picture[y1 - y : y2 - y, x1 - x : x2 - x]


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


# ---- fonts -----------------------------------------------------------------------------------------------

# A font that draws Chinese, Japanese and Korean as well as Latin, Greek and Cyrillic: Noto Sans CJK, where
# Debian and Ubuntu (fonts-noto-cjk, in packages.txt), Arch and Fedora install it.
FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-Regular.ttc",
)
FONT_FACE = "Noto Sans CJK SC"  # of the collection's faces (JP, KR, SC, TC, HK), the one with simplified Chinese forms
# How high a line of text reaches above and below its baseline: as high as Latin capitals and CJK, as low as
# descenders (an accent on a capital may touch the bar's edge), so a bar's height does not depend on its letters.
_EXTENT_SAMPLE = "Ag国"


@functools.cache
def _font_source() -> tuple[str, int] | None:
    """(file, face index) of the first of FONT_FILES installed, or None, said once in a warning."""
    for path in FONT_FILES:
        if os.path.isfile(path):
            for index in range(8):
                try:
                    if ImageFont.truetype(path, 10, index=index).getname()[0] == FONT_FACE:
                        return path, index
                except OSError:  # past the collection's last face
                    break
            return path, 0
    warnings.warn(
        "No font that draws Chinese, Japanese or Korean is installed (Noto Sans CJK: Debian's package "
        "fonts-noto-cjk), so labels and captions in those scripts show as boxes. Pillow's default font "
        "draws the rest.",
        RuntimeWarning,
        stacklevel=2,
    )
    return None


@functools.cache
def _text_font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font that labels and captions are drawn with, at `size_px` pixels per em."""
    source = _font_source()
    if source is None:
        return ImageFont.load_default(size_px)
    return ImageFont.truetype(source[0], size_px, index=source[1])


def _line_extent(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> tuple[int, int]:
    """(top, bottom) of a line of text in pixels from its baseline (top < 0)."""
    _, top, _, bottom = font.getbbox(_EXTENT_SAMPLE, anchor="ls")
    return int(top), int(bottom)


# ---- annotated video -----------------------------------------------------------------------------------


def write_video(
    out_path: str | os.PathLike,
    clip: Clip,
    masklets: Mapping[int, Masklet],
    objects: Sequence[ObjectPrompt] = (),
    progress: Progress | None = None,
    captions: Sequence[Segment] = (),
) -> Path:
    """Re-encode the clip's source video with the overlays as an H.264 mp4 that browsers play, with the
    source's sound (see `_Sound`) and, when `captions` are given, the line spoken at each frame's time burned in
    at the bottom.

    Source size (padded by a pixel to even sides, as 4:2:0 needs) and source frame rate; every source frame
    shows the overlays of the sampled frame nearest its time. A variable frame rate is written constant at
    the average rate.
    """
    out_path = Path(out_path)
    times_s = clip.times_s
    lines = _CaptionTrack(captions)
    with utf8_path(clip.info.path) as source_path, av.open(source_path) as source:
        stream = source.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        total = stream.frames or clip.info.frame_count
        stream.thread_type = "AUTO"  # decode in threads while x264 encodes
        audio = source.streams.audio[0] if source.streams.audio else None
        with av.open(str(out_path), "w", options={"movflags": "+faststart"}) as target:
            encoder = target.add_stream("libx264", rate=rate)
            encoder.height, encoder.width = _even_size(clip.info.height), _even_size(clip.info.width)
            encoder.pix_fmt = "yuv420p"
            encoder.options = {"crf": "23", "preset": "veryfast"}
            sound = _Sound.open(source_path, audio, target, clip.info) if audio is not None else None
            index, first_pts = 0, None
            current, overlays = -1, []
            for packet in source.demux(stream, audio) if sound is not None else source.demux(stream):
                if packet.stream is not stream:
                    sound.add(packet)
                    continue
                for frame in packet.decode():
                    turns = round(frame.rotation / 90) % 4  # counter-clockwise, stored → displayed (as vidchat.video)
                    picture = np.rot90(frame.to_ndarray(format="rgb24"), turns)  # [H, W, 3] as displayed
                    # Times count from the first frame, like the clip's.
                    first_pts = frame.pts if first_pts is None else first_pts
                    t = index / float(rate) if frame.pts is None else float((frame.pts - first_pts) * frame.time_base)
                    nearest = int(np.argmin(np.abs(times_s - t)))
                    if nearest != current:  # overlays change only at sampled frames: decode their masks once
                        current, overlays = nearest, frame_overlays(nearest, clip, masklets, objects)
                    picture = draw(picture, overlays)
                    lines.draw(picture, t)
                    out_frame = av.VideoFrame.from_ndarray(_even(picture), format="rgb24")
                    out_frame.pts = index
                    target.mux(encoder.encode(out_frame))
                    index += 1
                    if progress is not None:
                        progress(min(index / max(total, 1), 1.0), f"Writing the annotated video: frame {index}/{total}")
            target.mux(encoder.encode(None))
            if sound is not None:
                sound.close()
    return out_path


def _even_size(pixels: int) -> int:
    return pixels + pixels % 2


def _even(picture: np.ndarray) -> np.ndarray:
    """Pad the bottom row / right column (repeating the edge) so both sides are even."""
    height, width = picture.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return np.ascontiguousarray(picture)
    return np.pad(picture, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


# ---- the source's sound in the export ---------------------------------------------------------------------

# Audio codecs that an mp4 holds and every browser plays: their packets are copied as they are. Any other
# (PCM, Vorbis, FLAC, ALAC, AC-3 …) is decoded and encoded to AAC, so that the export plays everywhere.
COPIED_AUDIO_CODECS = frozenset({"aac", "mp3", "opus"})
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# Copied packets that end this long before the video's first frame are dropped; the ones nearer stay, as the
# pre-roll a decoder needs (AAC's priming among them), and the mp4's edit list starts the sound at the frame.
_PREROLL_S = 0.5
# A decoded frame this close to where the sound so far ends is taken as following it (timestamps are rounded);
# further away, silence fills the gap or the overlap is cut, so the sound stays on the picture's clock.
_GAP_S = 0.01


class _Sound:
    """The source's first audio stream, written into the export on the picture's clock: seconds from the video
    stream's first frame (`VideoInfo.start_s`), whatever the audio's own start, and cut at the video's end.

    Copied packet for packet when the codec is one of COPIED_AUDIO_CODECS, else decoded and encoded to AAC (mono
    or stereo, at the source's rate where AAC has it, else 48 kHz). Sound that FFmpeg cannot decode leaves the
    export silent; a damaged packet is skipped (its samples become silence).
    """

    def __init__(self, stream: av.audio.AudioStream, target: av.container.OutputContainer, info: VideoInfo, copy: bool):
        self.target, self.copy = target, copy
        self.time_base = stream.time_base
        self.start = round(Fraction(info.start_s) / self.time_base)  # the first frame, in the audio's time base
        self.end_s = info.duration_s
        if copy:
            self.out = target.add_stream_from_template(stream)
            self.last_dts: int | None = None
            return
        self.rate = stream.sample_rate if stream.sample_rate in _AAC_RATES else 48000
        self.layout = "mono" if stream.channels == 1 else "stereo"
        self.out = target.add_stream("aac", rate=self.rate, layout=self.layout)
        self.out.bit_rate = 64000 * self.out.channels
        self.resampler: av.AudioResampler | None = None
        self.resampled_from: tuple | None = None
        self.written = 0  # samples, at self.rate, from the video's first frame

    @classmethod
    def open(
        cls, source_path: str, stream: av.audio.AudioStream, target: av.container.OutputContainer, info: VideoInfo
    ) -> _Sound | None:
        """The sound of `stream` into `target`, or None when it cannot be had (the export is then silent)."""
        context = stream.codec_context
        if context is None or not context.sample_rate or not context.channels or stream.time_base is None:
            return None  # a codec FFmpeg does not know: nothing to copy or decode
        if context.codec.canonical_name in COPIED_AUDIO_CODECS:  # the codec, not its decoder ("mp3float")
            return cls(stream, target, info, copy=True)
        if not sound_decodes(source_path, stream.index, max_packets=100):
            return None
        return cls(stream, target, info, copy=False)

    def add(self, packet: av.Packet) -> None:
        if self.copy:
            self._copy(packet)
            return
        try:
            frames = packet.decode()  # an empty packet (the end of the file) flushes the decoder
        except av.error.FFmpegError:
            return  # damaged: its stretch becomes silence
        for frame in frames:
            self._resample(frame)

    def close(self) -> None:
        if not self.copy:
            if self.resampler is not None:
                self._encode_all(self.resampler.resample(None))
            self.target.mux(self.out.encode(None))

    def _copy(self, packet: av.Packet) -> None:
        if packet.size == 0 or packet.dts is None:
            return  # the end of the file, or a packet that cannot be placed in time
        pts = packet.pts if packet.pts is not None else packet.dts
        if (pts + (packet.duration or 0) - self.start) * self.time_base < -_PREROLL_S:
            return
        if (pts - self.start) * self.time_base >= self.end_s:
            return
        dts = packet.dts - self.start
        if self.last_dts is not None and dts <= self.last_dts:
            return  # an mp4 needs increasing decode times: a damaged stream's repeated packet is left out
        self.last_dts = dts
        if packet.pts is not None:
            packet.pts = packet.pts - self.start
        packet.dts = dts
        packet.stream = self.out
        self.target.mux(packet)

    def _resample(self, frame: av.AudioFrame) -> None:
        """Into planar float at the output's rate and layout; a change of format mid-stream starts a resampler
        for the new one."""
        if frame.pts is not None:
            frame.pts -= self.start  # the picture's clock
        kind = (frame.format.name, frame.layout.name, frame.sample_rate)
        if kind != self.resampled_from:
            if self.resampler is not None:
                self._encode_all(self.resampler.resample(None))
            self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
            self.resampled_from = kind
        self._encode_all(self.resampler.resample(frame))

    def _encode_all(self, frames: list[av.AudioFrame]) -> None:
        end = round(self.end_s * self.rate)  # the video's end, in samples
        for frame in frames:
            samples = frame.to_ndarray()  # [C, S] float32
            at = self.written  # where the frame starts, in samples from the first frame
            if frame.pts is not None and frame.time_base is not None:
                at = round(frame.pts * frame.time_base * self.rate)
            if self.written > 0 and abs(at - self.written) <= _GAP_S * self.rate:
                at = self.written  # it follows on (the first frame is placed exactly)
            while self.written < min(at, end):  # a gap, or a start after the first frame: silence up to it
                count = min(at, end, self.written + self.rate) - self.written
                self._encode(np.zeros((samples.shape[0], count), np.float32))
            # What the sound so far already covers (an overlap, or before the first frame) is cut, and what
            # follows the video's end.
            samples = samples[:, max(self.written - at, 0) : max(end - at, 0)]
            if samples.shape[1]:
                self._encode(samples)

    def _encode(self, samples: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.pts, frame.time_base = self.written, Fraction(1, self.rate)
        self.written += samples.shape[1]
        self.target.mux(self.out.encode(frame))


# ---- burned captions ----------------------------------------------------------------------------------------

CAPTION_EM_FRACTION = 1 / 20  # the captions' font size, of the frame's height (27 px at 540p) …
CAPTION_MIN_PX = 12  # … and not smaller
CAPTION_BAR_OPACITY = 0.6  # the dark bar behind them: the picture shows through, the text reads on any picture
_CAPTION_MAX_LINES = 3
_CAPTION_MAX_CHARS = 300
_BAR_256 = round(CAPTION_BAR_OPACITY * 256)


class _CaptionTrack:
    """The line spoken at a time, drawn at the bottom of the frame: white text on a dark translucent bar. A line
    is laid out once and kept while it shows."""

    def __init__(self, segments: Sequence[Segment]):
        self.segments = sorted((s for s in segments if s.text.strip()), key=lambda s: s.start_s)
        self.starts = [s.start_s for s in self.segments]
        self.ends_so_far = list(np.maximum.accumulate([s.end_s for s in self.segments]))  # to stop looking back
        self.shown: tuple[int, tuple[int, int], np.ndarray] | None = None  # (segment, frame size, text mask)

    def at(self, t_seconds: float) -> int | None:
        """The segment showing at that time: of those that span it, the one that began last."""
        i = bisect.bisect_right(self.starts, t_seconds) - 1
        while i >= 0 and self.ends_so_far[i] > t_seconds:
            if self.segments[i].end_s > t_seconds:
                return i
            i -= 1
        return None

    def draw(self, picture: np.ndarray, t_seconds: float) -> None:
        """Draw the line of `t_seconds` on `picture` ([H, W, 3] uint8 RGB, in place)."""
        i = self.at(t_seconds)
        if i is None:
            return
        height, width = picture.shape[:2]
        if self.shown is None or self.shown[:2] != (i, (height, width)):
            self.shown = (i, (height, width), _caption_mask(self.segments[i].text, width, height))
        mask = self.shown[2]  # [h, w] uint8: 0 the bar, 255 the text's ink
        top, left = height - mask.shape[0] - _caption_margin(height), (width - mask.shape[1]) // 2
        region = picture[max(top, 0) : top + mask.shape[0], max(left, 0) : left + mask.shape[1]]
        mask = mask[max(-top, 0) :, max(-left, 0) :][: region.shape[0], : region.shape[1], None].astype(np.int32)
        bar = (region.astype(np.int32) * (256 - _BAR_256) + 128) >> 8  # black over the picture, in integers
        blend = (255 - bar) * mask + 128  # white text over the bar, rounded as Pillow draws text on a colour
        region[...] = bar + ((blend >> 8) + blend >> 8)


def _caption_font_px(height: int) -> int:
    return max(CAPTION_MIN_PX, round(height * CAPTION_EM_FRACTION))


def _caption_margin(height: int) -> int:
    return _caption_font_px(height) // 2


def _caption_mask(text: str, width: int, height: int) -> np.ndarray:
    """[h, w] uint8: the caption's text (255 ink) on its bar (0), wrapped to the frame's width, centred."""
    font = _text_font(_caption_font_px(height))
    pad = max(1, _caption_font_px(height) // 4)
    lines = _wrap(_printable(text[:_CAPTION_MAX_CHARS]), font, max(width - 4 * pad, 1))
    top_px, bottom_px = _line_extent(font)
    step = bottom_px - top_px
    bar_w = min(max(math.ceil(font.getlength(line)) for line in lines) + 2 * pad, width)
    image = Image.new("L", (bar_w, step * len(lines) + 2 * pad), 0)
    pen = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        pen.text((bar_w / 2, pad - top_px + row * step), line, font=font, fill=255, anchor="ms")
    return np.asarray(image)


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: int) -> list[str]:
    """The text's lines (its own, and more where one is wider than `max_width`: broken at a space, or between
    any two characters in scripts without spaces), at most `_CAPTION_MAX_LINES` (an ellipsis ends the last)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        rest = " ".join(paragraph.split())
        while rest:
            fit, too_long = 1, len(rest) + 1  # the most characters that fit: at least one, fewer than too_long
            while too_long - fit > 1:
                middle = (fit + too_long) // 2
                fit, too_long = (middle, too_long) if font.getlength(rest[:middle]) <= max_width else (fit, middle)
            space = rest.rfind(" ", 0, fit + 1)
            if fit < len(rest) and space > fit // 2:  # between words (not far back: CJK does without spaces)
                fit = space
            lines.append(rest[:fit].rstrip())
            rest = rest[fit:].lstrip()
    if not lines:
        return [""]
    if len(lines) > _CAPTION_MAX_LINES:
        last = lines[_CAPTION_MAX_LINES - 1]
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1]
        lines = lines[: _CAPTION_MAX_LINES - 1] + [last + "…"]
    return lines


# ---- JSON export ---------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike, document: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(document, indent=1))
    return path


# ---- transcript files ------------------------------------------------------------------------------------


def srt_text(segments: Sequence[Segment]) -> str:
    """The segments as SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the text's lines. SubRip has no
    escapes: the text goes as it is, but for what would break a cue (see `_cue_lines`)."""
    cues = []
    for segment in segments:
        lines = [line.replace("-->", "->") for line in _cue_lines(segment.text)]
        if lines:
            start, end = _cue_times(segment, ",")
            cues.append(f"{len(cues) + 1}\n{start} --> {end}\n" + "\n".join(lines))
    return "\n\n".join(cues) + "\n" if cues else ""


def vtt_text(segments: Sequence[Segment]) -> str:
    """The segments as WebVTT: a `WEBVTT` header, then cues of `HH:MM:SS.mmm --> HH:MM:SS.mmm` and the text's
    lines, with `&`, `<` and `>` written as character references (so the text shows as text, and a "-->" in it
    cannot start a cue). Written here: Gradio 6.31's conversion from SubRip writes broken cue lines."""
    cues = []
    for segment in segments:
        lines = [_vtt_escaped(line) for line in _cue_lines(segment.text)]
        if lines:
            start, end = _cue_times(segment, ".")
            cues.append(f"{start} --> {end}\n" + "\n".join(lines))
    return "WEBVTT\n\n" + "\n\n".join(cues) + "\n" if cues else "WEBVTT\n"


def write_srt(path: str | os.PathLike, segments: Sequence[Segment]) -> Path:
    path = Path(path)
    path.write_text(srt_text(segments), encoding="utf-8")
    return path


def write_vtt(path: str | os.PathLike, segments: Sequence[Segment]) -> Path:
    path = Path(path)
    path.write_text(vtt_text(segments), encoding="utf-8")
    return path


def _vtt_escaped(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cue_lines(text: str) -> list[str]:
    """A cue's lines: no empty one (a blank line ends a cue), no control characters, no lone surrogates."""
    text = _printable(text.replace("\r\n", "\n").replace("\r", "\n"))
    return [line.strip() for line in text.split("\n") if line.strip()]


def _cue_times(segment: Segment, decimal: str) -> tuple[str, str]:
    start_ms = max(round(segment.start_s * 1000), 0)
    end_ms = max(round(segment.end_s * 1000), start_ms)
    return _clock(start_ms, decimal), _clock(end_ms, decimal)


def _clock(ms: int, decimal: str) -> str:
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{ms:03d}"


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
