"""Command line: `python -m vidchat ask VIDEO "question" ...`, `python -m vidchat transcribe VIDEO` and
`python -m vidchat download MODEL_ID`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vidchat.session import (
    DEFAULT_ASR,
    DEFAULT_MODEL,
    NO_ASR,
    ENGINES,
    QTSPLUS_CHECKPOINTS,
    SELECTORS,
    Answer,
    ChatSession,
    Engine,
    ModelError,
    SamplingConfig,
    SessionSettings,
    VidchatError,
    ZoomSettings,
    download,
    format_timestamp,
    load_model,
    probe,
    selector_settings,
    span_text,
    transcribe,
    transcript_json,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidchat", description="Grounded chat about a video.")
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="ask one or more questions (later ones are follow-ups) about a video")
    ask.add_argument("video", type=Path)
    ask.add_argument("questions", nargs="+", metavar="question")
    ask.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model id or local folder (default {DEFAULT_MODEL}); with --engine vllm, the id the server serves",
    )
    ask.add_argument("--engine", choices=ENGINES, default="transformers", help="what answers (default transformers)")
    ask.add_argument("--engine-url", metavar="URL", help="the vLLM server's address, e.g. http://127.0.0.1:8000")
    ask.add_argument("--json", type=Path, help="write the answers and groundings to this JSON file")
    ask.add_argument("--fps", type=float, default=SamplingConfig.fps, help="frames sampled per second")
    ask.add_argument("--max-frames", type=int, default=SamplingConfig.max_frames)
    ask.add_argument("--max-new-tokens", type=int, default=SessionSettings.max_new_tokens)
    ask.add_argument("--no-grounding", action="store_true", help="skip the call that locates the objects named")
    ask.add_argument(
        "--selector",
        choices=SELECTORS,
        default="attention",
        help="how the visual tokens for each question are chosen: the model's own attention (default), the trained "
        "QTSplus selector (needs --qtsplus), evenly spread, or none (every token)",
    )
    ask.add_argument(
        "--qtsplus",
        metavar="ID_OR_FOLDER",
        help=f"QTSplus checkpoint for --selector qtsplus (e.g. {QTSPLUS_CHECKPOINTS[0]}, with its Qwen2.5-VL model)",
    )
    _asr_option(ask)
    ask.add_argument("--transcript-tokens", type=int, default=SessionSettings.transcript_tokens,
                     help="the most tokens of the video's transcript in the prompt (default %(default)s)")  # fmt: skip
    ask.add_argument("--no-zoom", action="store_true", help="never look closer at parts of a long video")
    ask.add_argument(
        "--zoom-windows",
        type=int,
        choices=range(1, 4),  # a vLLM server started as the README says takes the video and 3 windows per prompt
        default=ZoomSettings.windows,
        metavar="N",
        help="the most parts of a long video each question looks closer at, 1 to 3 (default %(default)s)",
    )
    hear = commands.add_parser("transcribe", help="the video's words: its subtitle track, else speech recognition")
    hear.add_argument("video", type=Path)
    hear.add_argument("--json", type=Path, help="write the transcript (segments with their words' times) here")
    hear.add_argument("--track", type=int, help="the subtitle track to read (its stream index; default the first)")
    _asr_option(hear)
    fetch = commands.add_parser("download", help="download a model into weights/ for offline use")
    fetch.add_argument("model_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"Downloaded {args.model_id} to {download(args.model_id)}")
            return 0
        if args.command == "transcribe":
            return _transcribe(args)
        return _ask(args, parser)
    except VidchatError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _ask(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if (args.selector == "qtsplus") != (args.qtsplus is not None):
        parser.error("--selector qtsplus and --qtsplus ID_OR_FOLDER go together")
    try:
        engine = Engine(args.engine, args.engine_url, args.asr_url)
    except ValueError as error:
        parser.error(str(error))
    settings = SessionSettings(
        sampling=SamplingConfig(fps=args.fps, max_frames=args.max_frames),
        max_new_tokens=args.max_new_tokens,
        ground_objects=not args.no_grounding,
        selector=selector_settings(args.selector),
        transcript_tokens=args.transcript_tokens,
        zoom=ZoomSettings(on=not args.no_zoom, windows=args.zoom_windows),
    )
    probe(args.video, settings.limits)  # a bad file is reported before minutes of model loading
    qtsplus = load_model("qtsplus", args.qtsplus) if args.qtsplus else None
    llm = engine.load("llm", args.model)
    recognizer = _recognizer(args)
    session = ChatSession.open(args.video, llm, settings, progress=_progress, qtsplus=qtsplus)
    print(file=sys.stderr)
    _print_transcript_summary(session.transcribe(recognizer, progress=_progress))
    for question in args.questions:
        print(f"\n> {question}\n")
        for event in session.ask(question):
            if isinstance(event, str):
                print(event, end="", flush=True)
            else:
                print()
                _print_zoom(event)
                _print_groundings(event)
    if args.json:
        args.json.write_text(json.dumps(session.to_json(), indent=2))
        print(f"\nWrote {args.json}")
    return 0


def _asr_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--asr",
        metavar="ID_OR_FOLDER",
        default=DEFAULT_ASR,
        help=f"speech recognizer for videos without subtitles: a Whisper model id or folder, or '{NO_ASR}' "
        f"(default {DEFAULT_ASR} on this machine)",
    )
    command.add_argument("--asr-url", metavar="URL", help="a vLLM server serving the --asr model: hear speech there")


def _recognizer(args: argparse.Namespace):
    """The speech recognizer asked for; None when it is off, or when the default one is not on this machine (then
    subtitle tracks are still read, and stderr says how to get it)."""
    if args.asr == NO_ASR:
        return None
    try:
        return Engine(asr_url=args.asr_url).load("asr", args.asr)
    except ModelError as error:
        if args.asr != DEFAULT_ASR or args.asr_url:
            raise
        print(f"Speech recognition is off: {error}", file=sys.stderr)
        return None


def _transcribe(args: argparse.Namespace) -> int:
    probe(args.video)
    transcript = transcribe(args.video, _recognizer(args), track=args.track, progress=_progress)
    print(file=sys.stderr)
    _print_transcript_summary(transcript)
    for segment in transcript.segments:
        span = f"{format_timestamp(segment.start_s)} – {format_timestamp(segment.end_s)}"
        print(f"{span}  {' / '.join(segment.text.splitlines())}")
    if args.json:
        args.json.write_text(json.dumps(transcript_json(transcript), indent=2, ensure_ascii=False))
        print(f"\nWrote {args.json}")
    return 0


def _print_transcript_summary(transcript) -> None:
    where = {"subtitles": "from the subtitle track", "speech": "recognized speech", "none": "no words"}
    language = f", language {transcript.language}" if transcript.language else ""
    print(f"Transcript: {len(transcript.segments)} lines, {where[transcript.source]}{language}.", file=sys.stderr)
    if transcript.note:
        print(transcript.note, file=sys.stderr)


def _progress(fraction: float, message: str) -> None:
    print(f"\r{message}: {fraction:4.0%}", end="", file=sys.stderr, flush=True)


def _print_zoom(answer: Answer) -> None:
    """The parts of the video the answer looked at densely, one a line."""
    for look in answer.zoom:
        print(f"Looked closer at {span_text(look.window)} ({look.fps:.1f} fps, {len(look.times_s)} frames)")


def _print_groundings(answer: Answer) -> None:
    found = answer.groundings
    for span in found.times:
        when = format_timestamp(span.start_s)
        if span.end_s > span.start_s:
            when += f" – {format_timestamp(span.end_s)}"
        print(f"  time   {when}  {span.label}".rstrip())
    for box in found.boxes:
        at = "" if box.t_s is None else f" at {format_timestamp(box.t_s)}"
        print(f"  box    {box.label!r}{at}: ({box.x1:.0f}, {box.y1:.0f}) – ({box.x2:.0f}, {box.y2:.0f}) px")
    for point in found.points:
        at = "" if point.t_s is None else f" at {format_timestamp(point.t_s)}"
        print(f"  point  {point.label!r}{at}: ({point.x:.0f}, {point.y:.0f}) px")


if __name__ == "__main__":
    sys.exit(main())
