"""The model calls of the app: one at a time in this process, and inside `spaces.GPU` on a ZeroGPU Space (where GPU
work must run in functions decorated with it)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from vidchat.livechat import LiveChat
from vidchat.session import Answer, ChatSession, GroundedObject, MaskDecoder, SessionSettings, VideoLLM

try:
    import spaces
except ImportError:
    spaces = None

Progress = Callable[[float, str], None]

# One model call at a time in this process (the models are shared by every app and user): an upload's encoding
# waits for a running turn and the other way round, while uploads are decoded, and a vLLM server answers, beside
# them. Each session holds it around its own model calls (`ChatSession.open(model_lock=...)`).
MODEL_LOCK = threading.Lock()
# Uploads decoded at once (each decodes in chunks of bounded bytes, see vidchat.video).
DECODE_CONCURRENCY = 4


def gpu(duration_s: int) -> Callable:
    """`spaces.GPU` where the `spaces` package is installed (ZeroGPU Spaces), no-op elsewhere."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration_s)


@gpu(duration_s=180)
def open_session(
    path: str,
    llm: Callable[[], VideoLLM],
    settings: SessionSettings,
    progress: Progress,
    masks: MaskDecoder | None,
) -> ChatSession:
    return ChatSession.open(path, llm, settings, progress=progress, masks=masks, model_lock=MODEL_LOCK)


@gpu(duration_s=120)
def ask(session: ChatSession, question: str, progress: Progress) -> Iterator[str | Answer]:
    yield from session.ask(question, progress=progress)


@gpu(duration_s=60)
def point(session: ChatSession, t_s: float, x: float, y: float, progress: Progress) -> GroundedObject:
    return session.point_at(t_s, x, y, progress=progress)


@gpu(duration_s=120)
def live_ask(live: LiveChat, question: str, progress: Progress) -> Iterator[str | Answer]:
    yield from live.ask(question, progress=progress)


@gpu(duration_s=60)
def live_point(live: LiveChat, x: float, y: float) -> GroundedObject:
    return live.point_at(x, y)


@gpu(duration_s=180)
def live_stop(live: LiveChat, progress: Progress) -> ChatSession:
    return live.stop(progress)
