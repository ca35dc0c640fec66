"""Test videos that speak and carry subtitles, written in-process (PyAV) or by the ffmpeg command, and a timing
oracle for the words in them.

- `write_speech_video`: sentences spoken by espeak-ng at known offsets in silence, with stretches of noise or
  a chord, next to a synthetic picture (the index band of `vidchat.testing.videos`); AAC in MP4, Opus in WebM,
  PCM in MKV; any rate and channel layout, several tracks, damaged packets.
- `write_subtitled_video`: subtitle tracks made by ffmpeg (mov_text in MP4, SRT and ASS in MKV, WebVTT in
  WebM) from `CUES`: a two-line cue, italics, colour, CJK text. `write_empty_subtitle_track`: a track with none.
- `unknown_codec_copy`: a Matroska file whose audio codec FFmpeg does not know.
- `align_words`: pocketsphinx's forced alignment of a known text (English): where each word starts.
- `EchoRecognizer`: a `vidchat.speech.Recognizer` that says where it was asked to listen, and misplaces its
  times on purpose.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidchat.speech import SAMPLE_RATE_HZ, Segment, Word
from vidchat.testing.videos import draw_frame

ESPEAK_RATE_HZ = 22_050  # espeak-ng's WAV output
_CONTAINER_AUDIO = {".mp4": "aac", ".mov": "aac", ".webm": "libopus", ".mkv": "pcm_s16le"}
_CONTAINER_VIDEO = {".webm": "libvpx"}  # else libx264
_VOICED = 0.02  # |amplitude| above which espeak's output is voice, not its silent lead-in and tail
_STRETCH_LEVEL = 0.1  # amplitude of the noise and of each note of the chord


@dataclass(frozen=True)
class Utterance:
    text: str
    at_s: float  # where its sound starts in the track (seconds from the video's first frame)
    voice_s: tuple[float, float]  # where it is voiced: the part a voice detector must find
    sound: np.ndarray  # [n] float32 at ESPEAK_RATE_HZ, as espeak-ng spoke it


@dataclass(frozen=True)
class SpeechVideo:
    path: str
    duration_s: float
    utterances: tuple[Utterance, ...]
    stretches: tuple[tuple[float, float, str], ...]  # (start_s, end_s, "noise" | "chord")
    rate_hz: int  # the audio's sample rate


def speak(text: str) -> np.ndarray:
    """[n] float32 at ESPEAK_RATE_HZ: espeak-ng's English voice saying `text`."""
    with tempfile.TemporaryDirectory() as folder:
        wav = os.path.join(folder, "speech.wav")
        subprocess.run(["espeak-ng", "-v", "en", "-w", wav, text], check=True, capture_output=True)
        with av.open(wav) as container:
            parts = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]  # s16 mono
    return np.concatenate(parts).astype(np.float32) / 32768


def resample(sound: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """[n] float32 mono at `from_hz` → [m] float32 at `to_hz`, through FFmpeg's resampler."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_hz)
    frame = av.AudioFrame.from_ndarray(sound[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = from_hz, 0, Fraction(1, from_hz)
    out = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([o.to_ndarray().reshape(-1) for o in out])


def write_speech_video(
    path: str | os.PathLike,
    sentences: Sequence[tuple[float, str]],
    duration_s: float,
    *,
    stretches: Sequence[tuple[float, float, str]] = (),
    audio_codecs: Sequence[str] | None = None,
    rate_hz: int = 48_000,
    layout: str = "mono",
    audio_delay_s: float = 0.0,
    garbled_s: tuple[float, float] | None = None,
    video_fps: int = 5,
) -> SpeechVideo:
    """A video whose sound says `sentences` ((start_s, text): each starts there, seconds from the video's first
    frame) in silence, with `stretches` ((start_s, end_s, "noise" | "chord")) of white noise or an A-major chord.
    The container comes from the suffix.

    audio_codecs: one audio stream per codec, each the same sound; by default one, AAC for .mp4/.mov, Opus for
    .webm, 16-bit PCM for .mkv. layout: every channel carries the sound (the LFE too). audio_delay_s: where the
    sound starts on the video's clock; below 0 the video starts that much after the sound (a multiple of
    1 / video_fps), whose first `-audio_delay_s` seconds no frame shows. garbled_s: the first audio stream's packets
    starting in that span (seconds on the video's clock) hold random bytes."""
    path = str(path)
    suffix = Path(path).suffix.lower()
    utterances = tuple(_utterance(text, at_s) for at_s, text in sentences)
    # The sound's own clock: its first sample at the video's -audio_delay_s.
    sound = np.zeros(round((duration_s - audio_delay_s) * rate_hz), np.float32)  # [N]
    for utterance in utterances:
        voice = resample(utterance.sound, ESPEAK_RATE_HZ, rate_hz)
        at = round((utterance.at_s - audio_delay_s) * rate_hz)
        sound[at : at + len(voice)] += voice[: len(sound) - at]
    rng = np.random.default_rng(0)
    for start_s, end_s, kind in stretches:
        start, end = round((start_s - audio_delay_s) * rate_hz), round((end_s - audio_delay_s) * rate_hz)
        t = np.arange(end - start) / rate_hz
        if kind == "noise":
            sound[start:end] += (_STRETCH_LEVEL * rng.standard_normal(end - start)).astype(np.float32)
        else:  # A major: A4, C#5, E5
            sound[start:end] += sum(_STRETCH_LEVEL * np.sin(2 * np.pi * f * t) for f in (440.0, 554.37, 659.25))

    first_frame = round(max(-audio_delay_s, 0.0) * video_fps)
    with av.open(path, "w") as container:
        video = container.add_stream(_CONTAINER_VIDEO.get(suffix, "libx264"), rate=video_fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = [
            container.add_stream(codec, rate=rate_hz, layout=layout)
            for codec in audio_codecs or [_CONTAINER_AUDIO[suffix]]
        ]
        for i in range(round(duration_s * video_fps)):
            frame = av.VideoFrame.from_ndarray(draw_frame(i, {}, (64, 48)), format="rgb24")
            frame.pts, frame.time_base = first_frame + i, Fraction(1, video_fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        video_start_s = first_frame / video_fps  # on the file's clock
        garbled_file_s = None if garbled_s is None else (garbled_s[0] + video_start_s, garbled_s[1] + video_start_s)
        start = round(max(audio_delay_s, 0.0) * rate_hz)
        for i, stream in enumerate(audio):
            _encode_sound(container, stream, sound, start, rate_hz, layout, garbled_file_s if i == 0 else None, rng)
    return SpeechVideo(path, duration_s, utterances, tuple(stretches), rate_hz)


def _utterance(text: str, at_s: float) -> Utterance:
    sound = speak(text)
    voiced = np.flatnonzero(np.abs(sound) > _VOICED)
    return Utterance(
        text, at_s, (at_s + voiced[0] / ESPEAK_RATE_HZ, at_s + (voiced[-1] + 1) / ESPEAK_RATE_HZ), sound
    )


def _encode_sound(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    sound: np.ndarray,
    first_sample: int,
    rate_hz: int,
    layout: str,
    garbled_s: tuple[float, float] | None,  # on the file's clock
    rng: np.random.Generator,
) -> None:
    channels = av.AudioLayout(layout).nb_channels
    step = stream.codec_context.frame_size or 4096  # PCM takes any length
    planar = stream.codec_context.format.is_planar  # fltp for AAC and Opus; s16 (interleaved) for PCM
    packets = []
    for start in range(0, len(sound), step):
        piece = sound[start : start + step]  # [n]
        if planar:
            frame = av.AudioFrame.from_ndarray(np.repeat(piece[None], channels, axis=0), format="fltp", layout=layout)
        else:
            pcm = (np.clip(piece, -1, 1) * 32767).astype(np.int16)  # [n]
            frame = av.AudioFrame.from_ndarray(np.repeat(pcm, channels)[None], format="s16", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate_hz, first_sample + start, Fraction(1, rate_hz)
        packets += stream.encode(frame)
    packets += stream.encode(None)
    for packet in packets:
        at_s = None if packet.pts is None else packet.pts * packet.time_base
        if garbled_s is not None and at_s is not None and garbled_s[0] <= at_s < garbled_s[1]:
            packet.update(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
        container.mux(packet)


def unknown_codec_copy(src: str | os.PathLike, dst: str | os.PathLike, codec_id: bytes = b"A_OPUS") -> str:
    """A copy of the Matroska/WebM file `src` whose audio tracks with Matroska codec id `codec_id` (A_OPUS,
    A_AAC, A_PCM/INT/LIT …) name a codec FFmpeg does not know."""
    data = Path(src).read_bytes()
    if codec_id not in data:
        raise ValueError(f"{src} has no track with codec id {codec_id!r}")
    Path(dst).write_bytes(data.replace(codec_id, b"A_" + b"Q" * (len(codec_id) - 2)))
    return str(dst)


# ---- subtitles -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str  # what a reader must give: markup dropped, lines joined by "\n"
    srt: str  # the cue as SubRip writes it (mov_text is made from it)
    ass: str  # as an ASS Dialogue's text
    vtt: str  # as WebVTT writes it


CUES = (
    Cue(0.5, 1.8, "Hello there", "Hello <i>there</i>", r"Hello {\i1}there{\i0}", "Hello <i>there</i>"),
    Cue(2.0, 3.25, "First line\nSecond line", "First line\nSecond line", r"First line\NSecond line",
        "First line\nSecond line"),
    Cue(3.5, 4.0, "红色方块 & more", "红色方块 & more", "红色方块 & more", "红色方块 &amp; more"),
    Cue(4.2, 4.8, "Red word", '<font color="#ff0000">Red</font> word', r"{\c&H0000FF&}Red{\r} word",
        "<v Ann><b>Red</b> word"),
)  # fmt: skip
# ffmpeg's name of each subtitle codec, the file it reads it from, and the containers it goes in
_SUBTITLE_FORMATS = {"mov_text": ".srt", "srt": ".srt", "ass": ".ass", "webvtt": ".vtt"}


def write_subtitled_video(
    path: str | os.PathLike,
    tracks: Sequence[tuple[str, str | None]] = (("srt", "eng"),),
    cues: Sequence[Cue] = CUES,
    duration_s: float = 5.0,
    sound: bool = True,
    start_s: float = 0.0,
) -> str:
    """A `duration_s` test-pattern video with subtitle tracks ((codec, language tag): codec "mov_text" for
    MP4/MOV, "srt" or "ass" for MKV, "webvtt" for WebM), each holding `cues`, made by ffmpeg. sound: an AAC
    (Opus in WebM) tone too; in MP4 and MKV its priming delays the video's first frame by ~23 ms, and the cues
    by as much. start_s: every stream starts that much later on the file's clock (ffmpeg's -output_ts_offset),
    as in a cut from a longer file."""
    path = str(path)
    webm = Path(path).suffix.lower() == ".webm"
    with tempfile.TemporaryDirectory() as folder:
        inputs = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={duration_s}"]
        if sound:
            inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration_s}"]
        for i, (codec, _) in enumerate(tracks):
            cue_file = os.path.join(folder, f"{i}{_SUBTITLE_FORMATS[codec]}")
            Path(cue_file).write_text(_cue_file(codec, cues), encoding="utf-8")
            inputs += ["-i", cue_file]
        first_subtitle = 2 if sound else 1
        options = ["-map", "0"] + (["-map", "1"] if sound else [])
        for i, (codec, language) in enumerate(tracks):
            options += ["-map", str(first_subtitle + i), f"-c:s:{i}", codec]
            if language:
                options += [f"-metadata:s:s:{i}", f"language={language}"]
        options += ["-c:v", "libvpx" if webm else "libx264", "-c:a", "libopus" if webm else "aac"]
        options += ["-output_ts_offset", str(start_s)]
        _ffmpeg([*inputs, *options, path])
    return path


def write_empty_subtitle_track(path: str | os.PathLike, duration_s: float = 5.0, source: str | None = None) -> str:
    """An MKV video with an SRT subtitle track that holds no cue (its one cue lies past the video's end): the
    streams of `source` copied, or a test pattern."""
    path = str(path)
    with tempfile.TemporaryDirectory() as folder:
        late = os.path.join(folder, "late.srt")
        Path(late).write_text("1\n01:00:00,000 --> 01:00:01,000\nnever shown\n", encoding="utf-8")
        if source is None:
            streams = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={duration_s}"]
            codecs = ["-c:v", "libx264"]
        else:
            streams, codecs = ["-i", source], ["-c:v", "copy", "-c:a", "copy"]
        _ffmpeg([*streams, "-i", late, "-map", "0", "-map", "1", *codecs, "-c:s", "srt", "-t", str(duration_s), path])
    return path


def _cue_file(codec: str, cues: Sequence[Cue]) -> str:
    if codec in ("srt", "mov_text"):
        return "".join(
            f"{i}\n{_stamp(c.start_s, ',')} --> {_stamp(c.end_s, ',')}\n{c.srt}\n\n" for i, c in enumerate(cues, 1)
        )
    if codec == "webvtt":
        return "WEBVTT\n\n" + "".join(f"{_stamp(c.start_s, '.')} --> {_stamp(c.end_s, '.')}\n{c.vtt}\n\n" for c in cues)
    events = "".join(
        f"Dialogue: 0,{_stamp(c.start_s, '.', True)},{_stamp(c.end_s, '.', True)},Default,,0,0,0,,{c.ass}\n"
        for c in cues
    )
    return (
        "[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding\n"
        "Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n" + events
    )  # fmt: skip


def _stamp(seconds: float, separator: str, centis: bool = False) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    if centis:  # ASS: H:MM:SS.cc
        return f"{hours}:{minutes:02d}:{secs:02d}{separator}{millis // 10:02d}"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _ffmpeg(arguments: list[str]) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *arguments], check=True)


# ---- timing oracle ---------------------------------------------------------------------------------------


def align_words(audio: np.ndarray, text: str, rate_hz: int = 16_000) -> list[tuple[str, float]]:
    """Where each word of `text` starts in `audio` ([n] float32 mono at `rate_hz`), seconds from its first sample:
    pocketsphinx's forced alignment with its English model (10 ms steps). Words as the dictionary spells them,
    alternative pronunciations' marks ("the(2)") dropped; pauses left out."""
    from pocketsphinx import Decoder

    if rate_hz != 16_000:
        audio = resample(audio, rate_hz, 16_000)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)  # [n]
    decoder = Decoder(samprate=16_000, bestpath=False, loglevel="FATAL")
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:  # no path through the text's words: pocketsphinx's beam lost it
        raise ValueError(f"pocketsphinx cannot align {text!r} to this sound")
    return [
        (segment.word.split("(")[0], segment.start_frame / 100)
        for segment in decoder.seg()
        if not segment.word.startswith(("<", "["))
    ]


# ---- a recognizer --------------------------------------------------------------------------------------


class EchoRecognizer:
    """A `Recognizer` that hears no words: for each call it says "window N" with the window's place, keeps the
    call (`calls`: (offset_s, audio [S] float32)), and places its times as a careless recognizer would: the
    segment from 1 s before the window to 5 s after it, a word before it, one that ends before it starts, and one
    after it. `lock`, when given, must be held during every call."""

    def __init__(self, name: str = "echo", language: str | None = "en", lock: object | None = None):
        self.name = name
        self.language = language
        self.lock = lock
        self.calls: list[tuple[float, np.ndarray]] = []

    def recognize(self, audio: np.ndarray, offset_s: float) -> tuple[tuple[Segment, ...], str | None]:
        if self.lock is not None and not self.lock.locked():
            raise AssertionError("the recognizer was called without the model lock")
        self.calls.append((offset_s, audio))
        end_s = offset_s + len(audio) / SAMPLE_RATE_HZ
        words = (
            Word(offset_s - 0.5, offset_s + 0.2, "early"),
            Word(offset_s + 0.4, offset_s + 0.3, "backwards"),
            Word(end_s + 1.0, end_s + 2.0, "late"),
        )
        return (Segment(offset_s - 1.0, end_s + 5.0, f" window {len(self.calls)} ", words),), self.language
