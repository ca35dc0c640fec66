"""Probe, validate and sample a video file: the first stage of the pipeline.

`probe` reads the container header with PyAV and decodes one frame; it rejects every file the later
stages cannot use with a specific `VideoError`. `sample` decodes the frames to show the model with
decord, at a target frame rate over the real duration, each with its true presentation time.

What `probe` reports comes from the header (frame count and duration are estimates where the
container lacks them); `sample` measures them from decord's frame index, checks the limits again on
those exact numbers, and returns them in `Clip.info`.

Containers: MP4/MOV, WebM/Matroska, AVI, FLV and WMV/ASF, the ones in which decord was checked to
return the right frame at the right time. MPEG transport/program streams are refused (decord returns
wrong frames or no times for them): they remux to MP4 losslessly.

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

import ctypes
import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

# PyAV before decord: decord loads its own, older FFmpeg and codec libraries into the global symbol
# namespace; a PyAV loaded after it binds some codec symbols (libvpx) to those copies and cannot
# encode VP9 any more.
import av
import cv2
import decord
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


@dataclass(frozen=True, eq=False)
class Clip:
    # [T, h, w, 3] uint8 RGB, resized (aspect kept, area-interpolated) to the pixel budget; never upscaled
    frames: np.ndarray
    times_s: np.ndarray  # [T] float64, true presentation time of each frame, seconds after the video's first frame
    frame_indices: np.ndarray  # [T] int64, index of each frame in the decoded stream (presentation order)
    info: VideoInfo
    sampling: SamplingConfig
    content_hash: str  # hex sha256 of the file bytes


_DECODE_CHUNK_FRAMES = 32  # frames decoded per decord call: bounds memory before the resize
# ... and at most this many bytes of decoded frames per call: 32 frames of 8K are 3.2 GB, one is 100 MB.
_DECODE_CHUNK_BYTES = 128 * 1024**2
_HASH_CHUNK_BYTES = 1 << 20
_MIN_DECODE_WIDTH = 128
# Demuxers that read still images (or animations decord cannot index) rather than videos.
_IMAGE_FORMATS = {"image2", "gif", "apng"}
# Containers in which decord 0.6.0 finds the right frame at the right time (tested). It decodes the
# wrong frames of an MPEG transport stream, or none, and reads no timestamps from MPEG program streams
# or raw codec streams.
_SUPPORTED_FORMATS = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV",
    "matroska,webm": "WebM/Matroska",
    "avi": "AVI",
    "flv": "FLV",
    "asf": "WMV/ASF",
}


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
        raise VideoTooLargeError(
            f"'{name}' is {bytes_text(size_bytes)}; the limit is {bytes_text(limits.max_bytes)}. "
            "Upload a shorter or more compressed version."
        )
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


@contextmanager
def utf8_path(path: str) -> Iterator[str]:
    """`path`, or a link to it whose name is UTF-8, for the time of the `with` block.

    FFmpeg (PyAV) and decord take file names as UTF-8 strings; a name in another encoding (a Latin-1 name
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
    content_hash = _sha256(path)

    report(0.0, "Indexing the frames")
    reader = _open_reader(path, probed)
    frame_count = len(reader)
    if frame_count == 0:
        raise EmptyVideoError(f"'{_name(path)}' has no frames the frame decoder can find. Upload another video.")
    frame_times = reader.get_frame_timestamp(np.arange(frame_count)).astype(np.float64)  # [N, 2] start, end
    starts_s = frame_times[:, 0] - frame_times[0, 0]  # [N]
    if np.any(np.diff(starts_s) <= 0):
        raise CorruptVideoError(
            f"'{_name(path)}' has frame timestamps that are missing, repeated or out of order, so its frames "
            "cannot be placed in time. Re-export it as MP4 (H.264) and upload that."
        )
    duration_s = _duration(starts_s, frame_times[-1, 1] - frame_times[-1, 0])
    info = replace(
        probed,
        duration_s=duration_s,
        frame_count=frame_count,
        avg_fps=frame_count / duration_s if duration_s > 0 else 0.0,
    )
    _check_limits(info, limits)

    frame_indices = choose_frames(starts_s, duration_s, sampling)  # [T]
    width, height = frame_size(info.width, info.height, len(frame_indices), sampling)
    scale = _decode_scale(info.width)
    decoded_frame_bytes = info.width * scale * info.height * scale * 3
    frames = _decode(reader, path, frame_indices, starts_s, (width, height), report, decoded_frame_bytes)
    return Clip(
        frames=frames,
        times_s=starts_s[frame_indices],
        frame_indices=frame_indices,
        info=info,
        sampling=sampling,
        content_hash=content_hash,
    )


def choose_frames(starts_s: np.ndarray, duration_s: float, sampling: SamplingConfig) -> np.ndarray:
    """Indices [T] int64 (sorted, unique) of the frames nearest to the target times.

    starts_s: [N] presentation times, non-decreasing, the first at 0. There are
    T = clamp(round(duration * fps), min_frames, max_frames) targets at k / fps; when the clamp
    changes T, the targets spread evenly over the whole duration instead. A video with at most T
    frames gives all of them. Where frames are sparser than the targets (held frames in a variable
    frame rate video) several targets share their nearest frame, which is kept once: T can shrink.
    """
    frame_count = len(starts_s)
    wanted = round(duration_s * sampling.fps)
    count = min(max(wanted, sampling.min_frames), sampling.max_frames)
    if count >= frame_count:
        return np.arange(frame_count, dtype=np.int64)
    step_s = 1.0 / sampling.fps if count == wanted else duration_s / count
    targets_s = np.arange(count) * step_s  # [T]
    after = np.clip(np.searchsorted(starts_s, targets_s), 1, frame_count - 1)  # [T] first frame at or after
    before = after - 1
    nearest = np.where(targets_s - starts_s[before] <= starts_s[after] - targets_s, before, after)  # [T]
    return np.unique(nearest).astype(np.int64)


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
    if container_name in _IMAGE_FORMATS or container_name.endswith("_pipe"):
        raise NotAVideoError(
            f"'{name}' is an image ({container_name.removesuffix('_pipe')}), not a video. "
            "Upload a video file such as MP4 (H.264), WebM or MOV; convert an animated image to MP4 first."
        )
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
    if container_name not in _SUPPORTED_FORMATS:
        raise UnsupportedCodecError(
            f"'{name}' is in the {container_name} format, which the frame decoder here cannot read reliably "
            f"(it reads {', '.join(_SUPPORTED_FORMATS.values())}). "
            "Remux it to MP4 (e.g. `ffmpeg -i INPUT -c copy OUTPUT.mp4`) and upload that."
        )
    if stream.codec_context is None:
        raise UnsupportedCodecError(
            f"'{name}' uses a video codec this program cannot decode. "
            "Convert it to H.264 (e.g. `ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4`) and upload that."
        )
    codec = stream.codec_context.codec.canonical_name
    if not _decord_can_decode(codec):
        raise UnsupportedCodecError(
            f"'{name}' uses the {codec} codec, which the frame decoder here cannot decode. "
            "Convert it to H.264 (e.g. `ffmpeg -i INPUT -c:v libx264 OUTPUT.mp4`) and upload that."
        )
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
    )
    _check_limits(info, limits)
    return info


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
    own length in its RIFF header; cut, it loses its index, and decord then returns wrong frames near
    the end. (A cut WebM/Matroska has no such trouble: it is used as far as it goes.)
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
            f"'{name}' is {_clock(info.duration_s)} long; the limit is {_clock(limits.max_duration_s)}. "
            "Trim it and upload the part you want to ask about."
        )
    if info.frame_count > limits.max_frame_count:
        raise VideoTooLargeError(
            f"'{name}' has {info.frame_count:,} frames; the limit is {limits.max_frame_count:,}. "
            "Upload a shorter version or one at a lower frame rate."
        )


def _decord_can_decode(codec: str) -> bool:
    """Whether decord's own FFmpeg (4.1 in decord 0.6.0, older than PyAV's) has a decoder for `codec`.

    PyAV decodes codecs that decord cannot (AV1, for one); asking decord's libavcodec directly rejects
    those in `probe` rather than failing later in `sample`. dlsym on libdecord's handle finds the
    libavcodec it links, not PyAV's.
    """
    library = decord._ffi.base._LIB
    descriptor_by_name = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(
        ("avcodec_descriptor_get_by_name", library)
    )
    find_decoder = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int)(("avcodec_find_decoder", library))
    descriptor = descriptor_by_name(codec.encode())
    if not descriptor:
        return False
    codec_id = ctypes.cast(descriptor, ctypes.POINTER(ctypes.c_int))[0]  # AVCodecDescriptor starts with its id
    return bool(find_decoder(codec_id))


def _open_reader(path: str, info: VideoInfo) -> decord.VideoReader:
    """A decord reader whose frames come upright (decord applies the rotation metadata itself), at the
    display size or, for narrow videos, an integer multiple of it."""
    # decord 0.6.0 mis-sizes its output buffer for some narrow frames (16, 24, 48 and 72 pixels wide
    # fail); those are decoded larger and area-resized back in _decode.
    scale = _decode_scale(info.width)
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=info.width * scale, height=info.height * scale)
    except (decord.DECORDError, RuntimeError) as error:
        raise CorruptVideoError(
            f"'{_name(path)}' cannot be indexed for decoding: it is damaged or incomplete. "
            "Re-export the video or upload another copy."
        ) from error


def _decode_scale(width: int) -> int:
    return math.ceil(_MIN_DECODE_WIDTH / width)


def _decode(
    reader: decord.VideoReader,
    path: str,
    frame_indices: np.ndarray,
    starts_s: np.ndarray,
    size: tuple[int, int],
    report: Callable[[float, str], None],
    decoded_frame_bytes: int,
) -> np.ndarray:
    width, height = size
    frames = np.empty((len(frame_indices), height, width, 3), np.uint8)  # [T, h, w, 3]
    chunk_frames = max(1, min(_DECODE_CHUNK_FRAMES, _DECODE_CHUNK_BYTES // decoded_frame_bytes))
    for begin in range(0, len(frame_indices), chunk_frames):
        chunk = frame_indices[begin : begin + chunk_frames]
        try:
            decoded = reader.get_batch(chunk.tolist()).asnumpy()  # [c, H, W, 3] upright
        except decord.DECORDError as error:
            raise CorruptVideoError(
                f"'{_name(path)}' is damaged: frames between {starts_s[chunk[0]]:.2f} s and "
                f"{starts_s[chunk[-1]]:.2f} s cannot be decoded. Re-export the video or upload another copy."
            ) from error
        for offset, picture in enumerate(decoded):
            if picture.shape[:2] == (height, width):
                frames[begin + offset] = picture
            else:
                frames[begin + offset] = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
        done = begin + len(chunk)
        report(done / len(frame_indices), f"Decoded {done} of {len(frame_indices)} frames")
    return frames


def _duration(starts_s: np.ndarray, last_frame_s: float) -> float:
    """From the first frame's start to the last frame's end. Containers do not always give the last
    frame's length (decord reports 0 for some MP4s); the typical frame interval stands in for it then."""
    if last_frame_s <= 0:
        last_frame_s = float(np.median(np.diff(starts_s))) if len(starts_s) > 1 else 0.0
    return float(starts_s[-1] + last_frame_s)


def _container_signature(path: str) -> str | None:
    """Name of the video container the first bytes announce, or None when they announce none."""
    with open(path, "rb") as file:
        head = file.read(192)
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


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes // 60)}:{int(minutes % 60):02d}:{secs:04.1f}"
