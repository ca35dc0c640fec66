"""The app: its models, its visitors' workspaces, and the handlers of the page's events and of the API.

Every handler goes through `vidchat.session` (a video) or `vidchat.livechat` (a live source): it finds the
visitor's workspace, calls the session under the workspace's lock, and returns what `vidchat.ui.views` (and
`vidchat.ui.live`) make of it. The layout is `vidchat.ui.layout`.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import gradio as gr
import gradio.utils
import numpy as np

from vidchat.livechat import LiveChat, LiveChatSettings
from vidchat.session import (
    DEFAULT_MODEL,
    DEFAULT_SAM2,
    Answer,
    ChatSession,
    ServerBusyError,
    SessionSettings,
    TranscriptCache,
    UrlGuard,
    VidchatError,
    VideoError,
    answer_json,
    bytes_text,
    clean_question,
    click_json,
    fetch_video,
    file_refusal,
    load_model,
    PromptError,
    object_json,
    selector_settings,
    turn_json,
)
from vidchat.ui import gpu, layout, theme, transcript, views
from vidchat.ui import live as live_views
from vidchat.ui.live import LIVE_FPS, MAX_WINDOW_S, MIN_WINDOW_S, STREAM_URL, VIDEO_FILE, WEBCAM
from vidchat.ui.limits import ServerLimits
from vidchat.ui.models import Loader, ModelRegistry
from vidchat.ui.views import POINT_QUESTION, PendingTurn
from vidchat.ui.workspaces import CachedInputs, Workspace, Workspaces

Progress = gpu.Progress
STREAM_PERIOD_S = 0.1  # the streamed answer's updates to the page, at most one per this many seconds


class VidchatApp:
    """The Gradio app, its models loading in the background (`model`, `sam`, `qtsplus`: Hugging Face ids or
    local folders; `load` loads one, `vidchat.session.load_model` unless a test scripts the model's words):
    `demo` is the Blocks, `launch()` serves them with the page's script and style. `live` says how live sources are
    kept (their rate and window are each visitor's choice; the recording's limits are the server's)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        sam: str | None = DEFAULT_SAM2,
        qtsplus: str | None = None,
        examples: Sequence[tuple[str, str]] = (),
        settings: SessionSettings = SessionSettings(),
        limits: ServerLimits = ServerLimits(),
        allow_model_change: bool = True,
        load: Loader = load_model,
        asr: str | None = None,
        url_guard: UrlGuard = UrlGuard(),
        live: LiveChatSettings = LiveChatSettings(),
    ):
        self.models = ModelRegistry(model, sam, qtsplus, load, asr)
        self.live_settings = live
        # What the server may fetch for a visitor who gives a URL (`/open_url`): public addresses, and the networks
        # its operator allowed.
        self.url_guard = url_guard
        # Transcripts by video content, recognizer and track: a video opened again is not transcribed again.
        self.transcripts = TranscriptCache()
        # The models are shared by every user of the server: a public deployment turns switching them off.
        self.allow_model_change = allow_model_change
        self.examples = [(str(video), question) for video, question in examples]
        self.settings = settings
        # Everything a session writes lives in its folder inside Gradio's cache, which Gradio serves without
        # copying it again (it copies any other file it is handed into the cache, out of vidchat's reach).
        cache = Path(gradio.utils.get_upload_folder())
        self.inputs = CachedInputs(cache, forget=self._forget_files)
        self.workspaces = Workspaces(cache / "vidchat", limits, self.inputs)
        self.demo = layout.build(self)
        self.models.start()

    def launch(self, **kwargs):
        """Serve the app (Gradio 6 takes the page's script, style and theme at launch)."""
        kwargs.setdefault("show_error", True)
        # An upload over the size limit is refused while it arrives, not after it has filled the disk.
        kwargs.setdefault("max_file_size", self.settings.limits.max_bytes)
        return self.demo.launch(head=theme.head(), css_paths=theme.CSS, theme=theme.THEME, **kwargs)

    def close(self) -> None:
        self.demo.close()
        self.workspaces.close_all()

    # ---- sessions, as the handlers use them ----

    def sampling_settings(self, fps: float | None, max_frames: float | None) -> SessionSettings:
        sampling = self.settings.sampling
        if fps is not None or max_frames is not None:
            sampling = replace(
                sampling,
                fps=float(fps) if fps else sampling.fps,
                max_frames=int(max_frames) if max_frames else sampling.max_frames,
                min_frames=min(sampling.min_frames, int(max_frames) if max_frames else sampling.max_frames),
            )
        return replace(self.settings, sampling=sampling)

    @property
    def default_selector(self) -> str:
        return self.settings.selector.kind if self.settings.selector is not None else "none"

    def open_video(
        self, workspace: Workspace, path: str, settings: SessionSettings, progress: Progress, for_player: bool = False
    ) -> ChatSession:
        """A new ChatSession on the video; with `for_player`, also what the browser plays (`workspace.player`: the
        file, or a copy when the browser cannot play it). VidchatError with a message for the user when the video
        cannot be used or the server has no room for it; the workspace then holds no video."""
        with workspace.lock:
            # Held before the reset lets go of the previous video: it may be this same file, opened again.
            held = self.inputs.hold(path)
            workspace.reset()
            workspace.input = held
            workspace.notice = ""
            try:
                # Decoding starts at once; the first use of the model (encoding) waits for it to load.
                llm = lambda: self.models.llm(on_wait=lambda message: progress(0.0, message))  # noqa: E731
                session = gpu.open_session(path, llm, settings, progress, self.models.masks(wait=False))
                workspace.session = session
                if for_player:
                    progress(1.0, "Making a copy your browser can play…")
                    try:
                        workspace.player = session.player(workspace.folder / "player")
                    except VideoError as error:  # the chat works without the player
                        gr.Warning(str(error))
                workspace.measure()
                if not self.workspaces.make_room(workspace):
                    raise ServerBusyError(self._no_room_message(workspace))
            except VidchatError:
                workspace.reset()
                raise
            self._start_transcribing(workspace)
            return session

    def _start_transcribing(self, workspace: Workspace) -> None:
        """Make the video's transcript in the background: its subtitles at once (they need no model), else the
        speech the recognizer hears once it has loaded (the models load one after the other, the recognizer last).
        Questions asked meanwhile are answered from the pictures, and say so. Made again (another subtitle track)
        while it is being made, it is made after: the latest choice's words are the ones kept."""
        session = workspace.session
        session.transcribing = True  # from now on, not from when the thread first runs
        job = workspace.transcriber
        before = job[1] if job is not None and job[0] is session else None

        def work() -> None:
            if before is not None:
                before.join()
            try:
                words = session.transcribe(None, cache=self.transcripts)
                if words.source != "none" or not self.models.asr_slot.usable:
                    return
                # No subtitles: the speech is heard next. Until the recognizer is there, the transcript is still
                # being made (questions say so) and its progress says what it waits for.
                session.transcribing, session.transcript_progress = True, (0.0, "")
                try:
                    recognizer = self.models.recognizer()
                finally:
                    session.transcribing = False
                if recognizer is not None:
                    session.transcribe(recognizer, cache=self.transcripts)
            except VidchatError:
                pass  # the session is closed (another video opened): its words are not needed any more

        thread = threading.Thread(target=work, name="vidchat-transcribe", daemon=True)
        workspace.transcriber = (session, thread)
        thread.start()

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
        if session is None and workspace.live is not None:
            raise gr.Error("A live source is playing: stop it first, and its recording opens as a video.")
        if session is None:
            raise gr.Error(workspace.notice or "Upload a video (or pick an example) first.")
        if session.masks is None and self.models.sam_slot.usable and (masks := self.models.masks()) is not None:
            session.use_masks(masks)  # SAM 2 finished loading after this video was opened
        return session

    def _choose_selector(self, session: ChatSession, kind: str | None, budget: float | None) -> None:
        """The selector and budget of the settings, for the session's next question."""
        kind = kind or self.default_selector
        selector = selector_settings(kind, budget, base=self.settings.selector)
        qtsplus = self.models.qtsplus() if selector is not None and selector.kind == "qtsplus" else None
        session.set_selector(selector, qtsplus)

    def _choose_transcript_budget(self, session: ChatSession, tokens: float | None) -> None:
        """The settings' budget of the transcript's tokens in the prompt, for the session's next question."""
        if tokens is not None and int(tokens) != session.settings.transcript_tokens:
            session.settings = replace(session.settings, transcript_tokens=max(int(tokens), 0))

    def _choose_zoom(self, session: ChatSession, on: bool, windows: float, fps: float, max_pixels: int) -> None:
        """The settings' closer look (on, its most windows, its dense rate and resolution), for the session's next
        question."""
        zoom = replace(
            session.settings.zoom, on=bool(on), windows=int(windows), fps=float(fps), max_pixels=int(max_pixels)
        )
        session.settings = replace(session.settings, zoom=zoom)

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

    def _view(self, workspace: Workspace, pending: PendingTurn | None = None, objects_changed: bool = True) -> tuple:
        """chat, object list, overlay: the parts of the page a turn changes. The overlay data and the object list
        are only sent when the objects changed, not with every streamed word (and the masks only when the page
        asks for them: `on_masks`). While a live source plays: its conversation and objects (no overlay)."""
        if (live := workspace.live) is not None:
            chat = live_views.chat_messages(live, pending)
            return chat, (live_views.objects_html(live) if objects_changed else gr.update()), gr.update()
        session = workspace.session
        chat = views.chat_messages(session, pending)
        if not objects_changed:
            return chat, gr.update(), gr.update()
        offset_s = workspace.player.offset_s if workspace.player is not None else 0.0
        return chat, views.objects_html(session), views.overlay_payload(session, offset_s)

    def _words(self, workspace: Workspace) -> tuple:
        """transcript data, subtitle tracks, transcript timer: the video's words for the page's script while they
        are made (the progress, every second) and once when they are (every line, the captions, the speech lane),
        and the subtitle tracks to choose from."""
        session = workspace.session
        if session is None:
            return _no_words()
        making = workspace.transcribing
        offset_s = workspace.player.offset_s if workspace.player is not None else 0.0
        payload = transcript.page_payload(session, making, views.video_key(session), offset_s, self.models.asr_slot)
        if making:
            return payload, gr.update(), gr.Timer(active=True)
        workspace.transcript_shown = session.transcript
        return payload, _tracks_update(session.transcript), gr.Timer(active=False)

    def on_video(self, video, fps, max_frames, request: gr.Request, progress=gr.Progress()):
        """The player got a new video (upload or example) or was cleared."""
        try:
            workspace = self._upload_workspace(request, video)
        except ServerBusyError as error:
            empty = ([], views.objects_html(None), views.overlay_payload(None))
            notice = views.notice(html.escape(str(error)), error=True)
            yield None, *empty, notice, _no_downloads(), gr.update(), *_no_words()
            return
        if not video:
            with workspace.lock:
                workspace.reset()
            notice = views.notice("Upload a video or pick an example.")
            yield gr.update(), *self._view(workspace), notice, _no_downloads(), gr.update(), *_no_words()
            return
        name = html.escape(Path(video).name)
        empty = ([], views.objects_html(None), views.overlay_payload(None))
        yield gr.update(), *empty, views.notice(f"Reading {name}…"), _no_downloads(), gr.update(), *_no_words()
        try:
            session = self.open_video(
                workspace, video, self.sampling_settings(fps, max_frames), _progress(progress), for_player=True
            )
        except VidchatError as error:
            notice = views.notice(html.escape(str(error)), error=True)
            yield None, *self._view(workspace), notice, _no_downloads(), gr.update(), *_no_words()
            return
        # A file the browser cannot play (MJPEG AVI, HEVC, ...) is replaced in the player by the session's playable
        # copy: the overlay needs a playing <video>.
        played = workspace.player
        player = str(played.path) if played is not None and str(played.path) != video else gr.update()
        notice = views.opened_notice(session)
        yield player, *self._view(workspace), notice, _no_downloads(), workspace.token, *self._words(workspace)

    def on_refused_file(self, refused: str):
        """A file the page did not upload ({"name", "size"}: its name is no video vidchat opens, or it is over the
        size limit): the app's reason in the notice area, instead of the file picker's own words or silence."""
        try:
            picked = json.loads(refused or "{}")
            message = file_refusal(str(picked["name"]), int(picked["size"]), self.settings.limits)
        except (ValueError, KeyError, TypeError):
            return gr.update()
        return gr.update() if message is None else views.notice(html.escape(message), error=True)

    def on_ask(
        self,
        question: str,
        selector: str,
        budget,
        words_budget,
        zoom_on: bool,
        zoom_windows: float,
        zoom_fps: float,
        zoom_pixels: int,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        """Stream the answer into the chat, then show its times as links and its objects on the player; the
        settings' selector, budgets and closer look apply to it. While a live source plays, the question is about
        now: the live source answers it, from its newest seconds (with the settings' selector)."""
        question = clean_question(question or "")
        workspace = self._workspace(request)
        if not question:
            yield gr.update(), gr.update(), gr.update(), gr.update()
            return
        live = workspace.live
        if live is not None:
            yield from self._ask_live(workspace, live, question, selector, budget, progress)
            return
        if workspace.session is None:
            gr.Warning(workspace.notice or "Upload a video (or pick an example) first.")
            yield question, gr.update(), gr.update(), gr.update()
            return
        # Said while the answer is written when the transcript is still being made (the answer's note says it too).
        heard = f" {transcript.pending_note()}" if workspace.transcribing else ""
        pending = PendingTurn(question, note=f"{views.SPINNER} Thinking…{heard}")
        yield "", *self._view(workspace, pending, objects_changed=False)

        def turn() -> Iterator[str | Answer]:
            session = self._ready_session(workspace)
            self._choose_selector(session, selector, budget)
            self._choose_transcript_budget(session, words_budget)
            self._choose_zoom(session, zoom_on, zoom_windows, zoom_fps, zoom_pixels)
            yield from gpu.ask(session, question, _progress(progress))

        # The answer goes to the page at most every STREAM_PERIOD_S (each update costs a message of its own), and
        # what came since the last one as soon as the model pauses (the objects are located after the words).
        shown, last = 0, 0.0
        try:
            for event in workspace.run_to_the_end(turn, lambda: self._settle(workspace), idle_s=STREAM_PERIOD_S):
                if isinstance(event, str):
                    text = pending.text + event
                    note = f"{views.SPINNER} Answering… the objects it names are located next.{heard}"
                    pending = PendingTurn(question, text, workspace.session.times_in(text), note)
                if len(pending.text) > shown and (event is None or time.monotonic() - last >= STREAM_PERIOD_S):
                    shown, last = len(pending.text), time.monotonic()
                    yield gr.update(), *self._view(workspace, pending, objects_changed=False)
        except VidchatError as error:  # the session keeps the failed question with its reason
            gr.Warning(str(error))
            if not _asked(workspace.session.conversation if workspace.session else [], question):
                # refused before it was asked (the selector's settings): back into its box
                yield question, *self._view(workspace)
                return
        yield gr.update(), *self._view(workspace)

    def _ask_live(self, workspace: Workspace, live: LiveChat, question: str, selector, budget, progress):
        """`on_ask` while a live source plays: the answer streams into the chat as a video's does (its times are
        links once there is a recording to seek)."""
        pending = PendingTurn(
            question, note=f"{views.SPINNER} Looking at the newest {live.settings.recording.window_s:g} seconds…"
        )
        yield "", *self._view(workspace, pending, objects_changed=False)

        def turn() -> Iterator[str | Answer]:
            self._choose_live_selector(live, selector, budget)
            yield from gpu.live_ask(live, question, _progress(progress))

        shown, last = 0, 0.0
        try:
            for event in workspace.run_to_the_end(turn, lambda: self._settle(workspace), idle_s=STREAM_PERIOD_S):
                if isinstance(event, str):
                    text = pending.text + event
                    chat = live.chat
                    times = chat.times_in(text) if chat is not None else ()
                    pending = PendingTurn(question, text, times, f"{views.SPINNER} Answering…")
                if len(pending.text) > shown and (event is None or time.monotonic() - last >= STREAM_PERIOD_S):
                    shown, last = len(pending.text), time.monotonic()
                    yield gr.update(), *self._view(workspace, pending, objects_changed=False)
        except VidchatError as error:
            gr.Warning(str(error))
            if not _asked(live.conversation, question):  # no picture yet, or the live source stopped
                yield question, *self._view(workspace)
                return
        if workspace.live_view is not None:
            workspace.live_view.chat_revision = live.revision
        yield gr.update(), *self._view(workspace)

    def _choose_live_selector(self, live: LiveChat, kind: str | None, budget: float | None) -> None:
        """The settings' selector and budget, for the live source's next question (its first one starts the
        ChatSession that answers them, with the live source's settings; QTSplus applies from the second)."""
        chat = live.chat
        if chat is not None:
            self._choose_selector(chat, kind, budget)
            return
        selector = selector_settings(kind or self.default_selector, budget, base=self.settings.selector)
        if selector is None or selector.kind != "qtsplus":
            live.session = replace(live.session, selector=selector)

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
                gpu.point(session, t_s, x, y, _progress(progress))
            except VidchatError as error:
                gr.Warning(str(error))
                yield gr.update(), *self._view(workspace)
                return
            self._settle(workspace)
            yield POINT_QUESTION, *self._view(workspace)

    def on_masks(self, wanted: str, request: gr.Request) -> dict:
        """The mask chunks the page asks for near its playhead (`views.mask_chunks`). Read without the workspace's
        lock, beside a running turn: the objects it reads are replaced whole, never changed in place."""
        try:
            wish = json.loads(wanted or "{}")
        except ValueError:
            wish = {}
        session = self._workspace(request).session
        return views.mask_chunks(session, wish if isinstance(wish, dict) else {})

    def on_clear(self, request: gr.Request):
        """The chat's trash button: a new conversation on the same video (no history, no objects)."""
        workspace = self._workspace(request)
        with workspace.lock:
            if workspace.session is not None:
                workspace.session.new_conversation()
                self._settle(workspace)
            elif workspace.live is not None:
                gr.Info("A live conversation is kept until you stop the live source.")
            return self._view(workspace)

    def on_load(self, token: str, request: gr.Request):
        """A page opens: when it is a reload of a tab whose session is still kept (its token, within the grace
        time after the old page went away), it gets that session back: the video, the conversation, the objects; or
        its live source, still playing."""
        keep = (gr.update(),) * 6
        words = (gr.update(),) * 3
        workspace = self.workspaces.reattach(token, request) if token else None
        if workspace is None:
            return *keep, "", *words, gr.update()
        with workspace.lock:  # after an answer that was being written when the page went away
            if (live := workspace.live) is not None:  # the page shows it again (its source's part of the page)
                source = WEBCAM if live.source == "webcam" else STREAM_URL
                return gr.update(), *self._view(workspace), gr.update(), gr.update(), workspace.token, *words, source
            session = workspace.session
            if session is None:
                return *keep, "", *words, gr.update()
            player = str(workspace.player.path) if workspace.player is not None else gr.update()
            notice = views.opened_notice(session)
            words = self._words(workspace)
            return player, *self._view(workspace), notice, gr.update(), workspace.token, *words, gr.update()

    def on_transcript(self, request: gr.Request):
        """The page's transcript timer (every second while the transcript is made): its progress, then, once, the
        transcript; the timer stops when the page has it."""
        workspace = self._workspace(request)
        session = workspace.session
        if session is not None and not workspace.transcribing and session.transcript is workspace.transcript_shown:
            return gr.update(), gr.update(), gr.Timer(active=False)
        return self._words(workspace)

    def on_subtitle_track(self, track, request: gr.Request):
        """Another subtitle track chosen in the settings: the transcript is read again from it, in the background."""
        workspace = self._workspace(request)
        session = workspace.session
        if session is None:
            gr.Warning(workspace.notice or "Upload a video (or pick an example) first.")
            return gr.update(), gr.update()
        try:
            index = int(track)
        except (TypeError, ValueError):
            return gr.update(), gr.update()
        if session.transcript is not None and session.transcript.track == index and not workspace.transcribing:
            return gr.update(), gr.update()
        session.settings = replace(session.settings, subtitle_track=index)
        self._start_transcribing(workspace)
        payload, _, timer = self._words(workspace)
        return payload, timer

    def on_export(self, burn_captions: bool, request: gr.Request, progress=gr.Progress()):
        return gr.update(value=self.api_export(bool(burn_captions), request, progress), visible=True)

    def on_status(self):
        # Every second while a model loads; then every 10 s, so that a tab sees a model another one switched to.
        return views.status_html(self.models), gr.Timer(1.0 if not self.models.settled else 10.0)

    def on_models(self, model: str, sam: str, qtsplus: str, asr: str):
        if not self.allow_model_change:
            raise gr.Error("Switching models is turned off on this server.")
        self.models.configure(model, sam, qtsplus, asr)
        gr.Info("Loading the models in the background. They apply to the next video you open.")
        return views.status_html(self.models), gr.Timer(1.0)

    def on_unload(self, request: gr.Request) -> None:
        self.workspaces.disconnected(request)

    # ---- live sources (a webcam, a stream URL) ----

    def _start_live(
        self, workspace: Workspace, source: str, fps: float, window_s: float, settings: SessionSettings
    ) -> LiveChat:
        """A new live source for the workspace (`source`: "webcam", whose frames the page or an API client sends,
        or a stream URL to follow), kept at `fps` with the newest `window_s` seconds in view; `settings` answer its
        questions and open its recording after it stops. Its video or live source before is closed. VidchatError
        when the rate or window is refused, the video model cannot be had or the server plays its most live
        sources (the workspace then keeps what it had)."""
        try:
            recording = replace(self.live_settings.recording, fps=float(fps), window_s=float(window_s))
        except (TypeError, ValueError) as error:
            raise PromptError(f"This live rate and window cannot be used: {error}.") from None
        if not (LIVE_FPS[0] <= recording.fps <= LIVE_FPS[-1] and MIN_WINDOW_S <= recording.window_s <= MAX_WINDOW_S):
            raise PromptError(
                f"A live source is kept at {LIVE_FPS[0]}–{LIVE_FPS[-1]} frames per second with a window of "
                f"{MIN_WINDOW_S}–{MAX_WINDOW_S} seconds; asked {recording.fps:g} fps and {recording.window_s:g} s."
            )
        llm = self.models.llm()
        folder = workspace.folder / "live"
        live = LiveChat(
            llm,
            folder,
            replace(self.live_settings, recording=recording),
            settings,
            masks=self.models.masks(wait=False),
            model_lock=gpu.MODEL_LOCK,
            source=source,
        )

        def replace_what_the_tab_had() -> None:
            workspace.reset()
            workspace.notice = ""
            folder.mkdir(parents=True, exist_ok=True)

        with workspace.lock:
            self.workspaces.add_live(workspace, live, before=replace_what_the_tab_had)
        return live

    def _stop_live(self, workspace: Workspace, progress: Progress, for_player: bool) -> ChatSession:
        """Stop the workspace's live source: its recording becomes the workspace's video, with the conversation and
        objects, as if it had been uploaded (with `for_player`, also what the browser plays). VidchatError when
        nothing was recorded (the live source is gone either way)."""
        with workspace.lock:
            live = workspace.live
            if live is None:
                raise PromptError("No live source is playing.")
            workspace.webcam_armed = False  # the tab's webcam may send a few more frames: they start nothing
            try:
                session = gpu.live_stop(live, progress)
            finally:
                self._forget_files(workspace.close_live())
            workspace.session = session
            if for_player:
                try:
                    workspace.player = session.player(workspace.folder / "player")
                except VideoError as error:  # the chat works without the player
                    gr.Warning(str(error))
            self._settle(workspace)
        self._start_transcribing(workspace)
        return session

    def on_live_source(self, source: str, live_fps: float, request: gr.Request):
        """The source chosen above the player: the video file's player, the webcam (of the chosen rate: its frames
        start a live source) or the stream URL's box; the live view and its controls with either live one."""
        workspace = self._workspace(request)
        workspace.webcam_armed = source == WEBCAM
        live = source != VIDEO_FILE
        timer = gr.Timer(active=True) if workspace.live is not None else gr.update()
        if live and workspace.live_view is not None:  # shown again (after a reload): the picture and status too
            workspace.live_view.shown, workspace.live_view.status = None, ""
        return (
            gr.update(visible=True if not live else "hidden"),
            gr.update(visible=live),
            gr.update(visible=source == WEBCAM),
            gr.update(visible=source != WEBCAM and live),
            *self._webcams(source, live_fps),
            timer,
        )

    def on_live_fps(self, source: str, live_fps: float, request: gr.Request):
        """Another rate: the webcam component that sends it, for the next start (a webcam playing goes on at its
        own)."""
        live = self._workspace(request).live
        if live is not None and live.source == "webcam" and source == WEBCAM:
            gr.Info("The new rate applies to the next start: stop the live source first.")
            return tuple(gr.update() for _ in LIVE_FPS)
        return self._webcams(source, live_fps)

    @staticmethod
    def _webcams(source: str, live_fps: float) -> tuple:
        chosen = min(LIVE_FPS, key=lambda fps: abs(fps - float(live_fps or LIVE_FPS[0])))
        return tuple(gr.update(visible=source == WEBCAM and fps == chosen) for fps in LIVE_FPS)

    def on_webcam_frame(self, picture: np.ndarray | None, live_fps, window_s, fps, max_frames, request: gr.Request):
        """A frame of the tab's webcam while the page streams it: added to its live source, which the first frame
        starts (the live view's timer then runs). Frames after a Stop start nothing until the page shows its webcam
        again."""
        workspace = self._workspace(request)
        live = workspace.live
        if picture is None:
            return gr.update(), gr.update()
        started = live is None or live.source != "webcam"
        if started:
            if not workspace.webcam_armed:
                return gr.update(), gr.update()
            if not self.models.llm_slot.done.is_set():  # frames are dropped until the model is there
                return gr.update(), views.notice(f"{views.SPINNER} Waiting for the video model to finish loading…")
            try:
                live = self._start_live(
                    workspace, "webcam", live_fps, window_s, self.sampling_settings(fps, max_frames)
                )
            except VidchatError as error:
                workspace.webcam_armed = False  # said once: the frames that follow start nothing
                gr.Warning(str(error))
                return gr.update(), views.notice(html.escape(str(error)), error=True)
        try:
            live.add_frame(picture)
        except VidchatError as error:  # not a picture
            gr.Warning(str(error))
        if not started:
            return gr.update(), gr.update()
        return gr.Timer(active=True), views.notice("Live from the webcam.")

    def on_live_url(self, url: str, live_fps, window_s, fps, max_frames, request: gr.Request, progress=gr.Progress()):
        """Watch: follow the stream URL (past the URL guard) as the tab's live source; its first frame came when
        this returns."""
        url = clean_question(url or "")
        if not url:
            gr.Warning("Give the stream's URL (HLS .m3u8, RTMP or RTSP).")
            return gr.update(), gr.update(), gr.update()
        workspace = self._workspace(request)
        live = None
        try:
            self.url_guard.check(url)  # a refused URL leaves the tab's video open
            live = self._start_live(workspace, url, live_fps, window_s, self.sampling_settings(fps, max_frames))
            _progress(progress)(0.0, "Opening the stream…")
            live.follow(url, self.url_guard)
        except VidchatError as error:
            self._drop_live(workspace, live)
            gr.Warning(str(error))  # on a phone the notice is a screen away from the URL box
            return views.notice(html.escape(str(error)), error=True), gr.update(), gr.update()
        notice = views.notice(f"Live from <code>{html.escape(live.source)}</code>.")
        return notice, gr.Timer(active=True), live_views.status_html(live)

    def _drop_live(self, workspace: Workspace, live: LiveChat | None) -> None:
        """Let go of a live source that could not start."""
        if live is None:
            return
        with workspace.lock:
            if workspace.live is live:
                self._forget_files(workspace.close_live())
            else:
                live.close()

    def on_live_tick(self, request: gr.Request):
        """The live view's timer (while a live source plays): the newest picture with its masks, the status line,
        the chat when the conversation changed (an alert, when no answer is being written), and once the page's
        video parts emptied (the tab's video closed when the live source started) and the tab's token (a reload
        gets the live source back). It stops when none plays (stopped, or closed by another video), and the page
        shows the player again."""
        workspace = self._workspace(request)
        live, view = workspace.live, workspace.live_view
        # source, player, chat, objects, overlay, notice, downloads, token, words, tracks, words timer
        page = [gr.update()] * 11
        if live is None or view is None:
            page[0] = VIDEO_FILE
            return None, live_views.status_html(None), gr.Timer(active=False), *page
        picture, deleted = view.picture(live)
        self._forget_files(deleted)
        if view.fresh:
            view.fresh = False
            notice = views.notice(f"Live from {html.escape(live_views.source_name(live))}.")
            no_video = [None, *page[2:4], views.overlay_payload(None), notice, _no_downloads(), workspace.token]
            page = [gr.update(), *no_video, *_no_words()]
        if live.revision != view.chat_revision and not workspace.lock.locked():
            view.chat_revision = live.revision
            page[2:4] = self._view(workspace)[:2]
        status = live_views.status_html(live)
        shown_status, view.status = view.status, status
        return (
            picture if picture is not None else gr.update(),
            status if status != shown_status else gr.update(),
            gr.update(),
            *page,
        )

    def on_live_point(self, point: str, request: gr.Request):
        """A click on the live view ({"fx", "fy"}: where on the picture, as fractions of it, from the page's script):
        SAM 2 tracks what is under it on the newest frame from then on, and the next question is about it."""
        workspace = self._workspace(request)
        live = workspace.live
        try:
            where = json.loads(point or "{}")
            fx, fy = min(max(float(where["fx"]), 0.0), 1.0), min(max(float(where["fy"]), 0.0), 1.0)
        except (ValueError, KeyError, TypeError):
            return gr.update(), gr.update(), gr.update(), gr.update()
        newest = live.recording.latest() if live is not None else None
        if newest is None:
            gr.Warning("No live source is playing.")
            return gr.update(), gr.update(), gr.update(), gr.update()
        height, width = newest.picture.shape[:2]  # the live view shows the newest frame in its own pixels
        with workspace.lock:
            try:
                gpu.live_point(live, fx * width, fy * height)
            except VidchatError as error:
                gr.Warning(str(error))
                return gr.update(), *self._view(workspace)
            self._settle(workspace)
            return POINT_QUESTION, *self._view(workspace)

    def on_live_watch(self, text: str, request: gr.Request):
        """Tell me when…: the live source's standing question (an empty one clears it)."""
        live = self._workspace(request).live
        if live is None:
            gr.Warning("Start the webcam or a stream first: “Tell me when…” watches a live source.")
            return gr.update()
        try:
            live.watch(clean_question(text or ""))
        except ValueError as error:
            gr.Warning(str(error))
            return gr.update()
        return live_views.status_html(live)

    def on_live_unwatch(self, request: gr.Request):
        live = self._workspace(request).live
        if live is not None:
            live.watch(None)
        return live_views.status_html(live), ""

    def on_live_stop(self, request: gr.Request, progress=gr.Progress()):
        """Stop: the recording opens as the tab's video (player, timeline, follow-ups, export), the conversation
        and the objects carried over; the page shows the player again."""
        workspace = self._workspace(request)
        stopped = (VIDEO_FILE, gr.Timer(active=False), None, live_views.status_html(None))
        try:
            session = self._stop_live(workspace, _progress(progress), for_player=True)
        except VidchatError as error:
            notice = views.notice(html.escape(str(error)), error=True)
            return gr.update(), *self._view(workspace), notice, *(gr.update(),) * 5, *stopped
        player = str(workspace.player.path) if workspace.player is not None else None
        return (
            player,
            *self._view(workspace),
            views.opened_notice(session),
            _no_downloads(),
            workspace.token,
            *self._words(workspace),
            *stopped,
        )

    # ---- API handlers (gradio_client) ----

    def api_upload(
        self, video: str, fps: float, max_frames: float, request: gr.Request, progress=gr.Progress()
    ) -> dict:
        """Open a video for this client's session; later /ask and /point calls are about it."""
        if not video:
            raise gr.Error("No video given.")
        try:
            workspace = self._upload_workspace(request, video)
            session = self.open_video(workspace, video, self.sampling_settings(fps, max_frames), _progress(progress))
        except ServerBusyError as error:
            raise gr.Error(str(error), title="The server is busy") from None
        except VidchatError as error:
            raise gr.Error(str(error), title="This video cannot be used") from None
        return _opened_json(session, Path(video).name, self.models)

    def api_open_url(
        self, url: str, fps: float, max_frames: float, request: gr.Request, progress=gr.Progress()
    ) -> dict:
        """Fetch the video file at `url` (http or https, within the upload limits, past the URL guard at every
        redirect), then open it as /upload does, answering the same."""
        url = clean_question(url or "")
        if not url:
            raise gr.Error("No URL given.")
        try:
            workspace = self.workspaces.get(request)
            # In Gradio's cache, held like an upload: deleted when the workspace lets go of it
            folder = Path(tempfile.mkdtemp(prefix="fetched-", dir=self.inputs.cache_dir))
            try:
                _progress(progress)(0.0, "Fetching the video")
                path = fetch_video(url, folder, self.url_guard, self.settings.limits.max_bytes)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            session = self.open_video(
                workspace, str(path), self.sampling_settings(fps, max_frames), _progress(progress)
            )
        except ServerBusyError as error:
            raise gr.Error(str(error), title="The server is busy") from None
        except VidchatError as error:
            raise gr.Error(str(error), title="This video cannot be used") from None
        return _opened_json(session, path.name, self.models)

    def api_ask(self, question: str, request: gr.Request, progress=gr.Progress()) -> Iterator[dict]:
        """Stream {"text", "done": false} while the answer is written, then the answer (`answer_json`) with
        its objects."""
        question = clean_question(question or "")
        if not question:
            raise gr.Error("The question is empty.")
        workspace = self._workspace(request)
        with workspace.lock:
            live = workspace.live
            session = self._ready_session(workspace) if live is None else None
            turn = (
                gpu.ask(session, question, _progress(progress))
                if live is None
                else gpu.live_ask(live, question, _progress(progress))
            )
            text = ""
            try:
                for event in turn:
                    if isinstance(event, str):
                        text += event
                        yield {"text": text, "done": False}
                    else:
                        self._settle(workspace)
                        yield _final(event, session or live.chat)
            except VidchatError as error:
                raise gr.Error(str(error)) from None

    def api_point(self, t_s: float, x: float, y: float, request: gr.Request, progress=gr.Progress()) -> dict:
        """Segment and track the object at (x, y) source pixels, `t_s` seconds; the next /ask refers to it. While a
        live source plays: at (x, y) of its newest frame, in the pixels of the live view's picture (`t_s` unused)."""
        workspace = self._workspace(request)
        with workspace.lock:
            if (live := workspace.live) is not None:
                try:
                    obj = gpu.live_point(live, float(x), float(y))
                except VidchatError as error:
                    raise gr.Error(str(error)) from None
                chat = live.chat
                return {**object_json(obj), "click": click_json(chat.conversation[-1], chat)}
            session = self._ready_session(workspace)
            try:
                obj = gpu.point(session, float(t_s), float(x), float(y), _progress(progress))
            except VidchatError as error:
                raise gr.Error(str(error)) from None
            self._settle(workspace)
            return {**object_json(obj), "click": click_json(session.conversation[-1], session)}

    def api_live_start(
        self, url: str, fps: float, window_s: float, request: gr.Request, progress=gr.Progress()
    ) -> dict:
        """Start a live source for this client: a stream URL (HLS, RTMP, RTSP; past the URL guard) the server reads,
        or with no URL the frames the client sends (/live_frame); kept at `fps` with the newest `window_s` seconds
        seen by /ask. Its video or live source before is closed."""
        url = clean_question(url or "")
        defaults = self.live_settings.recording
        workspace = self._workspace(request)
        live = None
        try:
            if url:
                self.url_guard.check(url)  # a refused URL leaves the client's video open
            live = self._start_live(
                workspace, url or "webcam", fps or defaults.fps, window_s or defaults.window_s, self.settings
            )
            if url:
                _progress(progress)(0.0, "Opening the stream…")
                live.follow(url, self.url_guard)
        except ServerBusyError as error:
            raise gr.Error(str(error), title="The server is busy") from None
        except VidchatError as error:
            self._drop_live(workspace, live)
            raise gr.Error(str(error), title="This live source cannot be used") from None
        return live_views.started_json(live, self.models)

    def _api_live(self, request: gr.Request | None) -> tuple[Workspace, LiveChat]:
        workspace = self._workspace(request)
        if workspace.live is None:
            raise gr.Error("No live source is playing: start one first (/live_start).")
        return workspace, workspace.live

    def api_live_frame(self, picture: np.ndarray | None, t_s: float | None, request: gr.Request) -> dict:
        """A frame of the client's own source (started with no URL): {"kept": whether it was kept at the live
        rate, "t_s": its time on the recording's clock}. `t_s` on the client's clock (seconds, for every frame or
        for none), or none: its arrival here."""
        _, live = self._api_live(request)
        if live.source != "webcam":
            raise gr.Error("This live source is a stream URL: the server reads its frames itself.")
        if picture is None:
            raise gr.Error("No picture given.")
        try:
            kept = live.add_frame(picture, float(t_s) if t_s is not None else None)
        except VidchatError as error:
            raise gr.Error(str(error)) from None
        recording = live.recording
        return {
            "kept": kept is not None,
            "t_s": kept.t_s if kept is not None else None,
            "frames_kept": recording.kept,
            "frames_received": recording.received,
            "ended": live.ended,
        }

    def api_live_watch(self, text: str, request: gr.Request) -> dict:
        """The standing question ("tell me when a person enters"; "" clears it): {"watching": its condition}; its
        alerts are in /live_status and the conversation."""
        _, live = self._api_live(request)
        try:
            return {"watching": live.watch(clean_question(text or ""))}
        except ValueError as error:
            raise gr.Error(str(error)) from None

    def api_live_status(self, request: gr.Request) -> dict:
        """The live source's frames kept and received, its duration, why it ended, its standing question and
        alerts, its objects (`live.status_json`)."""
        return live_views.status_json(self._api_live(request)[1])

    def api_live_stop(self, request: gr.Request, progress=gr.Progress()) -> dict:
        """Stop the live source: its recording opens as this client's video, as /upload opens one (the same
        answer), with the conversation so far (`turns`); /ask, /point and /export are about it from then on."""
        workspace, _ = self._api_live(request)
        try:
            session = self._stop_live(workspace, _progress(progress), for_player=False)
        except VidchatError as error:
            raise gr.Error(str(error)) from None
        opened = _opened_json(session, Path(session.clip.info.path).name, self.models)
        return {**opened, "turns": [turn_json(event, session) for event in session.conversation]}

    def api_transcript(self, request: gr.Request) -> dict:
        """The video's words, or how far making them got (`transcript.api_json`)."""
        workspace = self._workspace(request)
        session = workspace.session
        if session is None:
            raise gr.Error(workspace.notice or "Upload a video first (/upload).")
        return transcript.api_json(session, workspace.transcribing)

    def api_export(self, burn_captions: bool, request: gr.Request, progress=gr.Progress()) -> list[str]:
        """The annotated video (H.264 mp4 with the source's sound; with `burn_captions`, the transcript drawn on it),
        the conversation with its groundings (JSON, masks as COCO RLE) and the transcript (SubRip, WebVTT)."""
        workspace = self._workspace(request)
        with workspace.lock:
            session = self._ready_session(workspace)
            # Only the latest export is kept: each one replaces the one before.
            previous = workspace.folder / f"export-{workspace.exports}"
            self._forget_files([str(path) for path in previous.glob("*")])
            shutil.rmtree(previous, ignore_errors=True)
            workspace.exports += 1
            folder = workspace.folder / f"export-{workspace.exports}"
            files = session.export(folder, _progress(progress), burn_captions=bool(burn_captions))
            self._settle(workspace)
        return [str(path) for path in files]


def _asked(conversation: Sequence, question: str) -> bool:
    """Whether the conversation's latest turn is `question` (it was asked, and failed), rather than refused before."""
    return any(getattr(event, "question", None) == question for event in conversation[-1:])


def _final(answer: Answer, session: ChatSession) -> dict:
    """/ask's last message: the answer's JSON, done, with its objects in full."""
    objects = [object_json(session.object_by_id(object_id)) for object_id in answer.object_ids]
    return {**answer_json(answer, session), "done": True, "objects": objects}


def _progress(progress: gr.Progress) -> Progress:
    def report(fraction: float, message: str) -> None:
        progress(min(max(float(fraction), 0.0), 1.0), desc=message)

    return report


def _no_downloads() -> dict:
    return gr.update(value=None, visible=False)


def _no_words() -> tuple:
    """No video: the transcript panel's empty state, no subtitle tracks, no transcript timer."""
    return transcript.page_payload(None, False), _tracks_update(None), gr.Timer(active=False)


def _tracks_update(words) -> dict:
    """The settings' subtitle tracks of the video's transcript (one to choose when there are several)."""
    choices = transcript.track_choices(words)
    if not choices:
        info = "This video has no subtitle track." if words is not None else "Open a video to see its subtitle tracks."
        return gr.update(choices=[], value=None, interactive=False, info=info)
    return gr.update(
        choices=choices,
        value=words.track,
        interactive=len(choices) > 1,
        info="The transcript reads this one." if len(choices) > 1 else "The video's only subtitle track.",
    )


def _opened_json(session: ChatSession, name: str, models: ModelRegistry) -> dict:
    """What /upload and /open_url answer about the video they opened."""
    info = session.clip.info
    return {
        "name": name,
        "duration_s": info.duration_s,
        "width": info.width,
        "height": info.height,
        "fps": info.avg_fps,
        "codec": info.codec,
        "sampled_times_s": [float(t) for t in session.clip.times_s],
        "model": models.llm_slot.model_id,
        "masks": session.masks is not None or models.sam_slot.usable,
    }
