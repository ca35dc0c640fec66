"""Tiny random-weight Qwen-VL checkpoints of the real architectures, built offline.

Each builder writes a folder that `from_pretrained` loads exactly like a downloaded checkpoint: config,
safetensors weights, a byte-level BPE tokenizer trained here with the Qwen special tokens, the family's
chat template and its image/video processors. Tests and benchmarks load them through `vidchat.vlm`,
so the code path under test is the one real checkpoints take.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

# The Qwen2/2.5/3-VL special tokens, in the order the real vocabularies give them.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Chat templates in each family's layout (ChatML turns; a video item becomes
# <|vision_start|><|video_pad|><|vision_end|> for the processor to expand). Qwen2.5-VL adds a default
# system prompt; Qwen3-VL does not.
_TURNS = (
    "{%- for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{%- if message['content'] is string %}{{ message['content'] }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'video' or 'video' in item %}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif 'text' in item %}{{ item['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}<|im_end|>\n"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{%- endif %}"
    + _TURNS
)
QWEN3_VL_CHAT_TEMPLATE = _TURNS

_CORPUS = [
    "The red square moves from the left to the right between 00:01.0 and 00:04.5.",
    'At 2.5 seconds the blue circle is at {"bbox_2d": [120, 340, 260, 480], "label": "blue circle"}.',
    '[{"time": 1.0, "bbox_2d": [74, 361, 324, 808], "label": "dog"}, {"point_2d": [925, 618], "label": "cat"}]',
    "The given query happens in 64.0 - 72.0 seconds. What does it do next? It stops at 1:02:03.5.",
    "Describe the video. Where is the object? What is this? and the one on the left?",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?'\"()[]{}<>-_=+*/\\ \n",
]


def build_tokenizer(vocab_size: int = 512) -> Qwen2Tokenizer:
    """A byte-level BPE trained on a small corpus, with the Qwen special tokens and pre-tokenizer."""
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(_CORPUS * 8, trainer=trainer)
    state = json.loads(bpe.model.__getstate__())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


# Sizes of the tiny test models; the benchmarks override them with the real widths below.
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
)
_TINY_QWEN3_VISION = dict(
    depth=2, hidden_size=32, intermediate_size=64, num_heads=2, num_position_embeddings=256, deepstack_visual_indexes=[0, 1]
)
_TINY_QWEN2_5_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, window_size=56, fullatt_block_indexes=[1])

# Tiny sizes that vLLM's CPU build serves: its attention kernels need head_dim 32 or more (16 crashes the engine).
VLLM_TINY_TEXT = TINY_TEXT | dict(
    hidden_size=128,
    intermediate_size=256,
    head_dim=32,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
)
VLLM_TINY_QWEN3_VISION = _TINY_QWEN3_VISION | dict(hidden_size=64, intermediate_size=128)
VLLM_TINY_QWEN2_5_VISION = _TINY_QWEN2_5_VISION | dict(hidden_size=64, intermediate_size=128)

# Widths of the released checkpoints (their config.json), for benchmarks with fewer layers on a CPU.
QWEN3_VL_2B_TEXT = dict(
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True},
)
QWEN3_VL_2B_VISION = dict(
    depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17]
)
QWEN2_5_VL_3B_TEXT = dict(
    hidden_size=2048,
    intermediate_size=11008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    head_dim=128,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)
QWEN2_5_VL_3B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112, fullatt_block_indexes=[7, 15, 23, 31]
)


def _text_config(tokenizer: Qwen2Tokenizer, text: dict | None) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=32768,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        **(text or TINY_TEXT),
    )


def _token_ids(tokenizer: Qwen2Tokenizer) -> dict:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


@dataclass(frozen=True)
class _Family:
    config: type
    model: type
    processor: type
    video_processor: type
    patch_size: int
    chat_template: str
    tiny_vision: dict
    vision_extra: dict


_QWEN3_VL = _Family(
    Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor,
    patch_size=16, chat_template=QWEN3_VL_CHAT_TEMPLATE, tiny_vision=_TINY_QWEN3_VISION, vision_extra={},
)
_QWEN2_5_VL = _Family(
    Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor,
    patch_size=14, chat_template=QWEN2_5_VL_CHAT_TEMPLATE, tiny_vision=_TINY_QWEN2_5_VISION,
    vision_extra={"tokens_per_second": 2},  # absolute time in M-RoPE: 2 positions per second
)


def _build(family: _Family, folder: str | Path, text: dict | None, vision: dict | None, seed: int) -> Path:
    folder = Path(folder)
    tokenizer = build_tokenizer()
    text_config = _text_config(tokenizer, text)
    patch = family.patch_size
    config = family.config(
        text_config=text_config,
        vision_config=dict(
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=text_config["hidden_size"],
            **family.vision_extra,
            **(vision or family.tiny_vision),
        ),
        **_token_ids(tokenizer),
    )
    torch.manual_seed(seed)
    family.model(config).eval().save_pretrained(folder)
    # pixel bounds of the released processors: (2·patch)² per merged token, up to 24576 tokens a video
    pixels = dict(shortest_edge=(2 * patch) ** 2, longest_edge=(2 * patch) ** 2 * 24576)
    kwargs = dict(patch_size=patch, merge_size=2, temporal_patch_size=2, size=pixels)
    family.processor(
        image_processor=Qwen2VLImageProcessor(**kwargs),
        tokenizer=tokenizer,
        video_processor=family.video_processor(**kwargs),
        chat_template=family.chat_template,
    ).save_pretrained(folder)
    return folder


def build_qwen3_vl(folder: str | Path, *, text: dict | None = None, vision: dict | None = None, seed: int = 0) -> Path:
    """Save a random Qwen3-VL (tiny unless `text`/`vision` sizes are given) with its processor into `folder`."""
    return _build(_QWEN3_VL, folder, text, vision, seed)


def build_qwen2_5_vl(folder: str | Path, *, text: dict | None = None, vision: dict | None = None, seed: int = 0) -> Path:
    """Save a random Qwen2.5-VL (tiny unless `text`/`vision` sizes are given) with its processor into `folder`."""
    return _build(_QWEN2_5_VL, folder, text, vision, seed)


def write_qtsplus_checkpoint(
    folder: str | Path,
    *,
    hidden_size: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    scoring_layers: int = 1,
    reencode_layers: int = 2,
    seed: int = 0,
) -> Path:
    """A random checkpoint in the public QTSplus layout: its parameter names and config keys, written here
    by name (not from vidchat's modules), next to a stand-in of the language model's own tensors."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    d, hd = hidden_size, hidden_size // heads

    def random(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    def block(prefix: str) -> dict:
        return {
            f"{prefix}q_norm.weight": 1 + random(d) * 0.1,
            f"{prefix}kv_norm.weight": 1 + random(d) * 0.1,
            f"{prefix}ffn_norm.weight": 1 + random(d) * 0.1,
            f"{prefix}q_proj.weight": random(heads * hd, d),
            f"{prefix}q_proj.bias": random(heads * hd),
            f"{prefix}k_proj.weight": random(kv_heads * hd, d),
            f"{prefix}k_proj.bias": random(kv_heads * hd),
            f"{prefix}v_proj.weight": random(kv_heads * hd, d),
            f"{prefix}v_proj.bias": random(kv_heads * hd),
            f"{prefix}o_proj.weight": random(d, heads * hd),
            f"{prefix}ffn.net.0.weight": random(4 * d, d),
            f"{prefix}ffn.net.0.bias": random(4 * d),
            f"{prefix}ffn.net.2.weight": random(d, 4 * d),
            f"{prefix}ffn.net.2.bias": random(d),
        }

    selector = "model.qts_plus.selector."
    tensors = {"model.embed_tokens.weight": random(32, d), "model.norm.weight": torch.ones(d)}
    for i in range(scoring_layers):
        tensors |= block(f"{selector}scoring_layers.{i}.")
    for j in range(reencode_layers):
        tensors |= block(f"{selector}reencode_layers.{j}.core.")
    tensors |= {
        f"{selector}budget.mlp.0.weight": random(256, d + 3),
        f"{selector}budget.mlp.0.bias": random(256),
        f"{selector}budget.mlp.2.weight": random(1, 256),
        f"{selector}budget.mlp.2.bias": random(1),
    }
    save_file(tensors, str(folder / "model.safetensors"))
    config = {
        "architectures": ["QTSplusQwen2_5_VLTextForCausalLM"],
        "hidden_size": d,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "enable_qts_plus": True,
        "qts_plus_rho_min": 0.05,
        "qts_plus_rho_max": 0.5,
        "qts_plus_nmax": 2560,
        "qts_plus_scoring_layers": scoring_layers,
        "qts_plus_reencode_layers": reencode_layers,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
