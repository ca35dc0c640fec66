"""The hostile-input corpus: every kind of file a user may upload, built in-process, with its exact outcome.

`build(folder)` writes each entry's file under `folder` (nothing is committed as a binary) and returns
`Case`s: the path to hand to `vidchat.video.sample` (or to the app) and what must happen — accepted with
the listed properties, or refused with a specific `VideoError` subclass whose message holds a fragment a
person can act on. Every path is inside `folder`, whatever its name looks like (`../../etc/passwd.mp4`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


from vidchat.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    UnsupportedCodecError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from vidchat.testing import speech, videos
from vidchat.video import VideoLimits


@dataclass(frozen=True)
class Heard:
    """What the video's transcript must be (`vidchat.speech.transcribe` with a recognizer that says where it
    listened, `vidchat.testing.speech.EchoRecognizer`)."""

    source: str  # "speech", "subtitles" or "none"
    note: str = ""  # a piece of the transcript's note
    spoken_s: tuple[float, ...] = ()  # where each sentence is spoken: one window of the recognizer each (±0.5 s)


@dataclass(frozen=True)
class Accepted:
    """The video is used: its display size, its frame count and (when given) its duration, as sampled."""

    width: int
    height: int
    frame_count: int
    duration_s: float | None = None
    exact_indices: bool = True  # every sampled frame's index band reads its own index (lossless enough)
    # the true presentation time of every frame of the file (seconds after the first): sampled times must be these
    pts_s: tuple[float, ...] | None = None
    heard: Heard | None = None  # what its transcript must be (when its sound is the point of the entry)


@dataclass(frozen=True)
class Refused:
    error: type[VideoError]
    fragment: str  # a piece of the message the user sees


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    expect: Accepted | Refused
    limits: VideoLimits = VideoLimits()


Builder = Callable[[Path], tuple[str, Accepted | Refused] | tuple[str, Accepted | Refused, VideoLimits]]
_BUILDERS: dict[str, Builder] = {}


def kind(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        _BUILDERS[name] = builder
        return builder

    return register


def names() -> list[str]:
    return list(_BUILDERS)


def build(folder: str | os.PathLike, only: list[str] | None = None) -> list[Case]:
    """Write the corpus under `folder` (one sub-folder per entry) and return its cases."""
    cases = []
    for name, builder in _BUILDERS.items():
        if only is not None and name not in only:
            continue
        where = Path(folder) / name
        where.mkdir(parents=True, exist_ok=True)
        path, expect, *limits = builder(where)
        cases.append(Case(name, str(path), expect, *limits))
    return cases


def _good(folder: Path, name: str = "good.mp4", **kwargs) -> videos.SyntheticVideo:
    return videos.write_video(folder / name, **{"n_frames": 20, "fps": 10.0, **kwargs})


# ---- not a video at all ------------------------------------------------------------------------------------


@kind("zero-bytes")
def _(folder):
    return videos.write_empty_file(folder / "empty.mp4"), Refused(NotAVideoError, "is empty (0 bytes)")


@kind("text-named-mp4")
def _(folder):
    return videos.write_text_file(folder / "notes.mp4"), Refused(NotAVideoError, "its contents match no video format")


@kind("random-bytes")
def _(folder):
    return videos.write_random_bytes(folder / "noise.mp4"), Refused(NotAVideoError, "match no video format")


@kind("mp4-signature-then-noise")
def _(folder):
    return videos.write_fake_header(folder / "fake.mp4"), Refused(
        CorruptVideoError, "starts like a video file (MP4/MOV)"
    )


@kind("png-named-mp4")
def _(folder):
    return videos.write_png_file(folder / "picture.mp4"), Refused(NotAVideoError, "is an image (png)")


@kind("png")
def _(folder):
    return videos.write_png_file(folder / "picture.png"), Refused(NotAVideoError, "is an image (png)")


@kind("gif-still")
def _(folder):
    video = videos.write_video(folder / "still.gif", n_frames=1, codec="gif", pix_fmt="rgb8")
    return video.path, Refused(NotAVideoError, "is an image (gif)")


@kind("audio-only")
def _(folder):
    return videos.write_audio_only(folder / "tone.mp4"), Refused(NotAVideoError, "only audio (aac)")


@kind("directory-named-mp4")
def _(folder):
    (folder / "folder.mp4").mkdir(exist_ok=True)
    return folder / "folder.mp4", Refused(NotAVideoError, "There is no file")


@kind("dangling-symlink")
def _(folder):
    link = folder / "gone.mp4"
    if not link.is_symlink():
        link.symlink_to(folder / "never-written.mp4")
    return link, Refused(NotAVideoError, "There is no file")


# ---- containers with nothing, or damage, in them -----------------------------------------------------------


@kind("avi-no-frames")
def _(folder):
    return videos.write_no_frames(folder / "empty.avi"), Refused(EmptyVideoError, "no frames")


@kind("mp4-no-streams")
def _(folder):
    return videos.write_no_frames(folder / "empty.mp4", codec="libx264"), Refused(EmptyVideoError, "nothing in it")


@kind("mp4-cut-before-index")
def _(folder):
    good = _good(folder)  # index (moov) at the end: a cut copy loses it
    return videos.truncated_copy(good.path, folder / "cut.mp4", 0.5), Refused(
        CorruptVideoError, "starts like a video file"
    )


@kind("mp4-faststart-cut-mid-stream")
def _(folder):
    good = _good(folder, faststart=True)  # index first: a cut copy keeps it, and promises missing frames
    return videos.truncated_copy(good.path, folder / "cut.mp4", 0.6), Refused(CorruptVideoError, "is cut short")


@kind("avi-cut-short")
def _(folder):
    good = _good(folder, "good.avi", codec="mjpeg")
    return videos.truncated_copy(good.path, folder / "cut.avi", 0.6), Refused(CorruptVideoError, "is cut short")


@kind("webm-cut-mid-stream")
def _(folder):
    good = _good(folder, "good.webm", codec="libvpx-vp9", n_frames=40)
    path = videos.truncated_copy(good.path, folder / "cut.webm", 0.5)
    # Used as far as it goes: fewer frames than written, each the right one.
    return path, Accepted(64, 48, frame_count=-1)


@kind("mp4-garbled-encoder-notes")
def _(folder):
    good = _good(folder)
    size = os.path.getsize(good.path)
    # The first packet opens with x264's notes (an SEI message, ~700 bytes of text): garbage there is no
    # picture data, and the video decodes as written.
    start = _mdat_offset(good.path) + 16
    path = videos.garbled_copy(good.path, folder / "garbled.mp4", start / size, (start + 400) / size)
    return path, Accepted(64, 48, frame_count=20)


@kind("mp4-garbled-pictures")
def _(folder):
    good = _good(folder, n_frames=60, size=(160, 120))
    return videos.garbled_copy(good.path, folder / "garbled.mp4", 0.1, 0.6), Refused(CorruptVideoError, "first frame")


@kind("mkv-garbled-packets")
def _(folder):
    good = _good(folder, "good.mkv", n_frames=40)
    return (
        videos.garbled_copy(good.path, folder / "garbled.mkv", 0.3, 0.7, seed=3),
        Refused(CorruptVideoError, "damaged"),
    )


@kind("unknown-fourcc")
def _(folder):
    return videos.write_unknown_codec(folder / "qqqq.avi"), Refused(UnsupportedCodecError, "FFmpeg, the decoder here, cannot decode")


@kind("animated-webp")
def _(folder):
    # FFmpeg (8.0 in PyAV, 5.1 in Debian) decodes still WebP pictures only.
    video = videos.write_video(folder / "animation.webp", n_frames=6, codec="libwebp_anim", pix_fmt="yuv420p")
    return video.path, Refused(UnsupportedCodecError, "animated WebP, which FFmpeg")


# ---- over the limits ---------------------------------------------------------------------------------------


@kind("four-hour-timestamps")
def _(folder):
    # Two frames 4 hours apart: a tiny file whose header and timestamps say 4 h (limit 3 h).
    good = videos.write_video(folder / "long.mp4", n_frames=2, pts_s=[0.0, 4 * 3600.0])
    return good.path, Refused(VideoTooLongError, "the limit is 3:00:00.0")


@kind("mp4-header-claims-10-hours")
def _(folder):
    # The movie and media headers say 10 h; FFmpeg measures the duration from the frame tables, which are right.
    good = _good(folder)
    path = videos.forged_duration_copy(good.path, folder / "forged.mp4", factor=18_000)
    return path, Accepted(64, 48, frame_count=20, duration_s=2.0)


@kind("8k")
def _(folder):
    good = _good(folder, "8k.mp4", n_frames=2, size=(7680, 4320), codec_options={"preset": "ultrafast"})
    return good.path, Accepted(7680, 4320, frame_count=2)


@kind("over-8k")
def _(folder):
    good = _good(folder, "big.mp4", n_frames=1, size=(7696, 4320), codec="mjpeg", pix_fmt="yuvj420p")
    return good.path, Refused(VideoTooLargeError, "the limit is 7680×4320")


@kind("over-byte-limit")
def _(folder):
    good = _good(folder)
    return good.path, Refused(VideoTooLargeError, "the limit is 1,000 bytes"), VideoLimits(max_bytes=1000)


@kind("over-frame-limit")
def _(folder):
    good = _good(folder)
    return good.path, Refused(VideoTooLargeError, "the limit is 10"), VideoLimits(max_frame_count=10)


# ---- odd but good ------------------------------------------------------------------------------------------


@kind("one-frame")
def _(folder):
    good = _good(folder, n_frames=1)
    return good.path, Accepted(64, 48, frame_count=1, pts_s=tuple(good.pts_s))


@kind("two-frames")
def _(folder):
    good = _good(folder, n_frames=2)
    return good.path, Accepted(64, 48, frame_count=2, duration_s=0.2, pts_s=tuple(good.pts_s))


@kind("0.1-seconds")
def _(folder):
    good = _good(folder, n_frames=3, fps=30.0)
    return good.path, Accepted(64, 48, frame_count=3, duration_s=0.1, pts_s=tuple(good.pts_s))


# ---- every container and codec FFmpeg decodes -------------------------------------------------------------
# Their frames must come at their true presentation times: each builder hands its frames' times to Accepted.


def _decodes(folder: Path, name: str, **kwargs) -> tuple[str, Accepted]:
    good = _good(folder, name, **kwargs)
    return good.path, Accepted(good.width, good.height, frame_count=20, duration_s=2.0, pts_s=tuple(good.pts_s))


@kind("mpeg-ts")
def _(folder):
    return _decodes(folder, "obs.ts", codec="libx264")  # its first frame is at 0.2 s: times count from there


@kind("m2ts")
def _(folder):
    return _decodes(folder, "camcorder.m2ts", codec="libx264")


@kind("gif-animated")
def _(folder):
    return _decodes(folder, "animation.gif", codec="gif", pix_fmt="rgb8")


@kind("h264-10-bit")
def _(folder):
    return _decodes(folder, "ten-bit.mp4", codec="libx264", pix_fmt="yuv420p10le")


@kind("mpeg-2")
def _(folder):
    return _decodes(folder, "dvd.mpg", codec="mpeg2video", pix_fmt="yuv420p")


@kind("av1-mp4")
def _(folder):
    return _decodes(folder, "av1.mp4", codec="libsvtav1", codec_options={"preset": "12"})


@kind("16x16")
def _(folder):
    return _good(folder, size=(16, 16)).path, Accepted(16, 16, frame_count=20, exact_indices=False)


@kind("odd-size-161x97")
def _(folder):
    return _good(folder, size=(161, 97)).path, Accepted(161, 97, frame_count=20)


@kind("wide-1024x16")
def _(folder):
    return _good(folder, size=(1024, 16)).path, Accepted(1024, 16, frame_count=20, exact_indices=False)


@kind("rotated-90")
def _(folder):
    return _good(folder, size=(48, 64), rotation_deg=90).path, Accepted(48, 64, frame_count=20)


@kind("rotated-270")
def _(folder):
    return _good(folder, size=(48, 64), rotation_deg=270).path, Accepted(48, 64, frame_count=20)


@kind("variable-frame-rate")
def _(folder):
    pts = [0.0, 0.04, 0.1, 0.5, 0.52, 1.3, 1.31, 2.0]
    good = videos.write_video(folder / "vfr.mp4", n_frames=len(pts), pts_s=pts)
    return good.path, Accepted(64, 48, frame_count=len(pts))


@kind("vp9-webm")
def _(folder):
    return _good(folder, "vp9.webm", codec="libvpx-vp9").path, Accepted(64, 48, frame_count=20, duration_s=2.0)


@kind("mjpeg-avi")
def _(folder):
    return _good(folder, "mjpeg.avi", codec="mjpeg").path, Accepted(64, 48, frame_count=20, duration_s=2.0)


@kind("hevc-mp4")
def _(folder):
    return _good(folder, "hevc.mp4", codec="libx265").path, Accepted(64, 48, frame_count=20, duration_s=2.0)


@kind("prores-mov")
def _(folder):
    good = _good(folder, "prores.mov", codec="prores_ks", pix_fmt="yuv422p10le")
    return good.path, Accepted(64, 48, frame_count=20, duration_s=2.0)


@kind("webm-named-mp4")
def _(folder):
    # The suffix lies: the container is read from the bytes.
    good = _good(folder, "real.webm", codec="libvpx-vp9")
    os.replace(good.path, folder / "lying.mp4")
    return folder / "lying.mp4", Accepted(64, 48, frame_count=20, duration_s=2.0)


@kind("h264-avi-b-frames")
def _(folder):
    # AVI has no presentation times: frames reordered by the decoder take their times from their places.
    return _decodes(folder, "h264.avi", codec="libx264")


# ---- names and links ---------------------------------------------------------------------------------------


@kind("path-like-name")
def _(folder):
    # "../../etc/passwd.mp4" resolved inside `folder` (a/b/../../ is `folder` itself): never outside it.
    (folder / "a" / "b").mkdir(parents=True, exist_ok=True)
    path = os.path.join(folder, "a", "b", "..", "..", "etc", "passwd.mp4")
    (folder / "etc").mkdir(exist_ok=True)
    videos.write_video(folder / "etc" / "passwd.mp4", n_frames=20)
    return path, Accepted(64, 48, frame_count=20)


@kind("non-utf8-name")
def _(folder):
    # A Latin-1 file name from an old system: bytes that are not UTF-8 (Python holds them as surrogates).
    target = os.path.join(os.fsencode(str(folder)), b"caf\xe9 vid\xe9o.mp4")
    os.replace(_good(folder).path, target)
    return os.fsdecode(target), Accepted(64, 48, frame_count=20)


@kind("unicode-and-spaces-name")
def _(folder):
    return _good(folder, "vidéo 🎬 (1) 'quoted' $HOME.mp4").path, Accepted(64, 48, frame_count=20)


@kind("symlink-to-video")
def _(folder):
    good = _good(folder)
    link = folder / "link.mp4"
    if not link.is_symlink():
        link.symlink_to(good.path)
    return link, Accepted(64, 48, frame_count=20)


@kind("symlink-to-etc-passwd")
def _(folder):
    link = folder / "passwd.mp4"
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")
    return link, Refused(NotAVideoError, "match no video format")


def _mdat_offset(path: str) -> int:
    """Byte offset of the MP4's frame data box."""
    data = Path(path).read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"mdat":
            return offset
        offset += size
    raise ValueError("no mdat box")


# ---- the sound: every video opens, with a transcript or a clear note -----------------------------------------

SENTENCES = ((1.0, "Preheat the oven."), (6.5, "Now stir the sauce."))
SPOKEN_S = tuple(at_s for at_s, _ in SENTENCES)


def _talk(folder: Path, name: str, **kwargs) -> str:
    return speech.write_speech_video(folder / name, SENTENCES, 9.0, **kwargs).path


@kind("audio-garbled-packets")
def _(folder):
    path = _talk(folder, "garbled.mp4", garbled_s=(3.5, 5.5))
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=Heard("speech", spoken_s=SPOKEN_S))


@kind("audio-5.1")
def _(folder):
    path = _talk(folder, "surround.mp4", layout="5.1")
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=Heard("speech", spoken_s=SPOKEN_S))


@kind("audio-8-tracks")
def _(folder):
    path = _talk(folder, "tracks.mkv", audio_codecs=["pcm_s16le"] * 8, rate_hz=16_000)  # 2.3 MB: a page test uploads it
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=Heard("speech", spoken_s=SPOKEN_S))


@kind("audio-8khz")
def _(folder):
    path = _talk(folder, "phone.mp4", rate_hz=8000)
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=Heard("speech", spoken_s=SPOKEN_S))


@kind("audio-192khz")
def _(folder):
    path = _talk(folder, "studio.mkv", rate_hz=192_000)
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=Heard("speech", spoken_s=SPOKEN_S))


@kind("audio-codec-ffmpeg-cannot-decode")
def _(folder):
    path = speech.unknown_codec_copy(_talk(folder, "known.webm"), folder / "unknown.webm")
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=Heard("none", note="cannot be decoded"))


@kind("subtitles-empty-track")
def _(folder):
    path = speech.write_empty_subtitle_track(folder / "empty-subtitles.mkv", duration_s=9.0, source=_talk(folder, "talk.mkv"))
    heard = Heard("speech", note="holds no lines", spoken_s=SPOKEN_S)
    return path, Accepted(64, 48, frame_count=45, exact_indices=False, heard=heard)
