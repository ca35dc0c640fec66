"""The video's words on the page and through the API, made from the session (`ChatSession.transcript`): where
making them got to, the transcript panel's lines, the captions' WebVTT on the player's clock, the timeline's
speech lane and the subtitle tracks to choose from.

The transcript is made in the background after a video opens (`VidchatApp._start_transcribing`); `making` below
says whether that is still going on for the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from vidchat.session import Answer, ChatSession, Transcript, transcript_json, vtt_text
from vidchat.ui.models import ModelSlot

State = Literal["pending", "ready", "none"]

NOT_READY_NOTE = (
    "The transcript was not ready yet: this answer is from the pictures only; it joins from the next question."
)
NO_WORDS = "No speech or subtitles in this video."
# What a transcript with no lines says when it has no note of its own (the session's transcript was not made).
NOT_MADE = "The transcript could not be made."
# A line of the speech lane stands for this much time at least: segments closer than this (or than 1/400 of the
# video, for long ones) make one bar, so that a long video's lane is a few hundred bars, not thousands of slivers.
LANE_GAP_S = 1.0
LANE_MAX_BARS = 400
_LANE_TEXT_CHARS = 80

# The /transcript answer's keys while there is no transcript yet (`Transcript.to_json`'s, empty).
_NO_TRANSCRIPT = {"source": None, "language": None, "segments": [], "tracks": [], "track": None, "note": ""}


def state_of(session: ChatSession, making: bool) -> State:
    """pending: being made (or made again, for another subtitle track); ready: it has lines; none: made, and
    there are none (its note says why)."""
    if making:
        return "pending"
    transcript = session.transcript
    return "ready" if transcript is not None and transcript.segments else "none"


def progress_of(session: ChatSession, making: bool, asr: ModelSlot | None = None) -> dict:
    """{"fraction", "message"}: how far making the transcript got (1 and "Transcript ready" once made)."""
    if not making:
        return {"fraction": 1.0, "message": "Transcript ready" if session.transcript is not None else NOT_MADE}
    fraction, message = session.transcript_progress
    if not message and asr is not None and asr.state == "loading":
        message = f"Waiting for the speech recognizer {asr.model_id} to load…"
    return {"fraction": round(float(fraction), 4), "message": message or "Reading the video's words…"}


def api_json(session: ChatSession, making: bool) -> dict:
    """/transcript's answer: {"state", "progress": {"fraction", "message"}, "source", "language", "segments":
    [{"start_s", "end_s", "text", "words": [{"start_s", "end_s", "text"}]}], "tracks": [{"index", "codec",
    "language", "title"}], "track", "note"}; while pending, the transcript's keys are empty."""
    state = state_of(session, making)
    words = transcript_json(session.transcript) if state != "pending" else None
    if words is None:
        words = dict(_NO_TRANSCRIPT, note=NOT_MADE if state == "none" else "")
    return {"state": state, "progress": progress_of(session, making), **words}


def page_payload(
    session: ChatSession | None,
    making: bool,
    video: str | None = None,
    offset_s: float = 0.0,
    asr: ModelSlot | None = None,
) -> dict:
    """What the page's script (static/transcript.js) shows: while pending only the progress; once made, every line
    (app seconds), the captions as WebVTT on the player's clock (`offset_s`: where the first frame is on it), the
    speech lane's bars, the subtitle tracks and the note. `video` names the video (`views.video_key`, as the
    overlay data does)."""
    if session is None:
        return {"state": "idle", "video": None}
    state = state_of(session, making)
    payload = {"state": state, "video": video, "progress": progress_of(session, making, asr)}
    if state == "pending":
        return payload
    transcript = session.transcript
    # In time order: the page finds the line being said by binary search.
    segments = sorted(transcript.segments, key=lambda s: s.start_s) if transcript is not None else []
    return {
        **payload,
        "source": transcript.source if transcript is not None else "none",
        "language": transcript.language if transcript is not None else None,
        "note": empty_note(transcript, asr) if not segments else transcript.note,
        "tracks": track_choices(transcript),
        "track": transcript.track if transcript is not None else None,
        "lines": [[round(s.start_s, 3), round(s.end_s, 3), s.text] for s in segments],
        "lane": speech_runs(segments, session.clip.info.duration_s),
        "captions": captions_vtt(segments, offset_s) if segments else "",
    }


def empty_note(transcript: Transcript | None, asr: ModelSlot | None = None) -> str:
    """What the panel says when there are no lines: the transcript's own note, and how to hear a video without
    subtitles when speech recognition is off or failed."""
    if transcript is None:
        return NOT_MADE
    note = transcript.note or NO_WORDS
    if asr is not None and not transcript.tracks:
        if asr.state == "off":
            note += (
                " To hear videos without subtitles, choose a speech recognizer (Whisper) in the settings, or start "
                "the app with --asr MODEL."
            )
        elif asr.state == "failed":
            note += " The speech recognizer could not be loaded: the status line says why."
    return note


def captions_vtt(segments: Sequence, offset_s: float) -> str:
    """The lines as WebVTT on the player's clock: each cue `offset_s` later than its app time (a file whose first
    frame is at 3 s plays its first line at 3 s + its time)."""
    if offset_s:
        segments = [replace(s, start_s=s.start_s + offset_s, end_s=s.end_s + offset_s) for s in segments]
    return vtt_text(segments)


def speech_runs(segments: Sequence, duration_s: float) -> list[dict]:
    """The timeline's speech lane: where someone speaks, segments less than a gap apart merged into one bar
    (LANE_GAP_S, or more on a long video so that it has at most about LANE_MAX_BARS). Each bar: {"t_s" (its first
    line's start, where a click seeks), "start_s", "end_s", "lines", "text" (its first line, shortened)}."""
    gap_s = max(LANE_GAP_S, duration_s / LANE_MAX_BARS)
    runs: list[dict] = []
    for segment in sorted(segments, key=lambda s: s.start_s):
        if runs and segment.start_s - runs[-1]["end_s"] <= gap_s:
            runs[-1]["end_s"] = max(runs[-1]["end_s"], segment.end_s)
            runs[-1]["lines"] += 1
            continue
        text = " ".join(segment.text.split())
        if len(text) > _LANE_TEXT_CHARS:
            text = text[: _LANE_TEXT_CHARS - 1].rstrip() + "…"
        runs.append({"start_s": segment.start_s, "end_s": segment.end_s, "lines": 1, "text": text})
    return [
        {"t_s": round(run["start_s"], 3), **run, "start_s": round(run["start_s"], 3), "end_s": round(run["end_s"], 3)}
        for run in runs
    ]


def track_choices(transcript: Transcript | None) -> list[tuple[str, int]]:
    """The subtitle tracks as the settings list them: ("English (mov_text) · stream 2", 2)."""
    if transcript is None:
        return []
    return [(_track_label(track), track.index) for track in transcript.tracks]


def _track_label(track) -> str:
    name = track.title or (track.language or "untagged language")
    return f"{name} ({track.codec}) · stream {track.index}"


def answer_note(answer: Answer) -> str:
    """The answer's note about the transcript: that it was not ready yet (the answer is from the pictures only),
    or how many of its lines the model read."""
    if answer.transcript_pending:
        return NOT_READY_NOTE
    if answer.transcript_lines:
        lines = answer.transcript_lines
        return f"Heard {lines:,} line{'s' if lines != 1 else ''} of the transcript."
    return ""


def pending_note() -> str:
    """While an answer is written before the transcript is ready."""
    return "The transcript is still being made: this answer is from the pictures only."
