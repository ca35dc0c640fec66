"""The video's words, on the frames' clock: a subtitle track when the file has one, else speech recognition.

Every time is in seconds from the video stream's first frame (the clock of `vidchat.video`), whatever the
audio's or the subtitles' own start (AAC priming shifts them by tens of milliseconds).

SKELETON: the dataclasses below are the interface the rest of vidchat uses; the functions are being written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TranscriptSource = Literal["subtitles", "speech", "none"]


@dataclass(frozen=True)
class Word:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Segment:
    """A line: a subtitle cue, or a stretch of recognized speech."""

    start_s: float
    end_s: float
    text: str  # plain text (markup dropped), lines of a cue joined by "\n"
    words: tuple[Word, ...] = ()  # recognized speech only; () for subtitles


@dataclass(frozen=True)
class SubtitleTrack:
    index: int  # the stream's index in the container
    codec: str  # FFmpeg's codec name: "mov_text", "subrip", "ass", "webvtt", …
    language: str | None  # the stream's language tag ("eng", "zho"), None when untagged
    title: str | None = None


@dataclass(frozen=True)
class Transcript:
    source: TranscriptSource  # "none": no subtitles and no speech found (or no audio at all): see `note`
    language: str | None  # ISO 639 code of the subtitle track or the recognized speech, None when unknown
    segments: tuple[Segment, ...]
    tracks: tuple[SubtitleTrack, ...] = ()  # the file's subtitle tracks
    track: int | None = None  # the stream index of the track used (source "subtitles")
    note: str = ""  # what the person should know, e.g. "The audio (codec xyz) cannot be decoded: no transcript."
