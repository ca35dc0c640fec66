"""The video-prefix KV cache: a follow-up runs only its new tokens against the cached system prompt and video.

Both families, on the tiny checkpoints, with a conversation history: scores and logits computed with the cached
prefix equal those computed on the whole prompt, and a prefix of another video is refused (and, forced in, gives
other numbers: the checks can fail).
"""

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.test_vlm import make_clip
from vidchat.selector import attention_scores, select
from vidchat.session import ChatSession, SessionSettings
from vidchat.speech import Segment, Transcript
from vidchat.testing.videos import write_video
from vidchat.video import SamplingConfig
from vidchat.vlm import Turn, VideoLLM, spread_order

HISTORY = [Turn("What is there?", "A red square and a blue circle."), Turn("And then?", "The square moves right.")]
QUESTION = "Where is the red square at the end?"


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def llm(request, tiny_model_dirs) -> VideoLLM:
    return VideoLLM.from_pretrained(str(tiny_model_dirs[request.param]))


@pytest.fixture(scope="module")
def tokens(llm):
    return llm.encode(make_clip(np.arange(12) * 0.5, size=(128, 96)))


@pytest.fixture(scope="module")
def other_tokens(llm):
    clip = make_clip(np.arange(12) * 0.5 + 0.25, size=(128, 96))
    return llm.encode(replace(clip, frames=np.ascontiguousarray(clip.frames[:, ::-1])))  # another video


@pytest.mark.parametrize("history", [[], HISTORY], ids=["first question", "follow-up"])
@pytest.mark.parametrize("layer", [0, 1])
def test_scores_with_the_cached_prefix_equal_scores_on_the_whole_prompt(llm, tokens, history, layer):
    prompt = llm.prompt(tokens, history, QUESTION)
    prefix = llm.video_prefix(tokens, layers=layer + 1)
    assert prefix.layers == layer + 1 and prefix.length < prompt.input_ids.shape[1]
    whole = attention_scores(llm, tokens, prompt, QUESTION, layer)
    cached = attention_scores(llm, tokens, prompt, QUESTION, layer, prefix)
    assert whole.max() > 0
    assert (cached - whole).abs().max().item() <= 1e-5


def test_the_prefix_is_the_same_for_every_question(llm, tokens):
    """The video comes first in the template: the prefix ends before any question or history."""
    one = llm.prompt(tokens, [], "What moves?")
    other = llm.prompt(tokens, HISTORY, QUESTION)
    assert one.prefix_length == other.prefix_length
    assert torch.equal(one.input_ids[:, : one.prefix_length], other.input_ids[:, : other.prefix_length])
    assert torch.equal(one.position_ids[:, :, : one.prefix_length], other.position_ids[:, :, : other.prefix_length])
    assert not one.visual_mask[one.prefix_length :].any()  # every video token is in the prefix


@pytest.mark.parametrize("history", [[], HISTORY], ids=["first question", "follow-up"])
def test_without_selection_a_follow_up_prefills_only_its_new_tokens_and_gets_the_same_logits(llm, tokens, history):
    prompt = llm.prompt(tokens, history, QUESTION)
    prefix = llm.video_prefix(tokens)  # every layer
    full = llm.prefill_logits(tokens, prompt)  # [L, V]
    new = llm.prefill_logits(tokens, prompt, prefix)  # [L - P, V]
    assert new.shape[0] == prompt.input_ids.shape[1] - prefix.length
    assert (new - full[prefix.length :]).abs().max().item() <= 1e-4
    answer = "".join(llm.generate(tokens, history, QUESTION, max_new_tokens=12))
    assert "".join(llm.generate(tokens, history, QUESTION, max_new_tokens=12, prefix=prefix)) == answer


def test_a_prefix_of_another_video_is_refused_and_would_give_other_numbers(llm, tokens, other_tokens):
    prompt = llm.prompt(tokens, HISTORY, QUESTION)
    wrong = llm.video_prefix(other_tokens)
    with pytest.raises(ValueError, match="computed for"):
        llm.prefill_logits(tokens, prompt, wrong)
    with pytest.raises(ValueError, match="computed for"):
        attention_scores(llm, tokens, prompt, QUESTION, 1, wrong)
    with pytest.raises(ValueError, match="layers"):  # nor one that lacks the layers asked for
        attention_scores(llm, tokens, prompt, QUESTION, 1, llm.video_prefix(tokens, layers=1))
    forced = replace(wrong, source=tokens.source)  # a cache keyed wrongly
    full = llm.prefill_logits(tokens, prompt)
    assert (llm.prefill_logits(tokens, prompt, forced) - full[forced.length :]).abs().max().item() > 1e-3
    whole = attention_scores(llm, tokens, prompt, QUESTION, 1)
    assert (attention_scores(llm, tokens, prompt, QUESTION, 1, forced) - whole).abs().max().item() > 1e-4


def test_the_cached_kept_tokens_path_is_exact_when_every_token_is_kept(llm, tokens):
    """kept_tokens="cached" reads the kept tokens' KV from the prefix, computed with every token present: with
    all of them kept it is the full prompt; with fewer it is the approximation the setting names."""
    everything = torch.arange(len(tokens.embeddings))
    prefix = llm.video_prefix(tokens)
    answer = "".join(llm.generate(tokens, HISTORY, QUESTION, max_new_tokens=12))
    assert "".join(llm.generate(tokens, HISTORY, QUESTION, 12, everything, prefix)) == answer
    some = everything[::3]
    assert "".join(llm.generate(tokens, HISTORY, QUESTION, 12, some, prefix))  # runs on a real selection


# ---- in the session: cached per video, counted, dropped, rebuilt -------------------------------------------------


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("prefix") / "shapes.mp4", n_frames=30, fps=10.0, size=(160, 120))


def test_a_session_caches_the_prefix_for_its_follow_ups_and_rebuilds_it_when_dropped(llm, video):
    settings = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=6, ground_objects=False)
    session = ChatSession.open(video.path, llm, settings)
    scoring_layers = settings.selector.scoring_layer_of(llm) + 1
    list(session.ask("What moves?"))
    prefix = session._prefix
    assert prefix is not None and prefix.layers == scoring_layers and prefix.source == session.tokens.source
    assert session.prefix_bytes == prefix.nbytes > 0 and session.cache_bytes >= prefix.nbytes
    # the follow-up's selection with the cached prefix is the one computed on the whole prompt
    *_, answer = session.ask("And the circle?")
    assert session._prefix is prefix  # used again, not recomputed
    expected = select(llm, session.tokens, session.history[:1], "And the circle?", settings.selector)
    assert torch.equal(answer.selection.keep_indices, expected.keep_indices)

    session.set_selector(None)  # every token: the prefix grows to every layer, and answers read from it
    *_, answer = session.ask("What colour is it?")
    assert session._prefix.layers == llm.model.config.text_config.num_hidden_layers
    history = session.history[:-1]
    assert answer.text == "".join(llm.generate(session.tokens, history, "What colour is it?", 6))

    held = session.prefix_bytes
    assert session.drop_caches() >= held > 0  # memory pressure
    assert session.prefix_bytes == 0
    *_, again = session.ask("And now?")  # rebuilt, never lost
    assert session.prefix_bytes == held
    assert again.text == "".join(llm.generate(session.tokens, session.history[:-1], "And now?", 6))
    session.close()
    assert session._prefix is None and session.prefix_bytes == 0


def test_a_prefix_over_the_byte_bound_is_used_but_not_kept(llm, video):
    settings = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=4, ground_objects=False,
                               selector=None, max_prefix_bytes=1)
    session = ChatSession.open(video.path, llm, settings)
    *_, answer = session.ask("What moves?")
    assert answer.text and session.prefix_bytes == 0


# ---- the video's transcript: after the video, inside the prefix -------------------------------------------------

LINES = (
    (0.4, 1.6, "Preheat the oven to 220 degrees."),
    (2.0, 3.1, "Now the red square <|im_end|> moves."),  # the video's words may hold the template's markers
    (3.5, 4.9, "It lasts 5 seconds\nand then stops."),  # a two-line cue
)
TRANSCRIPT = Transcript(
    source="speech", language="en", segments=tuple(Segment(start, end, text) for start, end, text in LINES)
)


def test_the_transcript_is_written_in_each_family_s_own_time_format(llm):
    heard = llm.transcript_text(TRANSCRIPT, 2048)
    assert (heard.lines, heard.total) == (3, 3)
    lines = heard.text.strip().splitlines()
    if llm.family == "qwen3_vl":  # the <t seconds> of its frames
        assert lines[1:] == [
            "<0.4 seconds> Preheat the oven to 220 degrees.",
            "<2.0 seconds> Now the red square < |im_end|> moves.",
            "<3.5 seconds> It lasts 5 seconds and then stops.",
        ]
    else:  # its temporal answers: "64.0 - 72.0 seconds"
        assert lines[1:] == [
            "0.4 - 1.6 seconds: Preheat the oven to 220 degrees.",
            "2.0 - 3.1 seconds: Now the red square < |im_end|> moves.",
            "3.5 - 4.9 seconds: It lasts 5 seconds and then stops.",
        ]
    assert "speech" in lines[0] and heard.text.endswith("\n")
    im_end = llm.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end not in llm.processor.tokenizer(heard.text)["input_ids"]  # plain text, never a turn's end


def test_a_short_budget_keeps_lines_spread_over_the_whole_video_and_says_so(llm):
    many = Transcript("subtitles", "en", tuple(Segment(t, t + 1.0, f"Line number {t:.0f} is here.") for t in range(100)))
    full = llm.transcript_text(many, 100_000)
    assert (full.lines, full.total) == (100, 100)
    short = llm.transcript_text(many, 200)
    tokenizer = llm.processor.tokenizer
    assert 3 <= short.lines < 100 and len(tokenizer(short.text)["input_ids"]) <= 200
    kept = [float(t) for t in re.findall(r"^<?([0-9.]+)", short.text, re.MULTILINE)]
    assert kept == sorted(kept) and len(kept) == short.lines
    assert kept[0] == 0.0 and kept[-1] >= 75.0  # the end of the video too, not only its first lines
    assert np.diff(kept).max() <= 2 * 100 / short.lines  # evenly spread
    assert f"{short.lines} of the 100 lines fit" in short.text
    assert spread_order(5) == [0, 4, 2, 1, 3] and sorted(spread_order(37)) == list(range(37))


def test_the_transcript_sits_in_the_prefix_that_every_question_shares(llm, tokens):
    heard = llm.transcript_text(TRANSCRIPT, 2048).text
    bare = llm.prompt(tokens, [], "What moves?")
    one = llm.prompt(tokens, [], "What moves?", heard)
    other = llm.prompt(tokens, HISTORY, QUESTION, heard)
    grown = one.prefix_length - bare.prefix_length
    assert grown >= len(llm.processor.tokenizer(heard)["input_ids"])  # the transcript is inside the prefix
    assert one.prefix_length == other.prefix_length
    assert torch.equal(one.input_ids[:, : one.prefix_length], other.input_ids[:, : other.prefix_length])
    text = llm.processor.tokenizer.decode(one.input_ids[0, : one.prefix_length])
    assert text.endswith(heard) and "What moves?" not in text
    # the prefix's KV: a follow-up prefilled against it gets the logits of the whole prompt
    prefix = llm.video_prefix(tokens, transcript=heard)
    assert prefix.length == one.prefix_length
    full = llm.prefill_logits(tokens, other)
    assert (llm.prefill_logits(tokens, other, prefix) - full[prefix.length :]).abs().max().item() <= 1e-4
    answer = "".join(llm.generate(tokens, HISTORY, QUESTION, 8, transcript=heard))
    assert "".join(llm.generate(tokens, HISTORY, QUESTION, 8, prefix=prefix, transcript=heard)) == answer
    with pytest.raises(ValueError, match="another transcript"):  # a prefix without it is not used for it
        list(llm.generate(tokens, HISTORY, QUESTION, 8, prefix=llm.video_prefix(tokens), transcript=heard))
    with pytest.raises(ValueError, match="another transcript"):  # nor for the selector's scores
        attention_scores(llm, tokens, other, QUESTION, 0, llm.video_prefix(tokens, layers=1))


def test_a_session_reads_the_transcript_from_the_next_question_and_keeps_it_in_its_prefix(llm, video):
    settings = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=6, ground_objects=False)
    session = ChatSession.open(video.path, llm, settings)
    session.transcribing = True  # the transcript is being made: the first question is answered without it
    *_, first = session.ask("What moves?")
    assert first.transcript_pending and first.transcript_lines == 0
    assert session._prefix.transcript == ""
    session.transcribing, session.transcript = False, TRANSCRIPT
    *_, second = session.ask("When is the oven temperature given?")
    assert not second.transcript_pending and second.transcript_lines == 3
    prefix = session._prefix
    heard = llm.transcript_text(TRANSCRIPT, settings.transcript_tokens).text
    assert prefix.transcript == heard and prefix.length == llm.prompt(session.tokens, [], "", heard).prefix_length
    *_, third = session.ask("And then?")
    assert session._prefix is prefix and third.transcript_lines == 3  # the follow-up pays nothing for it again
    expected = select(llm, session.tokens, session.history[:2], "And then?", settings.selector, transcript=heard)
    assert torch.equal(third.selection.keep_indices, expected.keep_indices)
    document = session.to_json()
    assert document["transcript"]["segments"][2] == {
        "start_s": 3.5, "end_s": 4.9, "text": "It lasts 5 seconds\nand then stops.", "words": []
    }  # fmt: skip
    assert [turn["transcript_lines"] for turn in document["turns"]] == [0, 3, 3]
    fits = len(llm.processor.tokenizer(heard)["input_ids"])
    session.settings = replace(settings, transcript_tokens=fits - 1)
    *_, fourth = session.ask("And at the end?")  # a smaller budget applies from the next question
    assert fourth.transcript_lines < 3 and session._prefix.transcript != heard
