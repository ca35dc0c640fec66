"""VllmLLM: answers from a running vLLM server (`vllm serve`, its OpenAI-compatible API), the rest in vidchat.

The server does what a serving engine is for: continuous batching across visitors, prefix caching, data and tensor
parallelism, many nodes. The app process keeps what has to agree with vidchat's own time axis and selection: the
checkpoint's vision tower and the LLM layers up to the selector's scoring layer, loaded from the same checkpoint
the server serves (`load_network(..., layers=...)`). A question then sends the server the visual tokens vidchat
encoded and chose, as precomputed video embeddings (the server needs `--enable-mm-embeds`):

- Qwen3-VL carries time as `<t seconds>` text before each temporal patch, so the embeddings of whole kept patches
  go with their true times (`timestamps`); the server's prompt is then token for token the one the in-process
  engine builds for the same patches.
- Qwen2.5-VL carries time in M-RoPE positions from `second_per_grid_ts`, which vLLM's API does not take with
  embeddings (rejected here as JSON): every question sends the whole clip, on vLLM's even time axis, and no
  selection applies (`selection_unit = "none"`).

Each video's embeddings carry a stable `uuid` (the tokens' source: content hash, sampling, model; and the patches
sent), so vLLM's prefix cache serves a follow-up, or another visitor asking about the same video, without
hashing the embeddings again.

`VllmRecognizer` hears speech on a vLLM server that serves a Whisper model (`/v1/audio/transcriptions`): the
server batches every visitor's recognition. What changes from the in-process recognizer: the server cuts the
lines and gives their times, but no word times (its API fills none), and it detects the language itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import wave
from collections.abc import Iterator, Sequence

import httpx
import numpy as np
import torch

from vidchat.errors import EngineError, ModelError
from vidchat.selector import default_scoring_layer, kept_per_video
from vidchat.speech import SAMPLE_RATE_HZ, Segment
from vidchat.vlm import Turn, VideoLLM, VideoPrefix, VisualTokens, load_network

_CONNECT_TIMEOUT_S = 5.0
# Between two streamed pieces: a first token on a long video can take minutes on a busy CPU server.
_READ_TIMEOUT_S = 600.0


class VllmLLM(VideoLLM):
    """A Qwen-VL model served by vLLM at `url` under the name `served_model`, with its vision tower and lower
    layers in this process."""

    answers_here = False  # the server batches the visitors' answers; its prefix cache holds their KV

    def __init__(self, model, processor, model_id: str, url: str, depth: int, cache_bytes: int = 2 * 1024**3):
        super().__init__(model, processor, model_id, cache_bytes=cache_bytes, depth=depth)
        self.url = url.rstrip("/")
        self.selection_unit = "patch" if self.family == "qwen3_vl" else "none"

    @classmethod
    def connect(cls, url: str, model: str, device: str | None = None, **kwargs) -> VllmLLM:
        """Check that the server at `url` serves `model`, then load the checkpoint's vision tower and the layers up
        to the default scoring layer (a quarter of the depth) here; ModelError saying what is wrong otherwise."""
        served = _served_models(url)
        if model not in served:
            raise ModelError(
                f"The vLLM server at {url} serves {', '.join(served) or 'no model'}, not '{model}'. Start it with "
                f"`vllm serve {model} --enable-mm-embeds …` (see the README, 'Serving many visitors'), or pass the "
                "served model's id with --model."
            )
        network, processor, depth = load_network(model, device, layers=lambda depth: default_scoring_layer(depth) + 1)
        return cls(network, processor, model, url, depth, **kwargs)

    # ---- requests ---------------------------------------------------------------------------------

    def video_item(self, tokens: VisualTokens, keep_indices: torch.Tensor | None = None) -> dict:
        """The chat-message content part for the video: its embeddings (of the kept whole patches, all when None),
        grid and, for Qwen3-VL, the time of each patch."""
        steps = torch.as_tensor(tokens.token_grid[:, 0])  # [N] temporal patch of each token
        rows = torch.arange(len(steps)) if keep_indices is None else keep_indices
        if self.family != "qwen3_vl" and len(rows) != len(steps):
            raise ValueError("Qwen2.5-VL through vLLM takes the whole clip")
        kept_steps = torch.unique(steps[rows])  # [T'], sorted
        if len(rows) != len(kept_steps) * (len(steps) // tokens.steps):
            raise ValueError("vLLM takes whole temporal patches (see selector.whole_patches)")
        # Qwen3-VL: the merger output and its DeepStack features side by side, as the server's model splits them
        features = torch.cat([tokens.embeddings[rows], *(layer[rows] for layer in tokens.deepstack)], dim=-1)
        buffer = io.BytesIO()
        torch.save(features.float().contiguous(), buffer)  # [K, D × (1 + DeepStack layers)]
        _, height, width = (int(v) for v in tokens.video_grid_thw[0])
        embeds = {
            "video_embeds": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "video_grid_thw": [len(kept_steps), height, width],
        }
        if self.family == "qwen3_vl":
            embeds["timestamps"] = [float(tokens.step_time_s[step]) for step in kept_steps]
        identity = repr((tokens.source, kept_steps.tolist())).encode()
        return {"type": "video_embeds", "video_embeds": embeds, "uuid": hashlib.sha256(identity).hexdigest()}

    def request(
        self,
        tokens: VisualTokens,
        history: Sequence[Turn],
        question: str,
        max_new_tokens: int,
        keep_indices: torch.Tensor | None = None,
        transcript: str = "",
        windows: Sequence[VisualTokens] = (),
    ) -> dict:
        """The chat-completions body: the same conversation `messages` gives the in-process engine (the transcript
        after the video, where the server's prefix cache keeps it with the video; the zoom `windows` as more videos
        before the question, each with its own times and uuid), greedy. keep_indices: over the video's tokens, then
        each window's (`Prompt.visual_index`)."""
        messages = self.messages(history, question, transcript, windows, tokens.span_s)
        videos = (tokens, *windows)
        rows = [None] * len(videos) if keep_indices is None else [r for _, r in kept_per_video(keep_indices, videos)]
        items = iter([self.video_item(video, kept) for video, kept in zip(videos, rows)])
        for message in messages:
            message["content"] = [next(items) if part["type"] == "video" else part for part in message["content"]]
        return {"model": self.model_id, "messages": messages, "max_tokens": max_new_tokens, "temperature": 0.0}

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
        """Stream the server's answer to `question` as text pieces, seeing the whole patches in `keep_indices`
        (all when None), the `transcript` and the zoom `windows`. prefix: not used (the server keeps its own);
        EngineError when the server fails."""
        body = self.request(tokens, history, question, max_new_tokens, keep_indices, transcript, windows)
        body |= {"stream": True}
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body, timeout=_timeout()) as response:
                if response.status_code != 200:
                    response.read()
                    raise EngineError(_refused(self.url, response))
                for line in response.iter_lines():
                    if not line.startswith("data:") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data:") :])
                    if "error" in chunk:
                        raise EngineError(f"The vLLM server at {self.url} failed mid-answer: {_message(chunk)}")
                    for choice in chunk.get("choices", ()):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except httpx.HTTPError as error:
            raise EngineError(_unreachable(self.url, error)) from None

    def prompt_token_ids(
        self,
        tokens: VisualTokens,
        history: Sequence[Turn],
        question: str,
        keep_indices: torch.Tensor | None = None,
        transcript: str = "",
        windows: Sequence[VisualTokens] = (),
    ) -> list[int]:
        """The token ids of the prompt the server builds for this question (its `return_token_ids`)."""
        body = self.request(tokens, history, question, 1, keep_indices, transcript, windows)
        return _call("POST", self.url, "/v1/chat/completions", json=body | {"return_token_ids": True})["prompt_token_ids"]

    def cache_counters(self) -> dict[str, float]:
        return prefix_cache_counters(self.url)


class VllmRecognizer:
    """Whisper served by vLLM at `url` under the name `model_id`: the `Recognizer` of `vidchat.speech`."""

    def __init__(self, url: str, model_id: str):
        self.url = url.rstrip("/")
        self.model_id = model_id
        self.name = f"{model_id} (vLLM)"

    @classmethod
    def connect(cls, url: str, model: str) -> VllmRecognizer:
        """Check that the server at `url` serves `model`; ModelError saying what is wrong otherwise."""
        served = _served_models(url)
        if model not in served:
            raise ModelError(
                f"The vLLM server at {url} serves {', '.join(served) or 'no model'}, not the speech recognizer "
                f"'{model}'. Start one with `vllm serve {model}` (vLLM's audio extra installed), or pass the "
                "served model's id with --asr."
            )
        return cls(url, model)

    def recognize(self, audio: np.ndarray, offset_s: float) -> tuple[tuple[Segment, ...], str | None]:
        """audio: [S] float32, 16 kHz mono, starting at `offset_s` on the video clock. The server's lines (no word
        times) on the video clock, and the language it heard."""
        data = {"model": self.model_id, "response_format": "verbose_json", "temperature": "0"}
        files = {"file": ("speech.wav", _wav(audio), "audio/wav")}
        body = _call("POST", self.url, "/v1/audio/transcriptions", data=data, files=files)
        segments = tuple(
            Segment(offset_s + float(line["start"]), offset_s + float(line["end"]), line["text"].strip())
            for line in body.get("segments") or ()
            if line.get("text", "").strip()
        )
        return segments, body.get("language") or None


def _wav(audio: np.ndarray) -> bytes:
    """16-bit PCM WAV of [S] float32 samples at 16 kHz."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")  # [S]
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def prefix_cache_counters(url: str) -> dict[str, float]:
    """The prefix-cache counters of the vLLM server at `url` (`/metrics`): tokens looked up and tokens found, since
    it started."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=_timeout()).text
    except httpx.HTTPError as error:
        raise EngineError(_unreachable(url, error)) from None
    counters = {}
    for name in ("prefix_cache_queries", "prefix_cache_hits"):
        values = re.findall(rf"^vllm:{name}_total\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE)
        counters[name] = sum(float(value) for value in values)  # one line per engine (data parallel)
    return counters


def _served_models(url: str) -> list[str]:
    return [entry["id"] for entry in _call("GET", url, "/v1/models").get("data", ())]


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(_READ_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)


def _call(method: str, url: str, path: str, **content) -> dict:
    """The server's JSON answer to one request (`content`: httpx's json=, or data= and files=); EngineError when
    it is down or refuses."""
    try:
        response = httpx.request(method, f"{url.rstrip('/')}{path}", timeout=_timeout(), **content)
    except httpx.HTTPError as error:
        raise EngineError(_unreachable(url, error)) from None
    if response.status_code != 200:
        raise EngineError(_refused(url, response))
    return response.json()


def _unreachable(url: str, error: Exception) -> str:
    return (
        f"The vLLM server at {url} is not answering ({type(error).__name__}: {error}). Check that `vllm serve` is "
        "running there (see the README, 'Serving many visitors'); your conversation is kept, ask again when it is."
    )


def _refused(url: str, response: httpx.Response) -> str:
    try:
        detail = _message(response.json())
    except ValueError:
        detail = response.text[:300]
    return f"The vLLM server at {url} refused the request (HTTP {response.status_code}): {detail}"


def _message(payload: dict) -> str:
    error = payload.get("error", payload)
    return str(error.get("message", error)) if isinstance(error, dict) else str(error)
