"""vidchat.recognize: Whisper's real `generate` on a tiny random Whisper saved and loaded offline, its tokens
scripted window by window (vidchat.testing.whisper), so that lines, times and languages are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, WhisperForConditionalGeneration

import vidchat.recognize
from vidchat.errors import ModelError, ModelNotFoundError
from vidchat.recognize import (
    DEFAULT_ASR_CPU,
    DEFAULT_ASR_GPU,
    WhisperRecognizer,
    default_asr,
    long_form_blocks,
)
from vidchat.speech import SAMPLE_RATE_HZ, Segment, Word, tidy_segments
from vidchat.testing.whisper import (
    build_tokenizer,
    build_whisper,
    model_config,
    prefer_language,
    scripted,
    whisper_config,
)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return build_whisper(tmp_path_factory.mktemp("whisper"))


@pytest.fixture
def recognizer(whisper_dir) -> WhisperRecognizer:
    return WhisperRecognizer.from_pretrained(str(whisper_dir))


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Quiet noise: what it says does not matter, the tokens are scripted."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE_HZ)) * 0.05).astype(np.float32)


def lines(segments) -> list[tuple[float, float, str]]:
    return [(round(s.start_s, 3), round(s.end_s, 3), s.text) for s in segments]


def words(segment: Segment) -> list[str]:
    return [w.text for w in segment.words]


def assert_times_in_order(segments, start_s: float, end_s: float) -> None:
    """Lines in [start_s, end_s] one after another; each line's words inside it, one after another."""
    floor = start_s
    for segment in segments:
        assert floor <= segment.start_s <= segment.end_s <= end_s, segment
        word_floor = segment.start_s
        for word in segment.words:
            assert word_floor <= word.start_s <= word.end_s <= segment.end_s, (word, segment)
            word_floor = word.end_s
        floor = segment.end_s


def test_the_tiny_model_loads_through_the_real_path(recognizer, whisper_dir):
    assert recognizer.model_id == str(whisper_dir)
    assert recognizer.dtype == torch.float32 and recognizer.device.type == "cpu"
    assert recognizer.multilingual and recognizer.word_times
    assert recognizer.model.config.d_model == 64


def test_lines_and_their_times_from_scripted_tokens_on_the_video_clock(recognizer):
    scripted(recognizer, ["<|0.00|> Hello there.<|1.50|><|2.00|> Second line.<|3.40|>"])
    segments, _ = recognizer.recognize(noise(10.0), offset_s=5.0)
    assert lines(segments) == [(5.0, 6.5, "Hello there."), (7.0, 8.4, "Second line.")]
    assert [words(s) for s in segments] == [["Hello", "there."], ["Second", "line."]]


def test_a_window_of_one_line_starts_at_its_timestamp_not_at_the_window(recognizer):
    # transformers starts a window decoded as a single line (no two timestamps in a row) at the window's start
    scripted(recognizer, ["<|2.40|> Late start.<|4.00|>"])
    segments, _ = recognizer.recognize(noise(8.0), offset_s=1.0)
    assert lines(segments) == [(3.4, 5.0, "Late start.")]


def test_half_precision_as_on_a_gpu_gives_the_same_lines(recognizer):
    half = WhisperRecognizer(recognizer.model.to(torch.float16), recognizer.processor, recognizer.model_id)
    scripted(half, ["<|0.00|> Hello there.<|1.50|>", "<|1.00|> Again.<|2.00|>"])
    segments, _ = half.recognize(noise(40.0), offset_s=2.0)
    assert lines(segments) == [(2.0, 3.5, "Hello there."), (33.0, 34.0, "Again.")]
    assert [len(s.words) for s in segments] == [2, 1]
    assert_times_in_order(segments, 2.0, 42.0)


def test_audio_over_30_s_is_decoded_window_by_window_with_each_windows_offset(recognizer):
    processor = scripted(
        recognizer,
        [
            # a line, then one cut off by the window's end: the next window starts at the last full line's end (10 s)
            "<|0.00|> One.<|10.00|><|12.00|> Cut off",
            # a single timestamp at the end: nothing more in this window, the next one starts 30 s later (40 s)
            "<|1.00|> Two.<|3.00|>",
            "<|0.50|> Three.<|1.50|><|2.00|> Four.<|4.00|>",
        ],
    )
    segments, _ = recognizer.recognize(noise(70.0), offset_s=100.0)
    assert processor.window == 2  # three windows: 0-30, 10-40, 40-70
    assert lines(segments) == [
        (100.0, 110.0, "One."),
        (111.0, 113.0, "Two."),
        (140.5, 141.5, "Three."),
        (142.0, 144.0, "Four."),
    ]
    assert_times_in_order(segments, 100.0, 170.0)


def test_long_audio_is_decoded_in_blocks_cut_in_a_pause(whisper_dir):
    recognizer = WhisperRecognizer(*_loaded(whisper_dir), long_form_block_s=40.0)
    audio = noise(70.0)
    audio[int(37.3 * SAMPLE_RATE_HZ) : int(37.4 * SAMPLE_RATE_HZ)] = 0.0  # a pause in the last 5 s of the first block
    (_, cut), (cut_again, end) = long_form_blocks(audio, int(40.0 * SAMPLE_RATE_HZ))
    assert 37.3 <= cut / SAMPLE_RATE_HZ <= 37.4 and cut_again == cut and end == audio.size

    scripted(recognizer, lambda window: f"<|0.50|> Window {window}.<|1.00|>")
    segments, _ = recognizer.recognize(audio, offset_s=0.0)
    # blocks [0, cut) and [cut, 70): each a window at its start and one 30 s later
    starts = [0.0, 30.0, cut / SAMPLE_RATE_HZ, cut / SAMPLE_RATE_HZ + 30.0]
    assert [s.text for s in segments] == [f"Window {k}." for k in range(4)]
    assert [s.start_s for s in segments] == pytest.approx([t + 0.5 for t in starts])
    assert [s.end_s for s in segments] == pytest.approx([t + 1.0 for t in starts])


def _loaded(folder):
    loaded = WhisperRecognizer.from_pretrained(str(folder))
    return loaded.model, loaded.processor, loaded.model_id


def test_every_word_has_times_clamped_into_the_audio_and_in_order(recognizer, monkeypatch):
    # Random weights align words anywhere (zero-length words, times past the end); the script also puts a
    # line past the 40-s clip's end.
    unclamped = []
    clamp = vidchat.recognize.tidy_segments
    monkeypatch.setattr(
        vidchat.recognize, "tidy_segments", lambda found, *span: clamp(unclamped.extend(found) or found, *span)
    )
    scripted(
        recognizer,
        [
            "<|0.00|> The quick brown fox,<|2.00|><|2.50|> jumps over the lazy dog.<|6.00|>",
            "<|3.00|> Late words that run past the end.<|29.00|>",
        ],
    )
    segments, _ = recognizer.recognize(noise(40.0, seed=1), offset_s=12.0)
    assert [words(s) for s in segments] == [
        ["The", "quick", "brown", "fox,"],
        ["jumps", "over", "the", "lazy", "dog."],
        ["Late", "words", "that", "run", "past", "the", "end."],
    ]
    assert segments[2].start_s == pytest.approx(12.0 + 30.0 + 3.0)
    assert segments[2].end_s == 12.0 + 40.0  # 30 + 29 s is past the audio: clamped to its end
    assert_times_in_order(segments, 12.0, 52.0)
    # what the alignment gave was out of order or outside its line, so the clamping did the work above
    with pytest.raises(AssertionError):
        assert_times_in_order(unclamped, 12.0, 52.0)


def test_a_checkpoint_without_alignment_heads_gives_lines_without_words(whisper_dir, tmp_path):
    for path in whisper_dir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    config = json.loads((whisper_dir / "generation_config.json").read_text())
    del config["alignment_heads"]
    (tmp_path / "generation_config.json").write_text(json.dumps(config))
    recognizer = WhisperRecognizer.from_pretrained(str(tmp_path))
    scripted(recognizer, ["<|0.00|> No words here.<|2.00|>"])
    segments, _ = recognizer.recognize(noise(4.0), offset_s=1.0)
    assert lines(segments) == [(1.0, 3.0, "No words here.")] and segments[0].words == ()


def test_the_detected_language_is_returned_as_an_iso_code(recognizer):
    prefer_language(recognizer.model, recognizer.processor.tokenizer, "zh")
    scripted(recognizer, ["<|0.00|> 你好，世界。<|2.00|>"])
    segments, language = recognizer.recognize(noise(5.0), offset_s=0.0)
    assert language == "zh"
    # Chinese is written without spaces: characters are words, punctuation joins the word before it
    assert segments[0].text == "你好，世界。"
    assert "".join(words(segments[0])) == "你好，世界。"
    assert len(segments[0].words) >= 2 and not any(w.text[0] in "，。" for w in segments[0].words)
    assert_times_in_order(segments, 0.0, 5.0)


def test_a_language_given_is_used_instead_of_detection(recognizer):
    prefer_language(recognizer.model, recognizer.processor.tokenizer, "zh")
    recognizer.language = "de"
    processor = scripted(recognizer, ["<|0.00|> Guten Tag.<|1.00|>"])
    segments, language = recognizer.recognize(noise(3.0), offset_s=0.0)
    assert language == "de" and lines(segments) == [(0.0, 1.0, "Guten Tag.")]
    prompt = recognizer.processor.tokenizer.convert_ids_to_tokens(processor.prompts[0])
    assert prompt == ["<|startoftranscript|>", "<|de|>", "<|transcribe|>"]


def test_silence_of_no_text_gives_no_lines(recognizer):
    scripted(recognizer, ["<|0.00|><|5.00|>", ""])
    segments, _ = recognizer.recognize(noise(40.0), offset_s=0.0)
    assert segments == ()
    assert recognizer.recognize(np.zeros(0, np.float32), offset_s=3.0) == ((), None)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-50, 150, allow_nan=False),
            st.floats(-50, 150, allow_nan=False),
            st.lists(st.tuples(st.floats(-50, 150, allow_nan=False), st.floats(-50, 150, allow_nan=False)), max_size=6),
        ),
        max_size=6,
    )
)
def test_clamping_keeps_any_times_inside_the_span_and_in_order(raw):
    segments = [
        Segment(start, end, "text", tuple(Word(ws, we, "w") for ws, we in found_words))
        for start, end, found_words in raw
    ]
    clamped = tidy_segments(segments, 10.0, 40.0)
    assert len(clamped) == len(segments) and [len(s.words) for s in clamped] == [len(s.words) for s in segments]
    assert_times_in_order(clamped, 10.0, 40.0)


def test_a_folder_that_is_not_whisper_is_refused(tmp_path):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path
    )
    with pytest.raises(ModelError, match="not Whisper"):
        WhisperRecognizer.from_pretrained(str(tmp_path))


def test_a_whisper_folder_without_weights_is_a_model_error(whisper_dir, tmp_path):
    (tmp_path / "config.json").write_text((whisper_dir / "config.json").read_text())
    with pytest.raises(ModelError, match="could not be loaded"):
        WhisperRecognizer.from_pretrained(str(tmp_path))


def test_a_missing_model_says_how_to_download_it():
    with pytest.raises(ModelNotFoundError) as error:
        WhisperRecognizer.from_pretrained("vidchat-test/no-such-whisper")
    assert "`python -m vidchat download vidchat-test/no-such-whisper`" in str(error.value)


def test_the_default_follows_the_machine():
    assert default_asr() == (DEFAULT_ASR_GPU if torch.cuda.is_available() else DEFAULT_ASR_CPU)
    assert DEFAULT_ASR_CPU == "openai/whisper-small"


@pytest.mark.parametrize(
    "name, parameters, vocabulary, transcribe, first_timestamp",
    [
        ("openai/whisper-small", 241_734_912, 51865, 50359, 50364),
        ("openai/whisper-large-v3-turbo", 808_878_080, 51866, 50360, 50365),
    ],
)
def test_real_sizes_for_benches_match_the_released_checkpoints(
    name, parameters, vocabulary, transcribe, first_timestamp
):
    size = whisper_config(name)
    tokenizer = build_tokenizer(size)
    ids = tokenizer.convert_tokens_to_ids
    assert len(tokenizer) == vocabulary
    assert [ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|en|>")] == [50257, 50258, 50259]
    assert (ids("<|transcribe|>"), ids("<|0.00|>")) == (transcribe, first_timestamp)
    with torch.device("meta"):  # counted, not allocated
        model = WhisperForConditionalGeneration(model_config(tokenizer, size))
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_the_saved_generation_config_has_whispers_fields(whisper_dir):
    saved = json.loads((whisper_dir / "generation_config.json").read_text())
    assert {"no_timestamps_token_id", "lang_to_id", "task_to_id", "is_multilingual", "alignment_heads"} <= set(saved)
