"""A needle in a haystack: a long synthetic video with a short event planted at a known time, and a tiny model whose
attention is rigged to find it, for the zoom's tests and benchmarks.

The haystack is grey frames carrying their index code (`videos.draw_frame`); the needle is a few seconds of frames
painted yellow under the code. The rig (`rig_attention`) gives one LLM layer a feature detector in the slowest
rotary dimension of every head, where the rotary embedding barely turns: a key fires there for visual tokens of the
needle, and a query fires there for one word of the question ("flash"), the rest pointing the other way. The
question that names the word then pays its attention to the needle's tokens at that layer; a question without it
(the zoom's question-agnostic baseline, "summarise the video") does not. Thresholds come from the model's own
embeddings, so the rig is exact for the model and video it is made for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch

from vidchat.testing.videos import INDEX_BITS, draw_frame
from vidchat.video import SamplingConfig, choose_frames
from vidchat.vlm import VideoLLM, VisualTokens
from vidchat.zoom import patch_times

NEEDLE_RGB = (250, 230, 20)
NEEDLE_WORD = " flash"  # the question's word that the rigged queries fire on
NEEDLE_QUESTION = "When does the yellow flash happen?"
_STRENGTH = 8.0  # scale of the detector's weights: the rigged dimension dominates the others'


@dataclass(frozen=True)
class Needle:
    path: str
    fps: float
    duration_s: float
    start_s: float  # the needle's first frame
    end_s: float  # the end of its last frame

    def frames(self) -> range:
        """Indices of the needle's frames."""
        return range(round(self.start_s * self.fps), round(self.end_s * self.fps))


def write_needle_video(
    path: str | os.PathLike,
    *,
    seconds: float,
    fps: float,
    needle_s: float,
    needle_length_s: float = 2.0,
    size: tuple[int, int] = (64, 48),
    codes: bool = True,
    gop: int = 250,
) -> Needle:
    """Encode `seconds` of grey haystack at `fps` (H.264, a keyframe every `gop` frames) with a yellow needle from
    `needle_s` for `needle_length_s`; each frame carries its index code when `codes` (up to 4096 frames)."""
    count = round(seconds * fps)
    if codes and count > 2**INDEX_BITS:
        raise ValueError(f"at most {2**INDEX_BITS} frames carry an index code; {count} asked")
    needle = Needle(str(path), fps, count / fps, needle_s, needle_s + needle_length_s)
    rate = Fraction(fps).limit_denominator(1001)
    width, height = size
    band = round(height / 6)
    plain = draw_frame(0, {}, size)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "g": str(gop)}
        for index in range(count):
            picture = draw_frame(index, {}, size) if codes else plain.copy()
            if index in needle.frames():
                picture[band:] = NEEDLE_RGB
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return needle


def seen_needle_start(seconds: float, fps: float, depth: float, sampling: SamplingConfig) -> float:
    """Where to plant a needle near `depth` (a share) of a `seconds`-long haystack at `fps` so that a coarse pass
    sampled with `sampling` sees it: 0.25 s before the sampled frame nearest that depth (a needle between coarse
    samples draws no attention, with or without zoom)."""
    starts = np.arange(round(seconds * fps)) / fps
    sampled = starts[choose_frames(starts, seconds, sampling)]
    return float(sampled[min(np.searchsorted(sampled, seconds * depth), len(sampled) - 1)] - 0.25)


def needle_patches(times_s: np.ndarray, steps: int, needle: Needle) -> np.ndarray:
    """[T'] bool: which of the `steps` temporal patches of a clip sampled at `times_s` hold a frame of the needle."""
    times = patch_times(times_s, steps)  # [T', 2] first and last frame time
    return ((times >= needle.start_s) & (times < needle.end_s)).any(axis=1)


@torch.inference_mode()
def rig_attention(llm: VideoLLM, tokens: VisualTokens, needle: np.ndarray, layer: int) -> None:
    """Rig `layer` of `llm` (in place) so that the question word NEEDLE_WORD attends to the visual tokens of the
    temporal patches where `needle` ([T'] bool) is set, and nothing else does. The layer's q and k projections get
    biases where they have none (Qwen3-VL's): the detectors' thresholds."""
    language_model = llm.model.model.language_model
    block = language_model.layers[layer]
    attention = block.self_attn
    for projection in (attention.q_proj, attention.k_proj):
        if projection.bias is None:
            projection.bias = torch.nn.Parameter(projection.weight.new_zeros(projection.out_features))
    dtype = attention.q_proj.weight.dtype
    head = attention.head_dim
    slot = head // 2 - 1  # the slowest rotary pair's first dimension: its angle barely moves over a prompt

    # The keys: the needle's visual tokens against the others, as the layer's input norm gives them.
    normed = block.input_layernorm(tokens.embeddings.to(llm.device, dtype)).float()  # [N, D]
    steps = torch.as_tensor(tokens.token_grid[:, 0])
    inside = torch.as_tensor(needle)[steps].to(llm.device)  # [N] bool
    if not inside.any() or inside.all():
        raise ValueError("the needle must cover some temporal patches of the tokens, not all")
    key = normed[inside].mean(0) - normed[~inside].mean(0)
    key = key / key.norm()
    key_cut = _between((normed[inside] @ key).min(), (normed[~inside] @ key).max(), "visual tokens")

    # The queries: the word's last token against every other token of the vocabulary.
    embed = language_model.embed_tokens.weight  # [V, D]
    vocabulary = block.input_layernorm(embed).float()  # [V, D]
    word = llm.processor.tokenizer(NEEDLE_WORD, add_special_tokens=False)["input_ids"][-1]
    query = vocabulary[word] / vocabulary[word].norm()
    others = torch.cat([vocabulary[:word], vocabulary[word + 1 :]]) @ query
    query_cut = _between(vocabulary[word] @ query, others.max(), "token embeddings")

    for projection, direction, cut, heads in (
        (attention.q_proj, query, query_cut, attention.config.num_attention_heads),
        (attention.k_proj, key, key_cut, attention.config.num_key_value_heads),
    ):
        for h in range(heads):
            row = h * head + slot
            projection.weight[row] = (_STRENGTH * direction).to(dtype)
            projection.bias[row] = -_STRENGTH * cut
            # the dimension's pair partner and the others stay small beside it
            projection.weight[h * head : (h + 1) * head][torch.arange(head) != slot] *= 0.01
            projection.bias[h * head : (h + 1) * head][torch.arange(head) != slot] = 0.0


def _between(low: torch.Tensor, high: torch.Tensor, what: str) -> float:
    """The midpoint between the detector's weakest hit `low` and strongest miss `high`."""
    if not low > high:
        raise ValueError(f"the needle's {what} do not separate from the others ({float(low):.3f} ≤ {float(high):.3f})")
    return float(low + high) / 2
