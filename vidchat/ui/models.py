"""The app's models: the video model, the SAM 2 decoder, the QTSplus selector and the speech recognizer, each
loaded once per process
in a background thread while the page is already served; the page shows how far each got."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from vidchat.session import (
    MaskDecoder,
    ModelError,
    ModelKind,
    QTSplusSelector,
    Recognizer,
    VideoLLM,
    VidchatError,
    load_model,
)

NO_MASKS = "none"  # the mask-model setting that turns SAM 2 off
NO_QTSPLUS = "none"  # no QTSplus selector loaded
Loader = Callable[[ModelKind, str], object]

# Loaded models by (loader, kind, model id or folder): the only module-level mutable state. A model is a few GB,
# so every app built in this process (and every user) shares one copy.
_LOADED: dict[tuple[Loader, str, str], object] = {}
_LOAD_LOCK = threading.Lock()  # one load at a time: two checkpoints never fill memory together


def shared_model(load: Loader, kind: ModelKind, model_id: str) -> object:
    """The model `model_id`, loaded with `load` on first use in this process (ModelError if it cannot be)."""
    with _LOAD_LOCK:
        key = (load, kind, model_id)
        if key not in _LOADED:
            _LOADED[key] = load(kind, model_id)
        return _LOADED[key]


@dataclass
class ModelSlot:
    """One model the app uses, and how far its loading got."""

    kind: ModelKind
    model_id: str
    state: Literal["loading", "ready", "failed", "off"] = "loading"
    model: object | None = None
    error: str = ""
    seconds: float = 0.0  # how long loading took
    done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def off(cls, kind: ModelKind) -> ModelSlot:
        slot = cls(kind, "none", state="off")
        slot.done.set()
        return slot

    @property
    def usable(self) -> bool:
        """Ready, or still loading (and so soon ready)."""
        return self.state in ("loading", "ready")


class ModelRegistry:
    """The models this app uses now. Switching models makes new slots; sessions already open keep theirs."""

    def __init__(
        self,
        llm_id: str,
        sam_id: str | None,
        qtsplus_id: str | None = None,
        load: Loader = load_model,
        asr_id: str | None = None,
    ):
        self.load = load
        self._lock = threading.Lock()
        self.llm_slot = ModelSlot("llm", llm_id)
        self.sam_slot = self._slot("sam", sam_id)
        self.qtsplus_slot = self._slot("qtsplus", qtsplus_id)
        self.asr_slot = self._slot("asr", asr_id)

    @staticmethod
    def _slot(kind: ModelKind, model_id: str | None) -> ModelSlot:
        if not model_id or model_id == "none":
            return ModelSlot.off(kind)
        return ModelSlot(kind, model_id)

    @property
    def slots(self) -> tuple[ModelSlot, ...]:
        return self.llm_slot, self.sam_slot, self.qtsplus_slot, self.asr_slot

    def start(self) -> None:
        """Load the models that are not loaded yet, in a daemon thread (the page is served meanwhile)."""
        slots = [slot for slot in self.slots if slot.state == "loading" and not slot.done.is_set()]
        threading.Thread(target=self._load, args=(slots,), name="vidchat-models", daemon=True).start()

    def configure(self, llm_id: str, sam_id: str | None, qtsplus_id: str | None, asr_id: str | None) -> None:
        """Switch to other models (loaded in the background); a failed one is tried again."""
        wanted = {
            "llm": llm_id.strip(),
            "sam": (sam_id or "").strip(),
            "qtsplus": (qtsplus_id or "").strip(),
            "asr": (asr_id or "").strip(),
        }
        with self._lock:
            for slot in self.slots:
                model_id = wanted[slot.kind] or ("none" if slot.kind != "llm" else slot.model_id)
                if model_id != slot.model_id or slot.state == "failed":
                    setattr(self, f"{slot.kind}_slot", self._slot(slot.kind, model_id))
        self.start()

    def _load(self, slots: Sequence[ModelSlot]) -> None:
        for slot in slots:
            started = time.monotonic()
            try:
                slot.model, slot.state = shared_model(self.load, slot.kind, slot.model_id), "ready"
            except VidchatError as error:
                slot.error, slot.state = str(error), "failed"
            except Exception as error:  # a broken checkpoint: say so in the page instead of dying silently
                slot.error, slot.state = f"{type(error).__name__}: {error}", "failed"
            slot.seconds = time.monotonic() - started
            slot.done.set()

    @property
    def settled(self) -> bool:
        return all(slot.done.is_set() for slot in self.slots)

    def llm(self, on_wait: Callable[[str], None] | None = None) -> VideoLLM:
        """The video model, waiting for it to load (telling `on_wait` first); ModelError with the fix when it
        could not be loaded."""
        slot = self.llm_slot
        if not slot.done.is_set() and on_wait is not None:
            on_wait(f"Waiting for the video model {slot.model_id} to finish loading…")
        slot.done.wait()
        if slot.state != "ready":
            raise ModelError(slot.error)
        return slot.model

    def masks(self, wait: bool = True) -> MaskDecoder | None:
        """The SAM 2 decoder, or None when masks are off or it could not be loaded."""
        slot = self.sam_slot
        if wait:
            slot.done.wait()
        return slot.model if slot.state == "ready" else None

    def recognizer(self) -> Recognizer | None:
        """The speech recognizer, waiting for it to load; None when it is off or could not be loaded (the status
        line says why)."""
        slot = self.asr_slot
        slot.done.wait()
        return slot.model if slot.state == "ready" else None

    def qtsplus(self) -> QTSplusSelector:
        """The QTSplus selector, waiting for it to load; ModelError saying which checkpoint and how to get it."""
        slot = self.qtsplus_slot
        slot.done.wait()
        if slot.state == "off":
            raise ModelError(
                "The qtsplus selector needs a QTSplus checkpoint (e.g. AlpachinoNLP/QTSplus-3B): choose one in "
                "the settings, or start the app with --qtsplus ID_OR_FOLDER."
            )
        if slot.state != "ready":
            raise ModelError(slot.error)
        return slot.model
