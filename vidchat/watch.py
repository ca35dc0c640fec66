"""Standing questions on a live source ("tell me when the dog sits"): the yes/no question each check asks about the
newest frames, how its reply is read, and when a check's answer makes an alert.

An alert fires when the answer turns to yes: on the first check that says yes, and again only after a check said no.
A reply that is neither yes nor no changes nothing (it neither fires nor re-arms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vidchat.vlm import plain_text

MAX_CONDITION_CHARS = 300
CHECK_QUESTION_START = "Look at the newest frames of the video."
_LEADING = re.compile(r"^\s*(?:tell me|let me know|notify me|alert me)?\s*(?:when|if|once)\s+", re.IGNORECASE)
_ANSWER = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Alert:
    """A standing question's answer turned to yes: when (the newest frame checked), and the model's reply."""

    condition: str
    t_s: float
    reply: str


def watch_condition(text: str) -> str:
    """What a standing question waits for, from what a person typed: "Tell me when the dog sits." → "the dog
    sits". ValueError when nothing is left or it is too long to be one condition."""
    condition = _LEADING.sub("", " ".join(text.split())).rstrip(" ?.!")
    if not condition:
        raise ValueError("Say what to watch for, e.g. “tell me when a person enters”.")
    if len(condition) > MAX_CONDITION_CHARS:
        raise ValueError(f"A standing question holds at most {MAX_CONDITION_CHARS} characters.")
    return condition


def check_question(condition: str) -> str:
    """The question each check asks about the newest frames."""
    return f"{CHECK_QUESTION_START} Is this happening now: {plain_text(condition)}? Answer yes or no."


def said_yes(reply: str) -> bool | None:
    """True for a reply that starts with yes, False for no, None for anything else."""
    first = _ANSWER.search(reply.lower())
    word = first.group() if first else ""
    return True if word == "yes" else False if word == "no" else None


@dataclass
class Watch:
    """One standing question and what its checks said last."""

    condition: str
    armed: bool = True  # the next yes fires

    def update(self, reply: str, t_s: float) -> Alert | None:
        """Read a check's reply (about the frames up to `t_s`): the alert when the answer turned to yes."""
        answer = said_yes(reply)
        if answer is None:
            return None
        fire = answer and self.armed
        self.armed = not answer
        return Alert(self.condition, t_s, reply.strip()) if fire else None
