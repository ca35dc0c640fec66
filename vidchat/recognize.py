"""Speech recognition with Whisper (transformers' `WhisperForConditionalGeneration`): audio → timed lines and words.

`WhisperRecognizer.recognize(audio, offset_s)` takes 16 kHz mono samples (one voice-activity window of up to
30 s, or longer) and returns the lines Whisper hears, each with its words, on the video's clock (`offset_s` +
seconds into the audio), and the language it detected. Under the hood:
- lines come from Whisper's own timestamp tokens (`return_timestamps=True`); audio over 30 s goes through
  transformers' sequential long-form decoding, which moves its 30-s window to the last finished line;
- word times come from cross-attention alignment (dynamic time warping over the checkpoint's
  `alignment_heads`, `return_token_timestamps=True`), sub-word tokens merged into words as Whisper does;
- every time is clamped into the audio's span and kept monotonic (line after line, word after word, each word
  inside its line), because alignment can put a word past the end of the audio or before the previous one;
- the language is the token Whisper's detection put in the decoder prompt, as an ISO 639-1 code ("en", "zh").

Models: `DEFAULT_ASR_GPU` (whisper-large-v3-turbo) with a GPU, `DEFAULT_ASR_CPU` (whisper-small) without one;
see `default_asr`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from transformers import (
    AutoConfig,
    LogitsProcessor,
    LogitsProcessorList,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from vidchat.errors import ModelError
from vidchat.speech import SAMPLE_RATE_HZ, Segment, Word, tidy_segments
from vidchat.weights import resolve_model

WINDOW_S = 30.0  # Whisper hears 30 s at a time
TIME_PRECISION_S = 0.02  # Whisper's timestamp tokens are 20 ms apart

DEFAULT_ASR_GPU = "openai/whisper-large-v3-turbo"
# whisper-small on a CPU: multilingual with language detection (like turbo, unlike distil-*.en), 242 M
# parameters against turbo's 809 M, most of them in turbo's encoder (32 layers × 1280 wide, against 12 × 768),
# which every 30-s window pays for. Measured here (2 cores, fp32, random weights at the real sizes, other work
# running): small's encoder 2.1-2.4 s a window and 50-60 ms a token, about 8 s for a window of speech (~100
# tokens); turbo's encoder 23-37 s a window and ~230 ms a token, slower than the audio plays. whisper-base
# (74 M) is faster again but misses far more words, in English and more so in other languages.
DEFAULT_ASR_CPU = "openai/whisper-small"

# Decoding as the whisper-large-v3 model card recommends for long-form: greedy, falling back to sampling at
# rising temperatures when a window's text repeats itself (zlib compression ratio > 1.35) or is unlikely
# (mean log-probability < -1), and without conditioning on the previous window's text (which lets one
# hallucination spread). No `no_speech_threshold`: voice activity detection already keeps silence out, and in
# transformers the no-speech check runs the whole model once more per window.
DECODING = dict(
    temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    compression_ratio_threshold=1.35,
    logprob_threshold=-1.0,
    condition_on_prev_tokens=False,
)

# Audio longer than this is decoded in blocks, each cut at its quietest 20 ms near the end: transformers keeps
# every window's cross-attention for word alignment until the end of `generate` (about 100 MB per 30-s window
# for whisper-small), so the blocks bound memory on hours of audio.
LONG_FORM_BLOCK_S = 120.0
_QUIET_SEARCH_S = 5.0
_QUIET_FRAME = 320  # samples: 20 ms

# Languages written without spaces: there every whole character (or token run that decodes to one) is a word.
_NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}
# Punctuation that joins the word after it or before it, as in Whisper's word timestamps.
_OPENING = "\"'“¡¿([{-"
_CLOSING = "\"'.。,，!！?？:：”)]}、"


def default_asr() -> str:
    """The speech recognizer for this machine: turbo with CUDA, whisper-small on a CPU."""
    return DEFAULT_ASR_GPU if torch.cuda.is_available() else DEFAULT_ASR_CPU


@dataclass(frozen=True)
class _Decoded:
    """One line as `generate` gives it: times in seconds into the decoded audio, tokens with their times."""

    start_s: float
    end_s: float
    tokens: list[int]  # timestamp tokens included
    token_times_s: list[float]  # one per token (the time it starts); [] without word alignment


class WhisperRecognizer:
    """Whisper speech recognition: 16 kHz mono audio → lines with word times on the video clock, and the language."""

    def __init__(
        self,
        model: WhisperForConditionalGeneration,
        processor: WhisperProcessor,
        model_id: str,
        language: str | None = None,
        long_form_block_s: float = LONG_FORM_BLOCK_S,
    ):
        if long_form_block_s < WINDOW_S + _QUIET_SEARCH_S:
            raise ValueError(f"long_form_block_s must be at least {WINDOW_S + _QUIET_SEARCH_S} s")
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.name = model_id  # what hears, in the transcript cache's key (`vidchat.speech.Recognizer`)
        self.language = language  # an ISO code forces that language; None: detect it
        self.long_form_block_s = long_form_block_s
        # Extra logits processors for `generate` (tests script the tokens with `vidchat.testing.whisper.scripted`).
        self.logits_processors: list[LogitsProcessor] = []
        config = model.generation_config
        self.multilingual = bool(getattr(config, "is_multilingual", False))
        # Fine-tuned checkpoints may lack alignment heads: their lines then come without words.
        self.word_times = getattr(config, "alignment_heads", None) is not None
        self.timestamp_begin = config.no_timestamps_token_id + 1
        self.language_of_id = {i: token.strip("<|>") for token, i in getattr(config, "lang_to_id", {}).items()}
        self.special_ids = set(processor.tokenizer.all_special_ids)

    @classmethod
    def from_pretrained(cls, model_id: str | None = None, device: str | None = None) -> WhisperRecognizer:
        """Load from weights/, the Hugging Face cache, or a download (see `vidchat.weights`). CUDA if present.

        model_id: a Whisper model id or folder; None: `default_asr()`."""
        model_id = model_id or default_asr()
        folder = resolve_model(model_id)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # fp32 on CPU, where half precision is several times slower; fp16 on GPU, as OpenAI's whisper runs.
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        try:
            model_type = AutoConfig.from_pretrained(folder).model_type
            if model_type != "whisper":
                raise ModelError(
                    f"'{model_id}' is a {model_type} model, not Whisper; use a Whisper checkpoint such as "
                    f"{DEFAULT_ASR_CPU} or {DEFAULT_ASR_GPU}."
                )
            processor = WhisperProcessor.from_pretrained(folder)
            model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=dtype)
            if getattr(model.generation_config, "no_timestamps_token_id", None) is None:
                raise ModelError(f"The Whisper model in {folder} has no timestamp tokens in its generation config.")
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(f"The Whisper model in {folder} could not be loaded: {error}") from None
        return cls(model.to(device).eval(), processor, model_id)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def recognize(self, audio: np.ndarray, offset_s: float = 0.0) -> tuple[tuple[Segment, ...], str | None]:
        """The lines in `audio` ([S] float32 mono at 16 kHz) with times `offset_s` + seconds into it, and the
        detected language (ISO 639-1, e.g. "en"; None when nothing was decoded)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)  # [S]
        language = self.language if self.multilingual else "en"
        if audio.size == 0:
            return (), language
        segments: list[Segment] = []
        for start, stop in long_form_blocks(audio, int(self.long_form_block_s * SAMPLE_RATE_HZ)):
            decoded, language = self._decode(audio[start:stop], language)
            block_offset_s = offset_s + start / SAMPLE_RATE_HZ
            segments += [s for d in decoded if (s := self._segment(d, block_offset_s, language)) is not None]
        return tidy_segments(segments, offset_s, offset_s + audio.size / SAMPLE_RATE_HZ), language

    # ---- decoding ----------------------------------------------------------------------------------------

    def _decode(self, audio: np.ndarray, language: str | None) -> tuple[list[_Decoded], str | None]:
        """Whisper's lines in `audio` (times in seconds into it), and the language it decoded them in."""
        long_form = audio.size > WINDOW_S * SAMPLE_RATE_HZ
        features = self.processor.feature_extractor(
            audio,
            sampling_rate=SAMPLE_RATE_HZ,
            return_tensors="pt",
            return_attention_mask=True,  # the audio's true length: word alignment stops there, not in the padding
            # up to 30 s: padded to one window; longer: every frame, for long-form decoding
            **(dict(truncation=False, padding="longest") if long_form else {}),
        )
        input_features = features.input_features.to(self.device, self.dtype)  # [1, n_mels, frames], 100 a second
        prompt = dict(task="transcribe", language=language) if self.multilingual else {}
        with torch.inference_mode():
            if long_form:
                heard = dict(input_features=input_features)
            else:
                # One window: encoded here, once. Left to `generate`, the encoder would run twice (language
                # detection, then decoding), and with the attentions that word times need it would also keep its
                # own self-attention maps (1.2 GB a window for whisper-small; bench/speech.py).
                heard = dict(encoder_outputs=self.model.get_encoder()(input_features))
            output = self.model.generate(
                **heard,
                attention_mask=features.attention_mask.to(self.device),  # [1, frames]
                return_timestamps=True,
                return_segments=True,
                return_token_timestamps=self.word_times,
                logits_processor=LogitsProcessorList(self.logits_processors) if self.logits_processors else None,
                **prompt,
                **DECODING,
            )
        found = output["segments"][0]
        if found and language is None:
            result = found[0]["result"]  # the window's output: a dict, or its token ids when no dict was asked for
            language = self._language_of((result["sequences"] if isinstance(result, dict) else result).tolist())
        lines_of_window: dict[int, int] = {}  # the lines of one window share its `result`
        for line in found:
            lines_of_window[id(line["result"])] = lines_of_window.get(id(line["result"]), 0) + 1
        decoded = []
        for line in found:
            tokens = line["tokens"].tolist()
            start_s = float(line["start"])
            if lines_of_window[id(line["result"])] == 1 and self._unsplit(tokens):
                # A window decoded as one line without a pair of timestamps: transformers (like OpenAI's
                # whisper) starts it at the window's start, not at the timestamp it opens with.
                start_s += (tokens[0] - self.timestamp_begin) * TIME_PRECISION_S
            decoded.append(
                _Decoded(
                    start_s=start_s,
                    end_s=float(line["end"]),
                    tokens=tokens,
                    token_times_s=line["token_timestamps"].tolist() if self.word_times else [],
                )
            )
        return decoded, language

    def _unsplit(self, tokens: list[int]) -> bool:
        """Opens with a timestamp and has no two in a row (so `generate` did not split the window at them)."""
        stamps = [t >= self.timestamp_begin for t in tokens]
        return bool(stamps) and stamps[0] and not any(a and b for a, b in pairwise(stamps))

    def _language_of(self, sequence: list[int]) -> str | None:
        """The language token of a decoded window's prompt (<|startoftranscript|><|en|><|transcribe|>…)."""
        return next((self.language_of_id[token] for token in sequence[:3] if token in self.language_of_id), None)

    # ---- lines and words ---------------------------------------------------------------------------------

    def _is_text(self, token: int) -> bool:
        return token < self.timestamp_begin and token not in self.special_ids

    def _segment(self, decoded: _Decoded, offset_s: float, language: str | None) -> Segment | None:
        """A line on the video clock with its words; None when it holds no text."""
        tokenizer = self.processor.tokenizer
        text = tokenizer.decode([t for t in decoded.tokens if self._is_text(t)]).strip()
        if not text:
            return None
        words = ()
        if decoded.token_times_s:
            times = decoded.token_times_s
            words = tuple(
                Word(
                    start_s=offset_s + times[first],
                    # a word lasts until the next token starts (the next word, or the line's closing timestamp)
                    end_s=offset_s + times[min(last + 1, len(times) - 1)],
                    text=word,
                )
                for word, first, last in self._words(decoded.tokens, language)
            )
        return Segment(offset_s + decoded.start_s, offset_s + decoded.end_s, text, words)

    def _words(self, tokens: list[int], language: str | None) -> list[tuple[str, int, int]]:
        """(word, index of its first token, index of its last token) of a line's text tokens."""
        tokenizer = self.processor.tokenizer
        # Pieces: runs of tokens that decode to whole characters (a CJK character may take two or three tokens).
        pieces: list[tuple[str, int, int]] = []
        run: list[int] = []
        text_indices = [i for i, t in enumerate(tokens) if self._is_text(t)]
        for i in text_indices:
            run.append(i)
            piece = tokenizer.decode([tokens[j] for j in run])
            if not piece.endswith("\ufffd") or i == text_indices[-1]:
                pieces.append((piece, run[0], run[-1]))
                run = []
        no_spaces = language in _NO_SPACE_LANGUAGES
        words: list[list] = []  # [text, first, last]
        for piece, first, last in pieces:
            bare = piece.strip()
            closing = bool(bare) and all(ch in _CLOSING for ch in bare)
            continues = not piece[:1].isspace() and not no_spaces  # a sub-word token of a spaced language
            after_opening = bool(words) and all(ch in _OPENING for ch in words[-1][0].strip())
            if words and (continues or closing or after_opening):
                words[-1][0] += piece
                words[-1][2] = last
            else:
                words.append([piece, first, last])
        return [(text.strip(), first, last) for text, first, last in words if text.strip()]


def long_form_blocks(audio: np.ndarray, block_samples: int) -> list[tuple[int, int]]:
    """(start, stop) sample ranges of at most `block_samples` covering `audio`, each cut at the quietest 20 ms
    of the last 5 s before its end (a pause between words, where one is)."""
    blocks = []
    start = 0
    search = int(_QUIET_SEARCH_S * SAMPLE_RATE_HZ) // _QUIET_FRAME * _QUIET_FRAME
    while audio.size - start > block_samples:
        search_from = start + block_samples - search
        frames = audio[search_from : search_from + search].reshape(-1, _QUIET_FRAME)  # [F, 320]
        cut = search_from + int(np.argmin((frames**2).sum(axis=1))) * _QUIET_FRAME + _QUIET_FRAME // 2
        blocks.append((start, cut))
        start = cut
    blocks.append((start, audio.size))
    return blocks
