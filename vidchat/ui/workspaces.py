"""Workspaces: one per browser tab (and per gradio_client Client), each with its ChatSession (or its LiveChat while a
live source plays), its upload and its folder, closed when the tab closes or after a long idle time, all of them
within the server's `ServerLimits` (sessions, live sources, memory, disk), the least recently used making room."""

from __future__ import annotations

import contextlib
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import gradio as gr

from vidchat.livechat import LiveChat
from vidchat.session import ChatSession, Player, ServerBusyError
from vidchat.ui.limits import ServerLimits
from vidchat.ui.live import LiveView


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
    """A browser tab's ChatSession (which holds its video and conversation) or LiveChat (a live source and its
    conversation, until it stops and its recording becomes the ChatSession), its upload and its folder (playable
    copy, exports, the live recording and the live view's pictures)."""

    def __init__(self, key: str, root: Path, inputs: CachedInputs, notice: str = ""):
        self.key = key
        root.mkdir(parents=True, exist_ok=True)
        # An unguessable name: Gradio serves the files under its cache to whoever asks for their path.
        self.folder = root / f"session-{secrets.token_hex(16)}"
        self.folder.mkdir()
        self.inputs = inputs
        self.input: Path | None = None  # the video file in Gradio's cache this workspace holds
        self.session: ChatSession | None = None  # holds the conversation, the objects and everything shown
        self.player: Player | None = None  # what the browser plays of the video
        self.live: LiveChat | None = None  # the live source playing (no `session` meanwhile)
        self.live_view: LiveView | None = None  # what the page's live view shows of it
        # Whether the tab's webcam may start a live source: from when the page shows its webcam until a live source
        # stops (its webcam may go on sending frames, which must not start another one).
        self.webcam_armed = False
        # The tab's secret: a reload of the tab (a new Gradio session) that shows it within the disconnect grace
        # time takes this workspace back (`Workspaces.reattach`).
        self.token = secrets.token_urlsafe(24)
        self.disconnected_at: float | None = None  # when its page went away, while it has not come back
        self.exports = 0
        # The thread making the session's transcript (for the session it was started for), and the transcript the
        # page was last sent: the page's timer asks until the one it has is the session's.
        self.transcriber: tuple[ChatSession, threading.Thread] | None = None
        self.transcript_shown: object | None = None
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
        """Forget the video or the live source (its session's SAM 2 state is released), its files and the
        conversation."""
        if self.session is not None:
            self.session.close()
        self.session = None
        self.close_live()
        self.player = None
        self.transcriber = None
        self.transcript_shown = None
        self.release_input()
        files = [str(path) for path in self.folder.rglob("*") if path.is_file()]
        for item in self.folder.iterdir() if self.folder.exists() else ():
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        self.inputs.forget(files)
        self.measure()

    def run_to_the_end(self, work: Callable[[], Iterator], after: Callable[[], None], idle_s: float) -> Iterator:
        """Run `work` (a turn's model calls) in a thread of its own that holds this workspace's lock, and yield what
        it yields, and None after each `idle_s` without anything. It runs to its end whatever happens to the page
        that asked: a page that goes away in the middle (a reload) does not cut the answer short, and the page that
        comes back (which waits for the lock) shows it. `after` runs at the end, still under the lock. An exception
        of `work` is raised here, when it comes."""
        events: queue.Queue = queue.Queue()
        done = object()

        def run() -> None:
            with self.lock:
                try:
                    for event in work():
                        events.put(event)
                except BaseException as error:  # noqa: BLE001 - handed to the page's handler, which raises it
                    events.put(error)
                finally:
                    after()
                    events.put(done)

        threading.Thread(target=run, name=f"turn-{self.key[:8]}", daemon=True).start()
        while True:
            try:
                event = events.get(timeout=idle_s)
            except queue.Empty:
                yield None
                continue
            if event is done:
                return
            if isinstance(event, BaseException):
                raise event
            yield event

    @property
    def transcribing(self) -> bool:
        """Whether the session's transcript is being made (or made again, for another subtitle track)."""
        session = self.session
        if session is None:
            return False
        job = self.transcriber
        return session.transcribing or (job is not None and job[0] is session and job[1].is_alive())

    def close_live(self) -> list[str]:
        """Stop the live source, if one plays, and delete its view's pictures (their paths); the recording stays."""
        live, self.live = self.live, None
        if live is not None:
            live.close()
        view, self.live_view = self.live_view, None
        return view.clear() if view is not None else []

    def measure(self) -> None:
        """Take this workspace's memory and disk bytes (by the thread holding `lock`, or before it is shared)."""
        self.memory_bytes = self.session.memory_bytes() if self.session is not None else 0
        if (live := self.live) is not None:
            self.memory_bytes += live.memory_bytes
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
            workspace.disconnected_at = None  # it came back (a network blip), or an API client goes on calling
            return workspace

    def add_live(self, workspace: Workspace, live: LiveChat, before: Callable[[], None] = lambda: None) -> None:
        """Make `live` the workspace's live source, within the server's `live_sources` (ServerBusyError beyond,
        the workspace untouched); `before` runs first, once there is room (it closes what the workspace had)."""
        with self._lock:
            playing = sum(1 for w in self._items.values() if w.live is not None and w is not workspace)
            if playing >= self.limits.live_sources:
                if not self.limits.live_sources:
                    raise ServerBusyError("This server takes no live sources: open a video file instead.")
                raise ServerBusyError(
                    f"The server is busy: {playing} live source{'s are' if playing != 1 else ' is'} playing, the most "
                    "it takes at once. Try again when one stops, or open a video file."
                )
            before()
            workspace.live = live
            workspace.live_view = LiveView(workspace.folder / "live-view")

    @property
    def live_sources(self) -> int:
        """Live sources playing on the server now."""
        return sum(1 for w in list(self._items.values()) if w.live is not None)

    def make_room(self, workspace: Workspace) -> bool:
        """Bring the sessions within the memory and disk limits, taking room from the least recently used
        other ones; False when the busy ones alone are over a limit."""
        reason = "Your video was closed to make room for other visitors."
        with self._lock:
            others = sorted((w for w in self._items.values() if w is not workspace), key=lambda w: w.touched)
            for other in others:  # caches first (SAM 2 features, video prefixes): they are computed again when needed
                if self._within_limits():
                    return True
                if other.session is not None and other.session.cache_bytes and other.lock.acquire(blocking=False):
                    try:
                        other.session.drop_caches()
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

    def reattach(self, token: str, request: gr.Request | None, wait_s: float = 5.0) -> Workspace | None:
        """The workspace whose page went away and that holds `token`, now the workspace of the request's browser
        session (a reload of the same tab); None when there is none. A reload's new page may ask before the server
        learnt that the old one left: it waits up to `wait_s` for that. A copy of the tab (which copies its
        token) while the first one is still open gets none."""
        key = getattr(request, "session_hash", None) or "local"
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                workspace = next((w for w in self._items.values() if secrets.compare_digest(w.token, token)), None)
                if workspace is None or workspace.key == key:
                    return workspace
                if workspace.disconnected_at is not None:
                    stale = self._items.pop(key, None)
                    del self._items[workspace.key]
                    workspace.key, workspace.disconnected_at = key, None
                    workspace.touched = time.monotonic()
                    self._items[key] = workspace
                    break
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        if stale is not None:
            stale.close()
        return workspace

    def disconnected(self, request: gr.Request | None) -> None:
        """The session's page went away (Gradio's unload: its heartbeat connection ended). Its workspace is
        closed once `disconnect_grace_s` pass without a request from it: a page that reconnects (a network
        blip, a laptop waking up) or an API client that goes on calling keeps its session."""
        key = getattr(request, "session_hash", None) or "local"
        gone_at = time.monotonic()
        with self._lock:
            if (workspace := self._items.get(key)) is not None:
                workspace.disconnected_at = gone_at
        if self.limits.disconnect_grace_s <= 0:
            self._close_if_gone(key, gone_at)
            return
        timer = threading.Timer(self.limits.disconnect_grace_s, self._close_if_gone, (key, gone_at))
        timer.daemon = True
        timer.start()

    def _close_if_gone(self, key: str, gone_at: float) -> None:
        with self._lock:
            workspace = self._items.get(key)
            if workspace is None or workspace.touched > gone_at or workspace.disconnected_at is None:
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


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes > 90:
        return f"{minutes / 60:g} hours"
    return f"{minutes} minute{'s' if minutes > 1 else ''}"
