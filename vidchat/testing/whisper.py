"""Whisper checkpoints with random weights, built offline, and scripted tokens for them.

`build_whisper` writes a folder that `WhisperRecognizer.from_pretrained` loads exactly like a downloaded
checkpoint: config, safetensors weights, a generation config with Whisper's fields (language and task ids,
timestamp ids, alignment heads), a byte-level BPE tokenizer trained here with Whisper's special tokens in
Whisper's order, and the log-mel feature extractor. Tiny by default (seconds in tests); `whisper_config` gives
the released architectures at their real size for benches (`real_size_of="openai/whisper-small"`), with the
real vocabulary layout, so that every matrix costs what it costs in the real model.

Random weights say nothing a test can check. `ScriptedTokens` is a logits processor that forces a given token
sequence, window by window, through the real `generate`: Whisper's own timestamp rules, long-form seeking,
segment splitting and word alignment all run, and the segments come out with known text and known times.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

TIME_PRECISION_S = 0.02  # one timestamp token per 20 ms
TIMESTAMPS = [f"<|{i * TIME_PRECISION_S:.2f}|>" for i in range(1501)]  # <|0.00|> … <|30.00|>


@dataclass(frozen=True)
class WhisperSize:
    """The parts of a Whisper architecture a builder needs (the rest is the same in every release)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    ffn_dim: int
    num_mel_bins: int
    languages: int  # 99 until large-v2; large-v3 added Cantonese (<|yue|>)
    alignment_heads: tuple[tuple[int, int], ...]  # (decoder layer, head) pairs whose cross-attention follows time
    bpe_tokens: int | None  # ordinary tokens before <|endoftext|>: 50257 in the released vocabulary; None: as trained


TINY = WhisperSize(
    d_model=64,
    encoder_layers=2,
    decoder_layers=2,
    heads=4,
    ffn_dim=128,
    num_mel_bins=80,
    languages=99,
    alignment_heads=((1, 0), (1, 1), (1, 2)),
    bpe_tokens=None,
)
# From the checkpoints' config.json and generation_config.json.
RELEASED = {
    "openai/whisper-small": WhisperSize(
        d_model=768,
        encoder_layers=12,
        decoder_layers=12,
        heads=12,
        ffn_dim=3072,
        num_mel_bins=80,
        languages=99,
        alignment_heads=((5, 3), (5, 9), (8, 0), (8, 4), (8, 7), (8, 8), (9, 0), (9, 7), (9, 9), (10, 5)),
        bpe_tokens=50257,
    ),
    "openai/whisper-large-v3-turbo": WhisperSize(
        d_model=1280,
        encoder_layers=32,
        decoder_layers=4,
        heads=20,
        ffn_dim=5120,
        num_mel_bins=128,
        languages=100,
        alignment_heads=((2, 4), (2, 11), (3, 3), (3, 6), (3, 11), (3, 14)),
        bpe_tokens=50257,
    ),
}


def whisper_config(real_size_of: str | None = None) -> WhisperSize:
    """The tiny test architecture, or a released one at its real size ("openai/whisper-small", …)."""
    if real_size_of is None:
        return TINY
    if real_size_of not in RELEASED:
        raise ValueError(f"No real size known for {real_size_of!r}; known: {', '.join(RELEASED)}")
    return RELEASED[real_size_of]


# Text the tiny tokenizer learns its merges from; any other text still encodes, byte by byte.
_CORPUS = [
    " Hello there. Second line. Third line, the last one. What does he say at the end?",
    " Preheat the oven to two hundred degrees, then wait for thirty seconds.",
    " The red square moves from the left to the right. Thanks for watching!",
    " 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?'\"()[]{}<>-_=+*/",
    " 你好，世界。红色方块在左边。",
]


def _filler_tokens(count: int, taken: dict[str, int]) -> list[str]:
    """`count` distinct lower-case strings not in `taken`: stand-ins for the released vocabulary's other tokens."""
    names = (
        "".join(letters)
        for n in itertools.count(3)
        for letters in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=n)
    )
    return list(itertools.islice((name for name in names if name not in taken), count))


def build_tokenizer(size: WhisperSize = TINY) -> WhisperTokenizer:
    """A byte-level BPE with Whisper's special tokens after the ordinary ones, in Whisper's order, then the
    1501 timestamp tokens (ordinary added tokens, as in the released tokenizers: generate takes the first id
    after <|notimestamps|> as <|0.00|>)."""
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(_CORPUS * 8, trainer=trainer)
    state = json.loads(bpe.model.__getstate__())
    vocab: dict[str, int] = state["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    if size.bpe_tokens is not None:
        for token in _filler_tokens(size.bpe_tokens - len(vocab), vocab):
            vocab[token] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    languages = [f"<|{code}|>" for code in list(LANGUAGES)[: size.languages]]
    specials = ["<|startoftranscript|>", *languages, "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]  # fmt: skip
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, additional_special_tokens=specials)
    tokenizer.add_tokens(
        [AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=False) for t in TIMESTAMPS]
    )
    tokenizer.pad_token = "<|endoftext|>"
    ids = tokenizer.convert_tokens_to_ids
    assert ids(TIMESTAMPS[0]) == ids("<|notimestamps|>") + 1 and ids(specials[0]) == ids("<|endoftext|>") + 1
    return tokenizer


def generation_config(tokenizer: WhisperTokenizer, size: WhisperSize = TINY) -> GenerationConfig:
    """Whisper's generation fields, as the released generation_config.json files have them."""
    ids = tokenizer.convert_tokens_to_ids
    end = ids("<|endoftext|>")
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        max_length=448,
        begin_suppress_tokens=[ids("Ġ"), end],  # a transcript does not start with a bare space or end at once
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in list(LANGUAGES)[: size.languages]},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        is_multilingual=True,
        alignment_heads=[list(pair) for pair in size.alignment_heads],
        return_timestamps=False,
    )


def model_config(tokenizer: WhisperTokenizer, size: WhisperSize = TINY) -> WhisperConfig:
    """The model's config for `size`, its token ids from `tokenizer` (build_tokenizer(size))."""
    generation = generation_config(tokenizer, size)
    return WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=size.num_mel_bins,
        d_model=size.d_model,
        encoder_layers=size.encoder_layers,
        decoder_layers=size.decoder_layers,
        encoder_attention_heads=size.heads,
        decoder_attention_heads=size.heads,
        encoder_ffn_dim=size.ffn_dim,
        decoder_ffn_dim=size.ffn_dim,
        max_source_positions=1500,  # 30 s of log-mel frames (3000), halved by the encoder's strided convolution
        max_target_positions=448,
        decoder_start_token_id=generation.decoder_start_token_id,
        pad_token_id=generation.pad_token_id,
        bos_token_id=generation.bos_token_id,
        eos_token_id=generation.eos_token_id,
        begin_suppress_tokens=generation.begin_suppress_tokens,
        suppress_tokens=None,
    )


def build_whisper(folder: str | Path, size: WhisperSize | None = None, seed: int = 0) -> Path:
    """Save a random-weight Whisper (default: tiny) with its processor and generation config into `folder`."""
    folder = Path(folder)
    size = size or TINY
    tokenizer = build_tokenizer(size)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(model_config(tokenizer, size)).eval()
    model.generation_config = generation_config(tokenizer, size)
    model.save_pretrained(folder)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=size.num_mel_bins), tokenizer=tokenizer
    )
    processor.save_pretrained(folder)
    return folder


# ---- scripted tokens --------------------------------------------------------------------------------------


def script_ids(tokenizer: WhisperTokenizer, text: str) -> list[int]:
    """Token ids of one window's output written as text with timestamps: "<|0.00|> Hello.<|1.50|>"."""
    ids: list[int] = []
    for part in re.split(r"(<\|\d+\.\d\d\|>)", text):
        if re.fullmatch(r"<\|\d+\.\d\d\|>", part):
            ids.append(tokenizer.convert_tokens_to_ids(part))
        elif part:
            ids += tokenizer.encode(part, add_special_tokens=False)
    return ids


class ScriptedTokens(LogitsProcessor):
    """Forces `windows[k]` (token ids, then <|endoftext|>) as the output of the k-th 30-s window `generate` decodes.

    Whisper's `generate` calls `set_begin_index` once before every window, which is how the k-th window is told
    from the step of a window (a temperature fallback retries the same window, with the same script). Windows past
    the script get none; when `windows` is a function of the window number, each gets `windows(k)`. Counts go on
    across `generate` calls (a recognizer's long-form blocks) until `reset`.

    A script that repeats itself (tokens compressing by more than `recognize.DECODING`'s ratio, 1.35) makes the
    recognizer's fallback decode that window again at every temperature: benches should script varied words.
    """

    def __init__(self, windows: Sequence[Sequence[int]] | Callable[[int], Sequence[int]], end_id: int):
        self.windows = windows
        self.end_id = end_id
        self.reset()

    def reset(self) -> None:
        self.window = -1
        self.begin_index = 0
        self.prompts: list[list[int]] = []  # each window's decoder prompt (<|startoftranscript|><|en|>…), row 0
        self._asked: int | None = None
        self._answer: Sequence[int] = ()

    def set_begin_index(self, begin_index: int) -> None:
        self.window += 1
        self.begin_index = begin_index

    def script(self, window: int) -> Sequence[int]:
        if callable(self.windows):
            if self._asked != window:  # once a window, not once a token
                self._asked, self._answer = window, self.windows(window)
            return self._answer
        return self.windows[window] if window < len(self.windows) else ()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:  # [B, vocab]
        script = self.script(max(self.window, 0))
        step = input_ids.shape[1] - self.begin_index
        if step == 0:
            self.prompts.append(input_ids[0].tolist())
        forced = script[step] if step < len(script) else self.end_id
        scores = torch.full_like(scores, float("-inf"))
        scores[:, forced] = 0.0
        return scores


def scripted(recognizer, windows: Sequence[str] | Callable[[int], str]) -> ScriptedTokens:
    """Make `recognizer` (a WhisperRecognizer) say `windows`, each written as "<|0.00|> Hello.<|1.50|>"; returns
    the processor (its `window` counts the windows decoded so far)."""
    tokenizer = recognizer.processor.tokenizer
    if callable(windows):
        script = windows
        ids: Sequence[Sequence[int]] | Callable[[int], Sequence[int]] = lambda k: script_ids(tokenizer, script(k))
    else:
        ids = [script_ids(tokenizer, text) for text in windows]
    processor = ScriptedTokens(ids, tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    recognizer.logits_processors = [processor]
    return processor


def prefer_language(model: WhisperForConditionalGeneration, tokenizer: WhisperTokenizer, code: str) -> None:
    """Make the random model detect `code` ("zh") whatever the audio: the decoder's last layer norm then gives
    the same vector at every position, and that language token's (tied) embedding points along it."""
    decoder = model.model.decoder
    with torch.no_grad():
        direction = torch.randn(decoder.layer_norm.bias.shape, generator=torch.Generator().manual_seed(0))
        decoder.layer_norm.weight.zero_()
        decoder.layer_norm.bias.copy_(direction)
        model.get_output_embeddings().weight[tokenizer.convert_tokens_to_ids(f"<|{code}|>")] = 10 * direction
