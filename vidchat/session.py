"""ChatSession: one video, its cached visual tokens, the conversation and the objects found so far.

The only thing the UI and the CLI call. A turn streams the answer, then asks the model (on the same cached
visual tokens) where the objects it talked about are, in the model's own JSON format, and parses both
replies into groundings in source-video pixels and seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from vidchat.grounding import Box, CoordinateFrame, Groundings, Point, parse_answer
from vidchat.selector import Selection, SelectorSettings, select
from vidchat.video import Clip, SamplingConfig, VideoLimits, sample
from vidchat.vlm import Turn, VideoLLM, VisualTokens

# Asked after each answer. Each family is asked for the coordinates it was trained to give:
# Qwen3-VL 0–1000 relative, Qwen2.5-VL absolute pixels of the frames it saw.
_GROUNDING_REQUEST = {
    "relative1000": (
        "Locate every object you mentioned in your last answer. Reply only with JSON: "
        '[{{"time": <seconds>, "bbox_2d": [x1, y1, x2, y2], "label": "<object>"}}] '
        "with coordinates from 0 to 1000, one entry per object and time. Reply [] if there is none."
    ),
    "absolute": (
        "Locate every object you mentioned in your last answer. Reply only with JSON: "
        '[{{"time": <seconds>, "bbox_2d": [x1, y1, x2, y2], "label": "<object>"}}] '
        "in pixel coordinates of the {width}x{height} video frames, one entry per object and time. "
        "Reply [] if there is none."
    ),
}


@dataclass(frozen=True)
class SessionSettings:
    sampling: SamplingConfig = SamplingConfig()
    limits: VideoLimits = VideoLimits()
    max_new_tokens: int = 512
    max_grounding_tokens: int = 256
    ground_objects: bool = True  # the second model call that locates the objects named in the answer
    selector: SelectorSettings | None = SelectorSettings()  # None: every visual token goes to the model


@dataclass(frozen=True)
class Answer:
    """A finished turn: the answer, the model's grounding reply and what was parsed from both."""

    question: str
    text: str
    grounding_reply: str  # the raw JSON reply to the grounding request ("" when not asked)
    groundings: Groundings  # times from the answer; boxes and points from the answer and the reply
    selection: Selection | None  # the visual tokens the model saw (None: all of them)


@dataclass(frozen=True)
class GroundedObject:
    """An object named in the conversation, with a stable id across turns."""

    object_id: int
    label: str
    boxes: tuple[Box, ...] = ()
    points: tuple[Point, ...] = ()


@dataclass
class ChatSession:
    llm: VideoLLM
    clip: Clip
    tokens: VisualTokens
    settings: SessionSettings = SessionSettings()
    answers: list[Answer] = field(default_factory=list)
    objects: dict[str, GroundedObject] = field(default_factory=dict)  # by normalised label

    @classmethod
    def open(
        cls,
        video_path: str | os.PathLike,
        llm: VideoLLM,
        settings: SessionSettings = SessionSettings(),
        progress: Callable[[float, str], None] | None = None,
    ) -> ChatSession:
        """Validate and sample the video, then encode it (VidchatError subclasses for bad input)."""
        clip = sample(video_path, settings.sampling, settings.limits, progress=progress)
        return cls(llm=llm, clip=clip, tokens=llm.encode(clip, progress=progress), settings=settings)

    @property
    def history(self) -> list[Turn]:
        return [Turn(answer.question, answer.text) for answer in self.answers]

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

    def ask(self, question: str) -> Iterator[str | Answer]:
        """Yield the answer as text pieces while it is generated, then the finished `Answer`."""
        question = question.strip()
        if not question:
            raise ValueError("ask() needs a non-empty question")
        history = self.history
        selection = None
        keep = None
        if self.settings.selector is not None:
            selection = select(self.llm, self.tokens, history, question, self.settings.selector)
            keep = selection.keep_indices
        pieces = []
        for piece in self.llm.generate(self.tokens, history, question, self.settings.max_new_tokens, keep):
            pieces.append(piece)
            yield piece
        text = "".join(pieces)
        frame = self.coordinate_frame
        grounding_reply = ""
        if self.settings.ground_objects:
            request = _GROUNDING_REQUEST[frame.kind].format(width=frame.input_width, height=frame.input_height)
            # the objects are looked for in the same visual evidence the answer was given
            grounding_reply = "".join(
                self.llm.generate(
                    self.tokens, [*history, Turn(question, text)], request, self.settings.max_grounding_tokens, keep
                )
            )
        duration = self.clip.info.duration_s
        from_answer = parse_answer(text, frame, duration)
        from_reply = parse_answer(grounding_reply, frame, duration)
        groundings = Groundings(
            times=from_answer.times,
            points=from_answer.points + from_reply.points,
            boxes=from_answer.boxes + from_reply.boxes,
        )
        answer = Answer(
            question=question, text=text, grounding_reply=grounding_reply, groundings=groundings, selection=selection
        )
        self.answers.append(answer)
        self._remember_objects(groundings)
        yield answer

    def _remember_objects(self, groundings: Groundings) -> None:
        for found in (*groundings.boxes, *groundings.points):
            key = " ".join(found.label.lower().split()) or "object"
            known = self.objects.get(key) or GroundedObject(object_id=len(self.objects) + 1, label=found.label or key)
            if isinstance(found, Box):
                known = replace(known, boxes=known.boxes + (found,))
            else:
                known = replace(known, points=known.points + (found,))
            self.objects[key] = known
