"""The video-prefix KV cache: a follow-up runs only its new tokens against the cached system prompt and video.

Both families, on the tiny checkpoints, with a conversation history: scores and logits computed with the cached
prefix equal those computed on the whole prompt, and a prefix of another video is refused (and, forced in, gives
other numbers: the checks can fail).
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.test_vlm import make_clip
from vidchat.selector import attention_scores, select
from vidchat.session import ChatSession, SessionSettings
from vidchat.testing.videos import write_video
from vidchat.video import SamplingConfig
from vidchat.vlm import Turn, VideoLLM

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
