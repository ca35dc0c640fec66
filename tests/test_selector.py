"""The query-aware token selector on tiny checkpoints of both families."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText

from tests.test_vlm import VFR_TIMES, make_clip, reference_inputs
from vidchat.selector import (
    SelectorSettings,
    attention_scores,
    budget_bounds,
    duplicate_mask,
    question_span,
    select,
    whole_patches,
)
from vidchat.vlm import Turn, VideoLLM

FAMILIES = ["qwen3_vl", "qwen2_5_vl"]
QUESTION = "Where is the red square?"


@pytest.fixture(scope="module", params=FAMILIES)
def llm(request, tiny_model_dirs) -> VideoLLM:
    return VideoLLM.from_pretrained(str(tiny_model_dirs[request.param]))


def many_frames_clip():
    return make_clip(np.arange(16) * 0.5, size=(128, 96))


@pytest.mark.parametrize("history", [[], [Turn("What is there?", "A square.")]])
def test_kept_tokens_at_gathered_positions_equal_the_masked_full_prompt(llm, history):
    tokens = llm.encode(many_frames_clip())
    selection = select(llm, tokens, history, QUESTION, SelectorSettings(max_fraction=0.3, duplicate_cosine=1.1))
    assert 0 < len(selection.keep_indices) < len(tokens.embeddings)
    full = llm.prompt(tokens, history, QUESTION)
    kept, masked = full.keep(selection.keep_indices), full.mask(selection.keep_indices)
    assert kept.input_ids.shape[1] == full.input_ids.shape[1] - len(tokens.embeddings) + len(selection.keep_indices)
    remaining = masked.attention_mask[0].bool()  # the positions the masked reference attends to
    kept_logits = llm.prefill_logits(tokens, kept)  # [L_kept, V]
    masked_logits = llm.prefill_logits(tokens, masked)[remaining]  # [L_kept, V]
    assert (kept_logits - masked_logits).abs().max().item() <= 1e-4
    # greedy continuation from both is the same
    assert list(llm._decode(tokens, kept, 12)) == list(llm._decode(tokens, masked, 12))
    # without the full prompt's positions the same tokens give other logits: the test can fail
    renumbered = replace(kept, position_ids=torch.arange(kept.input_ids.shape[1]).view(1, 1, -1).expand(3, 1, -1))
    assert (llm.prefill_logits(tokens, renumbered) - masked_logits).abs().max().item() > 1e-3


def test_generate_with_a_selection_streams_the_masked_answer(llm):
    tokens = llm.encode(many_frames_clip())
    selection = select(llm, tokens, [], QUESTION)
    text = "".join(llm.generate(tokens, [], QUESTION, max_new_tokens=10, keep_indices=selection.keep_indices))
    masked = llm.prompt(tokens, [], QUESTION).mask(selection.keep_indices)
    assert text == llm.processor.tokenizer.decode(list(llm._decode(tokens, masked, 10)), skip_special_tokens=True)


@pytest.mark.parametrize("layer", [0, 1])
def test_attention_scores_are_the_models_own_attention_weights(llm, tiny_model_dirs, layer):
    clip = make_clip(VFR_TIMES)
    tokens = llm.encode(clip)
    prompt = llm.prompt(tokens, [], QUESTION)
    scores = attention_scores(llm, tokens, prompt, QUESTION, layer)
    eager = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs[llm.family], attn_implementation="eager")
    with torch.no_grad():
        attentions = eager(**reference_inputs(llm, clip, [], QUESTION), output_attentions=True).attentions
    rows = question_span(llm, prompt, QUESTION)
    assert llm.processor.tokenizer.decode(prompt.input_ids[0, rows]) == QUESTION
    expected = attentions[layer][0][:, rows][:, :, prompt.visual_mask].amax(dim=(0, 1))  # [N]
    torch.testing.assert_close(scores, expected, atol=1e-6, rtol=1e-4)


def constructed_llm(tiny_model_dirs, word: str) -> VideoLLM:
    """Qwen2.5-VL whose layer-0 attention links the tokens of `word` to visual tokens carrying a marker.

    Queries of `word` and keys of marked tokens live on the lowest rotary frequency (where the rotation
    over a few hundred positions is negligible), so relevance is known: the marked tokens, and only when
    the question contains `word`.
    """
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen2_5_vl"]))
    attention = llm.model.model.language_model.layers[0].self_attn
    head_dim, marker, word_dim = attention.head_dim, 0, 1
    low = head_dim // 2 - 1  # lowest rotary frequency, first half of its pair
    with torch.no_grad():
        for proj in (attention.q_proj, attention.k_proj):
            proj.weight.zero_()
            proj.bias.zero_()
        for head in range(attention.q_proj.out_features // head_dim):
            attention.q_proj.weight[head * head_dim + low, word_dim] = 1.0
        for head in range(attention.k_proj.out_features // head_dim):
            attention.k_proj.weight[head * head_dim + low, marker] = 1.0
        embed = llm.model.model.language_model.embed_tokens.weight
        embed[:, word_dim] = 0.0
        embed[llm.processor.tokenizer(word)["input_ids"], word_dim] = 1.0
    return llm


def marked_tokens(llm: VideoLLM, clip, marked_step: int):
    """The clip's visual tokens, with the marker on every token of one frame pair."""
    tokens = llm.encode(clip)
    rng = torch.Generator().manual_seed(0)
    embeddings = torch.randn(tokens.embeddings.shape, generator=rng) * 0.02
    embeddings[:, 0] = 0.0
    on_step = torch.from_numpy(tokens.token_grid[:, 0] == marked_step)
    embeddings[on_step, 0] = 1.0
    return replace(tokens, embeddings=embeddings), on_step.nonzero().flatten()


def test_keeps_the_tokens_of_the_frames_the_question_is_about(tiny_model_dirs):
    llm = constructed_llm(tiny_model_dirs, " red")
    tokens, relevant = marked_tokens(llm, many_frames_clip(), marked_step=5)
    settings = SelectorSettings(scoring_layer=0, min_fraction=0.0, max_fraction=0.5, duplicate_cosine=1.1)
    about_red = select(llm, tokens, [], "Where is the red square?", settings)
    assert set(about_red.keep_indices.tolist()) <= set(relevant.tolist())
    assert about_red.scores[relevant].min() > 10 * about_red.scores[~torch.isin(torch.arange(len(about_red.scores)), relevant)].max()
    # the heat map puts the kept tokens on frame pair 5, where the marker is
    heat = about_red.heatmap(tokens)
    rows, cols = (int(v) + 1 for v in tokens.token_grid[:, 1:].max(axis=0))
    assert heat.kept.shape == (8, rows, cols) and heat.kept.sum() == len(about_red.keep_indices)
    assert heat.kept[5].any() and not np.delete(heat.kept, 5, axis=0).any()
    assert heat.times_s.tolist() == pytest.approx((np.arange(8) + 0.25).tolist())
    # a question without the word spreads its attention: the adaptive budget keeps more tokens
    elsewhere = select(llm, tokens, [], "What happens?", settings)
    assert not set(llm.processor.tokenizer(" red")["input_ids"]) & set(llm.processor.tokenizer("What happens?")["input_ids"])
    assert len(elsewhere.keep_indices) > 2 * len(about_red.keep_indices)
    assert about_red.budget != elsewhere.budget


def test_budget_stays_within_its_bounds(llm):
    tokens = llm.encode(many_frames_clip())
    n = len(tokens.embeddings)
    for settings in [SelectorSettings(min_fraction=0.25, max_fraction=0.5, duplicate_cosine=1.1),
                     SelectorSettings(min_fraction=0.0, max_fraction=0.5, max_tokens=5, duplicate_cosine=1.1),
                     SelectorSettings(min_fraction=0.0, max_fraction=0.01, duplicate_cosine=1.1)]:
        selection = select(llm, tokens, [], QUESTION, settings)
        fewest, most = budget_bounds(n, settings)
        assert fewest <= len(selection.keep_indices) <= most
        assert selection.dropped_by_budget == n - len(selection.keep_indices)
        assert torch.equal(selection.keep_indices, selection.keep_indices.sort().values)
    assert budget_bounds(96, SelectorSettings(min_fraction=0.0, max_fraction=0.01)) == (1, 1)


def test_static_frames_are_dropped_before_scoring(llm):
    clip = many_frames_clip()
    frames = clip.frames.copy()
    frames[2:8] = np.concatenate([frames[0:2]] * 3)  # frame pairs 1, 2 and 3 repeat pair 0: a static scene
    static = replace(clip, frames=frames, content_hash="static frames")
    tokens = llm.encode(static)
    per_step = len(tokens.embeddings) // 8
    duplicates = duplicate_mask(tokens, 0.99)
    assert duplicates.nonzero().flatten().tolist() == list(range(per_step, 4 * per_step))
    selection = select(llm, tokens, [], QUESTION, SelectorSettings(duplicate_cosine=0.99, max_fraction=0.5))
    assert selection.dropped_duplicates == 3 * per_step
    assert not set(selection.keep_indices.tolist()) & set(range(per_step, 4 * per_step))
    assert selection.dropped_duplicates + selection.dropped_by_budget + len(selection.keep_indices) == len(tokens.embeddings)


def test_uniform_keeps_every_kth_token(llm):
    tokens = llm.encode(many_frames_clip())
    n = len(tokens.embeddings)
    selection = select(llm, tokens, [], QUESTION, SelectorSettings(kind="uniform", max_fraction=0.25, duplicate_cosine=1.1))
    assert selection.keep_indices.tolist() == list(range(0, n, 4))[: n // 4]


def test_whole_patches_keeps_the_top_scoring_temporal_patches_entirely(llm):
    tokens = llm.encode(many_frames_clip())
    steps = tokens.token_grid[:, 0]
    count, per_step = int(steps.max()) + 1, int((steps == 0).sum())
    selection = select(llm, tokens, [], QUESTION, SelectorSettings(min_fraction=0.3, max_fraction=0.3))
    patches = whole_patches(selection, tokens)
    kept = np.zeros(len(steps), bool)
    kept[patches.keep_indices.numpy()] = True
    per_patch = kept.reshape(count, per_step)
    assert set(per_patch.sum(axis=1).tolist()) <= {0, per_step}  # each patch all in or all out
    chosen = np.flatnonzero(per_patch.all(axis=1))
    assert len(chosen) == max(1, round(len(selection.keep_indices) / per_step))
    totals = selection.scores.numpy().reshape(count, per_step).sum(axis=1)
    assert totals[chosen].min() >= np.delete(totals, chosen).max()  # the patches the question attends to most
    assert patches.dropped_by_budget == len(steps) - len(patches.keep_indices)
    assert torch.equal(patches.keep_indices, patches.keep_indices.sort().values)
