"""VideoLLM: one class over transformers' Qwen3-VL and Qwen2.5-VL.

The model is used in two halves so that a follow-up question never re-runs the vision encoder:
- `encode(clip)` runs the processor and the vision tower once per (video, sampling, model) and keeps the
  visual tokens (merger output, plus Qwen3-VL's DeepStack features) in a byte-bounded LRU cache;
- `generate(tokens, history, question)` builds the chat prompt with the model's own template, splices the
  processor's expansion of the video placeholder into it, computes M-RoPE positions with the model's own
  `get_rope_index`, scatters the cached visual tokens into the input embeddings and runs the language
  model token by token, streaming text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.video_utils import VideoMetadata

from vidchat.errors import ModelError
from vidchat.speech import Segment, Transcript
from vidchat.video import Clip
from vidchat.weights import resolve_model

DEFAULT_MODEL = "Qwen/Qwen3-VL-2B-Instruct"
SUPPORTED_FAMILIES = ("qwen3_vl", "qwen2_5_vl")

# Qwen3-VL's processor writes frame times as frames_indices / fps. Giving it indices in milliseconds
# with fps = 1000 makes its <t seconds> text carry each sampled frame's true presentation time, also
# for variable-frame-rate videos where index / average fps would drift.
_MS_PER_SECOND = 1000.0
# Frames per chunk of the vision tower: bounds activation memory on long clips. Vision attention never
# crosses a temporal patch in either family, so chunking does not change the result.
_ENCODE_CHUNK_FRAMES = 32

SYSTEM_PROMPT = (
    "You are vidchat, an assistant that answers questions about the video. When you refer to a moment "
    "of the video, give its time as mm:ss.s, for example 00:12.4, or a span such as 00:03.0 - 00:07.5."
)


@dataclass(frozen=True, eq=False)
class VisualTokens:
    """The encoded video, ready to be placed in any prompt about it."""

    embeddings: torch.Tensor  # [N, D] vision merger output, in the LLM's hidden size
    deepstack: tuple[torch.Tensor, ...]  # Qwen3-VL: one [N, D] per DeepStack layer; () for Qwen2.5-VL
    video_grid_thw: torch.Tensor  # [1, 3] patch grid (temporal patches, rows, cols) before merging
    second_per_grid_ts: torch.Tensor | None  # [1] Qwen2.5-VL: seconds between temporal patches
    segment_ids: torch.Tensor  # [S] prompt tokens that stand for the video (times, vision start/end, pads)
    segment_types: torch.Tensor  # [S] their mm_token_type_ids (0 text, 2 video)
    token_time_s: np.ndarray  # [N] time of each visual token: mean time of the frames in its temporal patch
    token_grid: np.ndarray  # [N, 3] (temporal patch, merged row, merged col) of each visual token
    input_size: tuple[int, int]  # (width, height) in pixels of the frames the vision tower saw
    source: tuple  # (video content hash, sampling, span, model id): what these tokens are the encoding of
    # the part of the video they show (a zoom window, a live source's newest seconds); None: all of it
    span_s: tuple[float, float] | None = None

    @property
    def steps(self) -> int:
        """Temporal patches: each merges `temporal_patch_size` sampled frames, and its tokens come together."""
        return int(self.video_grid_thw[0, 0])

    @property
    def step_time_s(self) -> np.ndarray:  # [T'] time of each temporal patch
        return self.token_time_s.reshape(self.steps, -1)[:, 0]

    @property
    def nbytes(self) -> int:
        tensors = (self.embeddings, *self.deepstack, self.segment_ids, self.segment_types)
        return sum(t.numel() * t.element_size() for t in tensors) + self.token_time_s.nbytes + self.token_grid.nbytes


@dataclass(frozen=True, eq=False)
class VideoPrefix:
    """The keys and values of the prompt up to the end of the video, at the first `layers` LLM layers.

    In the chat template the video opens the first user turn, after the system prompt and before any
    question, followed by its transcript, so this prefix is the same for every question about the video (ReKV's
    observation): a follow-up runs only the tokens after it (history and question) against it.
    """

    source: tuple  # the VisualTokens.source it was computed from
    transcript: str  # the transcript text after the video that it holds ("" for none; see `VideoLLM.transcript_text`)
    length: int  # tokens in the prefix
    keys: tuple[torch.Tensor, ...]  # per layer [1, Hkv, P, d], after the rotary embedding (as the model caches them)
    values: tuple[torch.Tensor, ...]  # per layer [1, Hkv, P, d]

    @property
    def layers(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def cache(self, config, layers: int | None = None, keep: torch.Tensor | None = None) -> DynamicCache:
        """A new cache holding the prefix at its first `layers` layers (all by default); `keep`: [P] bool, only
        those positions. The prefix itself is never changed by what the cache is used for."""
        cache = DynamicCache(config=config)
        for layer in range(self.layers if layers is None else layers):
            keys, values = self.keys[layer], self.values[layer]
            if keep is not None:
                keys, values = keys[:, :, keep.to(keys.device)], values[:, :, keep.to(values.device)]
            cache.update(keys, values, layer)
        return cache


@dataclass(frozen=True)
class TranscriptText:
    """The transcript as one model reads it (`VideoLLM.transcript_text`)."""

    text: str  # "" when there is nothing to read; else ends with a line break
    lines: int  # lines in the text
    total: int  # lines in the transcript


_SHORT_NOTE = "({kept} of the {total} lines fit; they are spread evenly over the video.)\n"


def spread_order(count: int) -> list[int]:
    """0 … count-1 in an order whose every beginning is spread evenly over the range (bit-reversed, the van der
    Corput sequence): the lines a short budget keeps cover the whole video, not its first minutes."""
    bits = max(1, (count - 1).bit_length())
    reversed_bits = (int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits))
    return [i for i in reversed_bits if i < count]


def plain_text(text: str) -> str:
    """Text from a visitor, a model or a file as the prompt holds it: what looks like the chat template's markers
    (`<|im_end|>`, `<|video_pad|>`) stays plain text instead of becoming those tokens."""
    return text.replace("<|", "< |")


def window_label(window: VisualTokens) -> str:
    """The line before a window in the prompt: which part of the video it shows, in seconds (for Qwen2.5-VL, whose
    M-RoPE time axis starts again at each video, the only place the window's times are written)."""
    start_s, end_s = window.span_s
    return f"\nA closer look at the video from {start_s:.1f} to {end_s:.1f} seconds:\n"


def live_label(span_s: tuple[float, float]) -> str:
    """The line before the video when it is the newest seconds of a live source (`vidchat.recording`): which
    seconds of the recording it shows, the last one being now."""
    start_s, end_s = span_s
    return f"The live video from {start_s:.1f} to {end_s:.1f} seconds; the last frame is now.\n"


@dataclass(frozen=True)
class Turn:
    """One finished exchange of the conversation."""

    question: str
    answer: str


class TokenCache:
    """Visual tokens by (video content, sampling, span, model), least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, VisualTokens] = OrderedDict()

    def get(self, key: tuple) -> VisualTokens | None:
        tokens = self._entries.get(key)
        if tokens is not None:
            self._entries.move_to_end(key)
        return tokens

    def put(self, key: tuple, tokens: VisualTokens) -> None:
        self._entries[key] = tokens
        self._entries.move_to_end(key)
        # The newest entry goes last; when it alone is over the budget it is not kept either (its session holds it).
        while self.nbytes > self.max_bytes and self._entries:
            self._entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(tokens.nbytes for tokens in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def load_network(
    model: str, device: str | None = None, layers: Callable[[int], int] | None = None
) -> tuple[object, object, int]:
    """(network, processor, LLM depth of the checkpoint) of `model` (a model id or a folder), on CUDA if present.

    layers: given the checkpoint's LLM depth, how many of its first LLM layers to load, beside the vision tower
    (what runs in the app process when another engine answers); the other layers are not read into memory."""
    folder = resolve_model(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # fp32 on CPU: bf16 matmuls are several times slower there; bf16 on GPU halves the memory.
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        config = AutoConfig.from_pretrained(folder)
        if config.model_type not in SUPPORTED_FAMILIES:
            raise ModelError(
                f"'{model}' is a {config.model_type} model; vidchat runs Qwen3-VL and Qwen2.5-VL checkpoints "
                f"(for example {DEFAULT_MODEL} or Qwen/Qwen2.5-VL-3B-Instruct)."
            )
        text = config.text_config
        depth = text.num_hidden_layers
        loaded = depth if layers is None else min(layers(depth), depth)
        if loaded < depth:
            text.num_hidden_layers = loaded
            if getattr(text, "layer_types", None):
                text.layer_types = text.layer_types[:loaded]
        processor = AutoProcessor.from_pretrained(folder)
        network = AutoModelForImageTextToText.from_pretrained(folder, config=config, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"The model in {folder} could not be loaded: {error}") from None
    return network.to(device).eval(), processor, depth


class VideoLLM:
    """A Qwen-VL video chat model loaded from a model id or a local folder."""

    # How much of the video a question may leave out: any visual token ("token"); whole temporal patches with their
    # times ("patch"); nothing, every question sees the whole clip ("none"). See `vidchat.serving` for the others.
    selection_unit: Literal["token", "patch", "none"] = "token"
    # Whether the answer is computed in this process (and so under its model lock, and from a cached video prefix of
    # every layer when the selection allows, `generate(..., prefix)`), or by a server.
    answers_here = True

    def __init__(self, model, processor, model_id: str, cache_bytes: int = 2 * 1024**3, depth: int | None = None):
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.family: str = model.config.model_type
        # LLM layers of the checkpoint; more than `model` holds when only the lower ones are loaded here
        self.depth: int = depth or model.config.text_config.num_hidden_layers
        self.cache = TokenCache(cache_bytes)
        tokenizer = processor.tokenizer
        self.video_token_id: int = processor.video_token_id
        stop = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
        eos = model.generation_config.eos_token_id
        stop.update(eos if isinstance(eos, list) else [eos])
        self.stop_ids = frozenset(i for i in stop if i is not None)

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, device: str | None = None, **kwargs) -> VideoLLM:
        """Load from weights/, the Hugging Face cache, or a download (see `vidchat.weights`). CUDA if present."""
        network, processor, _ = load_network(model, device)
        return cls(network, processor, model, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- encode ---------------------------------------------------------------------------------

    def encode(
        self, clip: Clip, progress: Callable[[float, str], None] | None = None, cached: bool = True
    ) -> VisualTokens:
        """The visual tokens of `clip`, from the cache when this video was encoded before (not `cached`: a live
        source's window, seen once, neither looked up nor kept)."""
        if not cached:
            return self._encode(clip, progress)
        key = (clip.content_hash, clip.sampling, clip.span_s, self.model_id)
        tokens = self.cache.get(key)
        if tokens is None:
            tokens = self._encode(clip, progress)
            self.cache.put(key, tokens)
        return tokens

    @torch.inference_mode()
    def _encode(self, clip: Clip, progress: Callable[[float, str], None] | None) -> VisualTokens:
        temporal_patch = self.processor.video_processor.temporal_patch_size
        # Whole temporal patches, the last padded by repeating the last frame at its own time (as the processors
        # pad; Qwen3-VL's refuses a clip shorter than one patch): a 1-frame video is one patch at t = 0.
        padding = -len(clip.frames) % temporal_patch
        frames = list(clip.frames) + [clip.frames[-1]] * padding  # T' × [h, w, 3]
        padded_times = np.concatenate([clip.times_s, np.repeat(clip.times_s[-1:], padding)])  # [T']
        inputs = self.processor(
            text=self.processor.video_token,
            videos=[frames],
            video_metadata=[self._video_metadata(padded_times, clip)],
            do_sample_frames=False,
            return_tensors="pt",
            # per-frame pixel cap as in qwen-vl-utils (the processors' future default)
            cap_pixels_per_frame=True,
        )
        grid_thw = inputs["video_grid_thw"]  # [1, 3]
        grid_t, grid_h, grid_w = (int(v) for v in grid_thw[0])
        pixels = inputs["pixel_values_videos"]  # [grid_t * grid_h * grid_w, C * temporal_patch * patch²]
        patches_per_step = grid_h * grid_w
        steps_per_chunk = max(1, _ENCODE_CHUNK_FRAMES // temporal_patch)
        embeddings, deepstack = [], []
        for start in range(0, grid_t, steps_per_chunk):
            steps = min(steps_per_chunk, grid_t - start)
            chunk = pixels[start * patches_per_step : (start + steps) * patches_per_step].to(self.device)
            out = self.model.model.get_video_features(chunk, torch.tensor([[steps, grid_h, grid_w]]).to(self.device))
            embeddings.append(out.pooler_output[0].float().cpu())  # [steps * h' * w', D]
            if self.family == "qwen3_vl":
                deepstack.append([feature[0].float().cpu() for feature in out.deepstack_features])
            if progress:
                progress((start + steps) / grid_t, "Encoding the video")
        merge = self.model.config.vision_config.spatial_merge_size
        merged_h, merged_w = grid_h // merge, grid_w // merge
        step_time_s = padded_times.reshape(grid_t, temporal_patch).mean(axis=1)  # [grid_t]
        token_grid = np.stack(
            np.meshgrid(np.arange(grid_t), np.arange(merged_h), np.arange(merged_w), indexing="ij"), axis=-1
        ).reshape(-1, 3)  # [N, 3], the order of the merger output
        patch = self.processor.video_processor.patch_size
        seconds = inputs.get("second_per_grid_ts")
        return VisualTokens(
            embeddings=torch.cat(embeddings),
            deepstack=tuple(torch.cat(layer) for layer in zip(*deepstack)),
            video_grid_thw=grid_thw,
            second_per_grid_ts=torch.as_tensor(seconds, dtype=torch.float32) if seconds is not None else None,
            segment_ids=inputs["input_ids"][0],
            segment_types=torch.as_tensor(inputs["mm_token_type_ids"][0]),
            token_time_s=step_time_s[token_grid[:, 0]],
            token_grid=token_grid,
            input_size=(grid_w * patch, grid_h * patch),
            source=(clip.content_hash, clip.sampling, clip.span_s, self.model_id),
            span_s=clip.span_s,
        )

    def _video_metadata(self, times_s: np.ndarray, clip: Clip) -> VideoMetadata:
        """What each family's processor needs to tell the model when the frames (times_s: [T'], the clip's
        padded to whole temporal patches) were shown."""
        if self.family == "qwen3_vl":
            frame_ms = np.round(times_s * _MS_PER_SECOND).astype(int)
            return VideoMetadata(
                total_num_frames=int(frame_ms[-1]) + 1,
                fps=_MS_PER_SECOND,
                frames_indices=frame_ms.tolist(),
                duration=clip.info.duration_s,
            )
        # Qwen2.5-VL places temporal patches on an evenly spaced time axis (second_per_grid_ts =
        # temporal_patch_size / fps): give it the clip's mean sampling rate.
        count = len(clip.times_s)  # the padding repeats the last time: the rate is the clip's own
        span_s = float(clip.times_s[-1] - clip.times_s[0])
        rate = (count - 1) / span_s if count > 1 and span_s > 0 else clip.sampling.fps
        return VideoMetadata(
            total_num_frames=len(times_s), fps=rate, frames_indices=list(range(len(times_s))), duration=clip.info.duration_s
        )

    # ---- prompt ---------------------------------------------------------------------------------

    def messages(
        self,
        history: Sequence[Turn],
        question: str,
        transcript: str = "",
        windows: Sequence[VisualTokens] = (),
        live_span_s: tuple[float, float] | None = None,
    ) -> list[dict]:
        """The conversation in the chat-template format: the video, then its `transcript` (`transcript_text`), go
        with the first question; the `windows` (dense looks at parts of the video, `vidchat.zoom`) go with the
        current question, each after a line that says which part of the video it shows. A live source's window
        (`live_span_s`, its first and last frame's times) comes after a line that says so."""
        messages = [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}]
        questions = [plain_text(turn.question) for turn in history] + [plain_text(question)]
        for index, text in enumerate(questions):
            content = [{"type": "text", "text": text}]
            if index == len(history):
                for window in reversed(windows):
                    content[:0] = [{"type": "text", "text": window_label(window)}, {"type": "video"}]
            if index == 0:
                content[:0] = [{"type": "video"}] + ([{"type": "text", "text": transcript}] if transcript else [])
                if live_span_s is not None:
                    content[:0] = [{"type": "text", "text": live_label(live_span_s)}]
            messages.append({"role": "user", "content": content})
            if index < len(history):
                answer = plain_text(history[index].answer)
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def transcript_text(self, transcript: Transcript, budget_tokens: int) -> TranscriptText:
        """The transcript as the model reads it after the video: one timed line per segment, the time written in
        the family's own format (Qwen3-VL's frame times `<12.3 seconds>`, Qwen2.5-VL's spans `12.3 - 15.0
        seconds`), within `budget_tokens`. When the lines do not all fit, the ones kept are spread evenly over the
        video (`spread_order`) and the text says how many of how many; it never depends on the question, so it
        stays in the cached video prefix."""
        segments = [segment for segment in transcript.segments if segment.text.strip()]
        if not segments or budget_tokens <= 0:
            return TranscriptText("", 0, len(segments))
        what = "subtitles" if transcript.source == "subtitles" else "speech (recognized)"
        head = f"\nThe video's {what}, each line with its time:\n"
        lines = [self._timed_line(segment) for segment in segments]
        tokenizer = self.processor.tokenizer
        costs = [len(ids) for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]]
        if sum(costs) + len(tokenizer(head)["input_ids"]) <= budget_tokens:
            return TranscriptText(head + "".join(lines), len(lines), len(lines))
        room = budget_tokens - len(tokenizer(head + _SHORT_NOTE.format(kept=len(lines), total=len(lines)))["input_ids"])
        kept: list[int] = []
        for index in spread_order(len(lines)):
            if costs[index] <= room:
                kept.append(index)
                room -= costs[index]
        if not kept:
            return TranscriptText("", 0, len(lines))
        kept.sort()
        note = _SHORT_NOTE.format(kept=len(kept), total=len(lines))
        return TranscriptText(head + "".join(lines[i] for i in kept) + note, len(kept), len(lines))

    def _timed_line(self, segment: Segment) -> str:
        text = plain_text(" ".join(segment.text.split()))
        if self.family == "qwen3_vl":
            return f"<{segment.start_s:.1f} seconds> {text}\n"
        return f"{segment.start_s:.1f} - {segment.end_s:.1f} seconds: {text}\n"

    def prompt(
        self,
        tokens: VisualTokens,
        history: Sequence[Turn],
        question: str,
        transcript: str = "",
        windows: Sequence[VisualTokens] = (),
    ) -> Prompt:
        """Token ids, M-RoPE positions and visual-token mask of the full prompt for this question, with the video's
        `transcript` text (`transcript_text`) after the video and the `windows` before the question.

        The visual tokens are numbered over the video's, then each window's (`Prompt.visual_index`); positions come
        from the model's own `get_rope_index` over every video of the prompt."""
        messages = self.messages(history, question, transcript, windows, tokens.span_s)
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        ids = self.processor.tokenizer(text, return_tensors="pt")["input_ids"][0]  # [L0], one placeholder per video
        places = (ids == self.video_token_id).nonzero().flatten().tolist()  # the video's, then each window's
        at = places[0]
        # The prefix ends after the video, or after the transcript when there is one (the same for any question)
        ends = at + 1
        if transcript:
            video_at = text.index(self.processor.video_token)
            before = self.processor.tokenizer(text[: text.index(transcript, video_at) + len(transcript)])["input_ids"]
            if ids[: len(before)].tolist() != before:
                raise ValueError("the transcript's tokens run into the question's: it must end with a line break")
            ends = len(before)
        videos = [tokens, *windows]
        pieces, types, cursor = [], [], 0
        for place, video in zip(places, videos, strict=True):
            pieces += [ids[cursor:place], video.segment_ids]
            types += [torch.zeros(place - cursor, dtype=torch.long), video.segment_types.long()]
            cursor = place + 1
        input_ids = torch.cat([*pieces, ids[cursor:]])[None]  # [1, L]
        mm_types = torch.cat([*types, torch.zeros(len(ids) - cursor, dtype=torch.long)])[None]  # [1, L]
        grids = torch.cat([video.video_grid_thw for video in videos])  # [V, 3]
        rope_kwargs = {}
        if self.family == "qwen2_5_vl":  # each video's own even time axis, from its own rate
            rope_kwargs = {"second_per_grid_ts": torch.cat([video.second_per_grid_ts for video in videos])}
        position_ids, _ = self.model.model.get_rope_index(
            input_ids, mm_token_type_ids=mm_types, video_grid_thw=grids, **rope_kwargs
        )  # [3, 1, L]
        visual_mask = input_ids[0] == self.video_token_id
        return Prompt(
            input_ids=input_ids,
            position_ids=position_ids,
            visual_mask=visual_mask,
            visual_index=torch.arange(int(visual_mask.sum())),
            attention_mask=torch.ones_like(input_ids),
            prefix_length=ends - 1 + len(tokens.segment_ids),
            transcript=transcript,
            windows=tuple(windows),
        )

    @torch.inference_mode()
    def video_prefix(self, tokens: VisualTokens, layers: int | None = None, transcript: str = "") -> VideoPrefix:
        """The KV of the system prompt, the video and its transcript at the first `layers` LLM layers (all by
        default)."""
        prompt = self.prompt(tokens, [], "", transcript)  # the question does not matter: the prefix ends before it
        length = prompt.prefix_length
        embeds, deepstack = self.prompt_embeddings(tokens, prompt)
        layers = self.model.config.text_config.num_hidden_layers if layers is None else layers
        cache = DynamicCache(config=self.model.config.text_config)
        self.run_layers(
            embeds[:, :length], prompt.position_ids[:, :, :length], prompt.attention_mask[:, :length], cache, layers,
            deepstack, prompt.visual_mask[:length],
        )  # fmt: skip
        kept = cache.layers[:layers]
        keys, values = tuple(c.keys for c in kept), tuple(c.values for c in kept)
        return VideoPrefix(tokens.source, transcript, length, keys, values)

    def run_layers(
        self,
        hidden: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: DynamicCache,
        layers: int,
        deepstack: Sequence[torch.Tensor] = (),
        visual_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden [1, S, D] of the tokens after those in `cache`, through the first `layers` decoder layers as the
        model's forward runs them (DeepStack added to the visual positions, visual_mask [S]); their keys and values
        are appended to `cache`. position_ids [3, 1, S]; attention_mask [1, cached + S]."""
        language_model = self.model.model.language_model
        if layers == 0:
            return hidden
        position_ids, attention_mask = position_ids.to(self.device), attention_mask.to(self.device)
        cos_sin = language_model.rotary_emb(hidden, position_ids)
        mask = create_causal_mask(
            config=language_model.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            past_key_values=cache,
            position_ids=None,
        )
        for index, decoder_layer in enumerate(language_model.layers[:layers]):
            hidden = decoder_layer(
                hidden, attention_mask=mask, position_embeddings=cos_sin, past_key_values=cache, use_cache=True
            )
            if index < len(deepstack):
                hidden = language_model._deepstack_process(hidden, visual_mask.to(self.device)[None], deepstack[index])
        return hidden

    # ---- generate -------------------------------------------------------------------------------

    def generate(
        self,
        tokens: VisualTokens,
        history: Sequence[Turn],
        question: str,
        max_new_tokens: int = 512,
        keep_indices: torch.Tensor | None = None,
        prefix: VideoPrefix | None = None,
        transcript: str = "",
        windows: Sequence[VisualTokens] = (),
    ) -> Iterator[str]:
        """Stream the answer to `question` as text pieces (greedy decoding), seeing only the visual tokens
        in `keep_indices` (all when None; numbered as `Prompt.visual_index`) at the positions the full prompt gives
        them, the video's `transcript` text (`transcript_text`) and the zoom `windows` before the question.

        prefix: the video's KV at every layer (`video_prefix`): only the tokens after the video are prefilled.
        With `keep_indices` too, the answer attends to the prefix's keys and values at the kept positions,
        which saw the whole video at the lower layers (an approximation of the kept tokens prefilled alone)."""
        full = self.prompt(tokens, history, question, transcript, windows)
        prompt = full if keep_indices is None else full.keep(keep_indices)
        start = None
        if prefix is not None:
            self.check_prefix(tokens, prefix, self.model.config.text_config.num_hidden_layers, full)
            kept = None if keep_indices is None else full.kept(keep_indices)[: full.prefix_length]  # [P] bool
            start = prefix.cache(self.model.config.text_config, keep=kept)
        tokenizer = self.processor.tokenizer
        generated: list[int] = []
        shown = ""
        for token_id in self._decode(tokens, prompt, max_new_tokens, start):
            generated.append(token_id)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            # a byte-level BPE token can end inside a multi-byte character: wait for the rest of it
            if not text.endswith("\ufffd") and len(text) > len(shown):
                yield text[len(shown) :]
                shown = text
        text = tokenizer.decode(generated, skip_special_tokens=True)
        if len(text) > len(shown):
            yield text[len(shown) :]

    @torch.inference_mode()
    def prefill_logits(self, tokens: VisualTokens, prompt: Prompt, prefix: VideoPrefix | None = None) -> torch.Tensor:
        """Logits [L, V] of the language model over the whole prompt, or [L - P, V] over the tokens after the
        video when its `prefix` (every layer) is given (for tests and benchmarks)."""
        config = self.model.config.text_config
        if prefix is not None:
            self.check_prefix(tokens, prefix, config.num_hidden_layers, prompt)
        cache = DynamicCache(config=config) if prefix is None else prefix.cache(config)
        return self.model.lm_head(self._prefill(tokens, prompt, cache))[0].float()

    def check_prefix(self, tokens: VisualTokens, prefix: VideoPrefix, layers: int, prompt: Prompt) -> None:
        """ValueError unless `prefix` is the KV of these visual tokens and of `prompt`'s transcript, at `layers`
        layers at least."""
        if prefix.source != tokens.source:
            raise ValueError(f"the video prefix was computed for {prefix.source[:1]}, not for {tokens.source[:1]}")
        if prefix.transcript != prompt.transcript:
            raise ValueError("the video prefix holds another transcript than this prompt's")
        if prefix.layers < layers:
            raise ValueError(f"the video prefix holds {prefix.layers} layers; {layers} are needed")

    def prompt_embeddings(self, tokens: VisualTokens, prompt: Prompt) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The prompt's input embeddings [1, L, D] with its visual tokens in place (the video's, then its windows'),
        and Qwen3-VL's DeepStack features of those tokens ([K, D] per layer; none for Qwen2.5-VL), on the model's
        device."""
        videos = (tokens, *prompt.windows)
        table = torch.cat([video.embeddings for video in videos]) if prompt.windows else tokens.embeddings  # [N, D]
        embeds = self.model.model.language_model.embed_tokens(prompt.input_ids.to(self.device))  # [1, L, D]
        embeds[0, prompt.visual_mask.to(self.device)] = table[prompt.visual_index].to(self.device, embeds.dtype)
        layers = zip(*(video.deepstack for video in videos)) if prompt.windows else ((d,) for d in tokens.deepstack)
        deepstack = [torch.cat(layer)[prompt.visual_index].to(self.device, embeds.dtype) for layer in layers]
        return embeds, deepstack

    @staticmethod
    def after(prompt: Prompt, start: int, deepstack: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The visual mask [L - start] of the prompt's tokens after `start`, and the DeepStack features of the visual
        tokens among them (a zoom window after a cached video prefix; none when there are none)."""
        mask = prompt.visual_mask[start:]
        count = int(mask.sum())
        return mask, [layer[len(layer) - count :] for layer in deepstack] if count else []

    def _prefill(self, tokens: VisualTokens, prompt: Prompt, cache: DynamicCache) -> torch.Tensor:
        """hidden [1, L - C, D] of the prompt's tokens after the C that `cache` holds (none, or a video prefix)."""
        start = cache.get_seq_length()
        embeds, deepstack = self.prompt_embeddings(tokens, prompt)
        assert start in (0, prompt.prefix_length), "a cache holds the video prefix or nothing"
        mask, deepstack = self.after(prompt, start, deepstack)
        extra = {}
        if deepstack:
            # the top-level forward only builds DeepStack inputs from pixels: pass them for cached tokens
            extra = dict(visual_pos_masks=mask.to(self.device)[None], deepstack_visual_embeds=deepstack)
        out = self.model.model.language_model(
            inputs_embeds=embeds[:, start:],
            position_ids=prompt.position_ids[:, :, start:].to(self.device),
            attention_mask=prompt.attention_mask.to(self.device),
            past_key_values=cache,
            use_cache=True,
            **extra,
        )
        return out.last_hidden_state  # [1, L - start, D]

    @torch.inference_mode()
    def _decode(
        self, tokens: VisualTokens, prompt: Prompt, max_new_tokens: int, cache: DynamicCache | None = None
    ) -> Iterator[int]:
        """Greedy token ids after `prompt`; `cache`: one that holds the prompt's video prefix already."""
        cache = cache if cache is not None else DynamicCache(config=self.model.config.text_config)
        hidden = self._prefill(tokens, prompt, cache)
        attention_mask = prompt.attention_mask.to(self.device)  # [1, L], grows by one per generated token
        # text after the prompt continues one position past the largest prompt position, on all three axes
        next_position = int(prompt.position_ids.max()) + 1
        language_model = self.model.model.language_model
        for step in range(max_new_tokens):
            token_id = int(self.model.lm_head(hidden[:, -1]).argmax(-1))
            if token_id in self.stop_ids:
                return
            yield token_id
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(1, 1)], dim=1)
            out = language_model(
                input_ids=torch.tensor([[token_id]], device=self.device),
                position_ids=torch.full((3, 1, 1), next_position + step, device=self.device),
                attention_mask=attention_mask,
                past_key_values=cache,
                use_cache=True,
            )
            hidden = out.last_hidden_state


@dataclass(frozen=True, eq=False)
class Prompt:
    """A tokenised prompt with its video tokens in place."""

    input_ids: torch.Tensor  # [1, L]
    position_ids: torch.Tensor  # [3, 1, L] M-RoPE (time, row, col) from the model's get_rope_index
    visual_mask: torch.Tensor  # [L] bool, True at the video tokens
    visual_index: torch.Tensor  # [K] which visual token (row of VisualTokens.embeddings) each video position holds
    attention_mask: torch.Tensor  # [1, L] 1 where the token is attended to
    prefix_length: int  # tokens up to the end of the video and its transcript (see `VideoPrefix`)
    transcript: str  # the transcript text after the video ("" for none): the prefix's key with the video
    windows: tuple[VisualTokens, ...] = ()  # dense looks at parts of the video, before the question (`vidchat.zoom`)

    @property
    def num_visual_tokens(self) -> int:
        return int(self.visual_mask.sum())

    def kept(self, keep_indices: torch.Tensor) -> torch.Tensor:
        """[L] bool: the text tokens and the visual tokens in `keep_indices`."""
        keep_sequence = ~self.visual_mask  # [L]
        keep_sequence[self.visual_mask] = torch.isin(self.visual_index, keep_indices)
        return keep_sequence

    def keep(self, keep_indices: torch.Tensor) -> Prompt:
        """The prompt without the visual tokens not in `keep_indices` (sorted); every token left keeps the
        position the full prompt gave it, so time and place in the video survive the selection."""
        keep_sequence = self.kept(keep_indices)  # [L]
        return Prompt(
            input_ids=self.input_ids[:, keep_sequence],
            position_ids=self.position_ids[:, :, keep_sequence],
            visual_mask=self.visual_mask[keep_sequence],
            visual_index=self.visual_index[keep_sequence[self.visual_mask]],
            attention_mask=self.attention_mask[:, keep_sequence],
            prefix_length=int(keep_sequence[: self.prefix_length].sum()),
            transcript=self.transcript,
            windows=self.windows,
        )

    def mask(self, keep_indices: torch.Tensor) -> Prompt:
        """The full prompt with the visual tokens not in `keep_indices` hidden from attention (the reference
        that a selection must reproduce exactly)."""
        attention_mask = self.attention_mask.clone()
        attention_mask[0, self.visual_mask] = torch.isin(self.visual_index, keep_indices).long()
        return replace(self, attention_mask=attention_mask)

