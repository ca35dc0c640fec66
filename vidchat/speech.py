"""The video's words, on the frames' clock: a subtitle track when the file has one, else speech recognition.

Every time is in seconds from the video stream's first frame (the clock of `vidchat.video`), whatever the
audio's or the subtitles' own start: AAC priming and muxers shift them by tens of milliseconds, so each is
measured against the video stream's start.

`transcribe` is the stage. It reads, in this order:
1. a subtitle track (`subtitle_tracks` lists them; `read_subtitles` reads one: mov_text, SubRip, ASS/SSA,
   WebVTT …), its markup dropped (`cue_text`). No model is needed.
2. else the sound: the best audio stream that decodes, as 16 kHz mono (`audio_chunks`, a few tens of seconds
   at a time, so hours of audio fit in bounded memory); silero-vad finds where someone speaks
   (`speech_regions`); nearby regions are merged into windows of at most 30 s (`speech_windows`), and only
   those go to the `Recognizer` (Whisper, in `vidchat.recognize`), so silence and music produce no invented
   text and quiet hours cost little. The audio is decoded twice (once to find the speech, once to hear it)
   rather than held.
3. else nothing, with a note that says why (no sound track, sound FFmpeg cannot decode, no speech).

`TranscriptCache` keeps transcripts by (video content, recognizer, subtitle track).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Literal, Protocol

import av
import numpy as np
import torch

from vidchat.errors import VidchatError
from vidchat.video import clock_text, first_frame_time_s, utf8_path

TranscriptSource = Literal["subtitles", "speech", "none"]
Progress = Callable[[float, str], None]

SAMPLE_RATE_HZ = 16_000  # what silero-vad and Whisper hear
_VAD_WINDOW = 512  # samples silero-vad scores at a time at 16 kHz (32 ms)
# A decoded frame whose timestamp is further than this from where the samples so far end starts a new place on
# the clock (a damaged packet was skipped, or the stream jumps); nearer, it follows on (resampler rounding).
_CLOCK_TOLERANCE_S = 0.01
# Packets of a stream decoded to tell whether it decodes at all (a damaged start is skipped, not judged).
_PROBE_PACKETS = 200
_SOUND_FRACTION = 0.3  # of the progress bar: finding the speech; the rest is hearing it


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

    def to_json(self) -> dict:
        """{"source", "language", "segments": [{"start_s", "end_s", "text", "words": [{"start_s", "end_s",
        "text"}]}], "tracks": [{"index", "codec", "language", "title"}], "track", "note"}."""
        return {
            "source": self.source,
            "language": self.language,
            "segments": [
                {
                    "start_s": segment.start_s,
                    "end_s": segment.end_s,
                    "text": segment.text,
                    "words": [asdict(word) for word in segment.words],
                }
                for segment in self.segments
            ],
            "tracks": [asdict(track) for track in self.tracks],
            "track": self.track,
            "note": self.note,
        }


class Recognizer(Protocol):
    """Speech to text (`vidchat.recognize.WhisperRecognizer`)."""

    # What hears: the model's id or folder. Part of the transcript cache's key, so it names the weights.
    name: str

    def recognize(self, audio: np.ndarray, offset_s: float) -> tuple[tuple[Segment, ...], str | None]:
        """audio: [S] float32, 16 kHz mono, its first sample at `offset_s` on the video clock (at most ~30 s).
        Returns the segments heard, with their words, on the video clock, and the spoken language (ISO 639-1)
        or None."""
        ...


class NoSoundError(VidchatError):
    """The video has no sound track speech could be heard from (none, or none FFmpeg decodes)."""


@dataclass(frozen=True)
class SpeechConfig:
    chunk_s: float = 30.0  # audio decoded and held at a time
    vad_threshold: float = 0.5  # silero-vad's speech probability above which a 32 ms step is speech
    min_speech_s: float = 0.25  # shorter bursts are not speech (clicks, a cough)
    min_silence_s: float = 0.1  # a pause at least this long ends a region
    pad_s: float = 0.2  # heard on either side of a region: speech starts and fades softly
    max_window_s: float = 30.0  # audio given to the recognizer at once (Whisper hears 30 s)
    max_gap_s: float = 2.0  # regions nearer than this share a window: the recognizer hears the context


# ---- subtitles -------------------------------------------------------------------------------------------


def subtitle_tracks(path: str | os.PathLike) -> tuple[SubtitleTrack, ...]:
    """The file's text subtitle tracks, in stream order (picture subtitles, DVD and Blu-ray, hold no text)."""
    with utf8_path(os.fspath(path)) as readable, av.open(readable, metadata_errors="ignore") as container:
        return tuple(
            SubtitleTrack(
                index=stream.index,
                codec=stream.codec_context.codec.canonical_name,
                language=_language(stream.metadata.get("language")),
                title=stream.metadata.get("title") or None,
            )
            for stream in container.streams.subtitles
            if stream.codec_context is not None and stream.codec_context.codec.text_sub
        )


def read_subtitles(
    path: str | os.PathLike, track: int, video_start_s: float, duration_s: float
) -> tuple[Segment, ...]:
    """The cues of subtitle stream `track`, in order, as plain text, seconds from the video's first frame
    (`video_start_s` on the file's clock) clamped to [0, duration_s]. A cue without a length lasts until the next
    one (or the video's end); cues wholly outside the video are left out."""
    cues: list[tuple[float, float | None, str]] = []  # start, end (None: not given), text
    with utf8_path(os.fspath(path)) as readable, av.open(readable, metadata_errors="ignore") as container:
        stream = container.streams[track]
        try:
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                start_s = float(packet.pts * packet.time_base) - video_start_s
                end_s = start_s + float(packet.duration * packet.time_base) if packet.duration else None
                for subtitle in packet.decode():
                    text = cue_text(subtitle.dialogue.decode("utf-8", "replace"))
                    if text:
                        cues.append((start_s, end_s, text))
        except av.error.FFmpegError:
            pass  # the track ends where the file does
    cues.sort(key=lambda cue: cue[0])
    segments = []
    for i, (start_s, end_s, text) in enumerate(cues):
        if end_s is None:
            end_s = cues[i + 1][0] if i + 1 < len(cues) else duration_s
        if end_s <= 0 or start_s >= duration_s:
            continue
        start_s = min(max(start_s, 0.0), duration_s)
        segments.append(Segment(start_s, min(max(end_s, start_s), duration_s), text))
    return tuple(segments)


_ASS_OVERRIDE = re.compile(r"\{[^}]*\}")  # {\i1}, {\an8}, {\c&H0000FF&}
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")  # <i>, <font color=…>, WebVTT's <v Name> and <00:01.500>


def cue_text(dialogue: str) -> str:
    """A cue's text with its markup dropped: ASS override blocks, HTML-like tags; ASS line breaks (\\N, \\n)
    become "\\n", its hard space (\\h) a space. Lines are stripped, empty ones dropped."""
    text = _ASS_OVERRIDE.sub("", dialogue)
    text = text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    text = _TAG.sub("", text)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _language(tag: str | None) -> str | None:
    return None if not tag or tag == "und" else tag


# ---- sound -----------------------------------------------------------------------------------------------


def sound_stream(path: str | os.PathLike) -> int:
    """The index of the audio stream to hear: FFmpeg's best one if it decodes, else the first other that does.
    Raises NoSoundError, saying why, when there is none."""
    with utf8_path(os.fspath(path)) as readable, av.open(readable, metadata_errors="ignore") as container:
        best = container.streams.best("audio")
        if best is None:
            raise NoSoundError("This video has no sound track.")
        others = [stream for stream in container.streams.audio if stream.index != best.index]
        for stream in [best, *others]:
            if stream.codec_context is not None and sound_decodes(readable, stream.index):
                return stream.index
    codec = best.codec_context.codec.canonical_name if best.codec_context is not None else "unknown to FFmpeg"
    raise NoSoundError(f"The sound (codec {codec}) cannot be decoded, so there is no transcript.")


def sound_decodes(path: str, index: int, max_packets: int = _PROBE_PACKETS) -> bool:
    """Whether audio stream `index` gives sound within its first `max_packets` packets (FFmpeg may know a codec's
    name but fail on every packet of it)."""
    with utf8_path(path) as readable, av.open(readable, metadata_errors="ignore") as container:
        return any(frame.samples for frame in _frames(container, container.streams[index], max_packets))


def _frames(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, max_packets: int | None = None
) -> Iterator[av.AudioFrame]:
    """The stream's decoded frames; packets that do not decode are skipped (their sound is lost; the next
    frame's timestamp keeps the clock)."""
    try:
        for count, packet in enumerate(container.demux(stream)):
            if max_packets is not None and count >= max_packets:
                return
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            yield from frames
    except av.error.FFmpegError:
        return  # the stream ends where the file does


def audio_chunks(
    path: str | os.PathLike,
    stream_index: int,
    video_start_s: float,
    duration_s: float | None = None,
    chunk_s: float = 30.0,
) -> Iterator[np.ndarray]:
    """Audio stream `stream_index` as 16 kHz mono float32, in consecutive pieces of about `chunk_s` seconds
    ([S] each): their concatenation is the sound on the video clock, sample 0 at the video's first frame
    (`video_start_s` on the file's clock). Sound before the video is dropped, silence fills a late start and
    the sound of packets that do not decode; nothing past `duration_s` is read."""
    chunker = _Chunker(round(chunk_s * SAMPLE_RATE_HZ))
    end = None if duration_s is None else round(duration_s * SAMPLE_RATE_HZ)
    tolerance = round(_CLOCK_TOLERANCE_S * SAMPLE_RATE_HZ)
    with utf8_path(os.fspath(path)) as readable, av.open(readable, metadata_errors="ignore") as container:
        for frame in _resampled(_frames(container, container.streams[stream_index])):
            samples = frame.to_ndarray()[0]  # [n] float32
            if frame.pts is not None:
                at = round((float(frame.pts * frame.time_base) - video_start_s) * SAMPLE_RATE_HZ)
                shift = at - chunker.total
                if chunker.total == 0 or abs(shift) > tolerance:
                    if shift > 0:
                        yield from chunker.silence(shift if end is None else min(shift, end - chunker.total))
                    else:
                        samples = samples[-shift:]  # before the video's start, or heard already
            if end is not None:
                samples = samples[: end - chunker.total]
            yield from chunker.add(samples)
            if end is not None and chunker.total >= end:
                break
    if chunker.held:
        yield chunker.rest()


def _resampled(frames: Iterable[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """The frames at 16 kHz mono float32. A change of format, layout or rate mid-stream (a damaged packet can
    decode as another layout) starts a new resampler."""
    resampler, kind = None, None
    for frame in frames:
        frame_kind = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame_kind != kind:
            if resampler is not None:
                yield from resampler.resample(None)
            resampler, kind = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ), frame_kind
        yield from resampler.resample(frame)
    if resampler is not None:
        yield from resampler.resample(None)


class _Chunker:
    """Collects samples and hands them on in pieces of at least `size` samples (the last piece: the rest)."""

    def __init__(self, size: int):
        self.size = size
        self.total = 0  # samples collected so far
        self.held = 0  # of which not handed on yet
        self._parts: list[np.ndarray] = []

    def add(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        self._parts.append(samples)
        self.held += len(samples)
        self.total += len(samples)
        if self.held >= self.size:
            yield self.rest()

    def silence(self, count: int) -> Iterator[np.ndarray]:
        """`count` zero samples, made a piece at a time (a stream may jump by hours)."""
        while count > 0:
            step = min(count, self.size)
            yield from self.add(np.zeros(step, np.float32))
            count -= step

    def rest(self) -> np.ndarray:
        piece = np.concatenate(self._parts)  # [held]
        self._parts, self.held = [], 0
        return piece


# ---- voice activity --------------------------------------------------------------------------------------


def _silero() -> ModuleType:
    """The silero_vad package. Importing it sets torch's thread count to 1 for the whole process (the video model
    and Whisper would crawl): the count is put back."""
    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    return silero_vad


def load_vad() -> torch.jit.ScriptModule:
    """silero-vad's model (its wheel ships it: no download)."""
    silero_vad = _silero()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return silero_vad.load_silero_vad()


def speech_regions(
    chunks: Iterable[np.ndarray],
    config: SpeechConfig = SpeechConfig(),
    vad: torch.jit.ScriptModule | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[tuple[float, float], ...]:
    """Where someone speaks in the sound `chunks` (consecutive [S] float32 pieces at 16 kHz, sample 0 at 0 s):
    (start_s, end_s) regions, in order, none longer than `max_window_s` less the padding on both sides.

    The model carries its state from one 32 ms step to the next across the pieces, so a region that spans a
    border between pieces is one region. progress: called with the seconds heard so far."""
    vad = vad or load_vad()
    vad.reset_states()
    probabilities: list[np.ndarray] = []  # per piece: [steps] float32, one per 32 ms
    carried = np.zeros(0, np.float32)  # the samples of an unfinished step
    total = 0
    with torch.inference_mode():
        for chunk in chunks:
            total += len(chunk)
            audio = np.concatenate([carried, chunk])  # [n]
            whole = len(audio) // _VAD_WINDOW * _VAD_WINDOW
            steps = torch.from_numpy(audio[:whole]).view(-1, _VAD_WINDOW)  # [steps, 512]
            probabilities.append(np.array([vad(step, SAMPLE_RATE_HZ).item() for step in steps], np.float32))
            carried = audio[whole:]
            if progress is not None:
                progress(total / SAMPLE_RATE_HZ)
        if len(carried):
            last = torch.from_numpy(np.pad(carried, (0, _VAD_WINDOW - len(carried))))  # [512]
            probabilities.append(np.array([vad(last, SAMPLE_RATE_HZ).item()], np.float32))
    if total == 0:
        return ()
    stamps = _silero().get_speech_timestamps_from_probs(
        np.concatenate(probabilities).tolist(),
        sampling_rate=SAMPLE_RATE_HZ,
        threshold=config.vad_threshold,
        min_speech_duration_ms=round(config.min_speech_s * 1000),
        max_speech_duration_s=config.max_window_s - 2 * config.pad_s,
        min_silence_duration_ms=round(config.min_silence_s * 1000),
        speech_pad_ms=0,  # padded by speech_windows
        audio_length_samples=total,
    )
    return tuple((stamp["start"] / SAMPLE_RATE_HZ, stamp["end"] / SAMPLE_RATE_HZ) for stamp in stamps)


def speech_windows(
    regions: Sequence[tuple[float, float]], end_s: float, config: SpeechConfig = SpeechConfig()
) -> tuple[tuple[float, float], ...]:
    """The stretches of sound the recognizer hears: each region padded by `pad_s` (within [0, end_s]), and
    regions less than `max_gap_s` apart merged while the window stays within `max_window_s`. In order, disjoint."""
    windows: list[tuple[float, float]] = []
    for start_s, stop_s in regions:
        start_s, stop_s = max(start_s - config.pad_s, 0.0), min(stop_s + config.pad_s, end_s)
        if start_s >= stop_s:
            continue
        if windows:
            first_s, last_s = windows[-1]
            if start_s - last_s <= config.max_gap_s and stop_s - first_s <= config.max_window_s:
                windows[-1] = (first_s, stop_s)
                continue
            start_s = max(start_s, last_s)  # padding does not make windows overlap
        windows.append((start_s, stop_s))
    return tuple(windows)


def window_audio(chunks: Iterable[np.ndarray], windows: Sequence[tuple[float, float]]) -> Iterator[np.ndarray]:
    """The sound [S] float32 of each window (in order, disjoint), cut from consecutive pieces at 16 kHz (sample 0
    at 0 s); reading stops after the last window. A window the sound ends inside is cut short."""
    bounds = [(round(start_s * SAMPLE_RATE_HZ), round(stop_s * SAMPLE_RATE_HZ)) for start_s, stop_s in windows]
    current = 0  # the window being filled
    parts: list[np.ndarray] = []
    position = 0  # sample index of the chunk's first sample
    for chunk in chunks:
        chunk_end = position + len(chunk)
        while current < len(bounds) and bounds[current][0] < chunk_end:
            start, stop = bounds[current]
            parts.append(chunk[max(start - position, 0) : max(min(stop, chunk_end) - position, 0)])
            if stop > chunk_end:
                break
            yield np.concatenate(parts)
            parts, current = [], current + 1
        position = chunk_end
        if current == len(bounds):
            return
    if parts:
        yield np.concatenate(parts)


def tidy_segments(segments: Iterable[Segment], start_s: float, end_s: float) -> tuple[Segment, ...]:
    """A recognizer's segments made safe to show and seek to: within [start_s, end_s] (the sound it heard),
    in order without overlap, each word within its segment and after the one before; empty text dropped.
    Recognizers misplace times (Whisper's word times can fall past the end of what it heard)."""
    tidy = []
    floor_s = start_s
    for segment in segments:
        text = segment.text.strip()
        if not text:
            continue
        first_s = min(max(segment.start_s, floor_s), end_s)
        last_s = min(max(segment.end_s, first_s), end_s)
        words = []
        word_floor_s = first_s
        for word in segment.words:
            if not word.text.strip():
                continue
            word_start_s = min(max(word.start_s, word_floor_s), last_s)
            word_end_s = min(max(word.end_s, word_start_s), last_s)
            words.append(Word(word_start_s, word_end_s, word.text.strip()))
            word_floor_s = word_end_s
        tidy.append(Segment(first_s, last_s, text, tuple(words)))
        floor_s = last_s
    return tuple(tidy)


# ---- the stage -------------------------------------------------------------------------------------------


def transcribe(
    path: str | os.PathLike,
    recognizer: Recognizer | None,
    *,
    track: int | str | None = None,
    video_start_s: float | None = None,
    duration_s: float | None = None,
    config: SpeechConfig = SpeechConfig(),
    content_hash: str | None = None,
    cache: TranscriptCache | None = None,
    lock: AbstractContextManager | None = None,
    progress: Progress | None = None,
) -> Transcript:
    """The video's words: a subtitle track if it has one, else the speech `recognizer` hears (None: recognition
    is off), else none with a note.

    track: which subtitle track, by stream index or language tag ("eng"); None: the first. A track it does not
    have is replaced by the first, saying so; an empty one by the speech, saying so.
    video_start_s, duration_s: the video stream's first frame on the file's clock and its length (as
    `vidchat.video` measures them; read from the file when not given).
    cache: looked up and filled by (content_hash, recognizer.name, track); needs content_hash.
    lock: held around each call of the recognizer (the app's one-model-at-a-time lock); None: no lock."""
    report = progress or (lambda fraction, message: None)
    lock = lock or nullcontext()
    key = None
    if cache is not None:
        if content_hash is None:
            raise ValueError("a transcript cache needs the video's content hash")
        key = (content_hash, recognizer.name if recognizer is not None else None, track)
        if (cached := cache.get(key)) is not None:
            return cached
    path = os.fspath(path)
    if video_start_s is None:
        video_start_s = first_frame_time_s(path)
    if duration_s is None:
        duration_s = _container_end_s(path) - video_start_s
    transcript = _transcribe(path, recognizer, track, video_start_s, duration_s, config, lock, report)
    if cache is not None:
        cache.put(key, transcript)
    report(1.0, "Transcript ready")
    return transcript


def _transcribe(
    path: str,
    recognizer: Recognizer | None,
    track: int | str | None,
    video_start_s: float,
    duration_s: float,
    config: SpeechConfig,
    lock: AbstractContextManager,
    report: Progress,
) -> Transcript:
    tracks = subtitle_tracks(path)
    notes = []
    if tracks:
        chosen = _choose_track(tracks, track)
        if track is not None and chosen is tracks[0] and track not in (chosen.index, chosen.language):
            notes.append(f"There is no subtitle track {track}; track {_track_name(chosen)} is read instead.")
        report(0.0, "Reading the subtitle track")
        segments = read_subtitles(path, chosen.index, video_start_s, duration_s)
        if segments:
            return Transcript("subtitles", chosen.language, segments, tracks, chosen.index, " ".join(notes))
        notes.append(f"The subtitle track {_track_name(chosen)} holds no lines.")
    if recognizer is None:
        off = "Speech recognition is off." if tracks else "The video has no subtitles, and speech recognition is off."
        notes.append(off)
        return Transcript("none", None, (), tracks, note=" ".join(notes))
    try:
        stream = sound_stream(path)
    except NoSoundError as error:
        return Transcript("none", None, (), tracks, note=" ".join([*notes, str(error)]))

    def chunks() -> Iterator[np.ndarray]:
        return audio_chunks(path, stream, video_start_s, duration_s, config.chunk_s)

    def heard(seconds: float) -> None:
        report(_SOUND_FRACTION * min(seconds / duration_s, 1.0), "Finding speech in the sound")

    report(0.0, "Finding speech in the sound")
    regions = speech_regions(chunks(), config, progress=heard if duration_s > 0 else None)
    windows = speech_windows(regions, duration_s, config)
    if not windows:
        return Transcript("none", None, (), tracks, note=" ".join([*notes, "No speech was found in the sound."]))
    segments: list[Segment] = []
    languages: Counter[str] = Counter()  # language → seconds heard in it
    total_s = sum(stop_s - start_s for start_s, stop_s in windows)
    done_s = 0.0
    for (start_s, stop_s), audio in zip(windows, window_audio(chunks(), windows)):
        report(_SOUND_FRACTION + (1 - _SOUND_FRACTION) * done_s / total_s, f"Hearing speech at {clock_text(start_s)}")
        with lock:
            found, language = recognizer.recognize(audio, start_s)
        segments.extend(tidy_segments(found, start_s, start_s + len(audio) / SAMPLE_RATE_HZ))
        if language:
            languages[language] += stop_s - start_s
        done_s += stop_s - start_s
    language = languages.most_common(1)[0][0] if languages else None
    if not segments:
        notes.append("The speech recognizer heard no words in the speech.")
    return Transcript("speech" if segments else "none", language, tuple(segments), tracks, note=" ".join(notes))


def _choose_track(tracks: tuple[SubtitleTrack, ...], wanted: int | str | None) -> SubtitleTrack:
    for track in tracks:
        if wanted in (track.index, track.language):
            return track
    return tracks[0]


def _track_name(track: SubtitleTrack) -> str:
    return f"{track.index} ({track.language})" if track.language else str(track.index)


def _container_end_s(path: str) -> float:
    """Where the file's last stream ends, seconds on its own clock."""
    with utf8_path(path) as readable, av.open(readable, metadata_errors="ignore") as container:
        return ((container.start_time or 0) + (container.duration or 0)) / av.time_base


class TranscriptCache:
    """Transcripts by (video content hash, recognizer name, subtitle track), the least recently used dropped past
    `max_entries` (a transcript is small: an hour of speech is a few MB)."""

    def __init__(self, max_entries: int = 16):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Transcript] = OrderedDict()

    def get(self, key: tuple) -> Transcript | None:
        transcript = self._entries.get(key)
        if transcript is not None:
            self._entries.move_to_end(key)
        return transcript

    def put(self, key: tuple, transcript: Transcript) -> None:
        self._entries[key] = transcript
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
