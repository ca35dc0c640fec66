"""What the page shows, as HTML, chat markdown and JSON for the page's script; all of it from the session.

Pure functions of a `ChatSession` (and of the answer being written, `PendingTurn`): the chat, the object
list, the overlay and timeline data, the model status line and the notices.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidchat.session import (
    Answer,
    ChatSession,
    Click,
    Failure,
    GroundedObject,
    TimeSpan,
    compute_device,
    format_timestamp,
    name_spans,
    selection_json,
)
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
        "answers are links to that moment; pause the video and click on something to ask about it."
    )


def click_text(session: ChatSession, click: Click) -> tuple[str, TimeSpan]:
    """The message a click adds to the chat, and the span of its time."""
    obj = session.object_by_id(click.object_id)
    when = format_timestamp(click.t_s)
    text = f"You pointed at {obj.label} at {when} ({click.x:.0f}, {click.y:.0f})."
    start = text.index(when)
    return text, TimeSpan(click.t_s, click.t_s, start, start + len(when))


def chat_messages(session: ChatSession | None, pending: PendingTurn | None = None) -> list[dict]:
    """The conversation in the Chatbot's message format, every answer rendered with the objects known now."""
    if session is None:
        return []
    objects = list(session.objects.values())
    messages = [_assistant(welcome_text(session))]
    for event in session.conversation:
        if isinstance(event, Answer):
            messages.append({"role": "user", "content": event.question})
            messages.append(
                _assistant(answer_markdown(event.text, event.groundings.times, objects), _answer_note(event, session))
            )
        elif isinstance(event, Failure):
            messages.append({"role": "user", "content": event.question})
            messages.append(_assistant("", html.escape(event.error), error=True))
        elif isinstance(event, Click):
            text, span = click_text(session, event)
            messages.append(
                _assistant(answer_markdown(text, (span,)), _point_note(session.object_by_id(event.object_id)))
            )
    if pending is not None:
        messages.append({"role": "user", "content": pending.question})
        messages.append(_assistant(answer_markdown(pending.text, pending.times, objects), pending.note))
    return messages


def _assistant(body: str, note: str = "", error: bool = False) -> dict:
    if note:
        css = "vc-note vc-error" if error else "vc-note"
        body = f'{body}\n\n<span class="{css}">{note}</span>' if body else f'<span class="{css}">{note}</span>'
    return {"role": "assistant", "content": body}


def _answer_note(answer: Answer, session: ChatSession) -> str:
    named = [session.object_by_id(object_id) for object_id in answer.object_ids]
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


# ---- the objects, the overlay and the timeline -----------------------------------------------------------


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


def overlay_payload(session: ChatSession | None) -> dict:
    """What the page's script draws: per sampled frame the objects' mask PNGs and the objects' points
    (positions in source pixels of a width × height video), and the timeline under the player."""
    if session is None:
        return {"ready": False, "version": 0, "frames": [], "points": [], "timeline": None}
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
        "version": session.revision,
        "video": session.clip.content_hash[:16],
        "width": info.width,
        "height": info.height,
        "step_s": step_s,
        "frames": session.overlay(),
        "points": points,
        "timeline": timeline_data(session),
    }


def timeline_data(session: ChatSession) -> dict:
    """The timeline under the player: every time the conversation mentions (with the sentence it came from),
    one lane per object filled where SAM 2 sees it, and the visual tokens the latest answer kept per temporal
    patch. Times in seconds of the source video."""
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
        else:
            continue
        for span in spans:
            sentence = sentence_around(text, span.char_start) if span.char_start >= 0 else span.label
            marks.append({"t": span.start_s, "end_s": span.end_s, "sentence": sentence, "message": index})
    lanes = []
    for obj in sorted(session.objects.values(), key=lambda o: o.object_id):
        if obj.masklet is None:
            continue
        runs = visible_runs([float(t) for t in obj.masklet.times_s], [bool(v) for v in obj.masklet.visible], duration)
        lanes.append({"id": obj.object_id, "label": obj.label, "color": obj.color, "runs": runs})
    heat = None
    if latest is not None:
        heat = selection_json(latest.selection, session)
        if heat["on"]:
            heat["caption"] = (
                f"Looked at for the latest answer: kept {heat['kept']:,} of {heat['total']:,} visual tokens "
                f"({100 * heat['kept'] / heat['total']:.1f} %)"
            )
        elif session.settings.selector is not None and not session.selection_applies:
            heat["caption"] = (
                f"Selection does not apply with this engine and model (it takes the whole clip): the latest answer "
                f"saw all {heat['total']:,} visual tokens"
            )
        else:
            heat["caption"] = f"Selection is off: the latest answer saw all {heat['total']:,} visual tokens"
    return {"duration_s": duration, "marks": marks, "lanes": lanes, "heat": heat}


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")


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


def video_summary(session: ChatSession) -> str:
    info, clip = session.clip.info, session.clip
    return (
        f"{len(clip.times_s)} frames sampled from {format_timestamp(0)}–{format_timestamp(info.duration_s)} "
        f"({info.width}×{info.height}, {info.codec})"
    )


# ---- the header and notices ----------------------------------------------------------------------------

_TITLES = {"llm": "Video model", "sam": "Masks", "qtsplus": "QTSplus"}


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
