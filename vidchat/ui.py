"""The web app: Gradio Blocks over `vidchat.session`.

What is here and nowhere else:
- the model registry: each model loads once per process, in a background thread, its state shown in the page;
- one `Workspace` per browser session (its ChatSession, its conversation, its upload and its folder), closed
  when the tab closes or after a long idle time, all of them within the server's `ServerLimits` (sessions,
  memory, disk), the least recently used making room;
- the page: player with a client-side overlay canvas (masks, points, labels drawn in sync with playback from
  `ChatSession.overlay()`), chat with clickable times and coloured object names, click-to-refer, examples,
  settings, downloads; and the named API endpoints `/upload`, `/ask`, `/point`, `/export` for gradio_client.

Everything the app shows comes from the session; this module formats it and wires events, nothing more.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import gradio as gr
import gradio.utils
import torch

from vidchat.errors import ModelError, ServerBusyError, VidchatError, VideoError
from vidchat.grounding import TimeSpan, format_timestamp, name_spans
from vidchat.segment import DEFAULT_SAM2, SAM2_CHECKPOINTS, MaskDecoder
from vidchat.selector import SelectorSettings
from vidchat.session import Answer, ChatSession, GroundedObject, SessionSettings, clean_question
from vidchat.video import bytes_text
from vidchat.vlm import DEFAULT_MODEL, VideoLLM, VisualTokens

try:  # Hugging Face ZeroGPU: GPU work must run inside functions decorated with spaces.GPU
    import spaces
except ImportError:
    spaces = None

MODEL_CHOICES = (
    DEFAULT_MODEL,
    "Qwen/Qwen3-VL-4B-Instruct",
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
)
NO_MASKS = "none"  # the mask-model setting that turns SAM 2 off
POINT_QUESTION = "What is this?"
Progress = Callable[[float, str], None]


def gpu(duration_s: int) -> Callable:
    """`spaces.GPU` where the `spaces` package is installed (ZeroGPU Spaces), no-op elsewhere."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration_s)


# ---- models: loaded once per process, in the background ------------------------------------------------

# The model registry: (kind, model id or folder) → loaded model. The only module-level mutable state: a model
# is a few GB, so every app built in this process (and every user) shares one copy.
_LOADED: dict[tuple[str, str], object] = {}
_LOAD_LOCK = threading.Lock()  # one load at a time: two checkpoints never fill memory together
# One model call at a time in this process (the models above are shared by every app and user): an upload's encode
# waits for a running turn and the other way round, while uploads are decoded beside them (see `build`).
_MODEL_LOCK = threading.Lock()
# Uploads decoded at once (each decodes in chunks of bounded bytes, see vidchat.video).
DECODE_CONCURRENCY = 4


def load_model(kind: str, model_id: str) -> VideoLLM | MaskDecoder:
    """The loaded model `model_id` ("llm" or "sam"), loading it on first use (ModelError if it cannot be)."""
    with _LOAD_LOCK:
        key = (kind, model_id)
        if key not in _LOADED:
            loader = VideoLLM.from_pretrained if kind == "llm" else MaskDecoder.from_pretrained
            _LOADED[key] = loader(model_id)
        return _LOADED[key]


@dataclass
class ModelSlot:
    """One model the app uses, and how far its loading got."""

    kind: str  # "llm" | "sam"
    model_id: str
    state: str = "loading"  # "loading" | "ready" | "failed" | "off"
    model: object | None = None
    error: str = ""
    seconds: float = 0.0  # how long loading took
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Script:
    """TEST HOOK: the language model's words replaced by fixed text (the answer, then the grounding reply).

    Everything else stays real: the session, the answer parser, the grounding parser, SAM 2 on the clip, the
    overlays and the page. Used by the browser test to make the answer contain a known time and object. Either
    text may be a function of the visual tokens the session passes to the model, so that each session's answer
    can be told from another's (bench/load.py checks that no answer reaches the wrong session).
    """

    answer: str | Callable[[VisualTokens], str]
    grounding: str | Callable[[VisualTokens], str] = "[]"


class ScriptedLLM:
    """A VideoLLM whose `generate` streams a `Script` instead of the model's words (see `Script`)."""

    def __init__(self, llm: VideoLLM, script: Script):
        self._llm = llm
        self._script = script

    def __getattr__(self, name: str):
        return getattr(self._llm, name)

    def generate(self, tokens, history, question, max_new_tokens=512, keep_indices=None) -> Iterator[str]:
        # The session's grounding request asks for JSON; every other call is an answer.
        text = self._script.grounding if "Reply only with JSON" in question else self._script.answer
        if callable(text):
            text = text(tokens)
        yield from re.findall(r"\s*\S+", text)  # word by word, as a stream


class ModelRegistry:
    """The app's video model and mask model, loaded in a background thread; the page shows their state."""

    def __init__(self, llm_id: str, sam_id: str | None, script: Script | None = None):
        self.script = script
        self._lock = threading.Lock()
        self.llm_slot = ModelSlot("llm", llm_id, state="loading")
        self.sam_slot = self._sam_slot(sam_id)

    @staticmethod
    def _sam_slot(sam_id: str | None) -> ModelSlot:
        if not sam_id or sam_id == NO_MASKS:
            slot = ModelSlot("sam", NO_MASKS, state="off")
            slot.done.set()
            return slot
        return ModelSlot("sam", sam_id)

    def start(self) -> None:
        """Load the models that are not loaded yet, in a daemon thread (the page is served meanwhile)."""
        slots = [slot for slot in (self.llm_slot, self.sam_slot) if slot.state == "loading"]
        threading.Thread(target=self._load, args=(slots,), name="vidchat-models", daemon=True).start()

    def configure(self, llm_id: str, sam_id: str | None) -> None:
        """Switch to other models (loaded in the background); sessions already open keep theirs."""
        llm_id = llm_id.strip() or DEFAULT_MODEL
        sam_id = (sam_id or "").strip() or NO_MASKS
        with self._lock:
            if llm_id != self.llm_slot.model_id or self.llm_slot.state == "failed":
                self.llm_slot = ModelSlot("llm", llm_id)
            if sam_id != self.sam_slot.model_id or self.sam_slot.state == "failed":
                self.sam_slot = self._sam_slot(sam_id)
        self.start()

    def _load(self, slots: Sequence[ModelSlot]) -> None:
        for slot in slots:
            started = time.monotonic()
            try:
                model = load_model(slot.kind, slot.model_id)
                if slot.kind == "llm" and self.script is not None:
                    model = ScriptedLLM(model, self.script)
                slot.model, slot.state = model, "ready"
            except VidchatError as error:
                slot.error, slot.state = str(error), "failed"
            except Exception as error:  # a broken checkpoint: say so in the page instead of dying silently
                slot.error, slot.state = f"{type(error).__name__}: {error}", "failed"
            slot.seconds = time.monotonic() - started
            slot.done.set()

    @property
    def settled(self) -> bool:
        return self.llm_slot.done.is_set() and self.sam_slot.done.is_set()

    def llm(self, timeout_s: float | None = None) -> VideoLLM:
        """The video model, waiting for it to load; ModelError with the fix when it could not be loaded."""
        slot = self.llm_slot
        if not slot.done.wait(timeout_s):
            raise ModelError(f"The video model {slot.model_id} is still loading; try again in a moment.")
        if slot.state != "ready":
            raise ModelError(slot.error)
        return slot.model

    def masks(self, wait: bool = True) -> MaskDecoder | None:
        """The SAM 2 decoder, or None when masks are off or it could not be loaded."""
        slot = self.sam_slot
        if wait:
            slot.done.wait()
        return slot.model if slot.state == "ready" else None

    def status_html(self) -> str:
        device = f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"
        parts = [_slot_html(self.llm_slot, "Video model"), _slot_html(self.sam_slot, "Masks"), _pill("idle", device)]
        errors = [slot for slot in (self.llm_slot, self.sam_slot) if slot.state == "failed"]
        fixes = "".join(
            f'<div class="vc-fix"><b>{"Video model" if s.kind == "llm" else "Masks"}:</b> {_code_html(s.error)}</div>'
            for s in errors
        )
        return f'<div class="vc-status">{"".join(parts)}</div>{fixes}'


class PendingLLM:
    """Stands for the video model while it loads: frame decoding goes ahead, and the first use of the model
    (encoding the frames) waits for it. Bound to the model that was current at that first use."""

    def __init__(self, registry: ModelRegistry, on_wait: Callable[[str], None] | None = None):
        self._registry = registry
        self._on_wait = on_wait
        self._llm: VideoLLM | None = None

    def resolve(self) -> VideoLLM:
        if self._llm is None:
            slot = self._registry.llm_slot
            if not slot.done.is_set() and self._on_wait is not None:
                self._on_wait(f"Waiting for the video model {slot.model_id} to finish loading…")
            self._llm = self._registry.llm()
        return self._llm

    def __getattr__(self, name: str):
        return getattr(self.resolve(), name)


def _slot_html(slot: ModelSlot, title: str) -> str:
    name = html.escape(_short_name(slot.model_id))
    if slot.state == "loading":
        return _pill("loading", f"{title}: loading {name}…")
    if slot.state == "ready":
        return _pill("ok", f"{title}: {name}")
    if slot.state == "off":
        return _pill("idle", f"{title}: off")
    return _pill("error", f"{title}: {name} not available")


def _pill(kind: str, text: str) -> str:
    return f'<span class="vc-pill vc-{kind}"><span class="vc-dot"></span>{text}</span>'


def _code_html(message: str) -> str:
    """The error's text with `commands` shown as code."""
    parts = html.escape(message).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _short_name(model_id: str) -> str:
    path = Path(model_id)
    return path.name if path.is_absolute() or model_id.startswith(".") else model_id


# ---- one browser session -------------------------------------------------------------------------------


@dataclass
class ChatEntry:
    """A message of the conversation as the page shows it."""

    role: str  # "user" | "assistant"
    text: str
    times: tuple[TimeSpan, ...] = ()  # spans of `text` that become time links
    note: str = ""  # a small line under the message: progress, what was found, an error
    error: bool = False


@dataclass(frozen=True)
class ServerLimits:
    """What one server keeps for all its visitors together. Past a limit the least recently used sessions make
    room: first their SAM 2 features go (they are computed again when needed), then the sessions themselves;
    a session in the middle of a call is never touched. When that is not enough the new video is refused."""

    max_sessions: int = 32  # browser tabs (and API clients) with a workspace
    memory_bytes: int = 8 * 1024**3  # frames, visual tokens, SAM 2 features, masks and answers of every session
    disk_bytes: int = 16 * 1024**3  # uploads, playable copies and exports of every session
    idle_timeout_s: float = 2 * 3600  # a session not used this long is closed
    disconnect_grace_s: float = 60  # a session whose page disconnected is closed after this long without a request

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if not (self.memory_bytes > 0 and self.disk_bytes > 0 and self.idle_timeout_s > 0):
            raise ValueError("memory_bytes, disk_bytes and idle_timeout_s must be positive")
        if self.disconnect_grace_s < 0:
            raise ValueError(f"disconnect_grace_s must not be negative, got {self.disconnect_grace_s}")


class CachedInputs:
    """The video files in Gradio's cache that workspaces opened (a visitor's upload, Gradio's copy of an example):
    a file goes when the last workspace holding it lets go. Gradio names a file by its content, so two visitors
    who upload the same video share one file; the examples' copies, shared by every visitor, always stay."""

    def __init__(self, cache_dir: Path, forget: Callable[[Sequence[str]], None] = lambda paths: None):
        self.cache_dir = cache_dir.resolve()
        self.keep: set[Path] = set()
        self.forget = forget  # told the paths of deleted files (Gradio keeps lists of the files it handed out)
        self._holders: dict[Path, int] = {}
        self._lock = threading.Lock()

    def hold(self, path: str | Path) -> Path | None:
        """Count a workspace as using `path`; None (nothing to let go of later) outside the cache or for an example."""
        path = Path(path).resolve()
        if path in self.keep or not path.is_relative_to(self.cache_dir) or path == self.cache_dir:
            return None
        with self._lock:
            self._holders[path] = self._holders.get(path, 0) + 1
        return path

    def release(self, path: Path) -> None:
        with self._lock:
            left = self._holders[path] - 1
            if left:
                self._holders[path] = left
                return
            del self._holders[path]
            path.unlink(missing_ok=True)
            if path.parent != self.cache_dir:  # Gradio's per-file folder
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
        self.forget([str(path)])

    def discard(self, path: str | Path) -> None:
        """Delete `path` (an upload no workspace will open) unless a workspace holds it or it is an example's."""
        if (held := self.hold(path)) is not None:
            self.release(held)

    def __len__(self) -> int:
        return len(self._holders)


class Workspace:
    """A browser session's video, ChatSession, conversation and folder (playable copy and exports)."""

    def __init__(self, key: str, root: Path, inputs: CachedInputs, notice: str = ""):
        self.key = key
        root.mkdir(parents=True, exist_ok=True)
        # An unguessable name: Gradio serves the files under its cache to whoever asks for their path.
        self.folder = root / f"session-{secrets.token_hex(16)}"
        self.folder.mkdir()
        self.inputs = inputs
        self.input: Path | None = None  # the video file in Gradio's cache this workspace holds
        self.session: ChatSession | None = None
        self.video_name = ""
        self.entries: list[ChatEntry] = []
        self.exports = 0
        self.overlay_version = 0
        self.notice = notice  # why an earlier session of this tab was closed, until it opens a new video
        # One model call per workspace at a time. A plain Lock: a streaming handler holds it across yields, and
        # Gradio may resume a generator on another thread than the one that acquired it.
        self.lock = threading.Lock()
        self.touched = time.monotonic()
        # Measured by the thread holding `lock` after each call (another session's objects must not be read
        # while its turn adds to them); the server's limits add these up.
        self.memory_bytes = 0
        self.disk_bytes = 0

    def release_input(self) -> None:
        if self.input is not None:
            self.inputs.release(self.input)
            self.input = None

    def reset(self) -> None:
        """Forget the video (its session's SAM 2 state is released), its files and the conversation."""
        if self.session is not None:
            self.session.close()
        self.session = None
        self.video_name = ""
        self.entries = []
        self.overlay_version += 1
        self.release_input()
        files = [str(path) for path in self.folder.rglob("*") if path.is_file()]
        for item in self.folder.iterdir() if self.folder.exists() else ():
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        self.inputs.forget(files)
        self.measure()

    def measure(self) -> None:
        """Take this workspace's memory and disk bytes (by the thread holding `lock`, or before it is shared)."""
        self.memory_bytes = self.session.memory_bytes() if self.session is not None else 0
        files = [path for path in self.folder.rglob("*") if path.is_file()]
        if self.input is not None and self.input.exists():
            files.append(self.input)
        self.disk_bytes = sum(path.stat().st_size for path in files)

    def close(self, wait: bool = True) -> bool:
        """Release everything, once a call still running in it has finished; without `wait`, False (and nothing
        done) when a call is running."""
        if not self.lock.acquire(blocking=wait):
            return False
        try:
            self.reset()
            shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            self.lock.release()
        return True


class Workspaces:
    """Workspaces by Gradio session hash: one per browser tab (and per gradio_client Client), within the
    server's limits (see `ServerLimits`)."""

    def __init__(self, root: Path, limits: ServerLimits, inputs: CachedInputs):
        self.root = root
        self.limits = limits
        self.inputs = inputs
        self._items: dict[str, Workspace] = {}
        # Why the sessions of recent keys were closed, told to the tab when it comes back (the latest 1024).
        self._closed: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, request: gr.Request | None) -> Workspace:
        """The workspace of the request's browser session, made when it has none (ServerBusyError when the
        server holds `max_sessions` busy ones)."""
        key = getattr(request, "session_hash", None) or "local"
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, w in self._items.items() if now - w.touched > self.limits.idle_timeout_s]:
                self._evict(stale, f"Your video was closed after {_duration(self.limits.idle_timeout_s)} without use.")
            workspace = self._items.get(key)
            if workspace is None:
                while len(self._items) >= self.limits.max_sessions:
                    if not self._evict_least_recent(
                        exclude=key, reason="Your video was closed to make room for other visitors."
                    ):
                        raise ServerBusyError(
                            f"The server is busy: {len(self._items)} sessions are in use, the most it takes at "
                            "once. Try again in a minute."
                        )
                notice = self._closed.pop(key, "")
                workspace = self._items[key] = Workspace(key, self.root, self.inputs, notice)
            workspace.touched = now
            return workspace

    def make_room(self, workspace: Workspace) -> bool:
        """Bring the sessions within the memory and disk limits, taking room from the least recently used
        other ones; False when the busy ones alone are over a limit."""
        reason = "Your video was closed to make room for other visitors."
        with self._lock:
            others = sorted((w for w in self._items.values() if w is not workspace), key=lambda w: w.touched)
            for other in others:  # SAM 2 features first: they are computed again when needed
                if self._within_limits():
                    return True
                if other.session is not None and other.session.feature_bytes and other.lock.acquire(blocking=False):
                    try:
                        other.session.drop_features()
                        other.measure()
                    finally:
                        other.lock.release()
            while not self._within_limits():
                if not self._evict_least_recent(exclude=workspace.key, reason=reason, holding_only=True):
                    return False
            return True

    def _within_limits(self) -> bool:
        return self.memory_bytes <= self.limits.memory_bytes and self.disk_bytes <= self.limits.disk_bytes

    def _evict_least_recent(self, exclude: str, reason: str, holding_only: bool = False) -> bool:
        """Close the least recently used workspace that is not busy (not `exclude`; with `holding_only`, one
        that holds memory or disk); False if there is none."""
        for other in sorted(self._items.values(), key=lambda w: w.touched):
            if holding_only and not (other.memory_bytes or other.disk_bytes):
                continue
            if other.key != exclude and self._evict(other.key, reason):
                return True
        return False

    def _evict(self, key: str, reason: str) -> bool:
        workspace = self._items[key]
        had_video = workspace.session is not None
        if not workspace.close(wait=False):
            return False  # a call is running in it
        del self._items[key]
        if had_video:
            self._tell_closed(key, reason)
        return True

    def _tell_closed(self, key: str, reason: str) -> None:
        """Keep why the session of `key` was closed, for its tab's next request (the latest 1024 reasons)."""
        self._closed[key] = reason + " Upload it again to go on."
        while len(self._closed) > 1024:
            del self._closed[next(iter(self._closed))]

    def disconnected(self, request: gr.Request | None) -> None:
        """The session's page went away (Gradio's unload: its heartbeat connection ended). Its workspace is
        closed once `disconnect_grace_s` pass without a request from it: a page that reconnects (a network
        blip, a laptop waking up) or an API client that goes on calling keeps its session."""
        key = getattr(request, "session_hash", None) or "local"
        gone_at = time.monotonic()
        if self.limits.disconnect_grace_s <= 0:
            self._close_if_gone(key, gone_at)
            return
        timer = threading.Timer(self.limits.disconnect_grace_s, self._close_if_gone, (key, gone_at))
        timer.daemon = True
        timer.start()

    def _close_if_gone(self, key: str, gone_at: float) -> None:
        with self._lock:
            workspace = self._items.get(key)
            if workspace is None or workspace.touched > gone_at:
                return
            del self._items[key]
            if workspace.session is not None:
                self._tell_closed(key, "Your video was closed after this page disconnected.")
        workspace.close()  # after a call still running in it

    def close_all(self) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), {}
        for workspace in items:
            workspace.close()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def memory_bytes(self) -> int:
        return sum(w.memory_bytes for w in list(self._items.values()))

    @property
    def disk_bytes(self) -> int:
        return sum(w.disk_bytes for w in list(self._items.values()))


# ---- GPU work (spaces.GPU on ZeroGPU) --------------------------------------------------------------------


@gpu(duration_s=180)
def _open(path: str, llm, settings: SessionSettings, progress: Progress, masks: MaskDecoder | None) -> ChatSession:
    # Decoding runs beside other model calls; the encoding takes the model lock.
    return ChatSession.open(path, llm, settings, progress=progress, masks=masks, model_lock=_MODEL_LOCK)


@gpu(duration_s=120)
def _ask(session: ChatSession, question: str, progress: Progress) -> Iterator[str | Answer]:
    with _MODEL_LOCK:
        yield from session.ask(question, progress=progress)


@gpu(duration_s=60)
def _point(session: ChatSession, t_s: float, x: float, y: float, progress: Progress) -> GroundedObject:
    with _MODEL_LOCK:
        return session.point_at(t_s, x, y, progress=progress)


# ---- what the page shows: formatting -------------------------------------------------------------------


def time_link(text: str, t_s: float) -> str:
    """A markdown link that seeks the player: `[00:12.4](#t=12.4)`."""
    return f"[{text}](#t={t_s:.1f})"


def answer_markdown(text: str, times: Sequence[TimeSpan], objects: Sequence[GroundedObject] = ()) -> str:
    """The answer as chat markdown: each time a link that seeks the player (a span seeks to its start), each
    object's name in its colour. Times already written as markdown links are left as they are."""
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), not overlapping
    taken: list[tuple[int, int]] = [(m.start(), m.end()) for m in re.finditer(r"\[[^\]\n]*\]\([^)\s]*\)", text)]

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    for span in sorted(times, key=lambda s: s.char_start):
        start, end = span.char_start, span.char_end
        if start < 0 or end > len(text) or end <= start or not free(start, end):
            continue
        edits.append((start, end, time_link(text[start:end], span.start_s)))
        taken.append((start, end))
    # longer names first, so that "red square" wins over "square"
    for obj in sorted(objects, key=lambda o: -len(o.label)):
        for start, end in name_spans(text, obj.label):
            if free(start, end):
                name = html.escape(text[start:end])
                edits.append((start, end, f'<span class="vc-obj" style="color:{obj.color}">{name}</span>'))
                taken.append((start, end))
    out = text
    for start, end, replacement in sorted(edits, reverse=True):
        out = out[:start] + replacement + out[end:]
    return out


def chat_messages(entries: Sequence[ChatEntry], objects: Sequence[GroundedObject]) -> list[dict]:
    """The conversation in the Chatbot's message format; every answer re-rendered with the objects known now."""
    messages = []
    for entry in entries:
        if entry.role == "user":
            messages.append({"role": "user", "content": entry.text})
            continue
        body = answer_markdown(entry.text, entry.times, objects)
        if entry.note:
            css = "vc-note vc-error" if entry.error else "vc-note"
            body = (
                f'{body}\n\n<span class="{css}">{entry.note}</span>'
                if body
                else f'<span class="{css}">{entry.note}</span>'
            )
        messages.append({"role": "assistant", "content": body})
    return messages


def objects_html(session: ChatSession | None) -> str:
    """The object list: colour, name, where it is visible, and a checkbox that shows or hides its mask."""
    if session is None or not session.objects:
        hint = (
            "Objects the answers mention appear here, each in its own colour. "
            "Pause the video and click on something to ask about it."
        )
        return f'<div class="vc-objects"><div class="vc-objects-empty">{hint}</div></div>'
    rows = []
    for obj in sorted(session.objects.values(), key=lambda o: o.object_id):
        masklet = obj.masklet
        if masklet is not None and masklet.visible.any():
            first = float(masklet.times_s[int(masklet.visible.argmax())])
            seen = f"{int(masklet.visible.sum())}/{len(masklet.visible)} frames · from "
            seen += f'<a href="#t={first:.1f}">{format_timestamp(first)}</a>'
        elif masklet is not None:
            seen = "not found by SAM 2"
        else:
            seen = "located" if obj.boxes or obj.points else ""
        rows.append(
            f'<label class="vc-object"><input type="checkbox" class="vc-toggle" value="{obj.object_id}" checked>'
            f'<span class="vc-swatch" style="background:{obj.color}"></span>'
            f'<span class="vc-name" style="color:{obj.color}">{html.escape(obj.label)}</span>'
            f'<span class="vc-meta">{seen}</span></label>'
        )
    return f'<div class="vc-objects">{"".join(rows)}</div>'


def overlay_payload(workspace: Workspace) -> dict:
    """What the overlay canvas draws: per sampled frame the objects' mask PNGs (from the session), and the
    objects' points; positions in source pixels of a width × height video."""
    session = workspace.session
    if session is None:
        return {"ready": False, "version": workspace.overlay_version, "frames": [], "points": []}
    info = session.clip.info
    times = session.clip.times_s
    step_s = float(times[1] - times[0]) if len(times) > 1 else 1.0
    points = [
        {"id": obj.object_id, "t_s": p.t_s, "x": p.x, "y": p.y, "color": obj.color}
        for obj in session.objects.values()
        for p in obj.points
        if p.t_s is not None
    ]
    return {
        "ready": True,
        "version": workspace.overlay_version,
        "video": session.clip.content_hash[:16],
        "width": info.width,
        "height": info.height,
        "step_s": step_s,
        "frames": session.overlay(),
        "points": points,
    }


def video_summary(session: ChatSession) -> str:
    info, clip = session.clip.info, session.clip
    return (
        f"{len(clip.times_s)} frames sampled from {format_timestamp(0)}–{format_timestamp(info.duration_s)} "
        f"({info.width}×{info.height}, {info.codec})"
    )


def groundings_json(answer: Answer, session: ChatSession) -> dict:
    """An answer for API clients: text, times, boxes, points (source pixels, seconds) and its objects."""
    found = answer.groundings
    return {
        "text": answer.text,
        "done": True,
        "times": [
            {
                "start_s": s.start_s,
                "end_s": s.end_s,
                "text": answer.text[s.char_start : s.char_end] if s.char_start >= 0 else "",
                "label": s.label,
            }
            for s in found.times
        ],
        "boxes": [
            {"t_s": b.t_s, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2, "label": b.label} for b in found.boxes
        ],
        "points": [{"t_s": p.t_s, "x": p.x, "y": p.y, "label": p.label} for p in found.points],
        "objects": [object_json(obj) for obj in session.objects.values() if obj.object_id in set(answer.object_ids)],
        "objects_dropped": answer.objects_dropped,
    }


def object_json(obj: GroundedObject) -> dict:
    """An object and a summary of its masklet."""
    summary = {"object_id": obj.object_id, "label": obj.label, "color": obj.color, "masklet": None}
    masklet = obj.masklet
    if masklet is not None:
        boxes = [masklet.box(i) if masklet.visible[i] else None for i in range(len(masklet.rles))]
        summary["masklet"] = {
            "frames": len(masklet.rles),
            "visible_frames": int(masklet.visible.sum()),
            "times_s": [float(t) for t in masklet.times_s],
            "areas": [rle.area for rle in masklet.rles],
            "boxes": [list(b) if b is not None else None for b in boxes],
            "prompt_frames": list(masklet.prompt_frames),
            "skipped": [{"t_s": s.t_s, "reason": s.reason} for s in masklet.skipped],
        }
    return summary


# ---- the app ---------------------------------------------------------------------------------------------


class VidchatApp:
    """The Gradio app, its models loading in the background (`model`/`sam`: Hugging Face ids or local folders):
    `build()` makes the Blocks, `launch()` serves them with the page's script and style."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        sam: str | None = DEFAULT_SAM2,
        examples: Sequence[tuple[str, str]] = (),
        settings: SessionSettings = SessionSettings(),
        script: Script | None = None,
        limits: ServerLimits = ServerLimits(),
        allow_model_change: bool = True,
    ):
        self.models = ModelRegistry(model, sam, script)
        # The models are shared by every user of the server: a public deployment turns switching them off.
        self.allow_model_change = allow_model_change
        self.examples = [(str(video), question) for video, question in examples]
        self.settings = settings
        # Everything a session writes lives in its folder inside Gradio's cache, which Gradio serves without
        # copying it again (it copies any other file it is handed into the cache, out of vidchat's reach).
        cache = Path(gradio.utils.get_upload_folder())
        self.inputs = CachedInputs(cache, forget=self._forget_files)
        self.workspaces = Workspaces(cache / "vidchat", limits, self.inputs)
        self.demo = self.build()
        self.models.start()

    # ---- the engine, as the handlers use it ----

    def _settings(self, fps: float | None, max_frames: float | None, budget_pct: float | None) -> SessionSettings:
        sampling = self.settings.sampling
        if fps is not None or max_frames is not None:
            sampling = replace(
                sampling,
                fps=float(fps) if fps else sampling.fps,
                max_frames=int(max_frames) if max_frames else sampling.max_frames,
                min_frames=min(sampling.min_frames, int(max_frames) if max_frames else sampling.max_frames),
            )
        return replace(self.settings, sampling=sampling, selector=self._selector(budget_pct))

    def _selector(self, budget_pct: float | None) -> SelectorSettings | None:
        if budget_pct is None:
            return self.settings.selector
        if budget_pct >= 100:
            return None  # every visual token goes to the model
        base = self.settings.selector or SelectorSettings()
        fraction = max(float(budget_pct), 1.0) / 100
        return replace(base, max_fraction=fraction, min_fraction=min(base.min_fraction, fraction))

    def open_video(
        self, workspace: Workspace, path: str, settings: SessionSettings, progress: Progress, for_player: bool = False
    ) -> tuple[ChatSession, Path | None]:
        """A new ChatSession on the video; with `for_player`, also a copy the browser plays when it cannot play the
        file itself (None when it can). VidchatError with a message for the user when the video cannot be used
        or the server has no room for it; the workspace then holds no video."""
        with workspace.lock:
            # Held before the reset lets go of the previous video: it may be this same file, opened again.
            held = self.inputs.hold(path)
            workspace.reset()
            workspace.input = held
            workspace.notice = ""
            try:
                llm = PendingLLM(self.models, on_wait=lambda message: progress(0.0, message))
                session = workspace.session = _open(path, llm, settings, progress, self.models.masks(wait=False))
                workspace.video_name = Path(path).name
                playable = None
                if for_player:
                    progress(1.0, "Making a copy your browser can play…")
                    try:
                        playable = session.playable_video(workspace.folder / "player")
                    except VideoError as error:  # the chat works without the player
                        gr.Warning(str(error))
                workspace.measure()
                if not self.workspaces.make_room(workspace):
                    raise ServerBusyError(self._no_room_message(workspace))
            except VidchatError:
                workspace.reset()
                raise
            return session, playable

    def _no_room_message(self, workspace: Workspace) -> str:
        limits, busy = self.workspaces.limits, len(self.workspaces) - 1
        return (
            f"The server has no room for this video now: it needs {bytes_text(workspace.memory_bytes)} of memory "
            f"and {bytes_text(workspace.disk_bytes)} of disk, and the {busy} other sessions in use hold the rest of "
            f"the {bytes_text(limits.memory_bytes)} and {bytes_text(limits.disk_bytes)} this server allows. Try "
            "again in a minute, or with fewer frames or a smaller file."
        )

    def _ready_session(self, workspace: Workspace) -> ChatSession:
        session = workspace.session
        if session is None:
            raise gr.Error(workspace.notice or "Upload a video (or pick an example) first.")
        if session.masks is None and self.models.sam_slot.state in ("loading", "ready"):
            session.masks = self.models.masks()  # SAM 2 finished loading after this video was opened
        return session

    def _workspace(self, request: gr.Request | None) -> Workspace:
        try:
            return self.workspaces.get(request)
        except ServerBusyError as error:
            raise gr.Error(str(error), title="The server is busy") from None

    def _upload_workspace(self, request: gr.Request | None, upload: str | None) -> Workspace:
        """The workspace for a request that brings an upload; ServerBusyError, the upload deleted, when the
        server is too busy to give it one."""
        try:
            return self.workspaces.get(request)
        except ServerBusyError:
            if upload:
                self.inputs.discard(upload)
            raise

    def _settle(self, workspace: Workspace) -> None:
        """After a call that added to the workspace (by the thread holding its lock): measure it, and take room
        from other sessions if the server is over its limits now."""
        workspace.measure()
        self.workspaces.make_room(workspace)

    def _forget_files(self, paths: Sequence[str]) -> None:
        """Take deleted files out of Gradio's lists of the files it handed out (they would grow with every video)."""
        for files in self.demo.temp_file_sets:
            files.difference_update(paths)

    # ---- page handlers ----

    def _view(self, workspace: Workspace, objects_changed: bool = True) -> tuple:
        """chat, object list, overlay: the parts of the page a turn changes. The overlay (every mask as a PNG)
        and the object list are only sent when the objects changed, not with every streamed word."""
        session = workspace.session
        objects = list(session.objects.values()) if session else []
        chat = chat_messages(workspace.entries, objects)
        if not objects_changed:
            return chat, gr.update(), gr.update()
        return chat, objects_html(session), overlay_payload(workspace)

    def on_video(self, video, fps, max_frames, budget, request: gr.Request, progress=gr.Progress()):
        """The player got a new video (upload or example) or was cleared."""
        try:
            workspace = self._upload_workspace(request, video)
        except ServerBusyError as error:
            empty = ([], objects_html(None), {"ready": False, "frames": []})
            yield None, *empty, _notice(html.escape(str(error)), error=True), _no_downloads()
            return
        if not video:
            with workspace.lock:
                workspace.reset()
            yield gr.update(), *self._view(workspace), _notice("Upload a video or pick an example."), _no_downloads()
            return
        name = html.escape(Path(video).name)
        yield (
            gr.update(),
            [],
            objects_html(None),
            {"ready": False, "frames": []},
            _notice(f"Reading {name}…"),
            _no_downloads(),
        )
        try:
            session, playable = self.open_video(
                workspace, video, self._settings(fps, max_frames, budget), _progress(progress), for_player=True
            )
        except VidchatError as error:
            yield None, *self._view(workspace), _notice(html.escape(str(error)), error=True), _no_downloads()
            return
        workspace.entries = [
            ChatEntry(
                "assistant",
                f"**{Path(video).name}** is ready: {video_summary(session)}. Ask me about it. Times in my answers "
                "are links to that moment; pause the video and click on something to ask about it.",
            )
        ]
        # A file the browser cannot play (MJPEG AVI, HEVC, ...) is replaced in the player by the session's playable
        # copy: the overlay needs a playing <video>.
        player = str(playable) if playable is not None else gr.update()
        yield player, *self._view(workspace), _notice(f"<b>{name}</b> · {video_summary(session)}"), _no_downloads()

    def on_ask(self, question: str, budget, request: gr.Request, progress=gr.Progress()):
        """Stream the answer into the chat, then show its times as links and its objects on the player."""
        question = clean_question(question or "")
        workspace = self._workspace(request)
        if not question:
            yield gr.update(), gr.update(), gr.update(), gr.update()
            return
        if workspace.session is None:
            gr.Warning(workspace.notice or "Upload a video (or pick an example) first.")
            yield question, gr.update(), gr.update(), gr.update()
            return
        with workspace.lock:
            session = self._ready_session(workspace)
            session.settings = replace(session.settings, selector=self._selector(budget))
            workspace.entries.append(ChatEntry("user", question))
            entry = ChatEntry("assistant", "", note=f"{_SPINNER} Thinking…")
            workspace.entries.append(entry)
            yield "", *self._view(workspace, objects_changed=False)
            try:
                for event in _ask(session, question, _progress(progress)):
                    if isinstance(event, str):
                        entry.text += event
                        entry.times = _times(entry.text, session)
                        entry.note = f"{_SPINNER} Answering… the objects it names are located next."
                        yield gr.update(), *self._view(workspace, objects_changed=False)
                    else:
                        entry.text, entry.times, entry.note = (
                            event.text,
                            event.groundings.times,
                            _answer_note(event, session),
                        )
                        workspace.overlay_version += 1
            except VidchatError as error:
                entry.note, entry.error = html.escape(str(error)), True
                gr.Warning(str(error))
            self._settle(workspace)
            yield gr.update(), *self._view(workspace)

    def on_point(self, point: str, request: gr.Request, progress=gr.Progress()):
        """A click on the paused video: segment and track what is under it; the next question is about it."""
        workspace = self._workspace(request)
        try:
            where = json.loads(point or "{}")
            t_s, fx, fy = float(where["t"]), float(where["fx"]), float(where["fy"])
        except (ValueError, KeyError, TypeError):
            yield gr.update(), gr.update(), gr.update(), gr.update()
            return
        if workspace.session is None:
            gr.Warning(workspace.notice or "Upload a video (or pick an example) first.")
            yield gr.update(), gr.update(), gr.update(), gr.update()
            return
        with workspace.lock:
            session = self._ready_session(workspace)
            info = session.clip.info
            t_s = min(max(t_s, 0.0), info.duration_s)
            x, y = min(max(fx, 0.0), 1.0) * info.width, min(max(fy, 0.0), 1.0) * info.height
            try:
                obj = _point(session, t_s, x, y, _progress(progress))
            except VidchatError as error:
                gr.Warning(str(error))
                yield gr.update(), *self._view(workspace)
                return
            workspace.overlay_version += 1
            self._settle(workspace)
            when = format_timestamp(t_s)
            text = f"You pointed at {obj.label} at {when} ({x:.0f}, {y:.0f})."
            times = (TimeSpan(t_s, t_s, text.index(when), text.index(when) + len(when)),)
            workspace.entries.append(ChatEntry("assistant", text, times, note=_point_note(obj)))
            yield POINT_QUESTION, *self._view(workspace)

    def on_export(self, request: gr.Request, progress=gr.Progress()):
        return gr.update(value=self.api_export(request, progress), visible=True)

    def on_status(self):
        # Every second while a model loads; then every 10 s, so that a tab sees a model another one switched to.
        return self.models.status_html(), gr.Timer(1.0 if not self.models.settled else 10.0)

    def on_models(self, model: str, sam: str):
        if not self.allow_model_change:
            raise gr.Error("Switching models is turned off on this server.")
        self.models.configure(model, sam)
        gr.Info("Loading the models in the background. They apply to the next video you open.")
        return self.models.status_html(), gr.Timer(1.0)

    def on_unload(self, request: gr.Request) -> None:
        self.workspaces.disconnected(request)

    # ---- API handlers (gradio_client) ----

    def api_upload(
        self, video: str, fps: float, max_frames: float, request: gr.Request, progress=gr.Progress()
    ) -> dict:
        """Open a video for this client's session; later /ask and /point calls are about it."""
        if not video:
            raise gr.Error("No video given.")
        try:
            workspace = self._upload_workspace(request, video)
            session, _ = self.open_video(workspace, video, self._settings(fps, max_frames, None), _progress(progress))
        except ServerBusyError as error:
            raise gr.Error(str(error), title="The server is busy") from None
        except VidchatError as error:
            raise gr.Error(str(error), title="This video cannot be used") from None
        info = session.clip.info
        workspace.entries = []
        return {
            "name": Path(video).name,
            "duration_s": info.duration_s,
            "width": info.width,
            "height": info.height,
            "fps": info.avg_fps,
            "codec": info.codec,
            "sampled_times_s": [float(t) for t in session.clip.times_s],
            "model": self.models.llm_slot.model_id,
            "masks": session.masks is not None or self.models.sam_slot.state in ("loading", "ready"),
        }

    def api_ask(self, question: str, request: gr.Request, progress=gr.Progress()) -> Iterator[dict]:
        """Stream {"text", "done": false} while the answer is written, then the answer with its groundings."""
        question = clean_question(question or "")
        if not question:
            raise gr.Error("The question is empty.")
        workspace = self._workspace(request)
        with workspace.lock:
            session = self._ready_session(workspace)
            text = ""
            try:
                for event in _ask(session, question, _progress(progress)):
                    if isinstance(event, str):
                        text += event
                        yield {"text": text, "done": False}
                    else:
                        workspace.entries += [
                            ChatEntry("user", question),
                            ChatEntry("assistant", event.text, event.groundings.times),
                        ]
                        workspace.overlay_version += 1
                        self._settle(workspace)
                        yield groundings_json(event, session)
            except VidchatError as error:
                raise gr.Error(str(error)) from None

    def api_point(self, t_s: float, x: float, y: float, request: gr.Request, progress=gr.Progress()) -> dict:
        """Segment and track the object at (x, y) source pixels, `t_s` seconds; the next /ask refers to it."""
        workspace = self._workspace(request)
        with workspace.lock:
            session = self._ready_session(workspace)
            try:
                obj = _point(session, float(t_s), float(x), float(y), _progress(progress))
            except VidchatError as error:
                raise gr.Error(str(error)) from None
            workspace.overlay_version += 1
            self._settle(workspace)
            return object_json(obj)

    def api_export(self, request: gr.Request, progress=gr.Progress()) -> list[str]:
        """The annotated video (H.264 mp4) and the groundings (JSON, masks as COCO RLE) of this session."""
        workspace = self._workspace(request)
        with workspace.lock:
            session = self._ready_session(workspace)
            # Only the latest export is kept: each one replaces the one before.
            previous = workspace.folder / f"export-{workspace.exports}"
            self._forget_files([str(path) for path in previous.glob("*")])
            shutil.rmtree(previous, ignore_errors=True)
            workspace.exports += 1
            video, document = session.export(workspace.folder / f"export-{workspace.exports}", _progress(progress))
            self._settle(workspace)
        return [str(video), str(document)]

    # ---- the page ----

    def build(self) -> gr.Blocks:
        defaults = self.settings
        budget_default = 100 if defaults.selector is None else round(defaults.selector.max_fraction * 100)
        with gr.Blocks(title="vidchat", delete_cache=(3600, 24 * 3600)) as demo:
            with gr.Row(elem_id="vc-header"):
                gr.HTML(
                    '<div class="vc-brand"><span class="vc-logo">▶</span><div><h1>vidchat</h1>'
                    "<p>Ask about a video. Times are links, objects get masks.</p></div></div>",
                    elem_id="vc-brand",
                )
                status = gr.HTML(self.models.status_html(), elem_id="status")
            with gr.Row(equal_height=False, elem_id="vc-main"):
                with gr.Column(scale=6, min_width=360):
                    player = gr.Video(
                        label="Video",
                        show_label=False,
                        sources=["upload"],
                        elem_id="player",
                        height=400,
                        include_audio=True,
                        buttons=[],
                    )
                    notice = gr.HTML(_notice("Upload a video or pick an example."), elem_id="notice")
                    objects = gr.HTML(objects_html(None), elem_id="objects")
                    with gr.Row(elem_id="vc-export-row"):
                        export = gr.Button(
                            "Export annotated video + JSON", elem_id="export-btn", size="sm", variant="secondary"
                        )
                    downloads = gr.File(
                        label="Downloads", file_count="multiple", interactive=False, elem_id="downloads", visible=False
                    )
                with gr.Column(scale=5, min_width=360):
                    chat = gr.Chatbot(
                        elem_id="chat",
                        height=470,
                        show_label=False,
                        layout="bubble",
                        latex_delimiters=[],
                        buttons=["copy"],
                        feedback_options=None,
                        group_consecutive_messages=False,
                        placeholder="Upload a video, then ask about it. Times in answers are links to that moment.",
                    )
                    with gr.Row(elem_id="vc-ask-row"):
                        question = gr.Textbox(
                            label="Question",
                            placeholder="Ask about the video…  (Enter to send)",
                            show_label=False,
                            elem_id="question",
                            scale=8,
                            lines=1,
                            max_lines=4,
                            max_length=defaults.max_question_chars,
                            submit_btn=False,
                        )
                        send = gr.Button("Ask", variant="primary", elem_id="ask-btn", scale=1, min_width=80)
                    if self.examples:
                        examples = gr.Examples(
                            examples=[[video, q] for video, q in self.examples],
                            inputs=[player, question],
                            label="Examples: a clip and a question to ask",
                            examples_per_page=6,
                            elem_id="examples",
                        )
                        # Gradio's copies of the examples, which the examples table gives to every visitor: never
                        # deleted with a session (the same call Gradio makes when it processes the examples).
                        self.inputs.keep = {
                            Path(player.move_resource_to_block_cache(video)).resolve() for video, _ in self.examples
                        }
                    with gr.Accordion("Settings", open=False, elem_id="settings"):
                        with gr.Row():
                            model = gr.Dropdown(
                                choices=list(dict.fromkeys([self.models.llm_slot.model_id, *MODEL_CHOICES])),
                                value=self.models.llm_slot.model_id,
                                allow_custom_value=True,
                                interactive=self.allow_model_change,
                                label="Video model (Hugging Face id or local folder)",
                            )
                            sam = gr.Dropdown(
                                choices=list(
                                    dict.fromkeys([self.models.sam_slot.model_id, *SAM2_CHECKPOINTS, NO_MASKS])
                                ),
                                value=self.models.sam_slot.model_id,
                                allow_custom_value=True,
                                interactive=self.allow_model_change,
                                label="Mask model (SAM 2 size, or none)",
                            )
                        load = gr.Button(
                            "Load these models (for everyone on this server)",
                            size="sm",
                            visible=self.allow_model_change,
                        )
                        with gr.Row():
                            fps = gr.Slider(
                                0.25, 8, value=defaults.sampling.fps, step=0.25, label="Sampling (frames per second)"
                            )
                            max_frames = gr.Slider(
                                4, 768, value=defaults.sampling.max_frames, step=4, label="Max frames"
                            )
                        budget = gr.Slider(
                            2,
                            100,
                            value=budget_default,
                            step=1,
                            label="Visual-token budget: most % of the video's tokens each question keeps (100 = all)",
                        )
                        gr.Markdown(
                            "Sampling applies to the next video you open; the budget applies to the next question.",
                            elem_classes="vc-small",
                        )
            # Reached from the page's script: the overlay data, and the click on the paused video.
            overlay = gr.JSON(visible=False, elem_id="overlay-data")
            point_box = gr.Textbox(visible="hidden", elem_id="point-input")
            point_btn = gr.Button("point", visible="hidden", elem_id="point-btn")
            timer = gr.Timer(1.0)

            view = [chat, objects, overlay]
            private = {"api_visibility": "private"}
            on_gpu = {"concurrency_id": "gpu", "concurrency_limit": 1}
            # Uploads are decoded several at a time, beside a running turn; their encoding takes the model lock.
            on_decode = {"concurrency_id": "decode", "concurrency_limit": DECODE_CONCURRENCY}
            video_event = dict(
                fn=self.on_video,
                inputs=[player, fps, max_frames, budget],
                outputs=[player, *view, notice, downloads],
                show_progress_on=[notice],
                **on_decode,
                **private,
            )
            player.upload(**video_event)
            player.clear(**video_event)
            if self.examples:
                examples.load_input_event.then(**video_event)
            ask_event = dict(
                fn=self.on_ask,
                inputs=[question, budget],
                outputs=[question, *view],
                show_progress="minimal",
                show_progress_on=[notice],
                **on_gpu,
                **private,
            )
            question.submit(**ask_event)
            send.click(**ask_event)
            point_btn.click(
                self.on_point,
                inputs=[point_box],
                outputs=[question, *view],
                js="(value) => (window.vidchat && window.vidchat.pendingPoint) || value",
                show_progress_on=[notice],
                **on_gpu,
                **private,
            )
            overlay.change(
                None, inputs=[overlay], js="(data) => { window.vidchat && window.vidchat.setOverlay(data); }"
            )
            export.click(
                self.on_export, outputs=[downloads], show_progress_on=[downloads], concurrency_limit=2, **private
            )
            timer.tick(self.on_status, outputs=[status, timer], queue=False, show_progress="hidden", **private)
            load.click(self.on_models, inputs=[model, sam], outputs=[status, timer], **private)
            demo.unload(self.on_unload)

            # The API for gradio_client: the same operations on hidden components, returning plain JSON.
            with gr.Group(visible=False):
                api_video = gr.Video(sources=["upload"], include_audio=True)
                api_fps = gr.Number(value=defaults.sampling.fps, label="fps")
                api_max_frames = gr.Number(value=defaults.sampling.max_frames, label="max_frames")
                api_question = gr.Textbox(label="question")
                api_t = gr.Number(label="t_s")
                api_x = gr.Number(label="x")
                api_y = gr.Number(label="y")
                api_result = gr.JSON()
                api_files = gr.File(file_count="multiple")
                api_button = gr.Button()
            api_button.click(
                self.api_upload, [api_video, api_fps, api_max_frames], api_result, api_name="upload", **on_decode
            )
            api_button.click(self.api_ask, [api_question], api_result, api_name="ask", **on_gpu)
            api_button.click(self.api_point, [api_t, api_x, api_y], api_result, api_name="point", **on_gpu)
            api_button.click(self.api_export, None, api_files, api_name="export", concurrency_limit=2)
        # One GPU: turns run one at a time (concurrency_id "gpu") and every model call takes _MODEL_LOCK; uploads
        # are decoded DECODE_CONCURRENCY at a time; the status timer and exports run beside.
        demo.queue(default_concurrency_limit=1, max_size=64)
        return demo

    def launch(self, **kwargs):
        """Serve the app (Gradio 6 takes the page's script, style and theme at launch)."""
        kwargs.setdefault("show_error", True)
        # An upload over the size limit is refused while it arrives, not after it has filled the disk.
        kwargs.setdefault("max_file_size", self.settings.limits.max_bytes)
        return self.demo.launch(head=HEAD, css=CSS, theme=THEME, **kwargs)

    def close(self) -> None:
        self.demo.close()
        self.workspaces.close_all()


def _progress(progress: gr.Progress) -> Progress:
    def report(fraction: float, message: str) -> None:
        progress(min(max(float(fraction), 0.0), 1.0), desc=message)

    return report


def _times(text: str, session: ChatSession) -> tuple[TimeSpan, ...]:
    """Times in a partial answer, so that links appear while it streams (the finished answer's own replace them)."""
    return session.times_in(text)


def _answer_note(answer: Answer, session: ChatSession) -> str:
    named = [obj for obj in session.objects.values() if obj.object_id in set(answer.object_ids)]
    if not named:
        return ""
    parts = []
    for obj in named:
        label = f'<span class="vc-obj" style="color:{obj.color}">{html.escape(obj.label)}</span>'
        if obj.masklet is not None:
            label += f" ({int(obj.masklet.visible.sum())}/{len(obj.masklet.visible)} frames)"
        parts.append(label)
    return "Located: " + ", ".join(parts)


def _point_note(obj: GroundedObject) -> str:
    masklet = obj.masklet
    if masklet is None:
        found = "Masks are off, so only the point is kept"
    elif masklet.visible.any():
        found = f"SAM 2 tracks it in {int(masklet.visible.sum())}/{len(masklet.visible)} frames"
    else:
        found = "SAM 2 found no object there; the point is kept"
    return f"{found}. Your next question is about it: try “{POINT_QUESTION}”"


_SPINNER = '<span class="vc-spin"></span>'


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes > 90:
        return f"{minutes / 60:g} hours"
    return f"{minutes} minute{'s' if minutes > 1 else ''}"


def _no_downloads() -> dict:
    return gr.update(value=None, visible=False)


def _notice(text: str, error: bool = False) -> str:
    return f'<div class="vc-notice{" vc-notice-error" if error else ""}">{text}</div>'


# ---- the page's script and style -----------------------------------------------------------------------

# System fonts: the page needs nothing from the internet (offline machines, fast first paint).
_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
THEME = gr.themes.Soft(
    primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", radius_size="md", font=_FONTS, font_mono=_MONO
)

# Delegated listeners (the chat re-renders its messages, the player its <video>), and the overlay canvas laid
# over the <video>: each animation frame it draws the masks of the sampled frame nearest to currentTime.
HEAD = r"""
<script>
(() => {
  if (window.vidchat) return;
  const vc = (window.vidchat = {
    overlay: null, images: new Map(), hidden: new Set(), marker: null, canvas: null,
    pendingPoint: null, lastKey: "", videoKey: null, drawn: 0,
  });
  const videoEl = () => document.querySelector("#player video");

  vc.setOverlay = (data) => {
    const ready = !!(data && data.ready);
    if (!ready || data.video !== vc.videoKey) vc.hidden.clear();
    vc.videoKey = ready ? data.video : null;
    vc.overlay = ready ? data : null;
    vc.marker = null;
    const keep = new Map();
    if (vc.overlay) for (const f of vc.overlay.frames) for (const o of f.objects) keep.set(o.png, image(o.png));
    vc.images = keep;
    vc.lastKey = "";
  };

  function image(src) {
    let img = vc.images.get(src);
    if (!img) { img = new Image(); img.src = src; vc.images.set(src, img); }
    return img;
  }

  // The rectangle, in the <video> element's own pixels, where the picture is shown (object-fit).
  function contentBox(v) {
    const w = v.clientWidth, h = v.clientHeight, vw = v.videoWidth, vh = v.videoHeight;
    if (!w || !h || !vw || !vh) return null;
    const fit = getComputedStyle(v).objectFit;
    if (fit === "fill") return { x: 0, y: 0, w, h };
    let s = Math.min(w / vw, h / vh);
    if (fit === "cover") s = Math.max(w / vw, h / vh);
    if (fit === "none") s = 1;
    if (fit === "scale-down") s = Math.min(s, 1);
    return { x: (w - vw * s) / 2, y: (h - vh * s) / 2, w: vw * s, h: vh * s };
  }

  function ensureCanvas(v) {
    if (!vc.canvas) {
      const c = document.createElement("canvas");
      c.id = "vc-overlay";
      c.addEventListener("click", onCanvasClick);
      vc.canvas = c;
    }
    const parent = v.parentElement;
    if (vc.canvas.parentElement !== parent) {
      if (getComputedStyle(parent).position === "static") parent.style.position = "relative";
      parent.appendChild(vc.canvas);
      vc.lastKey = "";
    }
    const c = vc.canvas, dpr = window.devicePixelRatio || 1;
    const place = { left: v.offsetLeft + "px", top: v.offsetTop + "px", width: v.clientWidth + "px", height: v.clientHeight + "px" };
    for (const k in place) if (c.style[k] !== place[k]) c.style[k] = place[k];
    const W = Math.round(v.clientWidth * dpr), H = Math.round(v.clientHeight * dpr);
    if (c.width !== W || c.height !== H) { c.width = W; c.height = H; vc.lastKey = ""; }
    return c;
  }

  function nearestFrame(frames, t) {
    let lo = 0, hi = frames.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (frames[mid].t_s < t) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(frames[lo - 1].t_s - t) <= Math.abs(frames[lo].t_s - t)) lo -= 1;
    return frames[lo];
  }

  function syncToggles() {
    for (const box of document.querySelectorAll("#objects .vc-toggle")) {
      const want = !vc.hidden.has(box.value);
      if (box.checked !== want) box.checked = want;
    }
  }

  function pill(ctx, text, x, y, color, ink) {
    ctx.font = "600 12px ui-sans-serif, system-ui, sans-serif";
    const w = ctx.measureText(text).width + 12, h = 18;
    x = Math.max(0, Math.min(x, ctx.canvas.width / (window.devicePixelRatio || 1) - w));
    y = Math.max(0, y);
    ctx.fillStyle = color; ctx.beginPath(); ctx.roundRect(x, y, w, h, 5); ctx.fill();
    ctx.fillStyle = ink; ctx.fillText(text, x + 6, y + 13);
  }

  function inkFor(hex) {
    const n = parseInt(hex.slice(1), 16), r = n >> 16, g = (n >> 8) & 255, b = n & 255;
    return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff";
  }

  function draw() {
    const v = videoEl();
    if (!v) { if (vc.canvas) vc.canvas.style.display = "none"; return; }
    const c = ensureCanvas(v);
    c.style.display = "block";
    const box = contentBox(v);
    const pointing = !!(vc.overlay && box && v.paused);
    c.style.pointerEvents = pointing ? "auto" : "none";
    c.classList.toggle("vc-pointing", pointing);
    syncToggles();
    const o = vc.overlay;
    const key = [v.currentTime, c.width, c.height, o ? o.version : -1, [...vc.hidden].join(","),
                 JSON.stringify(vc.marker), pointing, box ? box.w : 0].join("|");
    if (key === vc.lastKey) return;
    const dpr = window.devicePixelRatio || 1, ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
    let complete = true;
    if (o && box) {
      const sx = box.w / o.width, sy = box.h / o.height, t = v.currentTime;
      const frame = o.frames.length ? nearestFrame(o.frames, t) : null;
      const shown = frame ? frame.objects.filter((obj) => !vc.hidden.has(String(obj.id))) : [];
      for (const obj of shown) {
        const img = image(obj.png);
        if (!img.complete) { complete = false; continue; }
        ctx.drawImage(img, box.x, box.y, box.w, box.h);
      }
      for (const p of o.points) {
        if (vc.hidden.has(String(p.id)) || Math.abs(p.t_s - t) > o.step_s / 2) continue;
        const x = box.x + p.x * sx, y = box.y + p.y * sy;
        ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
        ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fillStyle = p.color; ctx.fill();
      }
      for (const obj of shown) {
        if (!obj.box) continue;
        pill(ctx, obj.label, box.x + obj.box[0] * sx, box.y + obj.box[1] * sy - 20, obj.color, inkFor(obj.color));
      }
    }
    if (vc.marker && box) {
      const x = box.x + vc.marker.fx * box.w, y = box.y + vc.marker.fy * box.h;
      ctx.lineWidth = 3; ctx.strokeStyle = "#fff";
      ctx.beginPath(); ctx.arc(x, y, 11, 0, 2 * Math.PI); ctx.stroke();
      ctx.lineWidth = 2; ctx.strokeStyle = "#4f46e5";
      ctx.beginPath(); ctx.arc(x, y, 11, 0, 2 * Math.PI); ctx.stroke();
      ctx.beginPath(); ctx.arc(x, y, 3, 0, 2 * Math.PI); ctx.fillStyle = "#4f46e5"; ctx.fill();
    }
    if (pointing && !vc.marker) {
      const hint = "Paused: click an object to ask about it";
      ctx.font = "600 12px ui-sans-serif, system-ui, sans-serif";
      const x = box.x + (box.w - ctx.measureText(hint).width - 12) / 2;
      pill(ctx, hint, x, box.y + box.h - 72, "rgba(17,24,39,0.78)", "#fff");
    }
    vc.drawn += 1;
    vc.lastKey = complete ? key : "";
  }

  function onCanvasClick(e) {
    const v = videoEl();
    const box = v && contentBox(v);
    if (!box || !vc.overlay) return;
    const r = vc.canvas.getBoundingClientRect();
    const px = e.clientX - r.left - box.x, py = e.clientY - r.top - box.y;
    if (px < 0 || py < 0 || px > box.w || py > box.h) return;
    e.preventDefault(); e.stopPropagation();
    vc.marker = { fx: px / box.w, fy: py / box.h, t: v.currentTime };
    vc.pendingPoint = JSON.stringify({ t: v.currentTime, fx: px / box.w, fy: py / box.h });
    const button = document.querySelector("#point-btn");
    if (button) button.click();
  }

  // Time links in the chat and the object list: seek the player (a span seeks to its start).
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest('a[href^="#t="]');
    if (!link) return;
    e.preventDefault(); e.stopPropagation();
    const t = parseFloat(link.getAttribute("href").slice(3));
    const v = videoEl();
    if (!v || !isFinite(t)) return;
    v.currentTime = t;
    const r = v.getBoundingClientRect();
    if (r.bottom < 0 || r.top > window.innerHeight) v.scrollIntoView({ behavior: "smooth", block: "center" });
  }, true);

  // Object checkboxes: show or hide an object's mask, in this page only.
  document.addEventListener("change", (e) => {
    const box = e.target;
    if (!box.classList || !box.classList.contains("vc-toggle")) return;
    if (box.checked) vc.hidden.delete(box.value); else vc.hidden.add(box.value);
    vc.lastKey = "";
  }, true);

  function loop() {
    try { draw(); } catch (err) { console.error("vidchat overlay", err); }
    requestAnimationFrame(loop);
  }
  requestAnimationFrame(loop);
})();
</script>
"""

CSS = """
.gradio-container { max-width: 1440px !important; }
#vc-header { align-items: center; gap: 16px; margin-bottom: 4px; flex-wrap: nowrap; }
#vc-brand { flex: 1 1 auto !important; min-width: 0 !important; }
.vc-brand { display: flex; align-items: center; gap: 12px; }
.vc-logo { display: inline-flex; align-items: center; justify-content: center; width: 40px; height: 40px;
  border-radius: 10px; background: linear-gradient(135deg, #6366f1, #8b5cf6); color: #fff; font-size: 18px; }
.vc-brand h1 { margin: 0; font-size: 22px; font-weight: 700; letter-spacing: -0.01em; }
.vc-brand p { margin: 0; color: var(--body-text-color-subdued); font-size: 13px; }
#status { flex: 0 1 auto !important; min-width: 0 !important; width: auto !important; }
.vc-status { display: flex; flex-wrap: wrap; gap: 8px; justify-content: flex-end; }
.vc-pill { display: inline-flex; align-items: center; gap: 6px; padding: 3px 10px; border-radius: 999px;
  font-size: 12.5px; background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  white-space: nowrap; }
.vc-dot { width: 8px; height: 8px; border-radius: 50%; background: #94a3b8; }
.vc-ok .vc-dot { background: #10b981; }
.vc-error { color: #b91c1c; }
.vc-error .vc-dot { background: #ef4444; }
.vc-loading .vc-dot { background: #f59e0b; animation: vc-pulse 1s ease-in-out infinite; }
@keyframes vc-pulse { 50% { opacity: 0.3; } }
.vc-fix { margin-top: 6px; padding: 8px 12px; border-radius: 8px; background: #fef2f2; border: 1px solid #fecaca;
  color: #7f1d1d; font-size: 13px; text-align: left; }
.vc-fix code { background: #fff; padding: 1px 4px; border-radius: 4px; }
#player video { background: #0b0f19; }
/* Trimming would change the video under an open session: the player only uploads and clears. */
#player button[aria-label="Trim video to selection"], #player button[aria-label="Reset video to initial value"] { display: none; }
#vc-overlay { position: absolute; pointer-events: none; z-index: 3; }
#vc-overlay.vc-pointing { cursor: crosshair; }
.vc-notice { font-size: 13px; color: var(--body-text-color-subdued); padding: 2px 4px; min-height: 20px; }
.vc-notice-error { color: #991b1b; background: #fef2f2; border: 1px solid #fecaca; border-radius: 8px; padding: 8px 12px; }
.vc-objects { display: flex; flex-wrap: wrap; gap: 8px; }
.vc-objects-empty { font-size: 13px; color: var(--body-text-color-subdued); padding: 2px 4px; }
.vc-object { display: inline-flex; align-items: center; gap: 7px; padding: 5px 10px; border-radius: 8px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-primary); font-size: 13px; }
.vc-object input { margin: 0; accent-color: #4f46e5; }
.vc-swatch { width: 12px; height: 12px; border-radius: 3px; }
.vc-name { font-weight: 650; }
.vc-meta { color: var(--body-text-color-subdued); font-size: 12px; }
.vc-obj { font-weight: 650; }
.vc-note { font-size: 12.5px; color: var(--body-text-color-subdued); }
.vc-spin { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 50%; vertical-align: -1px;
  border: 2px solid rgba(99, 102, 241, 0.25); border-top-color: #6366f1; animation: vc-turn 0.8s linear infinite; }
@keyframes vc-turn { to { transform: rotate(360deg); } }
#chat a[href^="#t="], #objects a[href^="#t="] { color: #4338ca; background: rgba(99, 102, 241, 0.12); border-radius: 5px;
  padding: 0 4px; text-decoration: none; font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap; }
#chat a[href^="#t="]:hover, #objects a[href^="#t="]:hover { background: rgba(99, 102, 241, 0.24); }
#vc-ask-row { align-items: stretch; }
#vc-export-row { justify-content: flex-start; }
#export-btn { max-width: 280px; }
.vc-small { font-size: 12px; color: var(--body-text-color-subdued); }
"""
