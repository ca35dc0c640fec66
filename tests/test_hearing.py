"""The whole way from a video's sound to the model's prompt, on both families: espeak-ng sentences at known times,
silero-vad, a tiny random Whisper whose words are scripted (its real `generate`), the session's transcript, and the
timed lines the model reads after the video."""

from __future__ import annotations

import re

import pytest

from vidchat.recognize import WhisperRecognizer
from vidchat.session import ChatSession, SessionSettings, TranscriptCache
from vidchat.testing.speech import write_speech_video
from vidchat.testing.whisper import build_whisper, scripted
from vidchat.video import SamplingConfig
from vidchat.vlm import VideoLLM

SENTENCES = ((1.0, "Preheat the oven to two hundred degrees."), (7.0, "Now stir the sauce."))
SAID = ["The oven goes to 220 degrees.", "Stir the sauce now."]  # what the scripted Whisper hears in each window
SETTINGS = SessionSettings(sampling=SamplingConfig(fps=2.0, max_frames=8), max_new_tokens=4, ground_objects=False)


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    return write_speech_video(tmp_path_factory.mktemp("hearing") / "talk.mp4", SENTENCES, 10.0)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> WhisperRecognizer:
    return WhisperRecognizer.from_pretrained(str(build_whisper(tmp_path_factory.mktemp("whisper"))))


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_what_is_said_reaches_the_model_at_its_times(family, tiny_model_dirs, talk, whisper):
    script = scripted(whisper, [f"<|0.00|> {SAID[0]}<|1.50|>", f"<|0.00|> {SAID[1]}<|1.00|>"])
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs[family]))
    session = ChatSession.open(talk.path, llm, SETTINGS)
    cache = TranscriptCache()
    transcript = session.transcribe(whisper, cache=cache)
    assert script.window + 1 == 2  # one window per spoken sentence: the silence between them is never heard
    assert transcript.source == "speech" and [s.text for s in transcript.segments] == SAID
    for segment, utterance in zip(transcript.segments, talk.utterances):
        # each line starts where its window opens: where the sentence is voiced, less the voice detector's margin
        assert utterance.voice_s[0] - 0.5 <= segment.start_s <= utterance.voice_s[0]
        assert [w.text for w in segment.words] == segment.text.split()
        assert segment.start_s <= segment.words[0].start_s and segment.words[-1].end_s <= segment.end_s
    assert session.transcribe(whisper, cache=cache) is transcript and script.window + 1 == 2  # cached by content

    *_, answer = session.ask("When is the oven temperature given?")
    assert answer.transcript_lines == 2 and not answer.transcript_pending
    prompt = llm.prompt(session.tokens, [], answer.prompt, llm.transcript_text(transcript, 2048).text)
    text = llm.processor.tokenizer.decode(prompt.input_ids[0])
    first, second = transcript.segments
    if family == "qwen3_vl":
        expected = [f"<{first.start_s:.1f} seconds> {SAID[0]}", f"<{second.start_s:.1f} seconds> {SAID[1]}"]
    else:
        expected = [f"{s.start_s:.1f} - {s.end_s:.1f} seconds: {said}" for s, said in zip(transcript.segments, SAID)]
    assert [line for line in text.splitlines() if re.search("|".join(map(re.escape, SAID)), line)] == expected
    # after the video, before the question
    assert text.index("<|vision_end|>") < text.index(SAID[0]) < text.index("When is the oven temperature given?")
