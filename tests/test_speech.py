"""The speech stage on real files: espeak-ng sentences at known times in AAC/MP4 and Opus/WebM (and PCM/MKV at
odd rates, 5.1, several tracks, damaged packets, a codec FFmpeg does not know), subtitle tracks made by ffmpeg,
silero-vad's real model, pocketsphinx as the timing oracle; the recognizer is `EchoRecognizer`."""

from __future__ import annotations

import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from vidchat.speech import (
    SAMPLE_RATE_HZ,
    Segment,
    SpeechConfig,
    SubtitleTrack,
    Transcript,
    TranscriptCache,
    Word,
    audio_chunks,
    cue_text,
    sound_stream,
    speech_regions,
    speech_windows,
    subtitle_tracks,
    tidy_segments,
    transcribe,
    window_audio,
)
from vidchat.testing.speech import (
    CUES,
    ESPEAK_RATE_HZ,
    EchoRecognizer,
    SpeechVideo,
    align_words,
    resample,
    unknown_codec_copy,
    write_empty_subtitle_track,
    write_speech_video,
    write_subtitled_video,
)
from vidchat.testing.videos import write_video
from vidchat.video import first_frame_time_s

ROOT = Path(__file__).resolve().parent.parent

SENTENCES = (
    (2.0, "the oven should be at two hundred degrees"),
    (12.0, "stir the soup slowly for five minutes"),
    (22.5, "now we add a little salt"),
)
STRETCHES = ((6.0, 10.0, "noise"), (16.5, 20.5, "chord"))
DURATION_S = 28.0
VAD_TOLERANCE_S = 0.3
WORD_TOLERANCE_S = 0.15
SHORT = ((1.0, "the oven should be at two hundred degrees"), (7.0, "stir the soup slowly for five minutes"))


@pytest.fixture(scope="module", params=[".mp4", ".webm"], ids=["aac-mp4", "opus-webm"])
def spoken(request, tmp_path_factory) -> SpeechVideo:
    """28 s: three sentences in silence, 4 s of white noise and 4 s of a chord between them."""
    folder = tmp_path_factory.mktemp("speech")
    return write_speech_video(folder / f"speech{request.param}", SENTENCES, DURATION_S, stretches=STRETCHES)


def sound_of(path: str, chunk_s: float = 30.0, duration_s: float | None = None) -> list[np.ndarray]:
    return list(audio_chunks(path, sound_stream(path), first_frame_time_s(path), duration_s, chunk_s))


def assert_found(regions: tuple[tuple[float, float], ...], video: SpeechVideo) -> None:
    """One region per utterance, each within VAD_TOLERANCE_S of where it is voiced."""
    assert len(regions) == len(video.utterances), regions
    for (start_s, end_s), utterance in zip(regions, video.utterances):
        assert start_s == pytest.approx(utterance.voice_s[0], abs=VAD_TOLERANCE_S)
        assert end_s == pytest.approx(utterance.voice_s[1], abs=VAD_TOLERANCE_S)


# ---- the sound on the video's clock ----------------------------------------------------------------------


def test_the_sound_is_16k_mono_float32_in_bounded_pieces(spoken):
    chunks = sound_of(spoken.path, chunk_s=5.0)
    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in chunks)
    # Pieces of 5 s, give or take the last frame (at most 1024 samples at 48 kHz, 342 at 16 kHz).
    assert all(5 * SAMPLE_RATE_HZ <= len(chunk) <= 5 * SAMPLE_RATE_HZ + 400 for chunk in chunks[:-1])
    assert sum(map(len, chunks)) == pytest.approx(DURATION_S * SAMPLE_RATE_HZ, abs=0.05 * SAMPLE_RATE_HZ)


def test_silero_finds_the_spoken_spans_and_not_the_noise_or_the_chord(spoken):
    assert_found(speech_regions(sound_of(spoken.path)), spoken)


def test_a_sentence_across_a_piece_border_is_one_region(spoken):
    # Borders every ~3 s fall inside the first sentence (2.0–4.1 s): the model's state crosses them.
    assert speech_regions(sound_of(spoken.path, chunk_s=3.0)) == speech_regions(sound_of(spoken.path))


def test_words_fall_where_they_were_placed(spoken):
    """Forced alignment of each sentence in the decoded sound (extraction, resampling, AAC priming or Opus
    pre-skip) against the same alignment of espeak's own output placed at the same time."""
    audio = np.concatenate(sound_of(spoken.path))  # [S] on the video clock
    margin = round(0.5 * SAMPLE_RATE_HZ)
    for utterance in spoken.utterances:
        voice = resample(utterance.sound, ESPEAK_RATE_HZ, SAMPLE_RATE_HZ)  # [n]
        quiet = np.zeros(margin, np.float32)
        placed = align_words(np.concatenate([quiet, voice, quiet]), utterance.text)
        first = round(utterance.at_s * SAMPLE_RATE_HZ) - margin
        heard = align_words(audio[first : first + len(voice) + 2 * margin], utterance.text)
        assert [word for word, _ in heard] == [word for word, _ in placed] == utterance.text.split()
        errors = [heard_s - placed_s for (_, heard_s), (_, placed_s) in zip(heard, placed)]
        assert max(map(abs, errors)) <= WORD_TOLERANCE_S, (utterance.text, errors)


@pytest.mark.parametrize("delay_s", [1.0, -0.6], ids=["sound-starts-late", "video-starts-late"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_sound_keeps_the_video_clock_when_the_streams_start_apart(tmp_path, suffix, delay_s):
    video = write_speech_video(tmp_path / f"apart{suffix}", SHORT[:1], 6.0, audio_delay_s=delay_s)
    assert first_frame_time_s(video.path) == pytest.approx(max(-delay_s, 0.0))
    audio = np.concatenate(sound_of(video.path))
    (utterance,) = video.utterances
    onset_s = np.flatnonzero(np.abs(audio) > 0.02)[0] / SAMPLE_RATE_HZ
    assert onset_s == pytest.approx(utterance.voice_s[0], abs=0.005)
    if delay_s > 0:  # silence until the sound starts (AAC's priming frame starts 21 ms early)
        assert not audio[: round((delay_s - 0.05) * SAMPLE_RATE_HZ)].any()


@pytest.mark.parametrize(
    "suffix, options",
    [
        (".mp4", {"rate_hz": 8_000}),
        (".mkv", {"rate_hz": 192_000}),
        (".mp4", {"layout": "5.1"}),
        (".mkv", {"audio_codecs": ["pcm_s16le"] * 8}),
        (".mp4", {"garbled_s": (3.5, 5.5)}),
    ],
    ids=["8kHz-aac", "192kHz-pcm", "5.1-aac", "8-tracks", "garbled-packets"],
)
def test_odd_sound_is_heard_on_the_video_clock(tmp_path, suffix, options):
    video = write_speech_video(tmp_path / f"odd{suffix}", SHORT, 10.0, **options)
    chunks = sound_of(video.path, duration_s=10.0)  # 8 kHz AAC's last frame (128 ms) overruns the video: cut
    assert 9.95 * SAMPLE_RATE_HZ <= sum(map(len, chunks)) <= 10.0 * SAMPLE_RATE_HZ
    assert_found(speech_regions(chunks), video)


def test_the_first_sound_track_that_decodes_is_heard(tmp_path):
    # FFmpeg's best stream is the first; none of its packets decodes.
    video = write_speech_video(tmp_path / "two.mp4", SHORT, 10.0, audio_codecs=["aac", "aac"], garbled_s=(-1.0, 11.0))
    assert sound_stream(video.path) == 2
    assert_found(speech_regions(sound_of(video.path)), video)


# ---- windows ---------------------------------------------------------------------------------------------


def test_nearby_regions_share_a_window_of_at_most_30_s():
    config = SpeechConfig(pad_s=0.2, max_window_s=30.0, max_gap_s=2.0)
    regions = (
        (0.1, 3.0), (4.0, 6.0), (9.0, 10.0), (10.5, 29.0), (29.5, 40.0), (41.0, 69.0), (69.1, 72.0), (89.0, 90.0)
    )  # fmt: skip
    windows = speech_windows(regions, 89.9, config)
    # Padded; merged across gaps up to 2 s while within 30 s; a window starts where the one before ends (69.2),
    # not inside it; the last ends with the sound (89.9).
    expected = [(0.0, 6.2), (8.8, 29.2), (29.3, 40.2), (40.8, 69.2), (69.2, 72.2), (88.8, 89.9)]
    np.testing.assert_allclose(np.array(windows), np.array(expected))


def test_window_audio_cuts_windows_across_piece_borders():
    audio = np.arange(10 * SAMPLE_RATE_HZ, dtype=np.float32)  # [S]: each sample its own index
    pieces = np.split(audio, [SAMPLE_RATE_HZ * 3, SAMPLE_RATE_HZ * 7 + 5])
    windows = ((0.5, 1.0), (2.5, 7.5), (9.0, 12.0))
    cut = list(window_audio(pieces, windows))
    expected = [audio[8_000:16_000], audio[40_000:120_000], audio[144_000:]]
    assert len(cut) == 3 and all(np.array_equal(a, b) for a, b in zip(cut, expected))


def test_the_recognizers_times_are_clamped_and_monotonic():
    segments = (
        Segment(-3.0, 4.0, " first ", (Word(-1.0, 0.5, "a"), Word(3.0, 2.0, "b"), Word(1.0, 9.0, "c"))),
        Segment(2.0, 1.0, "second", (Word(2.5, 2.6, "d"),)),
        Segment(5.0, 6.0, "  ", ()),
        Segment(11.0, 12.0, "third", (Word(11.0, 12.0, "e"),)),
    )
    tidy = tidy_segments(segments, 1.0, 10.0)
    assert [s.text for s in tidy] == ["first", "second", "third"]
    assert [(s.start_s, s.end_s) for s in tidy] == [(1.0, 4.0), (4.0, 4.0), (10.0, 10.0)]
    assert [(w.start_s, w.end_s) for w in tidy[0].words] == [(1.0, 1.0), (3.0, 3.0), (3.0, 4.0)]
    assert [(w.start_s, w.end_s) for w in tidy[1].words] == [(4.0, 4.0)]


# ---- transcribe ------------------------------------------------------------------------------------------


class ModelLock:
    """The app's one-model-at-a-time lock, counting how often it was taken."""

    def __init__(self):
        self._lock = threading.Lock()
        self.taken = 0

    def __enter__(self):
        self._lock.acquire()
        self.taken += 1

    def __exit__(self, *exc):
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


def test_only_the_speech_reaches_the_recognizer_on_the_video_clock(spoken):
    lock = ModelLock()
    recognizer = EchoRecognizer(lock=lock)
    progress: list[tuple[float, str]] = []
    transcript = transcribe(spoken.path, recognizer, lock=lock, progress=lambda f, m: progress.append((f, m)))

    assert transcript.source == "speech" and transcript.language == "en" and transcript.note == ""
    assert len(recognizer.calls) == lock.taken == len(spoken.utterances)  # the noise and the chord are not heard
    audio = np.concatenate(sound_of(spoken.path))
    for (offset_s, heard), utterance in zip(recognizer.calls, spoken.utterances):
        end_s = offset_s + len(heard) / SAMPLE_RATE_HZ
        assert offset_s <= utterance.voice_s[0] and utterance.voice_s[1] <= end_s <= offset_s + 30.0
        assert offset_s >= utterance.voice_s[0] - 1.0 and end_s <= utterance.voice_s[1] + 1.0
        first = round(offset_s * SAMPLE_RATE_HZ)
        assert np.array_equal(heard, audio[first : first + len(heard)])  # sample 0 of the window at offset_s

    # The echo's times overrun its window on both sides: they come back inside it, in order.
    assert [s.text for s in transcript.segments] == ["window 1", "window 2", "window 3"]
    for segment, (offset_s, heard) in zip(transcript.segments, recognizer.calls):
        assert (segment.start_s, segment.end_s) == (offset_s, offset_s + len(heard) / SAMPLE_RATE_HZ)
        starts = [w.start_s for w in segment.words]
        assert starts == sorted(starts)
        assert all(segment.start_s <= w.start_s <= w.end_s <= segment.end_s for w in segment.words)

    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0.0 <= fractions[0]


def test_silence_and_noise_alone_give_no_transcript(tmp_path):
    video = write_speech_video(tmp_path / "music.mp4", (), 12.0, stretches=((2.0, 6.0, "noise"), (7.0, 11.0, "chord")))
    recognizer = EchoRecognizer()
    assert speech_regions(sound_of(video.path)) == ()
    transcript = transcribe(video.path, recognizer)
    assert (transcript.source, transcript.segments) == ("none", ())
    assert transcript.note == "No speech was found in the sound."
    assert recognizer.calls == []


def test_a_video_without_sound_says_so(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", n_frames=20)
    transcript = transcribe(silent.path, EchoRecognizer())
    assert (transcript.source, transcript.segments, transcript.note) == ("none", (), "This video has no sound track.")


def test_sound_ffmpeg_cannot_decode_says_so(tmp_path):
    opus = write_speech_video(tmp_path / "opus.mkv", SHORT, 10.0, audio_codecs=["libopus"])
    unknown = unknown_codec_copy(opus.path, tmp_path / "unknown.mkv", b"A_OPUS")
    transcript = transcribe(unknown, EchoRecognizer())
    assert transcript.source == "none"
    assert transcript.note == "The sound (codec unknown to FFmpeg) cannot be decoded, so there is no transcript."
    damaged = write_speech_video(tmp_path / "damaged.mp4", SHORT, 10.0, garbled_s=(-1.0, 11.0))
    transcript = transcribe(damaged.path, EchoRecognizer())
    assert transcript.note == "The sound (codec aac) cannot be decoded, so there is no transcript."


def test_recognition_off_reads_no_sound(spoken):
    transcript = transcribe(spoken.path, None)
    assert transcript.source == "none"
    assert transcript.note == "The video has no subtitles, and speech recognition is off."


def test_the_cache_returns_the_same_transcript(spoken):
    cache = TranscriptCache(max_entries=2)
    recognizer = EchoRecognizer()
    first = transcribe(spoken.path, recognizer, content_hash="abc", cache=cache)
    calls = len(recognizer.calls)
    assert transcribe(spoken.path, recognizer, content_hash="abc", cache=cache) is first
    assert len(recognizer.calls) == calls  # not heard again
    other = transcribe(spoken.path, EchoRecognizer(name="other"), content_hash="abc", cache=cache)
    assert other is not first and len(cache) == 2
    transcribe(spoken.path, None, content_hash="abc", cache=cache)  # a third key: the least recently used goes
    assert cache.get(("abc", "echo", None)) is None and cache.get(("abc", "other", None)) is other


def test_the_json_shape():
    transcript = Transcript(
        "speech", "en", (Segment(1.0, 2.0, "hi there", (Word(1.0, 1.4, "hi"), Word(1.5, 2.0, "there"))),),
        (SubtitleTrack(3, "subrip", "eng"),), note="n",
    )  # fmt: skip
    assert transcript.to_json() == {
        "source": "speech",
        "language": "en",
        "segments": [
            {
                "start_s": 1.0,
                "end_s": 2.0,
                "text": "hi there",
                "words": [
                    {"start_s": 1.0, "end_s": 1.4, "text": "hi"},
                    {"start_s": 1.5, "end_s": 2.0, "text": "there"},
                ],
            }
        ],
        "tracks": [{"index": 3, "codec": "subrip", "language": "eng", "title": None}],
        "track": None,
        "note": "n",
    }


# ---- subtitles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_s", [0.0, 0.25], ids=["as-made", "cut-later"])
@pytest.mark.parametrize(
    "name, codec, read_as",
    [("movtext.mp4", "mov_text", "mov_text"), ("srt.mkv", "srt", "subrip"), ("ass.mkv", "ass", "ass"),
     ("vtt.webm", "webvtt", "webvtt")],
    ids=["mov_text-mp4", "srt-mkv", "ass-mkv", "webvtt-webm"],
)  # fmt: skip
def test_subtitle_tracks_are_read_exactly(tmp_path, name, codec, read_as, start_s):
    """Text and times, a two-line cue, italics, colour and voice markup, CJK; times from the video's first frame,
    which is not at 0: ffmpeg puts an MKV's at 0.023 s (the AAC priming), and a cut starts anywhere."""
    path = write_subtitled_video(tmp_path / name, tracks=[(codec, "eng")], start_s=start_s)
    video_start_s = first_frame_time_s(path)
    assert video_start_s >= start_s - 0.001
    if name.endswith(".mkv"):
        assert video_start_s > 0.01
    transcript = transcribe(path, EchoRecognizer())
    (track,) = transcript.tracks
    assert (track.codec, track.language) == (read_as, "eng")
    assert (transcript.source, transcript.track, transcript.language, transcript.note) == (
        "subtitles", track.index, "eng", ""
    )  # fmt: skip
    assert [s.text for s in transcript.segments] == [cue.text for cue in CUES]
    for segment, cue in zip(transcript.segments, CUES):
        assert (segment.start_s, segment.end_s) == pytest.approx((cue.start_s, cue.end_s), abs=1e-6)
        assert segment.words == ()


def test_the_track_setting_chooses_by_index_or_language(tmp_path):
    path = write_subtitled_video(tmp_path / "two.mkv", tracks=[("srt", "eng"), ("ass", "zho")])
    english, chinese = subtitle_tracks(path)
    assert (english.codec, english.language, chinese.codec, chinese.language) == ("subrip", "eng", "ass", "zho")
    assert transcribe(path, None).track == english.index
    assert transcribe(path, None, track="zho").track == chinese.index
    assert transcribe(path, None, track=chinese.index).track == chinese.index
    missing = transcribe(path, None, track="fra")
    assert missing.track == english.index
    assert missing.note == f"There is no subtitle track fra; track {english.index} (eng) is read instead."


def test_an_empty_subtitle_track_gives_no_lines_and_says_so(tmp_path):
    path = write_empty_subtitle_track(tmp_path / "empty.mkv")
    (track,) = subtitle_tracks(path)
    transcript = transcribe(path, None)
    assert (transcript.source, transcript.segments, transcript.tracks) == ("none", (), (track,))
    assert transcript.note == f"The subtitle track {track.index} holds no lines. Speech recognition is off."
    heard = transcribe(path, EchoRecognizer())  # the speech is the next source: this video has no sound
    assert heard.note == f"The subtitle track {track.index} holds no lines. This video has no sound track."


def test_an_empty_subtitle_track_gives_way_to_the_speech(tmp_path):
    video = write_speech_video(tmp_path / "speech.mp4", SHORT, 10.0)
    path = write_empty_subtitle_track(tmp_path / "empty-track.mkv", duration_s=10.0, source=video.path)
    transcript = transcribe(path, EchoRecognizer())
    assert transcript.source == "speech" and len(transcript.segments) == len(SHORT)
    assert transcript.note.startswith("The subtitle track 2 holds no lines.")


@pytest.mark.parametrize(
    "dialogue, text",
    [
        (r"Hello {\i1}there{\i0}", "Hello there"),
        ("First line\\NSecond line", "First line\nSecond line"),
        ("soft\\nbreak and\\hhard space", "soft\nbreak and hard space"),
        ('<font color="#ff0000">Red</font> <b>bold</b> <i>it</i>', "Red bold it"),
        ("<v Ann>Hi <00:01.500>there <c.loud>you</c>", "Hi there you"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("  \n  padded  \n\n", "padded"),
        (r"{\an8}红色方块", "红色方块"),
    ],
)
def test_markup_is_dropped_and_the_text_kept(dialogue, text):
    assert cue_text(dialogue) == text


def test_finding_speech_leaves_torch_s_thread_count_as_it_was(tmp_path):
    """silero_vad's import sets torch to one thread for the whole process: the video model and Whisper would crawl
    after the first transcript. It runs in a process of its own: the import happens once per process."""
    talk = write_speech_video(tmp_path / "talk.mp4", [(0.5, "Hello there.")], 3.0)
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from vidchat.speech import transcribe\n"
        f"transcript = transcribe({talk.path!r}, None)\n"  # subtitles only: no recognizer, no speech heard
        "from vidchat.speech import audio_chunks, sound_stream, speech_regions\n"
        f"regions = speech_regions(audio_chunks({talk.path!r}, sound_stream({talk.path!r}), 0.0))\n"
        "print(len(regions), torch.get_num_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]


def test_a_long_sound_is_heard_in_bounded_memory(tmp_path):
    """Twenty minutes of sound (its whole track is 77 MB as 16 kHz float32) are decoded, searched for speech and
    heard in 30-s pieces: numpy never holds much more than a few pieces at once."""
    sentences = [(60.0 * minute + 5.0, "Stir the sauce.") for minute in range(0, 20, 4)]
    talk = write_speech_video(tmp_path / "long.webm", sentences, 20 * 60.0, rate_hz=16_000, video_fps=1)
    recognizer = EchoRecognizer()
    tracemalloc.start()
    try:
        transcript = transcribe(talk.path, recognizer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [round(offset_s) for offset_s, _ in recognizer.calls] == [round(at_s) for at_s, _ in sentences]
    assert len(transcript.segments) == len(sentences)
    whole_track = 20 * 60 * SAMPLE_RATE_HZ * 4
    assert peak < whole_track / 4  # measured here: 8.5 MB
