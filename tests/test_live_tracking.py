"""vidchat.segment.LiveTracker: SAM 2 frame by frame on a live source, checked against SAM 2's own offline tracking.

Random weights cannot show that an object is followed, so the oracle is SAM 2 itself: fed the same frames from the
same prompt, live tracking must give exactly what `MaskDecoder.track` gives on the whole clip (which equals
transformers' own propagation, see tests/test_segment.py), well past the memory window, while holding a fixed
number of frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidchat.errors import ClosedError, PromptError
from vidchat.segment import FramePrompt, LiveTracker, MaskDecoder, ObjectPrompt, PromptPoint
from vidchat.testing.sam2 import build_sam2_video
from vidchat.testing.videos import BLUE_CIRCLE, RED_SQUARE, write_video
from vidchat.video import SamplingConfig, sample

SIZE = (128, 96)  # (width, height) of the video and of the frames SAM 2 gets: masks compare pixel for pixel
FRAMES = 40  # 4 s at 10 fps, all sampled: more than 2× the 16 frames SAM 2 looks back


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return build_sam2_video(tmp_path_factory.mktemp("sam2"))


def _decoder(folder, object_score_shift: float) -> MaskDecoder:
    """The tiny model, its object score moved by `shift` on every frame (random weights score about 0 everywhere:
    +3 makes a prompt "found" while the score still varies from frame to frame, -4 makes it "not there")."""
    decoder = MaskDecoder.from_pretrained(str(folder))
    with torch.no_grad():
        decoder.model.mask_decoder.pred_obj_score_head.proj_out.bias += object_score_shift
    return decoder


@pytest.fixture(scope="module")
def decoder(sam2_dir) -> MaskDecoder:
    return _decoder(sam2_dir, 3.0)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    video = write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", n_frames=FRAMES, fps=10.0, size=SIZE)
    clip = sample(video.path, SamplingConfig(fps=10.0, max_pixels=SIZE[0] * SIZE[1], min_pixels=SIZE[0] * SIZE[1]))
    assert clip.frames.shape == (FRAMES, SIZE[1], SIZE[0], 3)
    return video, clip


def _box(video, name: str, frame: int) -> FramePrompt:
    return FramePrompt(None, box=tuple(float(v) for v in video.boxes[name][frame]))


class _Logits:
    """SAM 2's low-resolution mask logits and object score of every frame the model runs on, by frame index."""

    def __init__(self, model):
        self.by_frame: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hook = model.register_forward_hook(self._record)

    def _record(self, module, args, output):
        self.by_frame[output.frame_idx] = (output.pred_masks.clone(), output.object_score_logits.clone())

    def __enter__(self) -> _Logits:
        return self

    def __exit__(self, *exc) -> None:
        self.hook.remove()


def _live(decoder: MaskDecoder, prompt: FramePrompt, frames: np.ndarray, catch_up: int = 1):
    """Track one object live: add with frames[:catch_up], then step through the rest → masks, scores, logits."""
    tracker = LiveTracker(decoder)
    with _Logits(decoder.model) as logits:
        first = tracker.add(7, prompt, list(frames[:catch_up]))
        masks, scores = [first.mask], [first.score]
        for picture in frames[catch_up:]:
            live = tracker.step(picture)[7]
            masks.append(live.mask)
            scores.append(live.score)
    return np.stack(masks), np.array(scores), logits.by_frame


@pytest.mark.parametrize("name", [RED_SQUARE, BLUE_CIRCLE])
def test_live_tracking_equals_offline_tracking_beyond_the_memory_window(name, shapes, decoder):
    video, clip = shapes
    with _Logits(decoder.model) as offline:
        prompt = FramePrompt(0.0, box=_box(video, name, 0).box)
        masklet = decoder.track(decoder.init_state(clip), [ObjectPrompt(7, name, (prompt,))])[7]
    offline_logits = offline.by_frame
    assert masklet.prompt_frames == (0,) and masklet.visible.all()

    masks, scores, live_logits = _live(decoder, _box(video, name, 0), clip.frames)
    assert masks.shape == (FRAMES, SIZE[1], SIZE[0]) and masks.dtype == bool
    assert sorted(live_logits) == sorted(offline_logits) == list(range(FRAMES))
    for frame in range(FRAMES):
        assert np.array_equal(masks[frame], masklet.mask(frame)), frame
        assert scores[frame] == pytest.approx(float(masklet.scores[frame]), rel=1e-6), frame
        # Bit for bit: what the live sessions drop is read by no later frame.
        assert torch.equal(live_logits[frame][0], offline_logits[frame][0]), frame
        assert torch.equal(live_logits[frame][1].reshape(-1), offline_logits[frame][1].reshape(-1)), frame
    assert len({float(s) for s in masklet.scores}) > 1  # the scores compared are not one constant
    assert masks[-1].any() and not masks[-1].all()


def test_an_object_added_late_catches_up_and_then_tracks_as_from_its_start(shapes, decoder):
    """A grounded answer names an object at a past frame while another is tracked: `add` with the frames since then
    gives, there and after, exactly what tracking from that frame in one go gives; the first object is untouched."""
    video, clip = shapes
    red, blue = _box(video, RED_SQUARE, 0), _box(video, BLUE_CIRCLE, 12)
    red_alone, _, _ = _live(decoder, red, clip.frames)
    blue_alone, blue_scores, _ = _live(decoder, blue, clip.frames[12:])

    tracker = LiveTracker(decoder)
    tracker.add(1, red, [clip.frames[0]])
    for picture in clip.frames[1:21]:
        assert list(tracker.step(picture)) == [1]
    caught_up = tracker.add(2, blue, list(clip.frames[12:21]))  # prompt at frame 12, the newest is 20
    assert tracker.object_ids == (1, 2)
    assert np.array_equal(caught_up.mask, blue_alone[20 - 12])
    assert caught_up.score == pytest.approx(blue_scores[20 - 12], rel=1e-6)
    for frame in range(21, FRAMES):
        masks = tracker.step(clip.frames[frame])
        assert np.array_equal(masks[1].mask, red_alone[frame]), frame
        assert np.array_equal(masks[2].mask, blue_alone[frame - 12]), frame
        assert masks[2].score == pytest.approx(blue_scores[frame - 12], rel=1e-6)


def test_two_objects_at_once_each_track_as_alone_and_share_the_image_encoder(shapes, decoder):
    video, clip = shapes
    frames = clip.frames[:24]
    alone = {
        1: _live(decoder, _box(video, RED_SQUARE, 0), frames)[0],
        2: _live(decoder, _box(video, BLUE_CIRCLE, 0), frames)[0],
    }
    encoded = []
    hook = decoder.model.vision_encoder.register_forward_hook(lambda module, args, out: encoded.append(1))
    try:
        tracker = LiveTracker(decoder)
        tracker.add(1, _box(video, RED_SQUARE, 0), [frames[0]])
        tracker.add(2, _box(video, BLUE_CIRCLE, 0), [frames[0]])
        assert len(encoded) == 2  # each add encodes its own frames
        together = {1: [], 2: []}
        for picture in frames[1:]:
            for object_id, live in tracker.step(picture).items():
                together[object_id].append(live.mask)
                assert live.object_id == object_id and live.visible == live.mask.any()
        assert len(encoded) == 2 + len(frames) - 1  # a stepped frame is encoded once for both objects
    finally:
        hook.remove()
    for object_id in (1, 2):
        assert np.array_equal(np.stack(together[object_id]), alone[object_id][1:]), object_id
    assert not np.array_equal(alone[1], alone[2])


def test_memory_stays_flat_over_hundreds_of_frames(shapes, decoder):
    video, clip = shapes
    config = decoder.model.config
    assert (config.num_maskmem, config.max_object_pointers_in_encoder) == (7, 16)
    tracker = LiveTracker(decoder)
    tracker.add(1, _box(video, RED_SQUARE, 0), [clip.frames[0]])
    held, nbytes = [tracker.stored_frames()], [tracker.nbytes]
    for index in range(1, 200):
        tracker.step(clip.frames[index % FRAMES])
        held.append(tracker.stored_frames())
        nbytes.append(tracker.nbytes)
    # Frame n keeps the prompted frame 0 and frames n-14 … n (the object pointers the next frame reads): 16 frames.
    assert held == [min(n + 1, 16) for n in range(200)]
    assert all(b == nbytes[15] for b in nbytes[15:])  # not a byte more from frame 15 to 199
    assert nbytes[0] < nbytes[6] < nbytes[15]  # memories fill up to frame 6, object pointers to frame 15
    # What is held: 7 memories (prompted frame + 6; bf16, with fp32 positions that frames may share), 16 object
    # pointers and scores, the prompt: no pixels, image features or masks.
    memory = 7 * (config.image_size // 16) ** 2 * config.memory_encoder_output_channels * 2  # [HW, 1, 64] bf16
    assert memory < nbytes[-1] <= 3 * memory + 16 * 1024


def test_remove_restart_and_close(shapes, decoder):
    video, clip = shapes
    tracker = LiveTracker(decoder)
    assert tracker.step(clip.frames[0]) == {} and tracker.stored_frames() == 0 and tracker.nbytes == 0
    tracker.add(1, _box(video, RED_SQUARE, 0), [clip.frames[0]])
    tracker.add(2, _box(video, BLUE_CIRCLE, 0), [clip.frames[0]])
    tracker.step(clip.frames[1])
    tracker.remove(1)
    tracker.remove(5)  # not tracked: nothing happens
    assert tracker.object_ids == (2,) and list(tracker.step(clip.frames[2])) == [2]

    # Restarting an object replaces its tracking: the same masks as a fresh start from the new prompt.
    fresh, _, _ = _live(decoder, _box(video, RED_SQUARE, 3), clip.frames[3:6])
    restarted = tracker.add(2, _box(video, RED_SQUARE, 3), [clip.frames[3]])
    assert np.array_equal(restarted.mask, fresh[0])
    assert [np.array_equal(tracker.step(clip.frames[f])[2].mask, fresh[f - 3]) for f in (4, 5)] == [True, True]

    # Frames of another size (a stream changing resolution): masks in the pixels of the picture given.
    half = np.ascontiguousarray(clip.frames[6][::2, ::2])
    assert tracker.step(half)[2].mask.shape == (SIZE[1] // 2, SIZE[0] // 2)

    tracker.close()
    assert tracker.object_ids == () and tracker.nbytes == 0
    with pytest.raises(ClosedError, match="stopped"):
        tracker.step(clip.frames[7])
    with pytest.raises(ClosedError):
        tracker.add(1, _box(video, RED_SQUARE, 7), [clip.frames[7]])


def test_a_prompt_where_sam_finds_nothing_raises_and_keeps_the_tracking_before(sam2_dir, shapes):
    video, clip = shapes
    tracker = LiveTracker(_decoder(sam2_dir, -4.0))
    with pytest.raises(PromptError, match=r"SAM 2 found no object at this prompt \(box 0, 20, 32, 52\)"):
        tracker.add(1, _box(video, RED_SQUARE, 0), list(clip.frames[:3]))
    assert tracker.object_ids == () and tracker.nbytes == 0

    tracker = LiveTracker(_decoder(sam2_dir, 3.0))
    tracker.add(1, _box(video, RED_SQUARE, 0), [clip.frames[0]])
    bias = tracker.decoder.model.mask_decoder.pred_obj_score_head.proj_out.bias
    with torch.no_grad():
        bias -= 7.0  # the same tracker's model now sees nothing
    try:
        with pytest.raises(PromptError, match=r"SAM 2 found no object at this prompt \(point 60, 30\)"):
            tracker.add(1, FramePrompt(None, points=(PromptPoint(60, 30),)), [clip.frames[1]])
    finally:
        with torch.no_grad():
            bias += 7.0
    assert tracker.object_ids == (1,) and tracker.step(clip.frames[1])[1].visible  # the old tracking goes on

    with pytest.raises(PromptError, match=r"box \(200, 10, 300, 50\) has no area inside the frame"):
        tracker.add(2, FramePrompt(None, box=(200, 10, 300, 50)), [clip.frames[0]])
    with pytest.raises(PromptError, match="no box and no positive point"):
        tracker.add(2, FramePrompt(None, points=(PromptPoint(5, 5, positive=False),)), [clip.frames[0]])
