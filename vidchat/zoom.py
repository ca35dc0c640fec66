"""Zoom: a dense look at the minutes of a long video that a question needs (coarse to fine).

The session's clip is the coarse pass: at most `SamplingConfig.max_frames` frames over the whole video (an hour at
768 frames is a frame every 4.7 s). That is too sparse to see a 2-second event, and an answer's times are only as
precise as the sampling. The coarse pass tells where to look again:

1. `relevance`: per temporal patch, the attention the question's tokens pay to its visual tokens at the selector's
   scoring layer, minus the share a question-agnostic prompt (`BASELINE_QUESTION`) pays to it: attention sinks and
   salient shots draw attention whatever is asked, the question's own evidence is what is left.
2. `choose_windows`: peaks of the smoothed relevance, highest first, each widened to where the relevance falls
   below half its top and one sampled frame beyond (the event lies between the samples that saw it), with
   non-maximum suppression; overlapping windows merge. No window when the relevance is flat (a question about the
   whole video, such as "summarise it") or when the coarse sampling is already as dense as the zoom's (short
   videos). A peak inside a window looked at before reuses that window, whose tokens are cached.
3. `window_sampling`: each window is decoded exactly (`video.sample_span`) at the dense rate (at least
   `ZoomSettings.fps`, up to the source's frame rate for a short window) at its own resolution, and encoded by the
   same model. Its tokens go before the question, after the video prefix (system prompt, video, transcript), which
   stays the same for every question and so stays cached (`VideoLLM.prompt`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from vidchat.selector import attention_scores, duplicate_mask
from vidchat.video import Clip, SamplingConfig, clock_text, sample_span
from vidchat.vlm import Turn, VideoLLM, VideoPrefix, VisualTokens

# The question-agnostic prompt whose attention is the baseline that the question's is compared with.
BASELINE_QUESTION = "Describe the video."
_SMOOTHING = np.array([0.25, 0.5, 0.25])  # over neighbouring temporal patches


@dataclass(frozen=True)
class ZoomSettings:
    on: bool = True
    windows: int = 2  # at most this many windows per question
    fps: float = 2.0  # the dense rate, at least
    max_frames: int = 32  # a short window is sampled faster than `fps` while this many frames cover it
    # A window is at most this long (before merging): an event seen by one temporal patch of a 3-hour video's coarse
    # pass (two frames 14 s apart) lies in the 42 s from the sample before it to the sample after it.
    max_seconds: float = 48.0
    max_pixels: int = 128 * 28 * 28  # per dense frame: 4 times a 768-frame coarse frame's (more frames, each smaller)
    kept_windows: int = 8  # the latest windows' tokens are kept for follow-ups
    # The relevance is flat, and nothing is zoomed, unless the question gives a patch (smoothed) this many times the
    # share of attention an even spread gives each patch, more than the question-agnostic baseline gives it.
    peak_ratio: float = 4.0

    def __post_init__(self) -> None:
        if not (self.windows >= 1 and self.fps > 0 and self.max_frames >= 2 and self.max_seconds > 0 and self.max_pixels >= 1):
            raise ValueError(f"zoom needs windows ≥ 1, fps > 0, max_frames ≥ 2, max_seconds > 0, max_pixels ≥ 1: {self}")


@dataclass(frozen=True)
class Window:
    """A part of the video to look at densely, seconds after its first frame."""

    start_s: float
    end_s: float

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s <= self.end_s


def relevance(scores: torch.Tensor, baseline: torch.Tensor, steps: int) -> np.ndarray:
    """[T'] float64 ≥ 0: the question's share of attention per temporal patch minus the baseline's.

    scores, baseline: [N] attention per visual token of the video (`selector.attention_scores`), N = T' × tokens
    per patch; each patch counts its best token (the evidence can be a few tokens of the frame)."""
    question = scores.view(steps, -1).amax(dim=1).double()  # [T']
    agnostic = baseline.view(steps, -1).amax(dim=1).double()  # [T']
    share = question / question.sum().clamp_min(1e-30) - agnostic / agnostic.sum().clamp_min(1e-30)
    return share.clamp_min(0).numpy()


def choose_windows(
    weights: np.ndarray,
    patch_times_s: np.ndarray,
    duration_s: float,
    interval_s: float,
    settings: ZoomSettings,
    known: Sequence[Window] = (),
) -> tuple[Window, ...]:
    """Up to `settings.windows` windows around the peaks of `weights` ([T'] `relevance`: shares of the question's
    attention, summing to 1 at most), sorted and not overlapping; () when the relevance is flat or the coarse sampling (`interval_s` between frames) is dense enough.

    patch_times_s: [T', 2] the first and last sampled frame time of each temporal patch. known: windows looked at
    before; a peak inside one of them gives that window again (its tokens are cached)."""
    if not settings.on or interval_s <= 1.0 / settings.fps + 1e-9 or len(weights) < 2:
        return ()
    smooth = np.convolve(np.pad(weights, 1, mode="edge"), _SMOOTHING, mode="valid")  # [T']
    floor = settings.peak_ratio / len(weights)  # `peak_ratio` times a patch's share of evenly spread attention
    if smooth.max() <= 0 or smooth.max() < floor:
        return ()
    longest_s = settings.max_seconds
    left = smooth.copy()
    found: list[Window] = []
    while len(found) < settings.windows:
        peak = int(left.argmax())
        if left[peak] <= 0 or left[peak] < max(floor, smooth.max() / 2):
            break
        # the event: the patches around the highest one near the peak that keep half its relevance (unsmoothed, so
        # that a one-patch event stays one patch)
        top = max(range(max(peak - 1, 0), min(peak + 2, len(weights))), key=lambda i: weights[i])
        low = high = top
        while low > 0 and weights[low - 1] >= weights[top] / 2:
            low -= 1
        while high < len(weights) - 1 and weights[high + 1] >= weights[top] / 2:
            high += 1
        left[max(low - 1, 0) : high + 2] = 0  # suppress the event's neighbourhood
        reused = next((window for window in known if window.covers(float(patch_times_s[top].mean()))), None)
        if reused is not None:
            found.append(reused)
            continue
        # one sampled frame beyond the patches that saw it on each side: the event lies between samples
        start_s, end_s = patch_times_s[low, 0] - interval_s, patch_times_s[high, 1] + interval_s
        if end_s - start_s > longest_s:  # too long for the dense rate: its middle
            middle_s = (start_s + end_s) / 2
            start_s, end_s = middle_s - longest_s / 2, middle_s + longest_s / 2
        found.append(_clamped(start_s, end_s, duration_s))
    return merge(found)


def merge(windows: Sequence[Window]) -> tuple[Window, ...]:
    """The windows sorted by start, overlapping or touching ones merged into one."""
    merged: list[Window] = []
    for window in sorted(windows, key=lambda w: (w.start_s, w.end_s)):
        if merged and window.start_s <= merged[-1].end_s:
            merged[-1] = Window(merged[-1].start_s, max(merged[-1].end_s, window.end_s))
        else:
            merged.append(window)
    return tuple(merged)


def _clamped(start_s: float, end_s: float, duration_s: float) -> Window:
    """[start, end] moved inside [0, duration] keeping its length where it fits."""
    length = float(min(end_s - start_s, duration_s))
    start_s = float(min(max(start_s, 0.0), duration_s - length))
    return Window(round(start_s, 3), round(start_s + length, 3))


def window_sampling(window: Window, source_fps: float, settings: ZoomSettings) -> SamplingConfig:
    """How a window is sampled: at `settings.fps`, or faster while `max_frames` frames cover it (a short window is
    seen frame by frame), never faster than the source's rate; each frame within `max_pixels`."""
    length_s = max(window.end_s - window.start_s, 1e-3)
    rate = max(settings.fps, settings.max_frames / length_s)
    if source_fps > 0:  # never faster than the frames there are
        rate = min(rate, source_fps)
    frames = max(2, math.ceil(length_s * rate - 1e-6))
    return SamplingConfig(
        fps=rate,
        max_frames=frames,
        min_frames=min(4, frames),
        max_pixels=settings.max_pixels,
        min_pixels=min(settings.max_pixels, SamplingConfig().min_pixels),
        total_pixels=settings.max_pixels * frames,
    )


def patch_times(times_s: np.ndarray, steps: int) -> np.ndarray:
    """[T', 2] the first and last sampled frame time of each of `steps` temporal patches over frames at `times_s`
    ([T]; the last patch is padded with the last frame, as the processors pad)."""
    per_patch = math.ceil(len(times_s) / steps)
    padded = np.concatenate([times_s, np.repeat(times_s[-1:], steps * per_patch - len(times_s))])
    grouped = padded.reshape(steps, per_patch)
    return np.stack([grouped[:, 0], grouped[:, -1]], axis=1)


@dataclass(frozen=True, eq=False)
class Look:
    """A window as the model saw it (its visual tokens stay in the session's cache of windows)."""

    window: Window
    fps: float  # the rate it was sampled at
    times_s: np.ndarray  # [F] true presentation time of each of its frames
    frame_indices: np.ndarray  # [F] their indices in the decoded stream


def coarse_interval_s(clip: Clip) -> float:
    """Seconds between the coarse pass's sampled frames, on average."""
    return clip.info.duration_s / max(len(clip.times_s), 1)


def applies(clip: Clip, settings: ZoomSettings) -> bool:
    """Whether questions about `clip` may look closer: zoom is on and the coarse sampling is sparser than the zoom's
    rate (a short video sampled at 2 fps has nothing to gain)."""
    return settings.on and coarse_interval_s(clip) > 1.0 / settings.fps + 1e-9


class ZoomState:
    """One video's zoom: the windows its questions looked at (their visual tokens, the latest
    `ZoomSettings.kept_windows`) and the question-agnostic baseline attention (kept per visual tokens, transcript and
    layer)."""

    def __init__(self) -> None:
        self._looked: dict[Window, tuple[Look, VisualTokens]] = {}  # oldest first
        self._baseline: tuple[tuple, torch.Tensor] | None = None

    def windows(
        self,
        llm: VideoLLM,
        clip: Clip,
        tokens: VisualTokens,
        question: tuple[Sequence[Turn], str, str],
        layer: int,
        prefix: VideoPrefix | None,
        settings: ZoomSettings,
        selector_scores: tuple[torch.Tensor, float] | None = None,
    ) -> tuple[Window, ...]:
        """Where to look densely for a question (`choose_windows`): `question` is (history, question, transcript);
        the relevance is its attention to the video at `layer` (with the video `prefix` when it holds that layer)
        against the baseline's. selector_scores: the attention selector's scores of the question and its pre-pass's
        duplicate cosine (its dropped tokens score 0: the baseline's are masked alike), instead of computing them."""
        if not applies(clip, settings):
            return ()
        history, text, transcript = question
        prefix = prefix if prefix is not None and prefix.layers > layer else None
        baseline = self._baseline_scores(llm, tokens, transcript, layer, prefix)
        if selector_scores is None:
            scores = attention_scores(llm, tokens, llm.prompt(tokens, history, text, transcript), text, layer, prefix)
        else:
            scores, cosine = selector_scores[0][: len(tokens.embeddings)], selector_scores[1]
            baseline = baseline.masked_fill(duplicate_mask(tokens, cosine), 0.0)
        weights = relevance(scores, baseline, tokens.steps)
        # the windows looked at before, as the zoom's settings would sample them now
        known = [
            window for window, (_, encoded) in self._looked.items()
            if encoded.source[1] == window_sampling(window, clip.info.avg_fps, settings)
        ]  # fmt: skip
        times = patch_times(clip.times_s, tokens.steps)
        return choose_windows(weights, times, clip.info.duration_s, coarse_interval_s(clip), settings, known)

    def look(
        self,
        llm: VideoLLM,
        clip: Clip,
        window: Window,
        settings: ZoomSettings,
        lock: AbstractContextManager,
        progress: Callable[[float, str], None] | None = None,
    ) -> tuple[Look, VisualTokens]:
        """The window decoded densely and encoded by `llm` (under `lock`), or as it was for an earlier question."""
        sampling = window_sampling(window, clip.info.avg_fps, settings)
        looked = self._looked.pop(window, None)
        if looked is None or looked[1].source[1] != sampling:  # new, or looked at with other zoom settings
            if progress is not None:
                progress(0.0, f"Looking closer at {clock_text(window.start_s)}–{clock_text(window.end_s)}")
            dense = sample_span(clip, window.start_s, window.end_s, sampling)
            with lock:
                encoded = llm.encode(dense)
            looked = Look(window, sampling.fps, dense.times_s, dense.frame_indices), encoded
        self._looked[window] = looked  # the newest last
        while len(self._looked) > settings.kept_windows:
            self._looked.pop(next(iter(self._looked)))
        return looked

    @property
    def nbytes(self) -> int:
        return sum(encoded.nbytes for _, encoded in self._looked.values())

    def clear(self) -> None:
        """Forget the windows' tokens (they are computed again when a question needs them)."""
        self._looked.clear()

    def _baseline_scores(
        self, llm: VideoLLM, tokens: VisualTokens, transcript: str, layer: int, prefix: VideoPrefix | None
    ) -> torch.Tensor:
        """[N] the attention the question-agnostic prompt pays to each visual token at `layer`."""
        key = (tokens.source, transcript, layer)
        if self._baseline is None or self._baseline[0] != key:
            prompt = llm.prompt(tokens, [], BASELINE_QUESTION, transcript)
            self._baseline = key, attention_scores(llm, tokens, prompt, BASELINE_QUESTION, layer, prefix)
        return self._baseline[1]
