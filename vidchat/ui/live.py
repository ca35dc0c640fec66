"""What the page shows of a live source (a webcam, a stream URL) while it plays, all of it from the `LiveChat`: the live
view (the newest kept frame with the tracked objects' masks, written as a picture file the page shows), its status
line, the live conversation in the chat, the tracked objects, and what the API answers about it.

`LiveView` is a tab's memory of what its live view shows, so that the page is sent a picture only when there is a
new one, and the chat only when the conversation changed.
"""

from __future__ import annotations

import html
import itertools
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vidchat.livechat import Alert, LiveChat
from vidchat.session import GroundedObject, format_timestamp, object_json, turn_json
from vidchat.ui import views
from vidchat.ui.models import ModelRegistry
from vidchat.ui.views import PendingTurn

VIDEO_FILE, WEBCAM, STREAM_URL = "Video file", "Webcam", "Stream URL"
SOURCES = (VIDEO_FILE, WEBCAM, STREAM_URL)
# The rates a live source is kept at. A webcam sends its frames at the rate its component was wired with (Gradio
# fixes a stream's period when the page is built): the page has one webcam component per rate.
LIVE_FPS = (1, 2, 3, 4, 5)
MIN_WINDOW_S, MAX_WINDOW_S = 4, 60  # the newest seconds a question about now sees
VIEW_FILES_KEPT = 3  # pictures of the live view kept on disk: the one shown, and the ones the page may still load
VIEW_QUALITY = 85  # JPEG


def webcam_id(fps: int) -> str:
    """The element id of the webcam component that sends `fps` frames per second."""
    return f"webcam-{fps}"


@dataclass
class LiveView:
    """What a tab's live view shows: its pictures (files in `folder`, the newest last), the frame and conversation
    they show, and whether the page still shows what the tab had before the live source started."""

    folder: Path
    shown: tuple[float, int] | None = None  # (frame time, LiveChat.revision) of the picture shown
    chat_revision: int = 0  # the LiveChat.revision the chat shows
    fresh: bool = True  # the page shows the video the tab had before (its player, timeline, transcript)
    status: str = ""  # the status line shown
    files: deque[Path] = field(default_factory=deque)
    _numbers: itertools.count = field(default_factory=itertools.count)

    def picture(self, live: LiveChat) -> tuple[str | None, list[str]]:
        """The newest frame with its masks, written for the page (None when the page shows it already, or before
        the first frame), and the older pictures deleted (their paths)."""
        newest = live.newest()
        if newest is None:
            return None, []
        picture, t_s = newest  # [h, w, 3] uint8 RGB at the model's frame size: a click's pixels are the frame's
        if self.shown == (t_s, live.revision):
            return None, []
        self.shown = (t_s, live.revision)
        self.folder.mkdir(parents=True, exist_ok=True)
        # An unguessable name in the workspace's folder (served by Gradio without a copy), new for each picture so
        # that the browser loads it.
        path = self.folder / f"live-{next(self._numbers)}.jpg"
        cv2.imwrite(str(path), np.ascontiguousarray(picture[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, VIEW_QUALITY])
        self.files.append(path)
        deleted = []
        while len(self.files) > VIEW_FILES_KEPT:
            old = self.files.popleft()
            old.unlink(missing_ok=True)
            deleted.append(str(old))
        return str(path), deleted

    def clear(self) -> list[str]:
        """Delete every picture (the live source stopped): their paths."""
        deleted = [str(path) for path in self.files]
        for path in self.files:
            path.unlink(missing_ok=True)
        self.files.clear()
        return deleted


# ---- the status line --------------------------------------------------------------------------------------------


def source_name(live: LiveChat) -> str:
    return "the webcam" if live.source == "webcam" else live.source


def status_text(live: LiveChat) -> str:
    """ "Live · 00:42 · 84 frames kept · 2 fps", or why no more frames come; and the standing question."""
    recording = live.recording
    rate = f"{live.settings.recording.fps:g} fps"
    if not recording.kept and not live.ended:
        text = f"Waiting for the first picture from {source_name(live)}… · {rate}"
    else:
        counts = f"{_clock(recording.duration_s)} · {recording.kept} frame{'s' if recording.kept != 1 else ''} kept"
        text = f"Ended: {live.ended} · {counts}" if live.ended else f"Live · {counts} · {rate}"
    if live.watching is not None:
        text += f" · watching for: {live.watching.condition}"
    return text


def status_html(live: LiveChat | None) -> str:
    if live is None:
        return '<div class="vc-live-status vc-live-off"></div>'
    state = "vc-live-ended" if live.ended else "vc-live-on"
    hint = " Stop to open the recording as a video." if live.ended else ""
    return (
        f'<div class="vc-live-status {state}"><span class="vc-live-dot"></span>'
        f"<span>{html.escape(status_text(live))}{hint}</span></div>"
    )


def _clock(t_s: float) -> str:
    """ "00:42": whole seconds."""
    return format_timestamp(float(int(t_s)))[:-2]


# ---- the chat and the objects -----------------------------------------------------------------------------------


def welcome_text(live: LiveChat) -> str:
    window = f"{live.settings.recording.window_s:g}"
    where = "the webcam" if live.source == "webcam" else f"<code>{html.escape(live.source)}</code>"
    return (
        f"**Live from {where}.** Ask about what is happening now: I see the newest {window} seconds. Times are "
        "counted from the first frame. Click the live view to point at something; “Tell me when…” watches for you. "
        "Stop turns the recording into a video you can replay and ask more about."
    )


def chat_messages(live: LiveChat, pending: PendingTurn | None = None) -> list[dict]:
    """The live conversation: answers, clicks on the live view, refused questions and the standing question's
    alerts."""

    def point_note(obj: GroundedObject) -> str:
        found = (
            "SAM 2 tracks it on the live view" if live.tracker is not None else "Masks are off: only the point is kept"
        )
        return views.point_hint(found)

    return views.conversation_messages(welcome_text(live), live.conversation, live.objects, pending, point_note)


def objects_html(live: LiveChat) -> str:
    """The objects of the live conversation, and whether SAM 2 follows each on the newest frame."""
    if not live.objects:
        hint = "Objects the answers mention appear here, each in its own colour. Click the live view to point at one."
        return f'<div class="vc-objects"><div class="vc-objects-empty">{hint}</div></div>'
    rows = []
    for obj in sorted(live.objects.values(), key=lambda o: o.object_id):
        mask = live.masks_now.get(obj.object_id)
        if live.tracker is None:
            seen = "masks are off"
        elif mask is None:
            seen = "not tracked"
        else:
            seen = "tracked live" if mask.visible else "out of view"
        rows.append(
            f'<span class="vc-object"><span class="vc-swatch" style="background:{obj.color}"></span>'
            f'<span class="vc-name" style="color:{obj.color}">{html.escape(obj.label)}</span>'
            f'<span class="vc-meta">{seen}</span></span>'
        )
    return f'<div class="vc-objects">{"".join(rows)}</div>'


# ---- the API ------------------------------------------------------------------------------------------------------


def started_json(live: LiveChat, models: ModelRegistry) -> dict:
    """What /live_start answers: the live source, its rate and window, its frame size once known (a stream URL's
    first frame came), and the models, as /upload says them."""
    size = live.recording.source_size
    return {
        "live": True,
        "source": live.source,
        "name": live.source,
        "fps": live.settings.recording.fps,
        "window_s": live.settings.recording.window_s,
        "max_duration_s": live.settings.recording.max_duration_s,
        "width": size[0] if size else None,
        "height": size[1] if size else None,
        "duration_s": live.recording.duration_s,
        "model": models.llm_slot.model_id,
        "masks": live.masks is not None,
    }


def status_json(live: LiveChat) -> dict:
    """What /live_status answers: the frames, the clock, why it ended, the standing question, its alerts and the
    objects tracked."""
    recording = live.recording
    return {
        "live": True,
        "source": live.source,
        "frames_kept": recording.kept,
        "frames_received": recording.received,
        "duration_s": recording.duration_s,
        "ended": live.ended,
        "watching": live.watching.condition if live.watching is not None else None,
        # turn_json needs no session for an alert
        "alerts": [turn_json(event, None) for event in live.conversation if isinstance(event, Alert)],
        "objects": [object_json(obj) for obj in sorted(live.objects.values(), key=lambda o: o.object_id)],
        "tracked": sorted(i for i, mask in live.masks_now.items() if mask.visible),
        "memory_bytes": live.memory_bytes,
    }
