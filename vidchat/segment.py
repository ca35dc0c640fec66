"""SAM 2 over a sampled clip: prompts (points, boxes) at times → a masklet per object on every sampled frame.

`MaskDecoder` wraps transformers' `Sam2VideoModel` and its processor. Its per-video state (`VideoState`, like
sam2's `inference_state`) holds the clip's frames (uint8, on the CPU, turned into model input one frame at a
time) and the image features of every frame encoded so far, so that each frame goes through the image encoder
once per video, whatever number of objects and prompts come later. Each object is tracked in a session of its
own that shares those features: tracking a new object never re-tracks the old ones.

Masklets keep their per-frame masks as COCO run-length encodings at source resolution (`Rle`): exact, a few
kilobytes a frame instead of width × height bytes, and the format the JSON export and the UI overlays use.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
from transformers import AutoConfig, Sam2VideoInferenceSession, Sam2VideoModel, Sam2VideoProcessor
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoSegmentationOutput

from vidchat.errors import ClosedError, ModelError, PromptError
from vidchat.grounding import Box, Point
from vidchat.video import Clip
from vidchat.weights import resolve_model

DEFAULT_SAM2 = "facebook/sam2.1-hiera-tiny"
SAM2_CHECKPOINTS = (
    "facebook/sam2.1-hiera-tiny",
    "facebook/sam2.1-hiera-small",
    "facebook/sam2.1-hiera-base-plus",
    "facebook/sam2.1-hiera-large",
)
# Image features are 16 MB a frame at SAM 2's 1024² input in fp32 (4 MB at 512²): 4 GiB keeps 256 frames at
# 1024², the whole of a typical sampled clip; frames past the budget are encoded again when needed.
DEFAULT_FEATURE_BYTES = 4 * 1024**3

Progress = Callable[[float, str], None]


# ---- run-length encoded masks ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rle:
    """A binary mask as COCO run lengths: runs over the column-major pixels, the first run of zeros (maybe 0)."""

    height: int
    width: int
    counts: np.ndarray  # [K] int64, sums to height * width

    @classmethod
    def encode(cls, mask: np.ndarray) -> Rle:
        height, width = mask.shape
        flat = np.asarray(mask, dtype=bool).ravel(order="F")  # [H*W], column-major like COCO
        if flat.size == 0:
            return cls(height, width, np.zeros(0, np.int64))
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        counts = np.diff(np.concatenate(([0], changes, [flat.size])))
        if flat[0]:
            counts = np.concatenate(([0], counts))  # COCO counts always start with the zeros
        return cls(height, width, counts.astype(np.int64))

    def decode(self) -> np.ndarray:
        values = np.arange(len(self.counts)) % 2 == 1  # runs alternate zeros, ones, zeros …
        flat = np.repeat(values, self.counts)  # [H*W]
        return np.ascontiguousarray(flat.reshape(self.width, self.height).T)  # [H, W] bool, row-major for OpenCV

    @property
    def area(self) -> int:
        return int(self.counts[1::2].sum())

    def bbox(self) -> tuple[int, int, int, int] | None:
        """(x1, y1, x2, y2) of the mask's pixels, end-exclusive, or None when the mask is empty."""
        if self.area == 0:
            return None
        mask = self.decode()
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1

    def to_coco(self) -> dict:
        """COCO's compressed form, as pycocotools writes it: {"size": [h, w], "counts": "<string>"}."""
        return {"size": [self.height, self.width], "counts": _counts_to_string(self.counts)}

    @classmethod
    def from_coco(cls, rle: Mapping) -> Rle:
        """Read COCO RLE, compressed (counts a string) or not (counts a list of ints)."""
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, (str, bytes)):
            counts = _counts_from_string(counts.decode() if isinstance(counts, bytes) else counts)
        counts = np.asarray(counts, dtype=np.int64)
        if counts.sum() != height * width:
            raise ValueError(f"RLE counts sum to {counts.sum()}, not {height}×{width}")
        return cls(height, width, counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rle):
            return NotImplemented
        return (self.height, self.width) == (other.height, other.width) and np.array_equal(self.counts, other.counts)

    __hash__ = None  # mutable array inside: not hashable


def _counts_to_string(counts: np.ndarray) -> str:
    # pycocotools' rleToString: each count (after the first two, the difference to the count two places
    # back) as 5-bit groups, low first, 0x20 = more groups follow, offset by 48 into printable ASCII.
    chars = []
    for i, count in enumerate(counts.tolist()):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences end on x == -1
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def _counts_from_string(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


# ---- prompts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptPoint:
    x: float  # source-video pixels
    y: float
    positive: bool = True  # False: "not this", a point on the background


@dataclass(frozen=True)
class FramePrompt:
    """What an object is shown at one time: a box and/or points, in source-video pixels."""

    t_s: float | None  # None when the answer gave no time: such a prompt is skipped
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2
    points: tuple[PromptPoint, ...] = ()


@dataclass(frozen=True)
class ObjectPrompt:
    object_id: int
    label: str
    prompts: tuple[FramePrompt, ...]


@dataclass(frozen=True)
class SkippedPrompt:
    """A prompt, or part of one, that was not used, and why (for the UI and the JSON export)."""

    t_s: float | None
    reason: str


def label_key(label: str) -> str:
    """The name an object is known by across turns: case and spacing do not make a new object."""
    return " ".join(label.lower().split()) or "object"


def object_prompts(found: Iterable[Box | Point], known_ids: Mapping[str, int] | None = None) -> list[ObjectPrompt]:
    """Group groundings by label into one prompted object each: a box → box prompt, a point → point prompt.

    known_ids: label_key → object id of the objects already found in the conversation; they keep their id,
    new labels get the next free ids in order of first appearance.
    """
    ids = dict(known_ids or {})
    labels: dict[str, str] = {}
    prompts: dict[str, list[FramePrompt]] = {}
    for item in found:
        key = label_key(item.label)
        if key not in ids:
            ids[key] = max(ids.values(), default=0) + 1
        labels.setdefault(key, item.label.strip() or key)
        if isinstance(item, Box):
            prompt = FramePrompt(item.t_s, box=(item.x1, item.y1, item.x2, item.y2))
        else:
            prompt = FramePrompt(item.t_s, points=(PromptPoint(item.x, item.y),))
        prompts.setdefault(key, []).append(prompt)
    return [ObjectPrompt(ids[key], labels[key], tuple(frame_prompts)) for key, frame_prompts in prompts.items()]


def place_prompts(
    obj: ObjectPrompt, times_s: np.ndarray, duration_s: float, width: int, height: int
) -> tuple[dict[int, FramePrompt], list[SkippedPrompt]]:
    """Check an object's prompts against the video and put each on its nearest sampled frame.

    Returns frame index → the merged prompt there (source pixels; boxes clipped to the frame), and what was
    skipped: prompts with no time or a time outside the video, points outside the frame, boxes with no area
    inside it, a second box on a frame that already has one, prompts left with no positive point or box.
    """
    placed: dict[int, FramePrompt] = {}
    skipped: list[SkippedPrompt] = []
    for prompt in obj.prompts:
        t = prompt.t_s
        reasons_before = len(skipped)
        if t is None or not math.isfinite(t):
            skipped.append(SkippedPrompt(t, "no time: the answer did not say when"))
            continue
        if t < 0 or t > duration_s:
            skipped.append(SkippedPrompt(t, f"time {t:.2f} s is outside the video (0–{duration_s:.2f} s)"))
            continue
        points = []
        for point in prompt.points:
            if 0 <= point.x <= width and 0 <= point.y <= height:
                points.append(point)
            else:
                skipped.append(
                    SkippedPrompt(t, f"point ({point.x:.0f}, {point.y:.0f}) is outside the {width}×{height} frame")
                )
        box = prompt.box
        if box is not None:
            x1, y1, x2, y2 = box
            clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
            if not clipped[2] > clipped[0] or not clipped[3] > clipped[1]:
                skipped.append(SkippedPrompt(t, f"box {tuple(round(v) for v in box)} has no area inside the frame"))
                box = None
            else:
                box = clipped
        frame = int(np.argmin(np.abs(times_s - t)))  # the nearest sampled frame
        if frame in placed:
            earlier = placed[frame]
            if box is not None and earlier.box is not None:
                skipped.append(SkippedPrompt(t, "a second box for this object on the same sampled frame"))
                box = None
            prompt = FramePrompt(earlier.t_s, earlier.box or box, earlier.points + tuple(points))
        else:
            prompt = FramePrompt(t, box, tuple(points))
        if prompt.box is None and not any(p.positive for p in prompt.points):
            if len(skipped) == reasons_before:  # not already explained by a point or box dropped above
                skipped.append(SkippedPrompt(t, "no box and no positive point: nothing says which object"))
            continue
        placed[frame] = prompt
    return placed, skipped


def to_clip_pixels(prompt: FramePrompt, source_size: tuple[int, int], clip_size: tuple[int, int]) -> FramePrompt:
    """The prompt in pixels of the sampled frames SAM 2 segments (a pure rescale of the source frames)."""
    sx, sy = clip_size[0] / source_size[0], clip_size[1] / source_size[1]
    box = None
    if prompt.box is not None:
        x1, y1, x2, y2 = prompt.box
        box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    points = tuple(PromptPoint(p.x * sx, p.y * sy, p.positive) for p in prompt.points)
    return FramePrompt(prompt.t_s, box, points)


def processor_inputs(prompt: FramePrompt) -> dict:
    """Keyword arguments of `Sam2VideoProcessor.add_inputs_to_inference_session` for one object's prompt."""
    inputs: dict = {}
    if prompt.points:
        inputs["input_points"] = [[[[p.x, p.y] for p in prompt.points]]]  # [image, object, point, xy]
        inputs["input_labels"] = [[[int(p.positive) for p in prompt.points]]]  # [image, object, point]
    if prompt.box is not None:
        inputs["input_boxes"] = [[list(prompt.box)]]  # [image, box, xyxy]
    return inputs


# ---- masklets --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Masklet:
    """One object through the clip: a mask on every sampled frame, in source-video pixels."""

    object_id: int
    label: str
    times_s: np.ndarray  # [T] float64, the sampled frames' times
    rles: tuple[Rle, ...]  # [T], each height × width of the source video
    scores: np.ndarray  # [T] float32: sigmoid of SAM 2's object score, 0 on frames not tracked
    visible: np.ndarray  # [T] bool: SAM 2 says the object is there and its mask is not empty
    prompt_frames: tuple[int, ...]  # sampled frames that carried a prompt
    skipped: tuple[SkippedPrompt, ...] = ()

    @property
    def height(self) -> int:
        return self.rles[0].height

    @property
    def width(self) -> int:
        return self.rles[0].width

    def mask(self, frame: int) -> np.ndarray:
        """[height, width] bool of one sampled frame."""
        return self.rles[frame].decode()

    def masks(self) -> np.ndarray:
        """[T, height, width] bool: all frames expanded (T × height × width bytes)."""
        return np.stack([rle.decode() for rle in self.rles])

    def box(self, frame: int) -> tuple[int, int, int, int] | None:
        """The mask's bounding box on a sampled frame (x1, y1, x2, y2 end-exclusive, source pixels)."""
        return self.rles[frame].bbox()

    @property
    def tracked(self) -> bool:
        return bool(self.prompt_frames)

    @property
    def nbytes(self) -> int:
        return (
            sum(rle.counts.nbytes for rle in self.rles) + self.times_s.nbytes + self.scores.nbytes + self.visible.nbytes
        )


# ---- the per-video state -------------------------------------------------------------------------------


class FeatureCache:
    """SAM 2 image features by sampled frame, computed once per video and shared by every object's session.

    Stands in for transformers' `Sam2VideoInferenceCache` (the model calls `get_vision_features` and
    `cache_vision_features`). Features stay on the CPU up to `max_bytes`; past that, new frames are kept
    only while they are the latest (the model reads a frame's features twice in a row), so a long clip is
    re-encoded past the budget instead of growing without bound. The position embeddings depend only on the
    feature map's size, so one copy serves all frames.
    """

    def __init__(self, inference_device: torch.device, max_bytes: int):
        self.inference_device = inference_device
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._features: dict[int, list[torch.Tensor]] = {}  # frame → per level [HW, 1, C] on the CPU
        self._latest: tuple[int, list[torch.Tensor]] | None = None
        self._pos_embeds: list[torch.Tensor] | None = None  # per level [HW, 1, C], same for every frame

    def cache_vision_features(self, frame_idx: int, features: dict) -> None:
        levels = [level.to("cpu") for level in features["vision_feats"]]
        if self._pos_embeds is None:
            self._pos_embeds = [level.to("cpu") for level in features["vision_pos_embeds"]]
        size = sum(level.numel() * level.element_size() for level in levels)
        if self.nbytes + size <= self.max_bytes:
            self._features[frame_idx] = levels
            self.nbytes += size
        self._latest = (frame_idx, levels)

    def get_vision_features(self, frame_idx: int) -> dict | None:
        levels = self._features.get(frame_idx)
        if levels is None and self._latest is not None and self._latest[0] == frame_idx:
            levels = self._latest[1]
        if levels is None:
            return None
        device = self.inference_device
        return {
            "vision_feats": [level.to(device) for level in levels],
            "vision_pos_embeds": [level.to(device) for level in self._pos_embeds],
        }

    def clear_all(self) -> None:
        """Drop every frame's features (tracking goes on, encoding frames again as it needs them)."""
        self._features.clear()
        self._latest = None
        self._pos_embeds = None
        self.nbytes = 0

    def __contains__(self, frame_idx: int) -> bool:
        return frame_idx in self._features


class _ModelFrames(Mapping[int, torch.Tensor]):
    """The clip's uint8 frames, each turned into a SAM 2 input [3, S, S] only when the image encoder needs it."""

    def __init__(self, frames: np.ndarray, processor: Sam2VideoProcessor, dtype: torch.dtype):
        self.frames = frames  # [T, h, w, 3] uint8 RGB, the clip's own array (not copied)
        self.processor = processor
        self.dtype = dtype

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        batch = self.processor.video_processor(videos=[self.frames[frame_idx : frame_idx + 1]], return_tensors="pt")
        return batch.pixel_values_videos[0, 0].to(self.dtype)  # [3, S, S]

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.frames)))


@dataclass(eq=False)
class VideoState:
    """Everything SAM 2 keeps about one clip between calls: its frames and the image features encoded so far."""

    clip: Clip
    frames: _ModelFrames
    features: FeatureCache
    closed: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def clip_size(self) -> tuple[int, int]:
        """(width, height) of the sampled frames."""
        return self.clip.frames.shape[2], self.clip.frames.shape[1]

    @property
    def source_size(self) -> tuple[int, int]:
        return self.clip.info.width, self.clip.info.height

    def close(self) -> None:
        """Release the features and the frames; the state cannot track any more."""
        self.features.clear_all()
        self.frames.frames = self.frames.frames[:0]
        self.closed = True


# ---- the decoder ---------------------------------------------------------------------------------------


class MaskDecoder:
    """SAM 2 video segmentation: prompts at times → masklets on every sampled frame of a clip."""

    def __init__(self, model: Sam2VideoModel, processor: Sam2VideoProcessor, model_id: str):
        self.model = model
        self.processor = processor
        self.model_id = model_id

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_SAM2, device: str | None = None) -> MaskDecoder:
        """Load from weights/, the Hugging Face cache, or a download (see `vidchat.weights`). CUDA if present."""
        folder = resolve_model(model_id)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # fp32 on CPU, where bf16 is several times slower; bf16 on GPU, as SAM 2's own video predictor runs.
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            model_type = AutoConfig.from_pretrained(folder).model_type
            if model_type not in ("sam2_video", "sam2"):
                raise ModelError(
                    f"'{model_id}' is a {model_type} model, not SAM 2; use one of {', '.join(SAM2_CHECKPOINTS)}."
                )
            processor = Sam2VideoProcessor.from_pretrained(folder)
            model = Sam2VideoModel.from_pretrained(folder, dtype=dtype)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(f"The SAM 2 model in {folder} could not be loaded: {error}") from None
        return cls(model.to(device).eval(), processor, model_id)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def init_state(self, clip: Clip, max_feature_bytes: int = DEFAULT_FEATURE_BYTES) -> VideoState:
        """Start tracking on a clip; nothing is encoded until a prompt needs it."""
        return VideoState(
            clip=clip,
            frames=_ModelFrames(clip.frames, self.processor, self.dtype),
            features=FeatureCache(self.device, max_feature_bytes),
        )

    def track(
        self, state: VideoState, objects: Sequence[ObjectPrompt], progress: Progress | None = None
    ) -> dict[int, Masklet]:
        """A masklet for every object (by id), tracked forward and backward from its prompts.

        Prompts that cannot be used (see `place_prompts`, and prompts on which SAM 2 finds nothing) are
        recorded in the masklet's `skipped`; an object left with no usable prompt gets an empty masklet.
        progress(fraction, message) is called after every frame of every object.
        """
        if state.closed:
            raise RuntimeError("track() on a closed VideoState")
        result = {}
        for number, obj in enumerate(objects):
            on_frame = partial(_report_frame, progress, obj.label, number, len(objects), state.num_frames)
            result[obj.object_id] = self._track_object(state, obj, on_frame)
        return result

    # ---- one object ----

    def _track_object(self, state: VideoState, obj: ObjectPrompt, on_frame: Callable[[int], None]) -> Masklet:
        times_s = state.clip.times_s
        width, height = state.source_size
        placed, skipped = place_prompts(obj, times_s, state.clip.info.duration_s, width, height)

        # A prompt on which SAM 2 sees nothing would only teach the tracker "no object": try each alone first
        # (a prompted frame uses no memory, so its result here is the one it gets in the real session).
        usable: dict[int, FramePrompt] = {}
        for frame, prompt in sorted(placed.items()):
            session = self._session(state)
            output = self._prompt(session, state, obj.object_id, frame, prompt)
            if float(output.object_score_logits.reshape(-1)[0]) <= 0 or not bool((output.pred_masks > 0).any()):
                skipped.append(SkippedPrompt(prompt.t_s, "SAM 2 found no object at this prompt"))
            else:
                usable[frame] = prompt

        count = state.num_frames
        rles = [Rle(height, width, np.array([height * width]))] * count  # empty until tracked
        scores = np.zeros(count, np.float32)
        visible = np.zeros(count, bool)
        if usable:
            session = self._session(state)
            for frame, prompt in usable.items():
                self._prompt(session, state, obj.object_id, frame, prompt)
            start = min(usable)
            done = 0
            for output in self._propagate(session, start):
                mask = self._source_mask(output.pred_masks, height, width)  # [H, W] bool
                logit = float(output.object_score_logits.reshape(-1)[0])
                rles[output.frame_idx] = Rle.encode(mask)
                scores[output.frame_idx] = 0.5 * (1 + math.tanh(logit / 2))  # sigmoid that cannot overflow
                visible[output.frame_idx] = logit > 0 and bool(mask.any())
                done += 1
                on_frame(done)
        else:
            on_frame(count)
        return Masklet(
            object_id=obj.object_id,
            label=obj.label,
            times_s=times_s,
            rles=tuple(rles),
            scores=scores,
            visible=visible,
            prompt_frames=tuple(sorted(usable)),
            skipped=tuple(skipped),
        )

    def _session(self, state: VideoState) -> Sam2VideoInferenceSession:
        height, width = state.clip.frames.shape[1:3]
        session = Sam2VideoInferenceSession(
            video_height=height,  # prompts are given in the sampled frames' pixels
            video_width=width,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device="cpu",
            dtype=self.dtype,
        )
        session.processed_frames = state.frames
        session.cache = state.features
        return session

    def _prompt(
        self, session: Sam2VideoInferenceSession, state: VideoState, object_id: int, frame: int, prompt: FramePrompt
    ) -> Sam2VideoSegmentationOutput:
        in_clip = to_clip_pixels(prompt, state.source_size, state.clip_size)
        self.processor.add_inputs_to_inference_session(
            session, frame_idx=frame, obj_ids=object_id, **processor_inputs(in_clip)
        )
        return self.model(inference_session=session, frame_idx=frame)

    def _propagate(self, session: Sam2VideoInferenceSession, start: int) -> Iterator[Sam2VideoSegmentationOutput]:
        """Every frame once: forward from the first prompt to the end, then backward from it to the start.

        Like sam2's `propagate_in_video`; later prompted frames are reused as they are reached. What a frame
        stores that no later frame reads is dropped as soon as it is yielded, so one object's session stays
        small however long the clip: the high-resolution and low-resolution masks of tracked frames, and the
        memory features of frames out of reach of the memory window (`num_maskmem` frames each way).
        """
        outputs = session.output_dict_per_obj[0]
        window = self.model.config.num_maskmem
        for reverse in (False, True):
            for output in self.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                frame = output.frame_idx
                if reverse and frame == start:
                    continue  # already yielded by the forward pass
                yield output
                tracked = outputs["non_cond_frame_outputs"].get(frame)
                if tracked is not None:
                    tracked.pop("high_res_masks", None)
                    tracked.pop("pred_masks", None)
                # Frame f reads the memories of the `window - 1` frames before it (after it, going backward),
                # so `spent` is read by no frame still to come, except that the backward pass will read the
                # forward pass's first frames after `start`.
                spent = frame + window - 1 if reverse else frame - (window - 1)
                if reverse or spent > start + window - 2:
                    spent_outputs = outputs["non_cond_frame_outputs"].get(spent)  # prompted frames are kept apart
                    if spent_outputs is not None:
                        spent_outputs.pop("maskmem_features", None)
                        spent_outputs.pop("maskmem_pos_enc", None)

    def _source_mask(self, low_res_logits: torch.Tensor, height: int, width: int) -> np.ndarray:
        """SAM 2's low-resolution mask logits [1, 1, s, s] → [height, width] bool in source pixels."""
        masks = self.processor.post_process_masks([low_res_logits.float().cpu()], original_sizes=[[height, width]])
        return masks[0][0, 0].numpy()


def _report_frame(progress: Progress | None, label: str, number: int, objects: int, frames: int, done: int) -> None:
    """Progress over all objects of a `track` call: `done` frames of the `number`-th object are tracked."""
    if progress is not None:
        progress(
            (number * frames + done) / (objects * frames),
            f"Tracking '{label}' ({number + 1}/{objects}): frame {done}/{frames}",
        )


# ---- live tracking, frame by frame -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LiveMask:
    """One object on the newest frame of a live source."""

    object_id: int
    mask: np.ndarray  # [h, w] bool, in the pixels of the picture given
    score: float  # sigmoid of SAM 2's object score
    visible: bool  # object score > 0 and mask not empty


class LiveTracker:
    """SAM 2 frame by frame on a live source: one streaming inference session per object, so an object can start at a
    past frame (a grounded answer's time) and catch up to now.

    Each session numbers its frames from its prompt (frame 0), as a video tracked from its first frame would be:
    SAM 2 reads time as offsets from the current frame and stops looking back at frame 0. A frame goes through the
    image encoder once, whatever the number of objects, and its features are handed to every session.

    Memory stays flat however long the source runs: after each frame, each session keeps only what SAM 2 reads for
    the frames still to come (`_forget_spent`), so it holds at most `max_object_pointers_in_encoder` frames.

    All methods hold one lock, so a reader thread may call `step` while another thread calls `add`, `remove` or
    `close`; an `add` that catches up over many frames holds back `step` until it is done.
    """

    def __init__(self, decoder: MaskDecoder):
        self.decoder = decoder
        self._sessions: dict[int, Sam2VideoInferenceSession] = {}  # object id → its session
        self._lock = threading.Lock()
        self._closed = False

    def add(self, object_id: int, prompt: FramePrompt, frames: Sequence[np.ndarray]) -> LiveMask:
        """Start (or restart, replacing) tracking `object_id`: the prompt (box and/or points, in the pixels of the
        frames; its t_s is not read) on frames[0], then frames[1:] tracked in order, catching up to the newest;
        returns the object's mask on frames[-1].

        Raises PromptError when the prompt falls outside frames[0] or SAM 2 finds no object at it; the object's
        earlier tracking, if any, then goes on unchanged.
        """
        if not frames:
            raise ValueError("add() needs at least the prompted frame")
        height, width = _picture_size(frames[0])
        placed, skipped = place_prompts(
            ObjectPrompt(object_id, "", (replace(prompt, t_s=0.0),)), np.zeros(1), 0.0, width, height
        )
        if not placed:
            raise PromptError(f"The prompt cannot be used: {'; '.join(s.reason for s in skipped)}.")
        with self._lock:
            self._check_open()
            session = Sam2VideoInferenceSession(
                video_height=height,
                video_width=width,
                inference_device=self.decoder.device,
                inference_state_device=self.decoder.device,
                video_storage_device=self.decoder.device,
                dtype=self.decoder.dtype,
            )
            self.decoder.processor.add_inputs_to_inference_session(
                session, frame_idx=0, obj_ids=object_id, original_size=(height, width), **processor_inputs(placed[0])
            )
            pixels = self._pixels(frames[0])
            output = self._forward(session, 0, pixels, self._features(pixels))
            first = self._live_mask(object_id, output, height, width)
            if not first.visible:
                raise PromptError(f"SAM 2 found no object at this prompt ({_describe(placed[0])}).")
            for index, picture in enumerate(frames[1:], start=1):
                pixels = self._pixels(picture)
                output = self._forward(session, index, pixels, self._features(pixels))
            self._sessions[object_id] = session
            if len(frames) == 1:
                return first
            return self._live_mask(object_id, output, *_picture_size(frames[-1]))

    def step(self, picture: np.ndarray) -> dict[int, LiveMask]:
        """The next frame ([h, w, 3] uint8 RGB): every tracked object's mask on it (by object id).

        The picture may have another size than the ones before (a stream that changes resolution): SAM 2 sees every
        frame at its own square input size, and each mask comes in the pixels of the picture given.
        """
        height, width = _picture_size(picture)
        with self._lock:
            self._check_open()
            if not self._sessions:
                return {}
            pixels = self._pixels(picture)
            features = self._features(pixels)  # once for all objects
            masks = {}
            for object_id, session in self._sessions.items():
                output = self._forward(session, _newest_frame(session) + 1, pixels, features)
                masks[object_id] = self._live_mask(object_id, output, height, width)
            return masks

    def remove(self, object_id: int) -> None:
        """Stop tracking an object (nothing happens if it is not tracked)."""
        with self._lock:
            self._sessions.pop(object_id, None)

    @property
    def object_ids(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(self._sessions)

    def stored_frames(self) -> int:
        """The most frames any object's session holds anything of (pixels, features, outputs)."""
        with self._lock:
            return max((len(_frames_held(session)) for session in self._sessions.values()), default=0)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors the sessions hold (frames, features, outputs, prompts), each storage counted once."""
        with self._lock:
            storages = {}
            for session in self._sessions.values():
                for tensor in _tensors(_session_contents(session)):
                    storage = tensor.untyped_storage()
                    storages[(storage.device, storage.data_ptr())] = storage.nbytes()
            return sum(storages.values())

    def close(self) -> None:
        """Drop every session; `add` and `step` then raise ClosedError."""
        with self._lock:
            self._sessions.clear()
            self._closed = True

    # ---- one frame ----

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("The live tracking was stopped.")

    def _pixels(self, picture: np.ndarray) -> torch.Tensor:
        """[h, w, 3] uint8 → SAM 2's input [3, S, S], made as `MaskDecoder` makes a clip's frames (same numbers)."""
        batch = self.decoder.processor.video_processor(videos=[picture[None]], return_tensors="pt")
        return batch.pixel_values_videos[0, 0].to(self.decoder.device, self.decoder.dtype)

    @torch.inference_mode()
    def _features(self, pixels: torch.Tensor) -> dict:
        """The image encoder's output for one frame, as `Sam2VideoModel` caches it (per level [HW, 1, C])."""
        image = self.decoder.model.get_image_features(pixels[None], return_dict=True)
        return {"vision_feats": image.fpn_hidden_states, "vision_pos_embeds": image.fpn_position_encoding}

    def _forward(
        self, session: Sam2VideoInferenceSession, index: int, pixels: torch.Tensor, features: dict
    ) -> Sam2VideoSegmentationOutput:
        session.cache.cache_vision_features(index, features)  # the model finds them and encodes nothing
        # frame_idx given: the session's own count of frames (len(processed_frames)) shrinks as frames are dropped.
        output = self.decoder.model(inference_session=session, frame_idx=index, frame=pixels)
        _forget_spent(session, index, self.decoder.model.config)
        return output

    def _live_mask(self, object_id: int, output: Sam2VideoSegmentationOutput, height: int, width: int) -> LiveMask:
        mask = self.decoder._source_mask(output.pred_masks, height, width)  # [h, w] bool
        logit = float(output.object_score_logits.reshape(-1)[0])
        score = 0.5 * (1 + math.tanh(logit / 2))  # sigmoid that cannot overflow
        return LiveMask(object_id, mask, score, logit > 0 and bool(mask.any()))


def _forget_spent(session: Sam2VideoInferenceSession, newest: int, config) -> None:
    """Drop what SAM 2 reads for no frame after `newest` (one object's session, frames numbered from its prompt).

    Frame f reads the prompted frame's outputs, the memories (`maskmem_*`) of frames f-6 … f-1 (num_maskmem - 1
    back) and the object pointers of frames f-15 … f-1 (max_object_pointers_in_encoder - 1 back); its pixels and
    image features only while it is the current frame; masks are outputs, read by the caller only.
    """
    outputs = session.output_dict_per_obj[0]
    for output in outputs["cond_frame_outputs"].values():
        output.pop("pred_masks", None)
        output.pop("high_res_masks", None)
    tracked = outputs["non_cond_frame_outputs"]
    for frame in list(tracked):
        if frame <= newest - (config.max_object_pointers_in_encoder - 1):
            del tracked[frame]
            continue
        tracked[frame].pop("pred_masks", None)
        tracked[frame].pop("high_res_masks", None)
        if frame <= newest - (config.num_maskmem - 1):
            tracked[frame].pop("maskmem_features", None)
            tracked[frame].pop("maskmem_pos_enc", None)
    session.processed_frames.clear()
    session.cache.clear_all()
    session.frames_tracked_per_obj[0].clear()  # read only when a prompt is added to a frame already tracked


def _newest_frame(session: Sam2VideoInferenceSession) -> int:
    """The index of the newest frame a session tracked (its outputs are kept until the next frame)."""
    outputs = session.output_dict_per_obj[0]
    return max((*outputs["cond_frame_outputs"], *outputs["non_cond_frame_outputs"]))


def _session_contents(session: Sam2VideoInferenceSession) -> list:
    """Everything a session stores per frame or per object."""
    return [
        session.processed_frames or {},
        getattr(session.cache, "_vision_features", {}),
        session.output_dict_per_obj,
        session.point_inputs_per_obj,
        session.mask_inputs_per_obj,
    ]


def _frames_held(session: Sam2VideoInferenceSession) -> set[int]:
    frames = set(session.processed_frames or {}) | set(getattr(session.cache, "_vision_features", {}))
    for outputs in session.output_dict_per_obj.values():
        frames |= set(outputs["cond_frame_outputs"]) | set(outputs["non_cond_frame_outputs"])
    for per_frame in (*session.frames_tracked_per_obj.values(), *session.point_inputs_per_obj.values()):
        frames |= set(per_frame)
    return frames


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _picture_size(picture: np.ndarray) -> tuple[int, int]:
    """(height, width) of an [h, w, 3] uint8 RGB picture; anything else is a bug of the caller."""
    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise ValueError(f"expected an [h, w, 3] uint8 RGB picture, got {picture.dtype} {picture.shape}")
    return picture.shape[0], picture.shape[1]


def _describe(prompt: FramePrompt) -> str:
    parts = []
    if prompt.box is not None:
        parts.append("box " + ", ".join(f"{v:.0f}" for v in prompt.box))
    parts += [f"{'point' if p.positive else 'background point'} {p.x:.0f}, {p.y:.0f}" for p in prompt.points]
    return "; ".join(parts)
