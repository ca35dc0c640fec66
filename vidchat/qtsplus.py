"""The trained token selector of the QTSplus checkpoints (AlpachinoNLP/QTSplus-3B, -7B), inference only.

Written from the public description of Siyou-Li/QTSplus (the parameter names are theirs, so their
checkpoints load as they are; the code is ours). The selector reads the visual tokens after the vision
merger and the question's input embeddings:

- scoring: one or more cross-attention blocks (RMSNorm on the queries and on the visual tokens, q/k/v
  projections with bias, grouped kv heads, no rotary); relevance r = attention, max over question tokens
  and heads, from the last block;
- budget head: ρ = ρmin + (ρmax − ρmin)·σ(MLP([mean question embedding, ln M, max r, entropy of r/Σr]));
  n = min(max(ceil(ρM), 1), nmax); the top-n tokens are kept in their original order;
- re-encoder: the same block as self-attention over the kept tokens.

Unlike the QTSplus code, vidchat then places the kept tokens at the M-RoPE positions the full prompt gives
them, so the time and place of every kept token survive (see `vidchat.selector`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from vidchat.errors import ModelError
from vidchat.weights import resolve_model

PREFIX = "model.qts_plus.selector."
_BUDGET_HIDDEN = 256  # fixed in QTSplus


class RMSNormFp32(nn.Module):
    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * normed).to(x.dtype)


class FeedForward(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(size, 4 * size), nn.GELU(), nn.Linear(4 * size, size), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Attention of queries over keys/values (no positions), then a residual feed-forward."""

    def __init__(self, size: int, heads: int, kv_heads: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, size // heads
        self.q_norm, self.kv_norm, self.ffn_norm = RMSNormFp32(size), RMSNormFp32(size), RMSNormFp32(size)
        self.q_proj = nn.Linear(size, heads * self.head_dim)
        self.k_proj = nn.Linear(size, kv_heads * self.head_dim)
        self.v_proj = nn.Linear(size, kv_heads * self.head_dim)
        self.o_proj = nn.Linear(heads * self.head_dim, size, bias=False)
        self.ffn = FeedForward(size)

    def attention(self, query: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query [L, D], context [M, D] → (weights [H, L, M], attended [L, H·hd])."""
        q = self.q_proj(self.q_norm(query)).view(len(query), self.heads, self.head_dim).transpose(0, 1)  # [H, L, hd]
        kv = self.kv_norm(context)
        k = self.k_proj(kv).view(len(context), self.kv_heads, self.head_dim).transpose(0, 1)  # [Hkv, M, hd]
        v = self.v_proj(kv).view(len(context), self.kv_heads, self.head_dim).transpose(0, 1)
        group = self.heads // self.kv_heads
        k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)  # [H, M, hd]
        weights = ((q.float() @ k.float().transpose(-1, -2)) / math.sqrt(self.head_dim)).softmax(-1)  # [H, L, M]
        attended = (weights.to(v.dtype) @ v).transpose(0, 1).reshape(len(query), -1)  # [L, H·hd]
        return weights, attended

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        _, attended = self.attention(query, context)
        query = query + self.o_proj(attended)
        return query + self.ffn(self.ffn_norm(query))


class ReencodeLayer(nn.Module):
    def __init__(self, size: int, heads: int, kv_heads: int):
        super().__init__()
        self.core = Block(size, heads, kv_heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.core(tokens, tokens)


class BudgetHead(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(size + 3, _BUDGET_HIDDEN), nn.GELU(), nn.Linear(_BUDGET_HIDDEN, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


class QTSplusSelector(nn.Module):
    def __init__(
        self,
        size: int,
        heads: int,
        kv_heads: int,
        scoring_layers: int = 1,
        reencode_layers: int = 1,
        rho_min: float = 0.05,
        rho_max: float = 0.5,
        nmax: int = 2560,
    ):
        super().__init__()
        self.scoring_layers = nn.ModuleList(Block(size, heads, kv_heads) for _ in range(scoring_layers))
        self.reencode_layers = nn.ModuleList(ReencodeLayer(size, heads, kv_heads) for _ in range(reencode_layers))
        self.budget = BudgetHead(size)
        self.rho_min, self.rho_max, self.nmax = rho_min, rho_max, nmax

    @classmethod
    def from_pretrained(cls, model: str) -> QTSplusSelector:
        """The selector of a QTSplus checkpoint (folder or model id); only its own tensors are read."""
        folder = Path(resolve_model(model))
        config = json.loads((folder / "config.json").read_text())
        text = {**config, **config.get("text_config", {})}  # head counts may sit in a nested text config
        tensors = {}
        for shard in sorted(folder.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as weights:
                for key in weights.keys():
                    if key.startswith(PREFIX):
                        tensors[key[len(PREFIX) :]] = weights.get_tensor(key)
        if not tensors:
            raise ModelError(f"'{model}' holds no QTSplus selector weights ({PREFIX}*): it is not a QTSplus checkpoint.")
        size = tensors["budget.mlp.0.weight"].shape[1] - 3
        count = lambda part: len({key.split(".")[1] for key in tensors if key.startswith(part)})  # noqa: E731
        selector = cls(
            size=size,
            heads=text["num_attention_heads"],
            kv_heads=text["num_key_value_heads"],
            scoring_layers=count("scoring_layers."),
            reencode_layers=count("reencode_layers."),
            rho_min=config.get("qts_plus_rho_min", 0.05),
            rho_max=config.get("qts_plus_rho_max", 0.5),
            nmax=config.get("qts_plus_nmax", 2560),
        )
        missing, unexpected = selector.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ModelError(f"The QTSplus selector in {folder} does not fit: missing {missing}, unexpected {unexpected}.")
        return selector.eval()

    @torch.inference_mode()
    def score(self, visual: torch.Tensor, question: torch.Tensor) -> tuple[torch.Tensor, float]:
        """visual [M, D] and question input embeddings [L, D] → (relevance r [M], kept fraction ρ)."""
        query = question
        for index, block in enumerate(self.scoring_layers):
            weights, _ = block.attention(query, visual)  # [H, L, M]
            if index + 1 < len(self.scoring_layers):
                query = block(query, visual)
        relevance = weights.amax(dim=(0, 1))  # [M]
        share = relevance / (relevance.sum() + 1e-8)
        entropy = (-(share * torch.log(share + 1e-8)).sum()).clamp_min(0)
        features = torch.cat([
            question.float().mean(0),
            torch.tensor([math.log(len(visual)), float(relevance.max()), float(entropy)]),
        ])  # [D + 3]
        rho = self.rho_min + (self.rho_max - self.rho_min) * torch.sigmoid(self.budget(features.to(question.dtype)))
        return relevance.float(), float(rho)

    def count(self, rho: float, num_tokens: int) -> int:
        """How many tokens QTSplus keeps for a kept fraction ρ."""
        return min(max(math.ceil(rho * num_tokens), 1), self.nmax)

    @torch.inference_mode()
    def reencode(self, kept: torch.Tensor) -> torch.Tensor:
        """[n, D] kept tokens (original order) → [n, D] re-encoded by self-attention among themselves."""
        for layer in self.reencode_layers:
            kept = layer(kept)
        return kept
