"""Query-aware visual token selection: keep only the visual tokens that matter for this question.

Sits between `VideoLLM.encode` and `VideoLLM.generate`. Every selector returns a `Selection` (sorted
indices of the visual tokens to keep, a relevance score per token, and how many tokens each rule
dropped); `VideoLLM.generate(..., keep_indices=...)` then places only those tokens in the prompt, each at
the M-RoPE position the full prompt gives it.

- `attention` (default, training-free): relevance = the attention the question's tokens pay to each visual
  token at one LLM layer, with the model's own rotary positions; max over heads and question tokens.
  Only the layers below the scoring layer run on the full sequence. The budget adapts to the question:
  the fewest tokens that carry `attention_mass` of the question's attention to the video, within bounds.
- `qtsplus`: the trained scorer, budget head and re-encoder of the QTSplus checkpoints (`vidchat.qtsplus`);
  the re-encoded kept tokens replace the originals (`Selection.apply`).
- `uniform`: every k-th token (the baseline).
Before any of them, a query-agnostic pre-pass drops tokens nearly identical to the same patch in the
previous sampled frame pair (static background).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from transformers import DynamicCache

from vidchat.errors import ModelError
from vidchat.qtsplus import QTSplusSelector
from vidchat.vlm import Prompt, Turn, VideoLLM, VideoPrefix, VisualTokens, plain_text

SelectorKind = Literal["attention", "qtsplus", "uniform"]


@dataclass(frozen=True)
class SelectorSettings:
    kind: SelectorKind = "attention"
    min_fraction: float = 0.02  # never keep fewer than this share of the visual tokens (at least one token)
    max_fraction: float = 0.15  # never keep more than this share ...
    max_tokens: int = 4096  # ... nor more than this many
    scoring_layer: int | None = None  # attention: LLM layer whose attention scores; None = a quarter of the depth
    attention_mass: float = 0.5  # attention: keep the fewest tokens carrying this share of the attention to the video
    duplicate_cosine: float = 0.97  # pre-pass: drop a token this similar to the same patch one step earlier
    # How the answer sees the kept tokens. "prefill" (exact): they are prefilled again on their own, as if the other
    # tokens were masked out. "cached" (approximate): the answer attends to the video prefix's cached keys and
    # values at the kept positions, computed when every token was there; a follow-up then runs only its new tokens.
    kept_tokens: Literal["prefill", "cached"] = "prefill"

    def scoring_layer_of(self, llm: VideoLLM) -> int:
        """The LLM layer whose attention scores (attention kind)."""
        if self.scoring_layer is not None:
            return self.scoring_layer
        return default_scoring_layer(llm.depth)


def default_scoring_layer(depth: int) -> int:
    """The attention selector's scoring layer for an LLM of `depth` layers unless set: a quarter of the way up."""
    return depth // 4


@dataclass(frozen=True, eq=False)
class Selection:
    # Tokens are numbered as `Prompt.visual_index`: the video's (VisualTokens.embeddings), then each zoom window's.
    keep_indices: torch.Tensor  # [K] sorted indices of the tokens kept
    scores: torch.Tensor  # [N] relevance of each visual token (0 for the ones the pre-pass dropped)
    budget: int  # how many tokens the budget allowed for this question
    dropped_duplicates: int  # dropped by the query-agnostic pre-pass
    dropped_by_budget: int  # dropped because they scored below the budget's cut
    reencoded: torch.Tensor | None = None  # qtsplus: [K, D] the kept tokens after its re-encoder

    def apply(self, tokens: VisualTokens, windows: Sequence[VisualTokens] = ()) -> tuple[VisualTokens, ...]:
        """The video's and its windows' visual tokens as the model gets them for this question (re-encoded ones in
        place for qtsplus)."""
        videos = (tokens, *windows)
        if self.reencoded is None:
            return videos
        return tuple(
            replace(video, embeddings=video.embeddings.index_copy(0, rows, self.reencoded[inside]))
            for video, (inside, rows) in zip(videos, kept_per_video(self.keep_indices, videos))
        )

    @property
    def num_tokens(self) -> int:
        return len(self.scores)

    def heatmap(self, tokens: VisualTokens) -> HeatMap:
        """The selection on the frame grid of the video's `tokens` (not its zoom windows), for showing which parts
        of the video the answer looked at."""
        steps, rows, cols = (int(v) for v in tokens.token_grid.max(axis=0) + 1)
        count = len(tokens.embeddings)
        kept = np.zeros(count, dtype=bool)
        kept[self.keep_indices[self.keep_indices < count].numpy()] = True
        scores = self.scores[:count].numpy()
        peak = scores.max() if len(scores) and scores.max() > 0 else 1.0
        return HeatMap(
            kept=kept.reshape(steps, rows, cols),
            relevance=(scores / peak).reshape(steps, rows, cols).astype(np.float32),
            times_s=tokens.token_time_s.reshape(steps, rows * cols)[:, 0],
        )


@dataclass(frozen=True, eq=False)
class HeatMap:
    kept: np.ndarray  # [T', rows, cols] bool: visual token kept, on the merged patch grid of each frame pair
    relevance: np.ndarray  # [T', rows, cols] float32 in [0, 1], score / max score
    times_s: np.ndarray  # [T'] time of each frame pair


def budget_bounds(num_tokens: int, settings: SelectorSettings) -> tuple[int, int]:
    """(fewest, most) tokens a selection may keep out of `num_tokens`."""
    most = max(1, min(int(num_tokens * settings.max_fraction), settings.max_tokens))
    fewest = min(most, max(1, math.ceil(num_tokens * settings.min_fraction)))
    return fewest, most


def kept_per_video(keep_indices: torch.Tensor, videos: Sequence[VisualTokens]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each of `videos` (the video, then its windows; the tokens numbered over all of them, as
    `Prompt.visual_index`): which of `keep_indices` are its tokens ([K] bool), and their rows in its own tokens."""
    parts, start = [], 0
    for video in videos:
        end = start + len(video.embeddings)
        inside = (keep_indices >= start) & (keep_indices < end)
        parts.append((inside, keep_indices[inside] - start))
        start = end
    return parts


def joined_duplicates(videos: Sequence[VisualTokens], cosine: float) -> torch.Tensor:
    """[N] bool over the tokens of every video in order (the video, then its windows): `duplicate_mask` of each."""
    return torch.cat([duplicate_mask(video, cosine) for video in videos])


def duplicate_mask(tokens: VisualTokens, cosine: float) -> torch.Tensor:
    """[N] bool, True where a token is at least `cosine`-similar to the same patch one frame pair earlier."""
    steps, rows, cols = (int(v) for v in tokens.token_grid.max(axis=0) + 1)
    grid = tokens.embeddings.view(steps, rows * cols, -1)  # [T', h'*w', D]
    similar = torch.nn.functional.cosine_similarity(grid[1:], grid[:-1], dim=-1) >= cosine  # [T'-1, h'*w']
    return torch.cat([torch.zeros(1, rows * cols, dtype=torch.bool), similar]).flatten()


def select(
    llm: VideoLLM,
    tokens: VisualTokens,
    history: Sequence[Turn],
    question: str,
    settings: SelectorSettings = SelectorSettings(),
    qtsplus: QTSplusSelector | None = None,
    prefix: VideoPrefix | None = None,
    transcript: str = "",
    windows: Sequence[VisualTokens] = (),
) -> Selection:
    """Choose the visual tokens to keep for `question` (asked after `history`, with the video's `transcript`
    text in the prompt; `qtsplus` for that kind; the video's `prefix` at the scoring layers, when it is cached,
    for the attention kind).

    windows: zoom windows before the question (`vidchat.zoom`). Their tokens are chosen among themselves, with a
    budget of their own by the same rule, at most half the video's; the video's tokens then take what is left of
    it: one total visual-token budget, from the video's token count alone, holds."""
    videos = (tokens, *windows)
    duplicates = joined_duplicates(videos, settings.duplicate_cosine)  # [N] over the video and its windows
    num_tokens = len(duplicates)
    count = len(tokens.embeddings)
    parts = [torch.arange(count), torch.arange(count, num_tokens)]  # the video's tokens, the windows'
    if settings.kind == "uniform":
        scores = (~duplicates).float()
    elif settings.kind == "attention":
        prompt = llm.prompt(tokens, history, question, transcript, windows)
        scores = attention_scores(llm, tokens, prompt, question, settings.scoring_layer_of(llm), prefix)
    elif settings.kind == "qtsplus":
        if qtsplus is None:
            raise ModelError(
                "The qtsplus selector needs QTSplus weights (e.g. AlpachinoNLP/QTSplus-3B); none are loaded."
            )
        if qtsplus.budget.mlp[0].in_features - 3 != tokens.embeddings.shape[1]:
            raise ModelError(f"The QTSplus selector does not match {llm.model_id}: its hidden sizes differ.")
        table = torch.cat([video.embeddings for video in videos])  # [N, D]
        scores, rho = qtsplus.score(table, question_embeddings(llm, question))
    else:
        raise ValueError(f"unknown selector kind {settings.kind!r}")

    def part_budget(part: torch.Tensor) -> int:
        """The budget the kind's rule gives these tokens, within the bounds for their number."""
        fewest, most = budget_bounds(len(part), settings)
        if settings.kind == "attention":
            wanted = _mass_budget(scores[part][~duplicates[part]], settings.attention_mass)
        elif settings.kind == "qtsplus":
            wanted = qtsplus.count(rho, len(part))
        else:
            wanted = most
        return min(max(wanted, fewest), most)

    most = budget_bounds(count, settings)[1]
    window_budget = min(part_budget(parts[1]), most // 2) if windows else 0
    budgets = [min(part_budget(parts[0]), most - window_budget), window_budget]
    scores = scores.masked_fill(duplicates, 0.0)
    keep = torch.cat([_keep(part[~duplicates[part]], scores, n, settings.kind) for part, n in zip(parts, budgets)])
    keep = keep.sort().values
    return Selection(
        keep_indices=keep,
        scores=scores,
        budget=sum(budgets),
        dropped_duplicates=int(duplicates.sum()),
        dropped_by_budget=num_tokens - int(duplicates.sum()) - len(keep),
        reencoded=qtsplus.reencode(table[keep]) if settings.kind == "qtsplus" else None,
    )


def whole_patches(selection: Selection, tokens: VisualTokens, windows: Sequence[VisualTokens] = ()) -> Selection:
    """The selection rounded to whole temporal patches, for an engine that takes a video as frames with times
    (`VideoLLM.selection_unit == "patch"`): the patches (of the video and its windows) whose tokens score highest in
    total, as many as the tokens kept fill (at least one), every token of each, as encoded (a QTSplus re-encoding is
    for the tokens it kept)."""
    videos = (tokens, *windows)
    # [N] a number for the temporal patch of each token, over the video and then each window
    offsets = np.cumsum([0] + [video.steps for video in videos])
    steps = torch.as_tensor(np.concatenate([video.token_grid[:, 0] + offset for video, offset in zip(videos, offsets)]))
    count = int(offsets[-1])
    totals = torch.zeros(count).index_add_(0, steps, selection.scores.float())  # [T']
    sizes = torch.as_tensor(np.concatenate([[len(video.embeddings) // video.steps] * video.steps for video in videos]))
    wanted, chosen, filled = len(selection.keep_indices), [], 0
    for step in totals.argsort(descending=True).tolist():  # the best patches until they hold the tokens kept
        if filled and filled + sizes[step] / 2 > wanted:
            break
        chosen.append(step)
        filled += int(sizes[step])
    keep = torch.isin(steps, torch.as_tensor(chosen)).nonzero().flatten()  # [K], sorted
    return replace(
        selection, keep_indices=keep, dropped_by_budget=len(steps) - len(keep), dropped_duplicates=0, reencoded=None
    )


@torch.inference_mode()
def question_embeddings(llm: VideoLLM, question: str) -> torch.Tensor:
    """[L, D] input embeddings of the question text alone (no template), what QTSplus scores with."""
    ids = llm.processor.tokenizer(question.strip(), add_special_tokens=False, return_tensors="pt")["input_ids"]
    return llm.model.model.language_model.embed_tokens(ids.to(llm.device))[0].float().cpu()


def _keep(candidates: torch.Tensor, scores: torch.Tensor, budget: int, kind: SelectorKind) -> torch.Tensor:
    """Up to `budget` of the `candidates` (token indices): every k-th for the uniform kind, else the best scored."""
    if budget <= 0 or len(candidates) == 0:
        return candidates[:0]
    if kind == "uniform":
        return candidates[:: max(1, math.ceil(len(candidates) / budget))][:budget]
    return candidates[scores[candidates].topk(min(budget, len(candidates))).indices]


def _mass_budget(scores: torch.Tensor, mass: float) -> int:
    """The fewest tokens whose scores add up to `mass` of the total: few when the question's attention
    is concentrated on some tokens, many when it is spread over the video."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-12)
    return int((cumulative < mass).sum()) + 1


def question_span(llm: VideoLLM, prompt: Prompt, question: str) -> torch.Tensor:
    """[Q] positions of the question's own tokens: they close the last user turn."""
    ids = prompt.input_ids[0]
    im_end = llm.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    end = int((ids == im_end).nonzero().flatten()[-1])  # the prompt ends "<|im_end|>\n<|im_start|>assistant\n"
    count = len(llm.processor.tokenizer(plain_text(question).strip())["input_ids"])
    return torch.arange(end - count, end)


@torch.inference_mode()
def attention_scores(
    llm: VideoLLM,
    tokens: VisualTokens,
    prompt: Prompt,
    question: str,
    layer: int,
    prefix: VideoPrefix | None = None,
) -> torch.Tensor:
    """[N] max over heads and question tokens of the attention paid to each visual token at `layer` (the video's,
    then those of the prompt's zoom windows).

    The layers below `layer` run on the prompt exactly as in the model's forward (DeepStack included); at
    `layer`, queries and keys come from the layer's own projections, norms and rotary embedding. With the
    video's `prefix` (KV of the first `layer` + 1 layers, `VideoLLM.video_prefix`) only the tokens after the
    video run: their queries meet the prefix's cached keys, O(new tokens × visual tokens).
    """
    language_model = llm.model.model.language_model
    config = language_model.config
    device = llm.device
    start = 0
    cache = DynamicCache(config=config)
    if prefix is not None:
        llm.check_prefix(tokens, prefix, layer + 1, prompt)
        start, cache = prefix.length, prefix.cache(config, layers=layer)
    hidden, deepstack = llm.prompt_embeddings(tokens, prompt)  # [1, L, D], the same inputs generation gets
    visual_mask, deepstack = llm.after(prompt, start, deepstack)  # of the S tokens that run
    position_ids = prompt.position_ids[:, :, start:].to(device)  # [3, 1, S]
    hidden = llm.run_layers(
        hidden[:, start:], position_ids, prompt.attention_mask, cache, layer, deepstack, visual_mask
    )  # fmt: skip

    scoring = language_model.layers[layer]
    attention = scoring.self_attn
    normed = scoring.input_layernorm(hidden)  # [1, S, D]
    shape = (1, normed.shape[1], -1, attention.head_dim)
    queries = attention.q_proj(normed).view(shape)
    keys = attention.k_proj(normed).view(shape)
    if hasattr(attention, "q_norm"):  # Qwen3: per-head RMSNorm before the rotary embedding
        queries, keys = attention.q_norm(queries), attention.k_norm(keys)
    rotary = sys.modules[type(attention).__module__].apply_rotary_pos_emb
    cos_sin = language_model.rotary_emb(hidden, position_ids)
    queries, keys = rotary(queries.transpose(1, 2), keys.transpose(1, 2), *cos_sin)  # [1, H, S, d], [1, Hkv, S, d]
    if prefix is not None:  # the cached keys of the system prompt and the video, as the layer's cache holds them
        keys = torch.cat([prefix.keys[layer].to(device), keys], dim=2)  # [1, Hkv, L, d]
    keys = keys.repeat_interleave(queries.shape[1] // keys.shape[1], dim=1)  # [1, H, L, d]

    rows = question_span(llm, prompt, question).to(device)  # [Q], positions in the prompt
    logits = queries[0, :, rows - start] @ keys[0].transpose(-1, -2) * attention.scaling  # [H, Q, L]
    allowed = (torch.arange(logits.shape[-1], device=device)[None] <= rows[:, None]) & prompt.attention_mask.to(
        device
    ).bool()  # [Q, L] causal and not masked out
    weights = logits.masked_fill(~allowed, float("-inf")).softmax(-1)  # [H, Q, L]
    per_token = weights[:, :, prompt.visual_mask.to(device)].amax(dim=(0, 1))  # [K] visual positions of the prompt
    count = len(tokens.embeddings) + sum(len(window.embeddings) for window in prompt.windows)
    scores = torch.zeros(count, device=device)  # [N] the video's tokens, then its windows'
    scores[prompt.visual_index.to(device)] = per_token.float()
    return scores.cpu()
