"""Scripted words for a real vLLM server: the test analogue of `ScriptedLLM` for `vllm serve`.

A random-weight model says nothing a test can ground. This logits processor, loaded into the server with
`--logits-processors vidchat.testing.vllm_script:ScriptedWords`, forces the tokens of a scripted reply; the server
still does all the rest for real (the OpenAI request, the video embeddings and their times, prompt building,
prefix caching, batching, streaming). The script is the JSON file named by $VIDCHAT_VLLM_SCRIPT:

    [{"when": "<text of the last user message>", "say": "<reply>"}, ...]

The first rule whose `when` occurs in a request's last user message decides its reply, which ends with the
end-of-turn token; a request no rule matches gets the model's own words. This module runs inside the vLLM
environment: it imports vLLM, torch and transformers only.
"""

from __future__ import annotations

import json
import os

import torch
from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, process_dict_updates


class ScriptedWords(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        with open(os.environ["VIDCHAT_VLLM_SCRIPT"], encoding="utf-8") as file:
            rules = json.load(file)
        self.tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.rules = [(rule["when"], self.tokenizer.encode(rule["say"], add_special_tokens=False) + [end]) for rule in rules]
        self.requests: dict[int, tuple[list[int], list[int]]] = {}  # batch row → (reply ids, output ids so far)

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.requests, batch_update, self._reply_for)

    def _reply_for(self, params, prompt_ids: list[int] | None, output_ids: list[int]) -> tuple[list[int], list[int]] | None:
        last_user = self.tokenizer.decode(prompt_ids or []).rsplit("<|im_start|>user", 1)[-1]
        for when, reply in self.rules:
            if when in last_user:
                return reply, output_ids
        return None  # not scripted: the model's own words

    def apply(self, logits: torch.Tensor) -> torch.Tensor:  # [batch, vocab]
        for row, (reply, output_ids) in self.requests.items():
            forced = reply[min(len(output_ids), len(reply) - 1)]
            logits[row] = float("-inf")
            logits[row, forced] = 0.0
        return logits
