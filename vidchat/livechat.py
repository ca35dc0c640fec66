"""LiveChat: a conversation with a live source (a webcam's frames, or a stream URL) while it plays.

The second facade beside `vidchat.session` (the UI and the CLI call these two): it wires the live stages and keeps
their state. Frames come in (`add_frame`, or `follow` for a stream URL) and are kept at the set rate by a
`Recording`: the newest seconds in memory, all of them in an mp4. A question is about now: it is answered, by the
same `ChatSession` turn as a video's, from the window of the newest `window_s` seconds, with times on the
recording's clock. A standing question ("tell me when…") is checked on the newest frames at most every
`check_every_s`, one check at a time, and posts an `Alert` when its answer turns to yes. Objects that an answer
grounds, or that a click points at, are tracked on every new frame by SAM 2 (`LiveTracker`). Stopping turns the
recording into an ordinary video session, conversation and objects carried over.

Memory stays bounded however long a source plays: frames in the window only, visual tokens of a window never cached,
SAM 2's stored frames trimmed to what it reads, the model's view of the conversation limited as for a video.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vidchat.errors import ClosedError, PromptError, VidchatError
from vidchat.live import LiveSettings, live_frames
from vidchat.recording import KeptFrame, Recording, RecordingSettings
from vidchat.render import Overlay, draw
from vidchat.segment import LiveMask, LiveTracker, MaskDecoder, object_prompts, to_clip_pixels
from vidchat.session import Answer, ChatSession, Event, Failure, GroundedObject, Progress, SessionSettings
from vidchat.url_guard import UrlGuard, shown_url
from vidchat.vlm import VideoLLM
from vidchat.watch import Alert, Watch, check_question, watch_condition
from vidchat.zoom import ZoomSettings

_REVISIONS = itertools.count(1)


@dataclass(frozen=True)
class LiveChatSettings:
    recording: RecordingSettings = RecordingSettings()
    check_every_s: float = 3.0  # a standing question is checked at most this often ...
    check_window_s: float = 4.0  # ... on the newest seconds
    max_check_tokens: int = 8
    stream: LiveSettings = LiveSettings()  # how a stream URL is read

    def __post_init__(self) -> None:
        if not 1 <= self.check_every_s <= 600:
            raise ValueError(f"check_every_s must be between 1 and 600, got {self.check_every_s}")


@dataclass
class LiveChat:
    llm: VideoLLM
    folder: Path  # where the recording is written
    settings: LiveChatSettings = LiveChatSettings()
    session: SessionSettings = SessionSettings()  # how questions are answered (and the video session after stop)
    masks: MaskDecoder | None = None
    model_lock: AbstractContextManager | None = None  # as `ChatSession.model_lock`
    source: str = "webcam"  # what the frames come from, as shown: "webcam" or the stream's URL
    conversation: list[Event] = field(default_factory=list)  # answers, clicks, refused questions and alerts
    objects: dict[str, GroundedObject] = field(default_factory=dict)  # by label_key, tracked on every new frame
    ended: str = ""  # why no more frames come (the stream ended, a limit was reached); "" while they do
    watching: Watch | None = None  # the standing question
    revision: int = field(default_factory=lambda: next(_REVISIONS))  # changes whenever the conversation does

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.recording = Recording(self.folder / "live.mp4", self.settings.recording)
        self.tracker = LiveTracker(self.masks) if self.masks is not None else None
        self.masks_now: dict[int, LiveMask] = {}  # each tracked object's mask on the newest frame
        # The ChatSession that answers, looking at the window of the latest question or click (None before the
        # first): what the answers' JSON and a streamed answer's times are read from.
        self.chat: ChatSession | None = None
        self._frames_lock = threading.Lock()  # the recording: frames come in while questions read them
        self._checking = threading.Lock()  # held while a standing question's check runs: one at a time
        self._due = threading.Event()  # a check is due: `_checker` runs it
        self._checker: threading.Thread | None = None
        self._checked_s = -np.inf  # when the last check started, on the recording's clock
        self._started = time.monotonic()
        self._stopped = threading.Event()

    # ---- frames in ----

    def add_frame(self, picture: np.ndarray, t_s: float | None = None) -> KeptFrame | None:
        """A frame from the source ([H, W, 3] uint8 RGB) at `t_s` on its clock (None: now, by the server's clock,
        for a webcam): the frame kept, or None when it was not due or nothing more is kept. Tracked objects
        follow it; a due standing question is checked on it in the background."""
        if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8 or min(picture.shape[:2]) < 2:
            raise PromptError(
                f"A frame must be an RGB picture; got an array of shape {picture.shape} ({picture.dtype})."
            )
        t_s = time.monotonic() - self._started if t_s is None else t_s
        with self._frames_lock:
            kept = self.recording.add(picture, t_s)
            if self.recording.full and not self.ended:
                self.ended = self.recording.full
        if kept is None:
            return None
        if self.tracker is not None and self.tracker.object_ids:
            try:
                self.masks_now = self.tracker.step(kept.picture)
            except ClosedError:  # stopped meanwhile: this was the last frame
                return kept
        self._check_when_due(kept)
        return kept

    def follow(self, url: str, guard: UrlGuard) -> None:
        """Take frames from a stream URL (`vidchat.live`) in a thread of its own, until it ends (`ended` then says
        why) or `stop`. Returns once the first frame came: a refused or broken URL raises here."""
        frames = live_frames(url, guard, self.settings.stream)
        first = next(frames)  # UrlRefusedError, StreamEndedError, FetchError: the caller says why
        self.source = shown_url(url)
        self.add_frame(first.picture, first.t_s)

        def read() -> None:
            try:
                for frame in frames:
                    if self._stopped.is_set() or self.recording.full:
                        break
                    self.add_frame(frame.picture, frame.t_s)
            except VidchatError as error:
                self.ended = self.ended or str(error)
            finally:
                frames.close()

        threading.Thread(target=read, name="vidchat-follow", daemon=True).start()

    # ---- questions ----

    def ask(self, question: str, progress: Progress | None = None) -> Iterator[str | Answer]:
        """Answer a question about now, from the newest `window_s` seconds; yields text pieces, then the `Answer`.
        Objects it grounds are tracked from then on."""
        chat = self._on_newest()
        for item in chat.ask(question, progress):
            if isinstance(item, Answer):
                self._track(item.object_ids)
                self.revision = next(_REVISIONS)
            yield item

    def watch(self, text: str | None) -> str | None:
        """Set the standing question (e.g. "tell me when a person enters"), or clear it with None or "": the
        condition as it is checked."""
        if not text or not text.strip():
            self.watching = None
            return None
        self.watching = Watch(watch_condition(text))
        self._checked_s = -np.inf
        return self.watching.condition

    def check(self) -> Alert | None:
        """Check the standing question on the newest `check_window_s` seconds, now (waits for a check under
        way): the alert when its answer turned to yes, added to the conversation."""
        with self._checking:
            return self._check()

    def _check_when_due(self, kept: KeptFrame) -> None:
        if self.watching is None or kept.t_s < self._checked_s + self.settings.check_every_s:
            return
        if self._checking.locked():
            return  # a check is under way: this frame is seen by the next one
        self._checked_s = kept.t_s
        if self._checker is None:  # one thread for all checks (a thread each left memory behind in the allocator)
            self._checker = threading.Thread(target=self._check_loop, name="vidchat-watch", daemon=True)
            self._checker.start()
        self._due.set()

    def _check_loop(self) -> None:
        while not self._stopped.is_set():
            if not self._due.wait(0.5):
                continue
            self._due.clear()
            with self._checking:
                try:
                    self._check()
                except VidchatError as error:  # the engine failed: said once, and the question stops
                    watching, self.watching = self.watching, None
                    question = f"Tell me when {watching.condition}" if watching else ""
                    self.conversation.append(Failure(question, str(error)))
                    self.revision = next(_REVISIONS)

    def _check(self) -> Alert | None:
        watching = self.watching
        if watching is None:
            return None
        with self._frames_lock:
            latest = self.recording.latest()
            if latest is None:
                return None
            clip = self.recording.clip(since_s=latest.t_s - self.settings.check_window_s)
        self._checked_s = max(self._checked_s, latest.t_s)
        with self._lock():
            tokens = self.llm.encode(clip, cached=False)
        question = check_question(watching.condition)
        with self._lock(self.llm.answers_here):
            reply = "".join(self.llm.generate(tokens, [], question, self.settings.max_check_tokens))
        alert = watching.update(reply, float(clip.times_s[-1]))
        if alert is not None and self.watching is watching:
            self.conversation.append(alert)
            self.revision = next(_REVISIONS)
        return alert

    # ---- objects ----

    def point_at(self, x: float, y: float) -> GroundedObject:
        """The object under a click on the newest frame, (x, y) in that frame's pixels (`newest`): tracked from
        then on, and what the next question is about ("what is this?")."""
        chat = self._on_newest()
        latest = chat.clip
        height, width = latest.frames.shape[1:3]
        if not (0 <= x <= width and 0 <= y <= height):
            raise PromptError(f"The click at ({x:.0f}, {y:.0f}) is outside the {width}×{height} frame.")
        source_w, source_h = self.recording.source_size
        clicked = chat.point_at(float(latest.times_s[-1]), x * source_w / width, y * source_h / height)
        self._track((clicked.object_id,))
        self.revision = next(_REVISIONS)
        return clicked

    def _track(self, object_ids: tuple[int, ...]) -> None:
        """Start tracking the objects a turn located: each from its latest box or point, on the kept frame nearest
        that time, caught up to the newest frame."""
        if self.tracker is None:
            return
        with self._frames_lock:
            window = list(self.recording.window)
        source_w, source_h = self.recording.source_size
        for obj in (o for o in self.objects.values() if o.object_id in object_ids):
            found = max((*obj.boxes, *obj.points), key=lambda item: item.t_s if item.t_s is not None else -1)
            if found.t_s is None or not window:
                continue
            start = int(np.argmin([abs(f.t_s - found.t_s) for f in window]))
            height, width = window[start].picture.shape[:2]
            (in_source,) = object_prompts([found])[0].prompts  # the box or point as SAM 2's prompt, source pixels
            prompt = to_clip_pixels(in_source, (source_w, source_h), (width, height))
            try:
                # not under the model lock: a frame's tracking is short, and frames must not wait
                self.masks_now[obj.object_id] = self.tracker.add(
                    obj.object_id, prompt, [f.picture for f in window[start:]]
                )
            except VidchatError:
                continue  # SAM 2 found nothing there: the object stays named, untracked

    def newest(self) -> tuple[np.ndarray, float] | None:
        """The newest kept frame with each tracked object's mask drawn, and its time; None before the first."""
        with self._frames_lock:
            latest = self.recording.latest()
        if latest is None:
            return None
        labels = {obj.object_id: obj.label for obj in self.objects.values()}
        overlays = [
            Overlay(i, labels.get(i, ""), m.mask, None, ())
            for i, m in sorted(self.masks_now.items())
            if m.visible and m.mask.shape == latest.picture.shape[:2]
        ]
        return draw(latest.picture, overlays), latest.t_s

    # ---- the end ----

    def stop(self, progress: Progress | None = None) -> ChatSession:
        """Stop taking frames and open the recording as a video session, with this conversation and its objects
        (tracked through the recording when a mask decoder is loaded). PromptError when nothing was recorded."""
        self._stopped.set()
        with self._frames_lock:
            path = self.recording.close()
        self.ended = self.ended or "Stopped."
        self._close_tracker()
        if path is None:
            raise PromptError("Nothing was recorded: no picture came from the source.")
        settings = self.session
        session = ChatSession.open(path, self.llm, settings, progress, self.masks, model_lock=self.model_lock)
        session.adopt(self.conversation, self.objects, progress)
        return session

    def close(self) -> None:
        """Stop taking frames and let go of everything held; the recording's file stays where it is."""
        self._stopped.set()
        with self._frames_lock:
            self.recording.close()
        self._close_tracker()
        if self.chat is not None:
            self.chat.close()

    def _close_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.masks_now = {}

    @property
    def memory_bytes(self) -> int:
        chat = self.chat.memory_bytes() if self.chat is not None else 0
        return self.recording.nbytes + (self.tracker.nbytes if self.tracker is not None else 0) + chat

    # ---- wiring ----

    def _on_newest(self) -> ChatSession:
        """The conversation's ChatSession, looking at the newest window (encoded now: a window is seen once)."""
        with self._frames_lock:
            if self.recording.latest() is None:
                raise PromptError(f"No picture has come from the {self._source_name()} yet.")
            clip = self.recording.clip()  # the window the recording keeps
        with self._lock():
            tokens = self.llm.encode(clip, cached=False)
        if self.chat is None:
            settings = replace(self.session, zoom=ZoomSettings(on=False))  # the window is seen at the live rate
            self.chat = ChatSession(
                llm=self.llm, clip=clip, tokens=tokens, settings=settings, model_lock=self.model_lock,
                conversation=self.conversation, objects=self.objects,
            )  # fmt: skip
        else:
            self.chat.look_at(clip, tokens)
        return self.chat

    def _lock(self, needed: bool = True) -> AbstractContextManager:
        return self.model_lock if needed and self.model_lock is not None else nullcontext()

    def _source_name(self) -> str:
        return "webcam" if self.source == "webcam" else f"stream {self.source}"
