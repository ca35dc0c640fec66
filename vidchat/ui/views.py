"""What the page shows, as HTML, chat markdown and JSON for the page's script; all of it from the session.

Pure functions of a `ChatSession` (and of the answer being written, `PendingTurn`): the chat, the object
list, the overlay and timeline data, the model status line and the notices.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidchat.livechat import Alert
from vidchat.session import (
    Answer,
    ChatSession,
    Click,
    Event,
    Failure,
    GroundedObject,
    Look,
    TimeSpan,
    compute_device,
    format_timestamp,
    name_spans,
    selection_json,
    span_text,
    zoom_json,
)
from vidchat.ui import transcript
from vidchat.ui.models import ModelRegistry, ModelSlot

POINT_QUESTION = "What is this?"  # put in the question box after a click on the video
SPINNER = '<span class="vc-spin"></span>'


@dataclass(frozen=True)
class PendingTurn:
    """The question being answered and the answer so far, shown while it streams (not yet in the session)."""

    question: str
    text: str = ""
    times: tuple[TimeSpan, ...] = ()
    note: str = f"{SPINNER} Thinking…"


# ---- the chat ----------------------------------------------------------------------------------------------


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


def welcome_text(session: ChatSession) -> str:
    return (
        f"**{Path(session.clip.info.path).name}** is ready: {video_summary(session)}. Ask me about it. Times in my "
        "answers are links to that moment; pause the video and point at something (click or tap) to ask about it."
    )


def click_text(session: ChatSession, click: Click) -> tuple[str, TimeSpan]:
    """The message a click adds to the chat, and the span of its time."""
    return _click_text(session.object_by_id(click.object_id), click)


def _click_text(obj: GroundedObject, click: Click) -> tuple[str, TimeSpan]:
    when = format_timestamp(click.t_s)
    text = f"You pointed at {obj.label} at {when} ({click.x:.0f}, {click.y:.0f})."
    start = text.index(when)
    return text, TimeSpan(click.t_s, click.t_s, start, start + len(when))


def alert_text(alert: Alert) -> tuple[str, TimeSpan]:
    """The message a live source's standing question adds to the chat when its answer turns to yes ("🔔 00:42.5 —
    a person enters"), and the span of its time."""
    when = format_timestamp(alert.t_s)
    text = f"🔔 {when} — {alert.condition}"
    start = text.index(when)
    return text, TimeSpan(alert.t_s, alert.t_s, start, start + len(when))


def chat_messages(session: ChatSession | None, pending: PendingTurn | None = None) -> list[dict]:
    """The conversation in the Chatbot's message format, every answer rendered with the objects known now."""
    if session is None:
        return []
    return conversation_messages(welcome_text(session), session.conversation, session.objects, pending)


def conversation_messages(
    welcome: str,
    conversation: Sequence[Event],
    objects: Mapping[str, GroundedObject],
    pending: PendingTurn | None,
    point_note: Callable[[GroundedObject], str] | None = None,
) -> list[dict]:
    """A conversation (a video's, or a live source's: `vidchat.ui.live`) after its welcome message, in the Chatbot's
    message format, every answer rendered with `objects` as they are now; `point_note` says what became of a
    clicked object (a video's masklet by default)."""
    point_note = point_note or _point_note
    by_id = {obj.object_id: obj for obj in objects.values()}
    known = list(objects.values())
    messages = [_assistant(welcome)]
    for event in conversation:
        if isinstance(event, Answer):
            messages.append({"role": "user", "content": event.question})
            note = _answer_note(event, [by_id[i] for i in event.object_ids if i in by_id])
            messages.append(_assistant(answer_markdown(event.text, event.groundings.times, known), note))
        elif isinstance(event, Failure):
            messages.append({"role": "user", "content": event.question})
            messages.append(_assistant("", html.escape(event.error), error=True))
        elif isinstance(event, Click) and event.object_id in by_id:
            text, span = _click_text(by_id[event.object_id], event)
            messages.append(_assistant(answer_markdown(text, (span,)), point_note(by_id[event.object_id])))
        elif isinstance(event, Alert):
            # The condition is the visitor's words and the reply the model's: text, never markup.
            text, span = alert_text(event)
            message = answer_markdown(html.escape(text), (_escaped_span(text, span),))
            messages.append(_assistant(message, f"Tell me when… · the model said “{html.escape(event.reply)}”"))
    if pending is not None:
        # The note goes in a message of its own after the answer being written, so that each new word only adds to
        # the end of its message: the page is sent the new words, not the whole answer again.
        messages.append({"role": "user", "content": pending.question})
        if pending.text:
            messages.append(_assistant(answer_markdown(pending.text, pending.times, known)))
        messages.append(_assistant("", pending.note))
    return messages


def _escaped_span(text: str, span: TimeSpan) -> TimeSpan:
    """`span` of `text` moved to where it is in `html.escape(text)`."""
    start = len(html.escape(text[: span.char_start]))
    return TimeSpan(span.start_s, span.end_s, start, start + len(html.escape(text[span.char_start : span.char_end])))


def _assistant(body: str, note: str = "", error: bool = False) -> dict:
    if note:
        css = "vc-note vc-error" if error else "vc-note"
        body = f'{body}\n\n<span class="{css}">{note}</span>' if body else f'<span class="{css}">{note}</span>'
    return {"role": "assistant", "content": body}


def _answer_note(answer: Answer, located: Sequence[GroundedObject]) -> str:
    """What the answer heard of the transcript (or that it was not ready yet), where it looked closer, and the
    objects it located."""
    heard = html.escape(transcript.answer_note(answer))
    return " · ".join(note for note in (heard, zoom_note(answer.zoom), _located_note(located)) if note)


def zoom_note(looks: Sequence[Look]) -> str:
    """ "Looked closer at 12:03.0–12:41.0 and 30:00.0–30:12.5.": the parts of the video the answer looked at
    densely; "" when none."""
    if not looks:
        return ""
    return f"Looked closer at {' and '.join(span_text(look.window) for look in looks)}."


def zoom_title(look: Look) -> str:
    """ "Looked closer at 12:03.0–12:41.0 (2.0 fps, 76 frames)": a part looked at densely, as the timeline names it."""
    return f"Looked closer at {span_text(look.window)} ({look.fps:.1f} fps, {len(look.times_s)} frames)"


def _located_note(named: Sequence[GroundedObject]) -> str:
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
    """What a click on the video found, and what to ask next."""
    masklet = obj.masklet
    if masklet is None:
        found = "Masks are off, so only the point is kept"
    elif masklet.visible.any():
        found = f"SAM 2 tracks it in {int(masklet.visible.sum())}/{len(masklet.visible)} frames"
    else:
        found = "SAM 2 found no object there; the point is kept"
    return point_hint(found)


def point_hint(found: str) -> str:
    return f"{found}. Your next question is about it: try “{POINT_QUESTION}”"


# ---- the objects, the overlay and the timeline -----------------------------------------------------------


def objects_html(session: ChatSession | None) -> str:
    """The object list: colour, name, where it is visible, and a checkbox that shows or hides its mask."""
    if session is None or not session.objects:
        hint = (
            "Objects the answers mention appear here, each in its own colour. "
            "Pause the video and point at something (click or tap) to ask about it."
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
            located = sorted({item.t_s for item in (*obj.boxes, *obj.points) if item.t_s is not None})
            seen = (
                "located at "
                + ", ".join(f'<a href="#t={t:.1f}">{format_timestamp(t)}</a>' for t in located[:3])
                + (" …" if len(located) > 3 else "")
                if located
                else "located"
            )
        rows.append(
            f'<label class="vc-object"><input type="checkbox" class="vc-toggle" value="{obj.object_id}" checked>'
            f'<span class="vc-swatch" style="background:{obj.color}"></span>'
            f'<span class="vc-name" style="color:{obj.color}">{html.escape(obj.label)}</span>'
            f'<span class="vc-meta">{seen}</span></label>'
        )
    return f'<div class="vc-objects">{"".join(rows)}</div>'


# The page asks for masks in chunks of this many sampled frames, near the playhead (see `mask_chunks`).
MASK_CHUNK_FRAMES = 8


def overlay_payload(session: ChatSession | None, player_offset_s: float = 0.0) -> dict:
    """What the page's script draws over the player and under it, all but the masks (which it asks for near the
    playhead: `mask_chunks`): the player's clock (where the first frame is on the played file's clock), the
    sampled frames' times, every object with the version of its masks, the boxes and points that located them
    (source pixels of a width × height video), and the timeline."""
    if session is None:
        return {"ready": False, "version": 0, "objects": [], "frame_times_s": [], "timeline": None}
    info = session.clip.info
    times = session.clip.times_s
    step_s = float(times[1] - times[0]) if len(times) > 1 else 1.0
    objects = sorted(session.objects.values(), key=lambda o: o.object_id)
    return {
        "ready": True,
        "version": session.revision,
        "video": video_key(session),
        "width": info.width,
        "height": info.height,
        "clock": {"offset_s": player_offset_s, "duration_s": info.duration_s},
        "step_s": step_s,
        "frame_times_s": [round(float(t), 6) for t in times],
        "chunk_frames": MASK_CHUNK_FRAMES,
        "objects": [
            {
                "id": obj.object_id,
                "label": obj.label,
                "color": obj.color,
                "masks": _masks_key(obj) if obj.masklet is not None else None,
            }
            for obj in objects
        ],
        "points": [
            {"id": obj.object_id, "t_s": p.t_s, "x": p.x, "y": p.y, "color": obj.color}
            for obj in objects
            for p in obj.points
            if p.t_s is not None
        ],
        # Drawn where SAM 2 gives no mask (masks off): the model's own box at its time.
        "boxes": [
            {
                "id": obj.object_id,
                "t_s": b.t_s,
                "x1": b.x1,
                "y1": b.y1,
                "x2": b.x2,
                "y2": b.y2,
                "label": obj.label,
                "color": obj.color,
            }
            for obj in objects
            if obj.masklet is None
            for b in obj.boxes
            if b.t_s is not None
        ],  # fmt: skip
        "timeline": timeline_data(session),
    }


def video_key(session: ChatSession) -> str:
    """Names the video on the page: masks asked for one video are never drawn over another."""
    return session.clip.content_hash[:16]


def _masks_key(obj: GroundedObject) -> str:
    """Names the object's current masks: the page keeps the chunks it has while the name stays the same."""
    return f"{obj.object_id}.{obj.revision}"


def mask_chunks(session: ChatSession | None, request: dict) -> dict:
    """The mask chunks the page asked for: `request` = {"video", "want": [{"id", "masks", "chunk"}]}, each chunk
    MASK_CHUNK_FRAMES sampled frames of one object's current masks (`ChatSession.overlay_masks`). Chunks of
    another video, of an object that is gone or of masks that changed since the page asked are left out."""
    seq = request.get("seq")  # the page's number for its request, given back
    if session is None or request.get("video") != video_key(session):
        return {"video": request.get("video"), "seq": seq, "chunks": []}
    current = {_masks_key(obj): obj for obj in session.objects.values() if obj.masklet is not None}
    chunks = []
    for wish in request.get("want", [])[:64]:
        obj = current.get(str(wish.get("masks")))
        chunk = wish.get("chunk")
        if obj is None or not isinstance(chunk, int) or chunk < 0:
            continue
        frames = range(chunk * MASK_CHUNK_FRAMES, (chunk + 1) * MASK_CHUNK_FRAMES)
        chunks.append(
            {"masks": _masks_key(obj), "chunk": chunk, "frames": session.overlay_masks(obj.object_id, frames)}
        )
    return {"video": video_key(session), "seq": seq, "chunks": chunks}


def timeline_data(session: ChatSession) -> dict:
    """The timeline under the player: every time the conversation mentions (with the sentence it came from),
    one lane per object filled where SAM 2 sees it, the visual tokens the latest answer kept per temporal patch,
    and the parts of the video it looked at densely (`zoom_json` with the band's title). Times in seconds of the
    source video."""
    duration = session.clip.info.duration_s
    marks = []
    latest: Answer | None = None
    for index, event in enumerate(session.conversation):
        if isinstance(event, Answer):
            latest = event
            spans, text = event.groundings.times, event.text
        elif isinstance(event, Click):
            text, span = click_text(session, event)
            spans = (span,)
        elif isinstance(event, Alert):  # a live source's, carried over to its recording
            text, span = alert_text(event)
            spans = (span,)
        else:
            continue
        for span in spans:
            sentence = sentence_around(text, span.char_start) if span.char_start >= 0 else span.label
            marks.append({"t": span.start_s, "end_s": span.end_s, "sentence": sentence, "message": index})
    lanes = []
    times = [float(t) for t in session.clip.times_s]
    for obj in sorted(session.objects.values(), key=lambda o: o.object_id):
        lanes.append(
            {
                "id": obj.object_id,
                "label": obj.label,
                "color": obj.color,
                "runs": visible_runs(times, seen_on(obj, times), duration),
            }
        )
    heat = None
    zoom = []
    if latest is not None:
        zoom = [{**zoom_json(look), "title": zoom_title(look)} for look in latest.zoom]
        heat = selection_json(latest.selection, session)
        # Per temporal patch, the tokens kept of `per_step`; the patch starts at its first frame's time (the frames'
        # times are in the overlay data already).
        steps = heat.pop("steps")
        heat["per_step"] = steps[0]["total"]
        heat["starts_s"] = [step["frames_s"][0] for step in steps]
        heat["kept_per_step"] = [step["kept"] for step in steps]
        if heat["on"]:
            heat["caption"] = (
                f"Looked at for the latest answer: kept {heat['kept']:,} of {heat['total']:,} visual tokens "
                f"({100 * heat['kept'] / heat['total']:.1f} %)"
            )
            if heat["windows_total"]:
                heat["caption"] += f", and {heat['windows_kept']:,} of the closer look's {heat['windows_total']:,}"
        elif session.settings.selector is not None and not session.selection_applies:
            heat["caption"] = (
                f"Selection does not apply with this engine and model (it takes the whole clip): the latest answer "
                f"saw all {heat['total']:,} visual tokens"
            )
        else:
            heat["caption"] = f"Selection is off: the latest answer saw all {heat['total']:,} visual tokens"
    return {"duration_s": duration, "marks": marks, "lanes": lanes, "heat": heat, "zoom": zoom}


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")


def seen_on(obj: GroundedObject, times_s: Sequence[float]) -> list[bool]:
    """Per sampled frame, whether the object is seen there: where SAM 2 sees it, else (masks off) the frames
    nearest the times of the boxes and points that located it."""
    if obj.masklet is not None:
        return [bool(v) for v in obj.masklet.visible]
    seen = [False] * len(times_s)
    for item in (*obj.boxes, *obj.points):
        if item.t_s is not None and times_s:
            seen[min(range(len(times_s)), key=lambda i: abs(times_s[i] - item.t_s))] = True
    return seen


def sentence_around(text: str, position: int) -> str:
    """The sentence of `text` that holds character `position`."""
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > position:
            return text[start : match.start() if match.start() > position else match.end()].strip()
        start = match.end()
    return text[start:].strip()


def visible_runs(times_s: Sequence[float], visible: Sequence[bool], duration_s: float) -> list[dict]:
    """The stretches where an object is seen, each sampled frame standing for the time halfway to its
    neighbours: [{"t_s": first visible frame, "start_s", "end_s"}]."""
    runs = []
    for i, seen in enumerate(visible):
        if not seen:
            continue
        start = 0.0 if i == 0 else (times_s[i - 1] + times_s[i]) / 2
        end = duration_s if i == len(times_s) - 1 else (times_s[i] + times_s[i + 1]) / 2
        if runs and i > 0 and visible[i - 1]:
            runs[-1]["end_s"] = end
        else:
            runs.append({"t_s": times_s[i], "start_s": start, "end_s": end})
    return runs


def opened_notice(session: ChatSession) -> str:
    """The notice area once the video is open: its name and what was sampled."""
    return notice(f"<b>{html.escape(Path(session.clip.info.path).name)}</b> · {video_summary(session)}")


def video_summary(session: ChatSession) -> str:
    info, clip = session.clip.info, session.clip
    return (
        f"{len(clip.times_s)} frames sampled from {format_timestamp(0)}–{format_timestamp(info.duration_s)} "
        f"({info.width}×{info.height}, {info.codec})"
    )


# ---- the header and notices ----------------------------------------------------------------------------

_TITLES = {"llm": "Video model", "sam": "Masks", "qtsplus": "QTSplus", "asr": "Speech"}


def status_html(models: ModelRegistry) -> str:
    """The models' state as pills, and for a model that failed what to do about it."""
    shown = [slot for slot in models.slots if slot.kind != "qtsplus" or slot.state != "off"]
    parts = [_slot_html(slot) for slot in shown] + [_pill("idle", compute_device())]
    fixes = "".join(
        f'<div class="vc-fix"><b>{_TITLES[s.kind]}:</b> {_code_html(s.error)}</div>'
        for s in shown
        if s.state == "failed"
    )
    return f'<div class="vc-status">{"".join(parts)}</div>{fixes}'


def _slot_html(slot: ModelSlot) -> str:
    title = _TITLES[slot.kind]
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


def notice(text: str, error: bool = False) -> str:
    return f'<div class="vc-notice{" vc-notice-error" if error else ""}">{text}</div>'
