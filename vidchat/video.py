"""Probe, validate and sample a video file: the first stage of the pipeline.

`probe` reads the container header with PyAV (FFmpeg) and decodes one frame; it rejects every file the later
stages cannot use with a specific `VideoError`. `sample` decodes the frames to show the model, at a target
frame rate over the real duration, each with its true presentation time.

What `probe` reports comes from the header (frame count and duration are estimates where the
container lacks them); `sample` measures them from the stream's packets (`FrameIndex`), checks the limits
again on those exact numbers, and returns them in `Clip.info`.

Formats: every container and codec FFmpeg decodes (MP4/MOV/3GP, WebM/Matroska, AVI, MPEG-TS/M2TS, MPEG
program streams, MXF, FLV, WMV/ASF, animated GIF and APNG; H.264/HEVC at 8 or 10 bits, VP8/VP9, AV1,
MPEG-1/2/4, ProRes …). Only what FFmpeg cannot decode is refused, saying so.

Speed: frames decode from the keyframe before them, in parallel over runs of keyframes (one thread and one
demuxer each; FFmpeg releases the GIL). For long videos sampled sparsely, the nearest keyframes stand in for
the exact frames (`keyframes_instead`): an hour of 720p is ready in seconds instead of minutes.

Cut files: a stream cut mid-way in a container with no index of its own (WebM/Matroska as
recorders write them, so that a crash leaves a playable file) is used as far as it goes:
`Clip.info` holds the real duration and frame count of what is there. A file whose index promises
data it does not hold (an MP4/MOV cut short), or whose frames fail to decode, is a
`CorruptVideoError`.

Rotation: sizes are display sizes (the rotation metadata of phone videos applied), and the frames
are returned upright. Non-square pixels (sample aspect ratio) are not applied: sizes are in stored
pixels.
"""

from __future__ import annotations

import hashlib
import math
import os
import queue
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import numpy as np

from vidchat.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    UnsupportedCodecError,
    VideoTooLargeError,
    VideoTooLongError,
)


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int = 2 * 1024**3
    max_duration_s: float = 3 * 3600
    # Compared as long side / short side, so a portrait video fits the same limits as a landscape one.
    max_width: int = 7680
    max_height: int = 4320
    max_frame_count: int = 1_000_000


@dataclass(frozen=True)
class SamplingConfig:
    fps: float = 2.0
    max_frames: int = 768
    min_frames: int = 4
    max_pixels: int = 768 * 28 * 28  # per frame, like qwen-vl-utils VIDEO_MAX_PIXELS
    min_pixels: int = 128 * 28 * 28
    # Over all sampled frames, like qwen-vl-utils VIDEO_TOTAL_PIXELS:
    # per-frame budget = max(min(max_pixels, total_pixels / T), min_pixels).
    total_pixels: int = 24576 * 28 * 28

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not 1 <= self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 1 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    container: str  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # FFmpeg's codec name, e.g. "h264"
    width: int  # display size of the source video: every grounding maps to these pixels
    height: int
    duration_s: float
    frame_count: int
    avg_fps: float
    size_bytes: int
    pixel_format: str  # of the decoded frames, FFmpeg's name, e.g. "yuv420p", "yuv420p10le"
    # Where the first frame is on the file's own clock, seconds (what a browser's player counts from): every time
    # vidchat gives counts from the first frame instead. MPEG-TS usually starts near 1.4 s, a cut from a stream
    # anywhere.
    start_s: float = 0.0


@dataclass(frozen=True, eq=False)
class Clip:
    # [T, h, w, 3] uint8 RGB, resized (aspect kept, area-interpolated) to the pixel budget; never upscaled
    frames: np.ndarray
    times_s: np.ndarray  # [T] float64, true presentation time of each frame, seconds after the video's first frame
    frame_indices: np.ndarray  # [T] int64, index of each frame in the decoded stream (presentation order)
    info: VideoInfo
    sampling: SamplingConfig
    content_hash: str  # hex sha256 of the file bytes
    # The frames are the keyframes nearest the sampling times (see `keyframes_instead`), not the nearest frames
    # (and the last frame, decoded exactly, when the last keyframe is more than a sampling step before it).
    keyframes_only: bool = False
    # The part of the video sampled, (start, end) seconds after its first frame (a zoom window); None: all of it.
    span_s: tuple[float, float] | None = None


# The file names of every kind of video vidchat opens. FFmpeg reads a file's container from its bytes, whatever its
# name; the page goes by the name, because browsers type several of these as no video at all (.ts, .m2ts, .mxf, .gif).
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2",  # MP4 / QuickTime
    ".webm", ".mkv", ".avi", ".divx",
    ".ts", ".m2ts", ".mts", ".m2t",  # MPEG transport streams
    ".mpg", ".mpeg", ".vob", ".m2v",  # MPEG program and elementary streams
    ".mxf", ".flv", ".f4v", ".wmv", ".asf", ".ogv", ".dv", ".y4m", ".nut", ".rm", ".rmvb", ".ivf",
    ".gif", ".apng",  # animations (a single picture is refused by its contents)
)  # fmt: skip
_SOUND_EXTENSIONS = {".flac", ".mp3", ".wav", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aif", ".aiff", ".amr"}
_PICTURE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif", ".svg", ".ico"}
_HASH_CHUNK_BYTES = 1 << 20
# Demuxers that read pictures: a single picture is an image, several (GIF, APNG) an animation, i.e. a video.
_PICTURE_FORMATS = {"image2", "gif", "apng"}
# Sampling takes keyframes instead of exact frames (see `keyframes_instead`) only when exact frames would decode
# more than this many pixels (5,000 frames of 720p: a few seconds on two cores) ...
_EXACT_DECODE_BUDGET_PIXELS = 5_000 * 1280 * 720
# ... and this many times as many frames as the keyframes.
_KEYFRAME_SAVING = 8
_MIN_FRAMES_PER_WORKER = 64  # fewer decoded frames than this are not worth another thread and demuxer
_PROGRESS_PERIOD_S = 0.25
# Containers whose timestamps may be decode times rather than presentation times (see `FrameIndex.counted`).
_DECODE_TIME_FORMATS = {"avi", "asf"}
_MAX_SEEK_BACKOFF = 2  # keyframes a reader seeks before the one it needs before it stops seeking


def probe(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Read and validate the header of a video file, decoding its first frame; raise the specific
    `VideoError` if it cannot be used."""
    path = os.fspath(path)
    with utf8_path(path) as readable:
        return replace(_probe(readable, limits), path=path)


def _probe(path: str, limits: VideoLimits) -> VideoInfo:
    name = _name(path)
    if not os.path.isfile(path):
        raise NotAVideoError(f"There is no file at '{path}'.")
    size_bytes = os.path.getsize(path)
    if size_bytes == 0:
        raise NotAVideoError(
            f"'{name}' is empty (0 bytes): the upload or copy probably failed. Upload the video again."
        )
    if size_bytes > limits.max_bytes:
        raise VideoTooLargeError(_too_large(name, size_bytes, limits))
    try:
        # Tags in another encoding than UTF-8 (old cameras and editors) must not make the file unreadable.
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as error:
        container_kind = _container_signature(path)
        if container_kind is None:
            raise NotAVideoError(
                f"'{name}' is not a video: its contents match no video format. "
                "Upload a video file such as MP4 (H.264), WebM or MOV."
            ) from error
        raise CorruptVideoError(
            f"'{name}' starts like a video file ({container_kind}) but cannot be opened: it is incomplete "
            "(an interrupted upload or copy; an MP4 cut short loses its index) or damaged. "
            "Upload the complete file again."
        ) from error
    with container:
        return _probe_container(container, path, size_bytes, limits)


def file_refusal(name: str, size_bytes: int, limits: VideoLimits = VideoLimits()) -> str | None:
    """Why a file named `name` (as the person's computer names it) is not taken before it is read: its name is
    no video vidchat opens, or it is larger than the limit. None when it is to be taken (its contents are judged
    then, by `probe`)."""
    if size_bytes > limits.max_bytes:
        return _too_large(name, size_bytes, limits)
    suffix = os.path.splitext(name)[1].lower()
    if suffix in VIDEO_EXTENSIONS:
        return None
    if suffix in _SOUND_EXTENSIONS:
        reason = "is a sound file, with no video track."
    elif suffix == ".webp":  # see _check_is_animation
        reason = "is a WebP picture, and FFmpeg, the decoder here, reads no animated WebP: convert it to MP4 or GIF."
    elif suffix in _PICTURE_EXTENSIONS:
        reason = "is a picture, not a video."
    elif suffix:
        reason = f"is not a video (a {suffix} file)."
    else:
        reason = "has no extension to say it is a video: rename it with its format's, e.g. .mp4."
    return f"'{name}' {reason} Upload a video: vidchat opens {', '.join(VIDEO_EXTENSIONS)} files."


def _too_large(name: str, size_bytes: int, limits: VideoLimits) -> str:
    return (
        f"'{name}' is {bytes_text(size_bytes)}; the limit is {bytes_text(limits.max_bytes)}. "
        "Upload a shorter or more compressed version."
    )


def sample(
    path: str | os.PathLike,
    sampling: SamplingConfig = SamplingConfig(),
    limits: VideoLimits = VideoLimits(),
    progress: Callable[[float, str], None] | None = None,
) -> Clip:
    """Validate the video, then decode the frames nearest to the times k / fps, resized to the pixel budget."""
    path = os.fspath(path)
    with utf8_path(path) as readable:
        clip = _sample(readable, sampling, limits, progress or (lambda fraction, message: None))
    return replace(clip, info=replace(clip.info, path=path))


def sample_span(clip: Clip, start_s: float, end_s: float, sampling: SamplingConfig) -> Clip:
    """The frames of `clip`'s video from `start_s` to `end_s` (seconds after its first frame) at `sampling`'s rate
    and pixel budget, each decoded exactly (never keyframes only) at its true presentation time: a dense look at
    part of a video (`vidchat.zoom`). The index is demuxed again (no decoding: about 0.3 s an hour of 720p)."""
    path = clip.info.path
    with utf8_path(path) as readable:
        index = _index(readable)
        times_s = index.times_s  # [N]
        first = int(np.searchsorted(times_s, start_s, side="left"))
        last = max(first, int(np.searchsorted(times_s, end_s, side="right")) - 1)
        first = min(first, len(times_s) - 1)
        span = times_s[first : last + 1] - times_s[first]  # [n] from the span's first frame
        targets = first + choose_frames(span, max(end_s - times_s[first], span[-1]), sampling)  # [T]
        size = frame_size(clip.info.width, clip.info.height, len(targets), sampling)
        frames, frame_indices = _decode(readable, index, targets, False, size, lambda fraction, message: None)
    return Clip(
        frames=frames,
        times_s=times_s[frame_indices],
        frame_indices=frame_indices,
        info=clip.info,
        sampling=sampling,
        content_hash=clip.content_hash,
        span_s=(float(start_s), float(end_s)),
    )


@contextmanager
def utf8_path(path: str) -> Iterator[str]:
    """`path`, or a link to it whose name is UTF-8, for the time of the `with` block.

    FFmpeg (PyAV) takes file names as UTF-8 strings; a name in another encoding (a Latin-1 name
    from an old system, held by Python as surrogates) cannot be passed to them. The link is named as the
    file with the undecodable bytes replaced, so that messages still name the file the user knows.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    folder = tempfile.mkdtemp(prefix="vidchat-name-")
    try:
        link = os.path.join(folder, os.fsencode(os.path.basename(path)).decode("utf-8", "replace"))
        os.symlink(os.path.abspath(path), link)
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sample(
    path: str, sampling: SamplingConfig, limits: VideoLimits, report: Callable[[float, str], None]
) -> Clip:
    report(0.0, "Checking the video")
    probed = _probe(path, limits)
    with ThreadPoolExecutor(1) as hasher:  # hashing reads the file while the index is demuxed
        content_hash = hasher.submit(_sha256, path)
        report(0.0, "Indexing the frames")
        index = _index(path)
        content_hash = content_hash.result()
    info = replace(
        probed,
        start_s=index.start_s,
        duration_s=index.duration_s,
        frame_count=len(index.times_s),
        avg_fps=len(index.times_s) / index.duration_s if index.duration_s > 0 else 0.0,
    )
    _check_limits(info, limits)

    wanted = choose_frames(index.times_s, info.duration_s, sampling)  # [T]
    keyframes = keyframes_instead(index, wanted, info.width * info.height)
    keyframes_only = keyframes is not None
    targets = keyframes if keyframes_only else wanted
    size = frame_size(info.width, info.height, len(targets), sampling)
    frames, frame_indices = _decode(path, index, targets, keyframes_only, size, report)
    step_s = sampling_grid(info.duration_s, len(index.times_s), sampling)[1]
    if keyframes_only and index.times_s[-1] - index.times_s[frame_indices[-1]] > step_s + 1e-9:
        # the last keyframe is more than a step before the end: the last frame is decoded exactly, so the end is seen
        last = np.array([len(index.times_s) - 1])
        tail, tail_index = _decode(path, index, last, False, size, lambda fraction, message: None)
        frames, frame_indices = np.concatenate([frames, tail]), np.concatenate([frame_indices, tail_index])
    return Clip(
        frames=frames,
        times_s=index.times_s[frame_indices],
        frame_indices=frame_indices,
        info=info,
        sampling=sampling,
        content_hash=content_hash,
        keyframes_only=keyframes_only,
    )


def sampling_grid(duration_s: float, frame_count: int, sampling: SamplingConfig) -> tuple[int, float]:
    """(T, step): how many target times k × step (k < T) sample a video of `duration_s` with `frame_count` frames.

    T = clamp(ceil(duration × fps), min_frames, max_frames), so that the targets reach into the video's last
    interval (rounding would leave up to half a second of the end unseen); step = 1 / fps, or duration / T when the
    clamp changed T (the targets then spread evenly over the whole duration). T ≥ frame_count: every frame."""
    wanted = max(1, math.ceil(duration_s * sampling.fps - 1e-6))
    count = min(max(wanted, sampling.min_frames), sampling.max_frames)
    if count >= frame_count:
        return frame_count, duration_s / max(frame_count, 1)
    return count, 1.0 / sampling.fps if count == wanted else duration_s / count


def choose_frames(starts_s: np.ndarray, duration_s: float, sampling: SamplingConfig) -> np.ndarray:
    """Indices [T] int64 (sorted, unique) of the frames nearest to the target times of `sampling_grid`.

    starts_s: [N] presentation times, non-decreasing, the first at 0. A video with at most T frames gives all of
    them. Where frames are sparser than the targets (held frames in a variable frame rate video) several targets
    share their nearest frame, which is kept once: T can shrink. The last chosen frame is always within one step
    of the video's last frame (the last frame is taken when the nearest ones fall short of that).
    """
    frame_count = len(starts_s)
    count, step_s = sampling_grid(duration_s, frame_count, sampling)
    if count >= frame_count:
        return np.arange(frame_count, dtype=np.int64)
    chosen = np.unique(_nearest(starts_s, np.arange(count) * step_s))  # [T]
    return with_end(chosen, starts_s, step_s, count)


def with_end(chosen: np.ndarray, starts_s: np.ndarray, step_s: float, most: int) -> np.ndarray:
    """`chosen` (sorted frame indices), with the video's last frame added when the last chosen one is more than
    `step_s` before it (in place of the last chosen one when `most` frames are chosen already)."""
    last = len(starts_s) - 1
    if starts_s[last] - starts_s[chosen[-1]] <= step_s + 1e-9:
        return chosen
    return np.append(chosen if len(chosen) < most else chosen[:-1], last).astype(np.int64)


def frame_size(width: int, height: int, frame_count: int, sampling: SamplingConfig) -> tuple[int, int]:
    """(width, height) of the sampled frames: the largest size with the source's aspect ratio within the
    per-frame pixel budget, never larger than the source."""
    budget = max(min(sampling.max_pixels, sampling.total_pixels / frame_count), sampling.min_pixels)
    if width * height <= budget:
        return width, height
    scale = math.sqrt(budget / (width * height))
    # Rounding down keeps the frame inside the budget.
    return max(1, int(width * scale)), max(1, int(height * scale))


def _probe_container(
    container: av.container.InputContainer, path: str, size_bytes: int, limits: VideoLimits
) -> VideoInfo:
    name = _name(path)
    container_name = container.format.name
    if not container.streams:
        raise EmptyVideoError(
            f"'{name}' is a video container with nothing in it: it has no frames. Upload another video."
        )
    stream = container.streams.best("video")
    # Cover art of an audio file is a one-picture "video" stream.
    if stream is None or stream.disposition & av.stream.Disposition.attached_pic:
        audio = [s.codec_context.name for s in container.streams.audio if s.codec_context]
        content = f"only audio ({', '.join(audio)})" if audio else "no video stream"
        raise NotAVideoError(f"'{name}' is not a video: it holds {content}. Upload a file with a video track.")
    if stream.codec_context is None:
        raise UnsupportedCodecError(
            f"'{name}' uses a video codec that FFmpeg, the decoder here, cannot decode. "
            "Export it again as MP4 (H.264) from the program that made it."
        )
    codec = stream.codec_context.codec.canonical_name
    if container_name in _PICTURE_FORMATS or container_name.endswith("_pipe"):
        _check_is_animation(name, path, container_name, codec)
    # Header sizes first: a forged header must not make the first decode allocate a huge frame.
    _check_size(name, stream.codec_context.width, stream.codec_context.height, limits)
    _check_not_cut_short(name, path, stream, size_bytes)

    first_frame = _first_frame(stream, container, name)
    turns = round(first_frame.rotation / 90) % 4  # counter-clockwise quarter turns from stored to displayed
    width, height = (first_frame.height, first_frame.width) if turns % 2 else (first_frame.width, first_frame.height)

    avg_fps = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration:
        duration_s = stream.duration * float(stream.time_base)
    elif container.duration:
        duration_s = container.duration / av.time_base
    else:
        duration_s = stream.frames / avg_fps if avg_fps else 0.0
    frame_count = stream.frames or round(duration_s * avg_fps)
    info = VideoInfo(
        path=path,
        container=container_name,
        codec=codec,
        width=width,
        height=height,
        duration_s=duration_s,
        frame_count=frame_count,
        avg_fps=avg_fps,
        size_bytes=size_bytes,
        pixel_format=first_frame.format.name,
    )
    _check_limits(info, limits)
    return info


def _check_is_animation(name: str, path: str, container_name: str, codec: str) -> None:
    """Raise unless the picture file holds more than one picture (an animated GIF, APNG …)."""
    kind = container_name.removesuffix("_pipe")
    if codec == "webp" and b"ANIM" in _head(path, 64):
        raise UnsupportedCodecError(
            f"'{name}' is an animated WebP, which FFmpeg, the decoder here, cannot decode (it reads only still "
            "WebP pictures). Convert it to MP4 or GIF (e.g. with ImageMagick: `magick INPUT.webp OUTPUT.gif`)."
        )
    with av.open(path, metadata_errors="ignore") as container:
        try:
            pictures = sum(1 for packet, _ in zip(container.demux(video=0), range(3)) if packet.size)
        except av.error.FFmpegError:
            pictures = 0
    if pictures <= 1:
        raise NotAVideoError(
            f"'{name}' is an image ({kind}), not a video. Upload a video file such as MP4 (H.264), WebM or MOV."
        )


def _first_frame(
    stream: av.video.stream.VideoStream, container: av.container.InputContainer, name: str
) -> av.VideoFrame:
    """Decode the first frame: proves the stream decodes, and gives its real size and rotation."""
    packet_count = 0
    try:
        # The last packet of demux() is an empty one that flushes the frames the decoder still holds.
        for packet in container.demux(stream):
            packet_count += packet.size > 0
            for frame in packet.decode():
                return frame
    except av.error.FFmpegError as error:
        raise CorruptVideoError(
            f"'{name}' is damaged: its first frame cannot be decoded ({error.strerror}). "
            "Re-export the video or upload another copy."
        ) from error
    if packet_count == 0:
        raise EmptyVideoError(f"'{name}' has a video track with no frames in it. Upload another video.")
    raise CorruptVideoError(
        f"'{name}' is damaged: none of its {packet_count} video packets decodes to a frame. "
        "Re-export the video or upload another copy."
    )


def _check_not_cut_short(name: str, path: str, stream: av.video.stream.VideoStream, size_bytes: int) -> None:
    """Raise when the container says it is longer than the file: the end of an upload or copy is missing.

    MP4/MOV index every frame, so the last index entry tells where the frame data ends. An AVI gives its
    own length in its RIFF header; cut, it loses its index and its end. (A cut WebM/Matroska has no such trouble: it is used as far as it goes.)
    """
    entries = stream.index_entries
    declared = 0
    if len(entries) > 0:
        last = entries[len(entries) - 1]
        declared = last.pos + last.size
    if stream.container.format.name == "avi":
        with open(path, "rb") as file:
            declared = max(declared, 8 + int.from_bytes(file.read(8)[4:], "little"))
    if declared > size_bytes:
        raise CorruptVideoError(
            f"'{name}' is cut short: it declares {declared:,} bytes but the file has only {size_bytes:,} "
            "(an interrupted upload or copy). Upload the complete file again."
        )


def _check_size(name: str, width: int, height: int, limits: VideoLimits) -> None:
    long_side, short_side = max(width, height), min(width, height)
    if long_side > max(limits.max_width, limits.max_height) or short_side > min(limits.max_width, limits.max_height):
        raise VideoTooLargeError(
            f"'{name}' is {width}×{height} pixels; the limit is {limits.max_width}×{limits.max_height} "
            "(either orientation). Upload a lower-resolution version."
        )


def _check_limits(info: VideoInfo, limits: VideoLimits) -> None:
    name = _name(info.path)
    _check_size(name, info.width, info.height, limits)
    if info.duration_s > limits.max_duration_s:
        raise VideoTooLongError(
            f"'{name}' is {clock_text(info.duration_s)} long; the limit is {clock_text(limits.max_duration_s)}. "
            "Trim it and upload the part you want to ask about."
        )
    if info.frame_count > limits.max_frame_count:
        raise VideoTooLargeError(
            f"'{name}' has {info.frame_count:,} frames; the limit is {limits.max_frame_count:,}. "
            "Upload a shorter version or one at a lower frame rate."
        )


@dataclass(frozen=True, eq=False)
class FrameIndex:
    """Every frame of the video stream, in presentation order, read from its packets (nothing decoded)."""

    pts: np.ndarray  # [N] int64, presentation timestamps in `time_base`, increasing
    keyframe: np.ndarray  # [N] bool, the frame starts a group that decodes without earlier frames
    time_base: Fraction
    duration_s: float  # from the first frame's start to the last frame's end
    # The decoded frames' own timestamps cannot be trusted: the container stores times in decode order
    # (AVI has none; FFmpeg's ASF muxer writes decode times), wrong once B-frames reorder the frames.
    # A decoded frame then takes the time of its place in the index, counted from its keyframe.
    counted: bool

    @property
    def times_s(self) -> np.ndarray:
        """[N] float64, seconds after the first frame."""
        return (self.pts - self.pts[0]).astype(np.float64) * float(self.time_base)

    @property
    def start_s(self) -> float:
        """The first frame's presentation time on the file's own clock, seconds."""
        return float(self.pts[0] * self.time_base)


def first_frame_time_s(path: str | os.PathLike) -> float:
    """Where the video stream's first frame is on the file's own clock, seconds (the packets are read, nothing
    is decoded)."""
    with utf8_path(os.fspath(path)) as readable:
        return _index(readable).start_s


def _index(path: str) -> FrameIndex:
    """Demux the video stream's packets: their timestamps and keyframe flags, sorted into presentation order.

    Demuxing reads the file but decodes nothing (an hour of 720p H.264 takes about 0.3 s). A stream cut
    mid-way (a recorder's WebM after a crash) is indexed as far as it goes.
    """
    name = _name(path)
    stamps, keyframes, durations = [], [], []
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.best("video")
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                stamps.append(packet.pts if packet.pts is not None else packet.dts)
                keyframes.append(packet.is_keyframe)
                durations.append(packet.duration or 0)
        except av.error.FFmpegError:
            pass  # the stream ends where the file does
        time_base = stream.time_base
        container_name = container.format.name
    if not stamps:
        raise EmptyVideoError(f"'{name}' has no frames the frame decoder can find. Upload another video.")
    if any(stamp is None for stamp in stamps):
        raise CorruptVideoError(
            f"'{name}' has frames without timestamps, so they cannot be placed in time. "
            "Re-export it as MP4 (H.264) and upload that."
        )
    stamps = np.asarray(stamps, np.int64)  # [N] in decode order
    counted = container_name in _DECODE_TIME_FORMATS and bool(np.all(np.diff(stamps) > 0))
    order = np.argsort(stamps, kind="stable")
    pts = stamps[order]  # [N]
    if np.any(np.diff(pts) <= 0):
        raise CorruptVideoError(
            f"'{name}' has frame timestamps that are repeated, so its frames cannot be placed in time. "
            "Re-export it as MP4 (H.264) and upload that."
        )
    keyframe = np.asarray(keyframes, bool)[order]
    keyframe[0] = True  # decoding starts there, whatever the flag says (a cut stream's first packet)
    last = int(np.asarray(durations, np.int64)[order][-1])
    if last <= 0:  # containers do not always give the last frame's length: the typical interval stands in
        last = int(np.median(np.diff(pts))) if len(pts) > 1 else 0
    duration_s = float((pts[-1] - pts[0] + last) * time_base)
    return FrameIndex(pts, keyframe, Fraction(time_base), duration_s, counted)


def keyframes_instead(index: FrameIndex, wanted: np.ndarray, pixels_per_frame: int) -> np.ndarray | None:
    """The keyframes nearest the wanted frames, [K] int64 sorted unique, when sampling them beats exact frames.

    An exact frame costs decoding every frame from the keyframe before it; a keyframe decodes alone. Keyframes
    are taken instead when exact frames would decode more than `_EXACT_DECODE_BUDGET_PIXELS`, at least
    `_KEYFRAME_SAVING` times as many frames as the keyframes, and the keyframes keep at least half as many
    frames as wanted (the sampling interval is not much shorter than the keyframe interval). Their true
    times are kept: no time is invented, the frames are only spaced less evenly.
    """
    keys = np.flatnonzero(index.keyframe)  # [G] frame positions of the keyframes
    times = index.times_s
    group = np.searchsorted(keys, wanted, side="right") - 1  # [T] the keyframe each wanted frame decodes from
    last_in_group = np.maximum.reduceat(wanted, np.flatnonzero(np.diff(group, prepend=-1)))  # [groups]
    exact_cost = int(np.sum(last_in_group - keys[np.unique(group)] + 1))  # frames decoded for exact frames
    chosen = np.unique(keys[_nearest(times[keys], times[wanted])]).astype(np.int64)  # [K]
    worth_it = (
        exact_cost * pixels_per_frame > _EXACT_DECODE_BUDGET_PIXELS
        and exact_cost >= _KEYFRAME_SAVING * len(chosen)
        and 2 * len(chosen) >= len(wanted)
    )
    return chosen if worth_it else None


def _decode(
    path: str,
    index: FrameIndex,
    targets: np.ndarray,
    keyframes_only: bool,
    size: tuple[int, int],
    report: Callable[[float, str], None],
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the target frames ([T] positions in the index), resized to `size`, upright.

    Returns the frames [T', h, w, 3] uint8 and their positions [T'] int64 in the index, from the decoded
    frames' own timestamps (T' < T only where frames could not be decoded and a neighbour stood in). The
    targets split into groups by the keyframe each decodes from; contiguous runs of groups decode in parallel,
    one thread and one demuxer each (the GIL is released while FFmpeg decodes).
    """
    keys = np.flatnonzero(index.keyframe)
    group_of = np.searchsorted(keys, targets, side="right") - 1  # [T] the keyframe each target decodes from
    begins = np.flatnonzero(np.diff(group_of, prepend=-1))  # [G] first target of each group
    ends = np.append(begins[1:], len(targets))  # [G]
    groups = [_Group(int(group_of[b]), index.pts[targets[b:e]], int(b)) for b, e in zip(begins, ends)]
    # Frames each group decodes: from its keyframe to its last target, or the keyframe alone.
    costs = np.ones(len(groups), np.int64) if keyframes_only else targets[ends - 1] - keys[group_of[begins]] + 1
    workers = max(1, min(_cpu_count(), len(groups), int(costs.sum()) // _MIN_FRAMES_PER_WORKER))
    runs = _split(costs, workers)
    width, height = size
    frames = np.empty((len(targets), height, width, 3), np.uint8)  # [T, h, w, 3]
    decoded_pts = np.full(len(targets), np.iinfo(np.int64).min, np.int64)  # [T]; min: not decoded
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()  # targets done, a group at a time

    def work(chunk: list[_Group]) -> None:
        reader = _GroupReader(path, index, size, keyframes_only, threaded=len(runs) == 1)
        try:
            for group in chunk:
                for offset, (picture, pts) in enumerate(reader.read(group)):
                    frames[group.first + offset], decoded_pts[group.first + offset] = picture, pts
                finished.put(len(group.pts))
        finally:
            reader.close()

    name = _name(path)
    try:
        with ThreadPoolExecutor(len(runs)) as pool:
            jobs = [pool.submit(work, groups[begin:end]) for begin, end in runs]
            done = 0
            while done < len(targets) and not any(job.done() and job.exception() for job in jobs):
                try:
                    done += finished.get(timeout=_PROGRESS_PERIOD_S)
                except queue.Empty:
                    continue
                report(done / len(targets), f"Decoded {done} of {len(targets)} frames")
            for job in jobs:
                job.result()
    except av.error.FFmpegError as error:
        raise CorruptVideoError(
            f"'{name}' is damaged: some of its frames cannot be decoded ({error.strerror}). "
            "Re-export the video or upload another copy."
        ) from error
    kept = np.flatnonzero(decoded_pts > np.iinfo(np.int64).min)
    if len(kept) == 0:
        raise CorruptVideoError(
            f"'{name}' is damaged: none of its frames decodes. Re-export the video or upload another copy."
        )
    positions = _nearest(index.pts, decoded_pts[kept])  # [T'] the decoded frames in the index
    unique = np.flatnonzero(np.diff(positions, prepend=-1) > 0)  # a neighbour that stood in twice is kept once
    return frames[kept[unique]], positions[unique].astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Group:
    keyframe: int  # which keyframe (0, 1, …) the targets decode from
    pts: np.ndarray  # [t] int64, the targets, increasing
    first: int  # position of the first target among all targets


class _GroupReader:
    """Decodes groups of target frames, in order, from its own demuxer, seeking to each group's keyframe.

    After a seek, packets are skipped (demuxed, not decoded) up to the group's keyframe. Some demuxers seek
    by guesses (an MPEG transport stream lands a keyframe late): where a seek lands after the keyframe, the
    reader seeks one keyframe earlier from then on; after `_MAX_SEEK_BACKOFF` keyframes it stops seeking and
    demuxes from the start of the stream for each group instead: slower, never wrong.

    Where the index is `counted`, frames take the times of their places in the index, counted from the
    keyframe in the order they come out of the decoder.
    """

    def __init__(self, path: str, index: FrameIndex, size: tuple[int, int], keyframes_only: bool, threaded: bool) -> None:
        self.path, self.index, self.size = path, index, size
        self.keys = np.flatnonzero(index.keyframe)  # [G] positions of the keyframes in the index
        self.keyframe_pts = index.pts[self.keys]  # [G]
        self.keyframes_only, self.threaded = keyframes_only, threaded
        self.backoff: int | None = 0  # seek this many keyframes before the group's; None: do not seek
        self.overshot = False
        self.container = self._open()

    def close(self) -> None:
        self.container.close()

    def read(self, group: _Group) -> Iterator[tuple[np.ndarray, int]]:
        """(picture, pts) for each target of the group: the first decoded frame at or after its time."""
        keyframe = group.keyframe - (self.backoff if self.backoff is not None else group.keyframe)
        if keyframe > 0:
            self.container.seek(int(self.keyframe_pts[keyframe]), stream=self.stream, backward=True)
        else:  # from the start of the stream
            self.container.close()
            self.container = self._open()
        wanted = iter(group.pts.tolist())
        target = next(wanted)
        last = None
        for frame, pts in self._decoded(group.keyframe):
            last = frame, pts
            while pts >= target:
                yield self._picture(frame), pts
                target = next(wanted, None)
                if target is None:
                    return
        if self.overshot:  # seek earlier from now on, or not at all
            self.backoff = self.backoff + 1 if self.backoff < _MAX_SEEK_BACKOFF else None
            yield from self.read(group)
        elif last is not None:  # the stream ended first: its last frame stands in for the targets left
            yield self._picture(last[0]), last[1]

    def _open(self) -> av.container.InputContainer:
        container = av.open(self.path, metadata_errors="ignore")
        self.stream = container.streams.best("video")
        if self.threaded:
            self.stream.thread_type = "AUTO"  # the only demuxer: the decoder uses the cores itself
        return container

    def _decoded(self, keyframe: int) -> Iterator[tuple[av.VideoFrame, int]]:
        """(frame, pts) in presentation order from that keyframe on (only keyframes if so asked); sets
        `overshot` and stops if the demuxer is already past it (or never meets it)."""
        decoder = self.stream.codec_context
        decoder.flush_buffers()
        self.overshot = False
        started = False
        keyframe_pts = int(self.keyframe_pts[keyframe])
        place = int(self.keys[keyframe])  # counted index: the next decoded frame's place
        for packet in self.container.demux(self.stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if not started:
                if not (packet.is_keyframe and packet.size and stamp is not None and stamp >= keyframe_pts):
                    continue
                if stamp > keyframe_pts:
                    self.overshot = True
                    return
                started = True
            if self.keyframes_only:
                if packet.is_keyframe and packet.size:
                    # A keyframe decodes alone, at its packet's time; draining gets it out of a decoder that
                    # delays frames for reordering.
                    for frame in [*decoder.decode(packet), *decoder.decode(None)]:
                        yield frame, stamp
                    decoder.flush_buffers()
                continue
            for frame in packet.decode():  # the last, empty packet drains the decoder
                if self.index.counted:
                    if place >= len(self.index.pts):
                        return
                    pts, place = int(self.index.pts[place]), place + 1
                else:
                    pts = frame.pts if frame.pts is not None else frame.dts
                if pts is not None:
                    yield frame, pts
        # the stream ended before the keyframe: the seek landed past it (a transport stream's last group of pictures)
        self.overshot = not started

    def _picture(self, frame: av.VideoFrame) -> np.ndarray:
        """[h, w, 3] uint8 RGB at the sampled size, upright."""
        turns = round(frame.rotation / 90) % 4  # counter-clockwise quarter turns from stored to displayed
        width, height = self.size
        stored = (height, width) if turns % 2 else (width, height)
        # One swscale pass converts and resizes: the full-size RGB picture is never made.
        picture = frame.reformat(*stored, format="rgb24", interpolation="AREA").to_ndarray()
        return np.rot90(picture, turns)


def _nearest(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[V] int64 positions of the entries of `sorted_values` ([N], increasing) nearest to `values` ([V])."""
    after = np.clip(np.searchsorted(sorted_values, values), 1, len(sorted_values) - 1) if len(sorted_values) > 1 else None
    if after is None:
        return np.zeros(len(values), np.int64)
    before = after - 1
    return np.where(values - sorted_values[before] <= sorted_values[after] - values, before, after).astype(np.int64)


def _split(costs: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Cut [G] costs into at most `parts` contiguous (begin, end) runs of about equal total cost."""
    ends = np.searchsorted(np.cumsum(costs), np.arange(1, parts) * costs.sum() / parts, side="right")
    bounds = np.unique(np.concatenate([[0], ends, [len(costs)]]))
    return [(int(begin), int(end)) for begin, end in zip(bounds[:-1], bounds[1:]) if end > begin]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _head(path: str, size: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


def _container_signature(path: str) -> str | None:
    """Name of the video container the first bytes announce, or None when they announce none."""
    head = _head(path, 192)
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4/MOV"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM/Matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "WMV/ASF"
    if head.startswith(b"FLV"):
        return "FLV"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "MPEG program stream"
    if head[:1] == b"\x47" and head[188:189] == b"\x47":  # transport stream packets: 188 bytes, sync byte 0x47
        return "MPEG transport stream"
    return None


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _name(path: str) -> str:
    return os.path.basename(path)


def bytes_text(size_bytes: int) -> str:
    """A size for people: "1.50 GiB", "12.00 MiB", "512 bytes"."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.2f} {unit}"
    return f"{size_bytes:,} bytes"


def clock_text(seconds: float) -> str:
    """`3723.5` → "1:02:03.5" (hours always shown): a length or a place in a video, in messages."""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{secs:04.1f}"
