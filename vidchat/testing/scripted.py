"""A video model whose words are scripted: the answer and the grounding reply are fixed text.

Everything else stays real: the session, the selector (on the real tiny network), the answer and grounding
parsers, SAM 2 on the clip, the overlays and the page. The browser and API tests use it to make an answer hold
a known time and object. Either text may be a function of the visual tokens the session passes to the model,
so that each session's answer can be told from another's (bench/load.py checks that no answer reaches the
wrong session).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from vidchat.session import GROUNDING_REQUEST_START, ModelKind, load_model
from vidchat.vlm import Turn, VideoLLM, VideoPrefix, VisualTokens
from vidchat.watch import CHECK_QUESTION_START


@dataclass(frozen=True)
class Script:
    answer: str | Callable[[VisualTokens], str]
    grounding: str | Callable[[VisualTokens], str] = "[]"
    check: str | Callable[[VisualTokens], str] = "no"  # the reply to a live source's standing-question check


class ScriptedLLM(VideoLLM):
    """The real model (encoding, prompts, selection) with `generate` streaming the `Script` word by word.

    runs_model: first generate as many tokens as the scripted text has with the real model and drop them, so that
    a turn costs what a real answer of that length costs (a load bench comparing engines)."""

    def __init__(self, llm: VideoLLM, script: Script, runs_model: bool = False):
        super().__init__(llm.model, llm.processor, llm.model_id)
        self.cache = llm.cache  # the visual tokens of the real model's cache are the same tokens
        self.script = script
        self.runs_model = runs_model

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
        text = self.script.answer
        if question.startswith(GROUNDING_REQUEST_START):
            text = self.script.grounding
        elif question.startswith(CHECK_QUESTION_START):
            text = self.script.check
        if callable(text):
            text = text(tokens)
        if self.runs_model:
            length = len(self.processor.tokenizer(text)["input_ids"])
            for _ in super().generate(tokens, history, question, length, keep_indices, prefix, transcript, windows):
                pass
        yield from re.findall(r"\s*\S+", text)


def scripted_loader(script: Script, runs_model: bool = False) -> Callable[[ModelKind, str], object]:
    """`load_model`, with the video model's words replaced by `script` (for `VidchatApp(load=...)`)."""

    def load(kind: ModelKind, model_id: str) -> object:
        model = load_model(kind, model_id)
        return ScriptedLLM(model, script, runs_model) if kind == "llm" else model

    return load
