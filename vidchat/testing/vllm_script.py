"""Scripted words for a real vLLM server: the test analogue of `ScriptedLLM` for `vllm serve`.

A random-weight model says nothing a test can ground. This logits processor, loaded into the server with
`--logits-processors vidchat.testing.vllm_script:ScriptedWords`, forces the tokens of a scripted reply; the server
still does all the rest for real (the OpenAI request, the video embeddings and their times, prompt building,
prefix caching, batching, streaming). The script is the JSON file named by $VIDCHAT_VLLM_SCRIPT:

    [{"when": "<text of the last user message>", "say": "<reply>", "pause_s": 0.05}, ...]

The first rule whose `when` occurs in a request's last user message decides its reply, which ends with the
end-of-turn token (Whisper's end of text for a Whisper model, whose prompt has no turns: `"when": ""` matches it);
a request no rule matches gets the model's own words. In a reply, `{last_time}` stands for
the time of the last `<t seconds>` in the prompt (Qwen3-VL's frame times), written with two decimals: a reply
that depends on the request's own video, as `Script`'s callables do in process. This module runs inside the vLLM
environment: it imports vLLM, torch and transformers only.

`pause_s` (optional) holds each step of the engine that long while a reply of that rule is being forced: a tiny
model answers in milliseconds, faster than a client reads, and vLLM then merges the unread pieces of a stream into
one; paced, the stream arrives piece by piece as a real model's does.
"""

from __future__ import annotations

import json
import os
import re
import time

import torch
from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, process_dict_updates


class ScriptedWords(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        with open(os.environ["VIDCHAT_VLLM_SCRIPT"], encoding="utf-8") as file:
            rules = json.load(file)
        self.tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)
        vocabulary = self.tokenizer.get_vocab()
        self.end = vocabulary.get("<|im_end|>", self.tokenizer.eos_token_id)
        self.rules = [(rule["when"], rule["say"], rule.get("pause_s", 0.0)) for rule in rules]
        self.requests: dict[int, tuple[list[int], list[int], float]] = {}  # batch row → (reply ids, output ids, pause)

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.requests, batch_update, self._reply_for)

    def _reply_for(
        self, params, prompt_ids: list[int] | None, output_ids: list[int]
    ) -> tuple[list[int], list[int], float] | None:
        prompt = self.tokenizer.decode(prompt_ids or [])
        last_user = prompt.rsplit("<|im_start|>user", 1)[-1]
        times = re.findall(r"<([0-9.]+) seconds>", prompt)
        for when, say, pause_s in self.rules:
            if when in last_user:
                text = say.replace("{last_time}", f"{float(times[-1]):.2f}" if times else "?")
                return self.tokenizer.encode(text, add_special_tokens=False) + [self.end], output_ids, pause_s
        return None  # not scripted: the model's own words

    def apply(self, logits: torch.Tensor) -> torch.Tensor:  # [batch, vocab]
        time.sleep(max((pause_s for _, _, pause_s in self.requests.values()), default=0.0))
        for row, (reply, output_ids, _) in self.requests.items():
            forced = reply[min(len(output_ids), len(reply) - 1)]
            logits[row] = float("-inf")
            logits[row, forced] = 0.0
        return logits
