"""ChatSession: one video, its cached visual tokens, the conversation and the objects found so far.

The only module the UI and the CLI call: models are loaded here (`load_model`), the names they show come from
here, and a session's conversation (`ChatSession.conversation`) and its one JSON shape (`answer_json`,
`object_json`, `ChatSession.to_json`) live here. A turn selects the visual tokens that matter for the question,
streams the answer, then asks the model (on the same visual tokens) where the objects it talked about
are, in the model's own JSON format, and parses both replies into groundings in source-video pixels and
seconds. With a mask decoder, every grounded object is then segmented and tracked through the clip.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from vidchat.errors import ClosedError, PromptError, VidchatError
from vidchat.grounding import Box, CoordinateFrame, Groundings, Point, TimeSpan, parse_answer
from vidchat.qtsplus import QTSplusSelector
from vidchat.render import (
    browser_plays,
    color_hex,
    object_color,
    overlay_masks,
    playable_copy,
    write_json,
    write_srt,
    write_video,
    write_vtt,
)
from vidchat.serving import VllmLLM, VllmRecognizer
from vidchat.segment import Masklet, MaskDecoder, ObjectPrompt, VideoState, label_key, object_prompts
from vidchat.selector import (
    Selection,
    SelectorSettings,
    default_scoring_layer,
    kept_per_video,
    select,
    whole_patches,
)
from vidchat.video import Clip, SamplingConfig, VideoLimits, first_frame_time_s, sample
from vidchat.recognize import DEFAULT_ASR_CPU, DEFAULT_ASR_GPU, WhisperRecognizer, default_asr
from vidchat.speech import Recognizer, Transcript, TranscriptCache, transcribe
from vidchat.vlm import TranscriptText, Turn, VideoLLM, VideoPrefix, VisualTokens
from vidchat.watch import Alert
from vidchat.zoom import Look, Window, ZoomSettings, ZoomState
from vidchat.zoom import applies as zoom_applies

# What the UI and the CLI use from the other stages, named here so that they import this module only.
from vidchat.errors import EngineError as EngineError
from vidchat.errors import ModelError as ModelError
from vidchat.errors import ServerBusyError as ServerBusyError
from vidchat.errors import VideoError as VideoError
from vidchat.grounding import format_timestamp as format_timestamp
from vidchat.grounding import name_spans as name_spans
from vidchat.render import vtt_text as vtt_text
from vidchat.segment import DEFAULT_SAM2 as DEFAULT_SAM2
from vidchat.segment import SAM2_CHECKPOINTS as SAM2_CHECKPOINTS
from vidchat.video import VIDEO_EXTENSIONS as VIDEO_EXTENSIONS
from vidchat.video import bytes_text as bytes_text
from vidchat.video import file_refusal as file_refusal
from vidchat.video import probe as probe
from vidchat.vlm import DEFAULT_MODEL as DEFAULT_MODEL
from vidchat.weights import download as download
from vidchat.fetch import fetch_video as fetch_video
from vidchat.url_guard import UrlGuard as UrlGuard

# ---- models: loaded here and nowhere else ------------------------------------------------------------------

MODEL_CHOICES = (
    DEFAULT_MODEL,
    "Qwen/Qwen3-VL-4B-Instruct",
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
)
# The QTSplus checkpoints are Qwen2.5-VL models with a trained selector; their selector fits the LLM of that size.
QTSPLUS_CHECKPOINTS = ("AlpachinoNLP/QTSplus-3B", "AlpachinoNLP/QTSplus-7B")
ModelKind = Literal["llm", "sam", "qtsplus", "asr"]
# Speech recognition for videos without subtitles: Whisper checkpoints, or none (subtitle tracks are still read).
DEFAULT_ASR = default_asr()
NO_ASR = "none"
ASR_CHOICES = tuple(dict.fromkeys((DEFAULT_ASR, DEFAULT_ASR_GPU, DEFAULT_ASR_CPU, "openai/whisper-base")))
# The selectors a user chooses from ("none": every visual token goes to the model).
SELECTORS = ("attention", "qtsplus", "uniform", "none")


def load_model(kind: ModelKind, model_id: str) -> VideoLLM | MaskDecoder | QTSplusSelector | WhisperRecognizer:
    """The video model, SAM 2 decoder, QTSplus selector or speech recognizer `model_id` (a Hugging Face id or a
    folder), loaded from weights/, the Hugging Face cache or a download; ModelError saying how to get it when it
    is missing."""
    loaders = {
        "llm": VideoLLM.from_pretrained,
        "sam": MaskDecoder.from_pretrained,
        "qtsplus": QTSplusSelector.from_pretrained,
        "asr": WhisperRecognizer.from_pretrained,
    }
    return loaders[kind](model_id)


ENGINES = ("transformers", "vllm")


@dataclass(frozen=True)
class Engine:
    """What answers the questions: the video model in this process ("transformers"), or a vLLM server at `url`
    serving it ("vllm"), with the vision tower and the selector's layers in this process (`vidchat.serving`); and
    what hears speech: Whisper in this process, or a vLLM server at `asr_url` serving it."""

    kind: Literal["transformers", "vllm"] = "transformers"
    url: str | None = None
    asr_url: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ValueError(f"unknown engine '{self.kind}': choose one of {', '.join(ENGINES)}")
        if self.kind == "vllm" and not self.url:
            raise ValueError("the vllm engine needs the server's address (--engine-url http://HOST:PORT)")

    def load(self, kind: ModelKind, model_id: str) -> VideoLLM | MaskDecoder | QTSplusSelector | Recognizer:
        """`load_model`, with the video model and the speech recognizer served where this engine says."""
        if kind == "llm" and self.kind == "vllm":
            return VllmLLM.connect(self.url, model_id)
        if kind == "asr" and self.asr_url:
            return VllmRecognizer.connect(self.asr_url, model_id)
        return load_model(kind, model_id)


def compute_device() -> str:
    """Where the models run, in words: "GPU (name)" or "CPU"."""
    return f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU"


def selector_settings(
    kind: str, budget_pct: float | None = None, base: SelectorSettings | None = None
) -> SelectorSettings | None:
    """The selector named `kind` (one of SELECTORS) keeping at most `budget_pct` % of the visual tokens (None:
    `base`'s budget); None for "none" or a 100 % budget, where every visual token goes to the model."""
    if kind not in SELECTORS:
        raise PromptError(f"Unknown selector '{kind}': choose one of {', '.join(SELECTORS)}.")
    if kind == "none" or (budget_pct is not None and budget_pct >= 100):
        return None
    settings = replace(base or SelectorSettings(), kind=kind)
    if budget_pct is None:
        return settings
    fraction = max(float(budget_pct), 1.0) / 100
    return replace(settings, max_fraction=fraction, min_fraction=min(settings.min_fraction, fraction))

Progress = Callable[[float, str], None]

# Asked after each answer. Each family is asked for the coordinates it was trained to give:
# Qwen3-VL 0–1000 relative, Qwen2.5-VL absolute pixels of the frames it saw.
GROUNDING_REQUEST_START = "Locate every object you mentioned in your last answer."
_GROUNDING_REQUEST = {
    "relative1000": (
        f"{GROUNDING_REQUEST_START} Reply only with JSON: "
        '[{{"time": <seconds>, "bbox_2d": [x1, y1, x2, y2], "label": "<object>"}}] '
        "with coordinates from 0 to 1000, one entry per object and time. Reply [] if there is none."
    ),
    "absolute": (
        f"{GROUNDING_REQUEST_START} Reply only with JSON: "
        '[{{"time": <seconds>, "bbox_2d": [x1, y1, x2, y2], "label": "<object>"}}] '
        "in pixel coordinates of the {width}x{height} video frames, one entry per object and time. "
        "Reply [] if there is none."
    ),
}
# Put before a question that follows a click on the video, so that "this" means the clicked object.
_REFERENCE = {
    "relative1000": 'I mean the object at {time} in {{"bbox_2d": {box}}} (coordinates from 0 to 1000). ',
    "absolute": 'I mean the object at {time} in {{"bbox_2d": {box}}} (pixels of the {width}x{height} frames). ',
}


# Every located object is tracked by SAM 2 through every sampled frame, so a turn's cost and the masks kept grow
# with the number of objects. A real answer names a handful; a runaway or hostile one can name thousands (the
# parser keeps up to 256 boxes and 256 points per reply, and tracking 256 objects took 6 minutes with the tiny
# test SAM 2 on 8 frames). The objects past these caps are left out and counted in `Answer.objects_dropped`.
MAX_OBJECTS_PER_ANSWER = 16
MAX_OBJECTS_PER_SESSION = 64


@dataclass(frozen=True)
class SessionSettings:
    sampling: SamplingConfig = SamplingConfig()
    limits: VideoLimits = VideoLimits()
    max_new_tokens: int = 512
    max_grounding_tokens: int = 256
    ground_objects: bool = True  # the second model call that locates the objects named in the answer
    selector: SelectorSettings | None = SelectorSettings()  # None: every visual token goes to the model
    # A conversation's cost stays bounded however long it runs: the model sees the latest turns only (the prompt,
    # and so each turn's prefill, stops growing), a question has a length limit, and a video keeps a limited
    # number of turns (questions, refused ones and clicks; every answer is kept for the export).
    max_question_chars: int = 4000
    max_history_turns: int = 8
    max_turns: int = 200
    # The video's prefix KV (system prompt and video tokens) is cached when it fits in this many bytes, so that a
    # follow-up runs only its new tokens through the scoring layers (and through every layer without selection).
    max_prefix_bytes: int = 2 * 1024**3
    # The video's words in the prompt (after the video, in its cached prefix): at most this many tokens, the lines
    # spread over the video when they do not all fit (`VideoLLM.transcript_text`).
    transcript_tokens: int = 2048
    subtitle_track: int | None = None  # the stream index of the subtitle track to read; None: the first one
    zoom: ZoomSettings = ZoomSettings()  # a dense look at the minutes a question needs in a long video


@dataclass(frozen=True)
class Answer:
    """A finished turn: the answer, the model's grounding reply and what was parsed from both."""

    question: str  # as the user asked it
    prompt: str  # as the model got it (with the clicked object's place when there was a click)
    text: str
    grounding_reply: str  # the raw JSON reply to the grounding request ("" when not asked)
    groundings: Groundings  # times from the answer; boxes and points from the answer and the reply
    selection: Selection | None  # the visual tokens the model saw (None: all of them)
    object_ids: tuple[int, ...]  # the objects this turn located, in order of first mention
    objects_dropped: int = 0  # objects the answer named past MAX_OBJECTS_PER_ANSWER / _PER_SESSION, not located
    refers_to: int | None = None  # the clicked object the question was about ("what is this?")
    transcript_lines: int = 0  # lines of the video's transcript the model read with the question
    transcript_pending: bool = False  # the transcript was still being made: the answer is from the pictures only
    zoom: tuple[Look, ...] = ()  # the parts of the video looked at densely for this question


@dataclass(frozen=True)
class GroundedObject:
    """An object of the conversation, with a stable id and colour across turns."""

    object_id: int
    label: str
    boxes: tuple[Box, ...] = ()  # every box and point that located it so far, in source pixels
    points: tuple[Point, ...] = ()
    masklet: Masklet | None = None  # its mask on every sampled frame, when a mask decoder is loaded
    revision: int = 0  # the session's revision when it last changed: its masks on the page are current while equal

    @property
    def color_rgb(self) -> tuple[int, int, int]:
        return object_color(self.object_id)

    @property
    def color(self) -> str:
        return color_hex(self.color_rgb)

    def prompt(self) -> ObjectPrompt:
        """Everything that located this object, as SAM 2 prompts under its id."""
        return object_prompts((*self.boxes, *self.points), {label_key(self.label): self.object_id})[0]


@dataclass(frozen=True)
class Click:
    """A click on the video that located an object; the next question is about it."""

    t_s: float
    x: float  # source pixels
    y: float
    object_id: int


@dataclass(frozen=True)
class Player:
    """The file the browser's player plays, and where the video's first frame is on that file's own clock: the
    page seeks to `offset_s + t` for the app's time `t` (a copy cut from a stream starts seconds after zero)."""

    path: Path
    offset_s: float


@dataclass(frozen=True)
class Failure:
    """A question that got no answer, and why: shown in the conversation, never sent to the model."""

    question: str
    error: str


Event = Answer | Click | Failure | Alert  # an Alert: a live source's standing question turned to yes

# Every change to a session's objects takes the next number: what the page drew is current while it matches.
_REVISIONS = itertools.count(1)


@dataclass
class ChatSession:
    llm: VideoLLM
    clip: Clip
    tokens: VisualTokens
    settings: SessionSettings = SessionSettings()
    masks: MaskDecoder | None = None
    qtsplus: QTSplusSelector | None = None  # the trained selector, for SelectorSettings(kind="qtsplus")
    conversation: list[Event] = field(default_factory=list)  # everything asked, answered and clicked, in order
    objects: dict[str, GroundedObject] = field(default_factory=dict)  # by label_key
    referred: GroundedObject | None = None  # the object last clicked, that the next question is about
    revision: int = field(default_factory=lambda: next(_REVISIONS))  # changes whenever the objects change
    model_lock: AbstractContextManager | None = None  # held around each use of this process's models (see `open`)
    transcript: Transcript | None = None  # the video's words, once `transcribe` made them
    transcribing: bool = False  # `transcribe` is running: questions are answered from the pictures meanwhile
    transcript_progress: tuple[float, str] = (0.0, "")  # how far `transcribe` got, and what it does
    _mask_state: VideoState | None = None
    _prefix: VideoPrefix | None = None  # the video's KV at the layers the questions need (see `_video_prefix`)
    _heard: tuple[Transcript, int, TranscriptText] | None = None  # the transcript as the model reads it, its budget
    _zoom: ZoomState = field(default_factory=ZoomState)  # the windows looked at, the zoom's baseline
    _closed: bool = False

    @classmethod
    def open(
        cls,
        video_path: str | os.PathLike,
        llm: VideoLLM | Callable[[], VideoLLM],
        settings: SessionSettings = SessionSettings(),
        progress: Progress | None = None,
        masks: MaskDecoder | None = None,
        qtsplus: QTSplusSelector | None = None,
        model_lock: AbstractContextManager | None = None,
    ) -> ChatSession:
        """Validate and sample the video, then encode it (VidchatError subclasses for bad input).

        llm: the video model, or a function that returns it, called once the frames are decoded (a server
        decodes an upload while its model is still loading).
        model_lock: a server's one-model-call-at-a-time lock, held around each use of this process's models
        (encoding, selection, an answer computed here, SAM 2) and never around decoding or a vLLM server's
        answer, so that those go on while another session uses the models."""
        clip = sample(video_path, settings.sampling, settings.limits, progress=progress)
        if not isinstance(llm, VideoLLM):
            llm = llm()
        with model_lock or nullcontext():
            tokens = llm.encode(clip, progress=progress)
        return cls(
            llm=llm, clip=clip, tokens=tokens, settings=settings, masks=masks, qtsplus=qtsplus, model_lock=model_lock
        )

    @property
    def selection_applies(self) -> bool:
        """Whether the engine takes part of the video: not Qwen2.5-VL through vLLM, which takes the whole clip
        (its frame times are in the positions, which cannot travel with part of it)."""
        return self.llm.selection_unit != "none"

    @property
    def answers(self) -> list[Answer]:
        return [event for event in self.conversation if isinstance(event, Answer)]

    def set_selector(self, selector: SelectorSettings | None, qtsplus: QTSplusSelector | None = None) -> None:
        """The selector the next questions use (None: every visual token), with QTSplus weights for its kind."""
        if selector is not None and selector.kind == "qtsplus" and qtsplus is None and self.qtsplus is None:
            raise PromptError(
                f"The qtsplus selector needs QTSplus weights (one of {', '.join(QTSPLUS_CHECKPOINTS)}); none are "
                "loaded."
            )
        self.settings = replace(self.settings, selector=selector)
        if qtsplus is not None:
            self.qtsplus = qtsplus

    def use_masks(self, masks: MaskDecoder) -> None:
        """Track objects with `masks` from now on (a SAM 2 decoder that finished loading after the video opened)."""
        if self.masks is None:
            self.masks = masks

    @property
    def history(self) -> list[Turn]:
        """The turns the model sees with the next question: the latest `max_history_turns`."""
        latest = self.answers[-self.settings.max_history_turns :] if self.settings.max_history_turns > 0 else []
        return [Turn(answer.prompt, answer.text) for answer in latest]

    @property
    def coordinate_frame(self) -> CoordinateFrame:
        width, height = self.tokens.input_size
        return CoordinateFrame(
            kind="relative1000" if self.llm.family == "qwen3_vl" else "absolute",
            input_width=width,
            input_height=height,
            source_width=self.clip.info.width,
            source_height=self.clip.info.height,
        )

    # ---- a turn -------------------------------------------------------------------------------------

    def ask(self, question: str, progress: Progress | None = None) -> Iterator[str | Answer]:
        """Yield the answer as text pieces while it is generated, then the finished `Answer`."""
        question = clean_question(question)
        if not question:
            raise ValueError("ask() needs a non-empty question")
        if len(self.conversation) >= self.settings.max_turns:
            raise PromptError(
                f"This conversation has reached {self.settings.max_turns} turns, the most one video keeps. "
                "Export it if you want to keep it, then open the video again to start a new conversation."
            )
        limit = self.settings.max_question_chars
        if len(question) > limit:
            error = PromptError(f"The question is {len(question):,} characters long; the limit is {limit:,}.")
            shown = question if len(question) <= 200 else question[:200] + "…"  # a refused question is kept short
            self.conversation.append(Failure(shown, str(error)))
            raise error
        prompt = self._reference() + question
        referred, self.referred = self.referred, None
        try:
            answer = yield from self._answer(question, prompt, progress)
        except VidchatError as error:
            self.conversation.append(Failure(question, str(error)))
            raise
        if referred is not None:
            answer = replace(answer, refers_to=referred.object_id)
        self.conversation.append(answer)
        yield answer

    def _answer(self, question: str, prompt: str, progress: Progress | None) -> Iterator[str]:
        """Stream the answer to `prompt`; returns the finished `Answer` (its objects located)."""
        history = self.history
        pending = self.transcribing
        heard = self._transcript_text()
        transcript = heard.text
        selector = self.settings.selector if self.selection_applies else None
        selection = None
        keep = None
        # What the video prefix serves: the scoring layers of the attention selector and of the zoom's relevance,
        # and every layer when the answer reads the video from it (no selection, or kept tokens read from the cache;
        # not for QTSplus, whose re-encoded tokens are not the cached ones; never for an engine that answers
        # elsewhere).
        answer_from_prefix = self.llm.answers_here and (
            selector is None or (selector.kept_tokens == "cached" and selector.kind != "qtsplus")
        )
        scoring = selector is not None and selector.kind == "attention"
        layer = selector.scoring_layer_of(self.llm) if scoring else default_scoring_layer(self.llm.depth)
        layers = self.llm.depth if answer_from_prefix else layer + 1 if scoring or self.zooms else 0
        with self._model_lock():
            prefix = self._video_prefix(layers, transcript) if layers else None
            if selector is not None:
                selection = select(
                    self.llm, self.tokens, history, prompt, selector, self.qtsplus, prefix if scoring else None,
                    transcript,
                )  # fmt: skip
            windows = self._zoom.windows(
                self.llm, self.clip, self.tokens, (history, prompt, transcript), layer, prefix, self.settings.zoom,
                (selection.scores, selector.duplicate_cosine) if scoring else None,
            )  # fmt: skip
        lock = self._model_lock()
        # (Look, its visual tokens) for each window
        looked = tuple(self._zoom.look(self.llm, self.clip, w, self.settings.zoom, lock, progress) for w in windows)
        if looked and selector is not None:
            with self._model_lock():
                selection = select(
                    self.llm, self.tokens, history, prompt, selector, self.qtsplus, prefix if scoring else None,
                    transcript, [encoded for _, encoded in looked],
                )  # fmt: skip
        if selection is not None and self.llm.selection_unit == "patch":
            selection = whole_patches(selection, self.tokens, [encoded for _, encoded in looked])
        if selection is not None:
            selection, looked = _seen_windows(selection, self.tokens, looked)
            keep = selection.keep_indices
        videos = (self.tokens, *(encoded for _, encoded in looked))
        tokens, *window_tokens = selection.apply(self.tokens, videos[1:]) if selection is not None else videos
        looks = tuple(look for look, _ in looked)
        answer_prefix = prefix if answer_from_prefix else None
        pieces = []
        with self._model_lock(self.llm.answers_here):
            for piece in self.llm.generate(
                tokens, history, prompt, self.settings.max_new_tokens, keep, answer_prefix, transcript=transcript,
                windows=window_tokens,
            ):
                pieces.append(piece)
                yield piece
        text = "".join(pieces)
        frame = self.coordinate_frame
        grounding_reply = ""
        if self.settings.ground_objects:
            request = _GROUNDING_REQUEST[frame.kind].format(width=frame.input_width, height=frame.input_height)
            # the objects are looked for in the same visual evidence the answer was given
            with self._model_lock(self.llm.answers_here):
                grounding_reply = "".join(
                    self.llm.generate(
                        tokens, [*history, Turn(prompt, text)], request, self.settings.max_grounding_tokens, keep,
                        answer_prefix, transcript=transcript, windows=window_tokens,
                    )  # fmt: skip
                )
        duration = self.clip.info.duration_s
        from_answer = parse_answer(text, frame, duration)
        from_reply = parse_answer(grounding_reply, frame, duration)
        groundings = Groundings(
            times=from_answer.times,
            points=from_answer.points + from_reply.points,
            boxes=from_answer.boxes + from_reply.boxes,
        )
        found, dropped = self._within_object_caps((*groundings.boxes, *groundings.points))
        located = self._locate(found, progress)
        return Answer(
            question=question,
            prompt=prompt,
            text=text,
            grounding_reply=grounding_reply,
            groundings=groundings,
            selection=selection,
            object_ids=tuple(obj.object_id for obj in located),
            objects_dropped=dropped,
            transcript_lines=heard.lines,
            transcript_pending=pending and not heard.lines,
            zoom=looks,
        )

    def look_at(self, clip: Clip, tokens: VisualTokens) -> None:
        """The newest window of a live source (`vidchat.livechat`): the next questions see these frames instead.
        The conversation and the objects stay; what was computed from the frames before is dropped."""
        self.drop_caches()
        if self._mask_state is not None:
            self._mask_state.close()
            self._mask_state = None
        self.clip, self.tokens = clip, tokens

    def adopt(self, conversation: list[Event], objects: dict[str, GroundedObject], progress: Progress | None = None):
        """Carry a live source's conversation and objects over to this session of its recording (times are the
        same: the recording's clock); with a mask decoder, each object is tracked through this video from the boxes
        and points that found it."""
        # What a live answer's selection kept are tokens of the window it saw, not of this video: not carried over.
        self.conversation = [replace(e, selection=None) if isinstance(e, Answer) else e for e in conversation]
        self.objects = {key: replace(obj, masklet=None) for key, obj in objects.items()}
        self.revision = next(_REVISIONS)
        if self.masks is not None and self.objects:
            with self._model_lock():
                masklets = self.masks.track(self._masks_state(), [o.prompt() for o in self.objects.values()], progress)
            self.objects = {
                key: replace(obj, masklet=masklets.get(obj.object_id), revision=self.revision)
                for key, obj in self.objects.items()
            }

    @property
    def zooms(self) -> bool:
        """Whether questions may look closer at parts of this video (`vidchat.zoom.applies`)."""
        return zoom_applies(self.clip, self.settings.zoom)

    def new_conversation(self) -> None:
        """Forget the conversation and its objects, and start again on the same video (its visual tokens, video
        prefix and SAM 2 features stay: they depend on the video only)."""
        self.conversation = []
        self.objects = {}
        self.referred = None
        self.revision = next(_REVISIONS)

    def _video_prefix(self, layers: int, transcript: str) -> VideoPrefix:
        """The KV of the system prompt, the video and its transcript at `layers` layers at least: kept while it
        fits `max_prefix_bytes`; after it was dropped (memory pressure, see `drop_caches`), or when the transcript
        arrived, it is computed again."""
        prefix = self._prefix
        stale = prefix is None or prefix.source != self.tokens.source or prefix.transcript != transcript
        if stale or prefix.layers < layers:
            prefix = self.llm.video_prefix(self.tokens, layers, transcript)
            self._prefix = prefix if prefix.nbytes <= self.settings.max_prefix_bytes else None
        return prefix

    # ---- the video's words ----------------------------------------------------------------------------

    def transcribe(
        self,
        recognizer: Recognizer | None,
        cache: TranscriptCache | None = None,
        progress: Progress | None = None,
    ) -> Transcript:
        """The video's words (`vidchat.speech.transcribe`): its subtitle track, else what `recognizer` hears (None:
        subtitles only). Questions asked meanwhile are answered from the pictures; the next one reads them."""
        self.transcribing = True

        def report(fraction: float, message: str) -> None:
            if self._closed:  # another video was opened: this one's words are not needed any more
                raise ClosedError("The video was closed before its transcript was made.")
            self.transcript_progress = (fraction, message)
            if progress is not None:
                progress(fraction, message)

        try:
            self.transcript = transcribe(
                self.clip.info.path,
                recognizer,
                track=self.settings.subtitle_track,
                video_start_s=self.clip.info.start_s,
                duration_s=self.clip.info.duration_s,
                content_hash=self.clip.content_hash,
                cache=cache,
                lock=self._model_lock(),
                progress=report,
            )
        finally:
            self.transcribing = False
        return self.transcript

    def _transcript_text(self) -> TranscriptText:
        """The transcript as this session's model reads it, within `transcript_tokens` (none until it is made)."""
        transcript = self.transcript
        if transcript is None:
            return TranscriptText("", 0, 0)
        budget = self.settings.transcript_tokens
        if self._heard is None or self._heard[0] is not transcript or self._heard[1] != budget:
            self._heard = (transcript, budget, self.llm.transcript_text(transcript, budget))
        return self._heard[2]

    def times_in(self, text: str) -> tuple[TimeSpan, ...]:
        """The times in a piece of answer text (also a partial, streaming one), in this video's seconds."""
        return parse_answer(text, self.coordinate_frame, self.clip.info.duration_s).times

    # ---- objects ------------------------------------------------------------------------------------

    def point_at(self, t_s: float, x: float, y: float, progress: Progress | None = None) -> GroundedObject:
        """The object under a click at `t_s` seconds, (x, y) source pixels: segmented and tracked when a
        mask decoder is loaded, and what the next question refers to ("what is this?")."""
        info = self.clip.info
        if not 0 <= t_s <= info.duration_s:
            raise PromptError(f"The click at {t_s:.2f} s is outside the video (0 – {info.duration_s:.2f} s).")
        if not (0 <= x <= info.width and 0 <= y <= info.height):
            raise PromptError(f"The click at ({x:.0f}, {y:.0f}) is outside the {info.width}×{info.height} frame.")
        label = f"clicked object {sum(key.startswith('clicked object') for key in self.objects) + 1}"
        (clicked,) = self._locate([Point(t_s, x, y, label)], progress)
        self.referred = clicked
        self.conversation.append(Click(t_s, x, y, clicked.object_id))
        return clicked

    def _within_object_caps(self, found: tuple[Box | Point, ...]) -> tuple[tuple[Box | Point, ...], int]:
        """The boxes and points of the first objects an answer names, within the caps; and how many were left out."""
        kept_keys: set[str] = set()
        dropped_keys: set[str] = set()
        new_objects = 0
        kept = []
        for item in found:
            key = label_key(item.label)
            if key not in kept_keys and key not in dropped_keys:
                is_new = key not in self.objects
                if len(kept_keys) >= MAX_OBJECTS_PER_ANSWER or (
                    is_new and len(self.objects) + new_objects >= MAX_OBJECTS_PER_SESSION
                ):
                    dropped_keys.add(key)
                else:
                    kept_keys.add(key)
                    new_objects += is_new
            if key in kept_keys:
                kept.append(item)
        return tuple(kept), len(dropped_keys)

    def _locate(self, found: tuple[Box | Point, ...], progress: Progress | None) -> list[GroundedObject]:
        """Add boxes and points to their objects (by label) and track the objects they touched."""
        touched: dict[str, GroundedObject] = {}
        for item in found:
            key = label_key(item.label)
            known = touched.get(key) or self.objects.get(key)
            if known is None:
                next_id = max((obj.object_id for obj in self.objects.values()), default=0) + 1
                known = GroundedObject(object_id=next_id, label=item.label.strip() or key)
            if isinstance(item, Box):
                known = replace(known, boxes=known.boxes + (item,))
            else:
                known = replace(known, points=known.points + (item,))
            touched[key] = self.objects[key] = known
        if not touched:
            return []
        self.revision = next(_REVISIONS)
        masklets = {}
        if self.masks is not None:
            prompts = [obj.prompt() for obj in touched.values()]
            with self._model_lock():
                masklets = self.masks.track(self._masks_state(), prompts, progress)
        for key, obj in touched.items():
            masklet = masklets.get(obj.object_id, obj.masklet)
            touched[key] = self.objects[key] = replace(obj, masklet=masklet, revision=self.revision)
        return list(touched.values())

    def _model_lock(self, needed: bool = True) -> AbstractContextManager:
        """The server's one-model-call-at-a-time lock (see `open`), around work on this process's models."""
        return self.model_lock if needed and self.model_lock is not None else nullcontext()

    def _masks_state(self) -> VideoState:
        if self._mask_state is None:
            self._mask_state = self.masks.init_state(self.clip)
        return self._mask_state

    def _reference(self) -> str:
        """How the next question tells the model which object was clicked, in the model's own coordinates."""
        if self.referred is None:
            return ""
        point = self.referred.points[-1]
        frame = self.coordinate_frame
        masklet = self.referred.masklet
        nearest = int(abs(self.clip.times_s - point.t_s).argmin())
        mask_box = masklet.box(nearest) if masklet is not None and masklet.visible[nearest] else None
        if mask_box is not None:
            x1, y1, x2, y2 = mask_box
        else:  # no mask: a small box around the click
            x1, y1, x2, y2 = point.x - 1, point.y - 1, point.x + 1, point.y + 1
        box = [*frame.to_model(x1, y1), *frame.to_model(x2, y2)]
        return _REFERENCE[frame.kind].format(
            time=format_timestamp(point.t_s), box=box, width=frame.input_width, height=frame.input_height
        )

    # ---- what the UI shows and the user takes away -----------------------------------------------------

    @property
    def masklets(self) -> dict[int, Masklet]:
        return {obj.object_id: obj.masklet for obj in self.objects.values() if obj.masklet is not None}

    def overlay_masks(self, object_id: int, frames: range) -> list[dict]:
        """The object's masks on the sampled `frames`, for the page to draw: per frame its index, and where the
        object is visible its box (source pixels) and mask (PNG data URL in the object's colour)."""
        obj = self.object_by_id(object_id)
        if obj.masklet is None:
            return []
        return overlay_masks(obj.masklet, obj.color_rgb, frames)

    def object_by_id(self, object_id: int) -> GroundedObject:
        return next(obj for obj in self.objects.values() if obj.object_id == object_id)

    def export(
        self, folder: str | os.PathLike, progress: Progress | None = None, burn_captions: bool = False
    ) -> list[Path]:
        """In `folder`: the annotated video (H.264 mp4 with the source's sound; with `burn_captions`, the
        transcript's lines drawn on it), the conversation with its groundings (JSON, masks as COCO RLE) and,
        when the video has words, the transcript as SubRip and WebVTT subtitles."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        prompts = [obj.prompt() for obj in self.objects.values()]
        lines = self.transcript.segments if self.transcript is not None else ()
        captions = lines if burn_captions else ()
        video = write_video(folder / "vidchat.mp4", self.clip, self.masklets, prompts, progress, captions=captions)
        files = [video, write_json(folder / "vidchat.json", self.to_json(masks=True))]
        if lines:
            files += [write_srt(folder / "transcript.srt", lines), write_vtt(folder / "transcript.vtt", lines)]
        return files

    def to_json(self, masks: bool = False) -> dict:
        """The video, every answer (`answer_json`) and every object (`object_json`; with `masks`, each frame's
        mask as COCO RLE): what the CLI's --json and the export write."""
        return {
            "video": dataclasses.asdict(self.clip.info),
            "model": self.llm.model_id,
            "sampled_times_s": [float(t) for t in self.clip.times_s],
            "turns": [turn_json(event, self) for event in self.conversation],
            "objects": [object_json(obj, masks) for obj in sorted(self.objects.values(), key=lambda o: o.object_id)],
            "transcript": transcript_json(self.transcript),
        }

    def player(self, folder: str | os.PathLike) -> Player:
        """What the browser plays: the source video when browsers play it as it is, else a copy that they play
        (H.264 mp4) written into `folder`; with where the video's first frame is on that file's clock."""
        if browser_plays(self.clip.info):
            return Player(Path(self.clip.info.path), self.clip.info.start_s)
        copy = playable_copy(self.clip.info, Path(folder))
        return Player(copy, first_frame_time_s(copy))

    # ---- memory -------------------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        """Bytes this session holds: frames, visual tokens, the video prefix KV, SAM 2 features, masks and
        answers. Visual tokens shared with another session of the same video (through the token cache) are
        counted in both."""
        answers = sum(
            len(a.prompt) + len(a.text) + len(a.grounding_reply) + _selection_bytes(a.selection) for a in self.answers
        )
        masks = sum(masklet.nbytes for masklet in self.masklets.values())
        return self.clip.frames.nbytes + self.tokens.nbytes + self.cache_bytes + masks + answers

    @property
    def cache_bytes(self) -> int:
        """Bytes of what this session can compute again: SAM 2 features, the video prefix KV and the zoom windows'
        visual tokens."""
        return self.feature_bytes + self.prefix_bytes + self._zoom.nbytes

    @property
    def prefix_bytes(self) -> int:
        return self._prefix.nbytes if self._prefix is not None else 0

    def drop_caches(self) -> int:
        """Free the SAM 2 features, the video prefix and the zoom windows (all are computed again when needed); the
        bytes freed."""
        freed = self.cache_bytes
        self.drop_features()
        self._prefix = None
        self._zoom.clear()
        return freed

    @property
    def feature_bytes(self) -> int:
        """Bytes of SAM 2 image features cached for this video (re-computable: see `drop_features`)."""
        return self._mask_state.features.nbytes if self._mask_state is not None else 0

    def drop_features(self) -> int:
        """Free the cached SAM 2 image features (the next tracking encodes the frames it needs again); the
        bytes freed."""
        freed = self.feature_bytes
        if self._mask_state is not None:
            self._mask_state.features.clear_all()
        return freed

    def close(self) -> None:
        """Release the video prefix and the SAM 2 state of this video (its features and frames), and stop making
        its transcript."""
        self._closed = True
        self._prefix = None
        self._zoom.clear()
        if self._mask_state is not None:
            self._mask_state.close()
            self._mask_state = None


# ---- the one JSON shape of answers and objects (the API, the CLI's --json and the export) --------------------


def turn_json(event: Event, session: ChatSession) -> dict:
    """A turn of the conversation, as the export and the CLI's --json list them (in order): an answer
    (`answer_json`), a click (`click_json`), a live source's alert or a refused question."""
    if isinstance(event, Answer):
        return answer_json(event, session)
    if isinstance(event, Click):
        return click_json(event, session)
    if isinstance(event, Alert):
        return {"kind": "alert", "condition": event.condition, "t_s": event.t_s, "reply": event.reply}
    return {"kind": "refused", "question": event.question, "error": event.error}


def click_json(click: Click, session: ChatSession) -> dict:
    """A click on the video: its time and place (seconds, source pixels), the object it located and that
    object's box on the sampled frame nearest the click (from its mask; None without one)."""
    obj = session.object_by_id(click.object_id)
    box = None
    if obj.masklet is not None:
        frame = int(abs(obj.masklet.times_s - click.t_s).argmin())
        box = list(obj.masklet.box(frame)) if obj.masklet.visible[frame] else None
    return {
        "kind": "click",
        "t_s": click.t_s,
        "x": click.x,
        "y": click.y,
        "object_id": obj.object_id,
        "label": obj.label,
        "box": box,
    }


def answer_json(answer: Answer, session: ChatSession) -> dict:
    """An answer: its text, times, boxes and points (seconds, source pixels), the objects it located (ids), the
    clicked object its question referred to, which visual tokens the model looked at (`selection_json`) and the
    parts of the video it looked at densely (`zoom_json`)."""
    found = answer.groundings
    return {
        "kind": "answer",
        "question": answer.question,
        "text": answer.text,
        "grounding_reply": answer.grounding_reply,
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
        "object_ids": list(answer.object_ids),
        "objects_dropped": answer.objects_dropped,
        "refers_to": answer.refers_to,
        "transcript_lines": answer.transcript_lines,
        "transcript_pending": answer.transcript_pending,
        "selection": selection_json(answer.selection, session),
        "zoom": [zoom_json(look) for look in answer.zoom],
    }


def zoom_json(look: Look) -> dict:
    """A part of the video an answer looked at densely: its span (seconds), the rate and the number of frames."""
    return {"start_s": look.window.start_s, "end_s": look.window.end_s, "fps": look.fps, "frames": len(look.times_s)}


def transcript_json(transcript: Transcript | None) -> dict | None:
    """The video's words (`Transcript.to_json`: where they come from, their language, every line with its words'
    times in seconds from the first frame); None before they are made."""
    return transcript.to_json() if transcript is not None else None


def selection_json(selection: Selection | None, session: ChatSession) -> dict:
    """How many visual tokens the model saw of how many, in all and per temporal patch (each patch is the
    `frames_s` sampled frames it merges): what the page's heat strip draws; and of the zoom windows' tokens (with
    selection). Without selection every token."""
    tokens = session.tokens
    steps = tokens.steps
    total = len(tokens.embeddings)
    per_step = total // steps
    if selection is None:
        kept = [per_step] * steps
    else:
        kept = [int(k) for k in selection.heatmap(tokens).kept.reshape(steps, -1).sum(axis=1)]
    # the tokens of the zoom's windows (numbered after the video's): kept, and in all
    windows_kept = 0 if selection is None else int((selection.keep_indices >= total).sum())
    windows_total = 0 if selection is None else len(selection.scores) - total
    times = [float(t) for t in session.clip.times_s]
    per_patch = math.ceil(len(times) / steps)
    return {
        "on": selection is not None,
        "kept": sum(kept),
        "total": total,
        "windows_kept": windows_kept,
        "windows_total": windows_total,
        "steps": [
            {"frames_s": times[i * per_patch : (i + 1) * per_patch], "kept": kept[i], "total": per_step}
            for i in range(steps)
        ],
    }


def object_json(obj: GroundedObject, masks: bool = False) -> dict:
    """An object: id, label, colour, the boxes and points that located it, and its masklet's summary (where
    SAM 2 sees it, per sampled frame); with `masks` also each frame's score and mask as COCO RLE over the
    source frame (`pycocotools.mask.decode` reads it)."""
    document = {
        "object_id": obj.object_id,
        "label": obj.label,
        "color": obj.color,
        "boxes": [{"t_s": b.t_s, "x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2} for b in obj.boxes],
        "points": [{"t_s": p.t_s, "x": p.x, "y": p.y} for p in obj.points],
        "masklet": None,
    }
    masklet = obj.masklet
    if masklet is None:
        return document
    boxes = [masklet.box(i) if masklet.visible[i] else None for i in range(len(masklet.rles))]
    document["masklet"] = {
        "frames": len(masklet.rles),
        "visible_frames": int(masklet.visible.sum()),
        "times_s": [float(t) for t in masklet.times_s],
        "visible": [bool(v) for v in masklet.visible],
        "areas": [rle.area for rle in masklet.rles],
        "boxes": [list(b) if b is not None else None for b in boxes],
        "prompt_frames": list(masklet.prompt_frames),
        "skipped": [{"t_s": s.t_s, "reason": s.reason} for s in masklet.skipped],
    }
    if masks:
        document["masklet"]["scores"] = [round(float(v), 4) for v in masklet.scores]
        document["masklet"]["masks"] = [rle.to_coco() for rle in masklet.rles]
    return document


def clean_question(text: str) -> str:
    """The text stripped, with lone surrogates (a browser can send them; they cannot be encoded as UTF-8 and
    would fail every later step) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8").strip()


def _selection_bytes(selection: Selection | None) -> int:
    if selection is None:
        return 0
    tensors = (selection.keep_indices, selection.scores, selection.reencoded)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def span_text(window: Window) -> str:
    """"12:03–12:41": a window as the page and the notes write it."""
    return f"{format_timestamp(window.start_s)}–{format_timestamp(window.end_s)}"


def _seen_windows(
    selection: Selection, tokens: VisualTokens, looked: tuple[tuple[Look, VisualTokens], ...]
) -> tuple[Selection, tuple[tuple[Look, VisualTokens], ...]]:
    """The selection and the windows it kept tokens of: a window with none is left out of the prompt, and the
    indices of the tokens after it move down."""
    videos = (tokens, *(encoded for _, encoded in looked))
    (_, in_video), *in_windows = kept_per_video(selection.keep_indices, videos)
    video_scores, *window_scores = selection.scores.split([len(video.embeddings) for video in videos])
    keep, scores, seen, offset = [in_video], [video_scores], [], len(tokens.embeddings)
    for window, (_, rows), window_score in zip(looked, in_windows, window_scores):
        if len(rows):
            seen.append(window)
            keep.append(rows + offset)
            scores.append(window_score)
            offset += len(window_score)
    # the windows left out had no kept token: the kept tokens (and QTSplus's re-encoding of them) keep their order
    return replace(selection, keep_indices=torch.cat(keep), scores=torch.cat(scores)), tuple(seen)
