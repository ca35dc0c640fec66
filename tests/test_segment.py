"""vidchat.segment: SAM 2 masklets from prompts, with a tiny random-weight SAM 2 saved and loaded offline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vidchat.errors import ModelError, ModelNotFoundError
from vidchat.grounding import Box, CoordinateFrame, Point, parse_answer
from vidchat.segment import (
    FramePrompt,
    MaskDecoder,
    ObjectPrompt,
    PromptPoint,
    Rle,
    label_key,
    object_prompts,
    place_prompts,
    processor_inputs,
    to_clip_pixels,
)
from vidchat.testing.sam2 import build_sam2_video, tiny_sam2_video_config
from vidchat.testing.videos import RED_SQUARE, write_video
from vidchat.video import Clip, SamplingConfig, VideoInfo, sample

SOURCE_SIZE = (128, 96)  # (width, height) of the hand-made clips' source video
CLIP_SIZE = (64, 48)  # their sampled frames: half the source, as a pixel budget would make them


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return build_sam2_video(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def decoder(sam2_dir) -> MaskDecoder:
    return MaskDecoder.from_pretrained(str(sam2_dir))


def _decoder_with_object_score(folder, logit: float) -> MaskDecoder:
    """The tiny model, its object-score head made to say `logit` on every frame (visible iff logit > 0)."""
    decoder = MaskDecoder.from_pretrained(str(folder))
    head = decoder.model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(logit)
    return decoder


def _random_clip(count: int, seed: int = 0) -> Clip:
    """Random frames at CLIP_SIZE, sampled every 0.5 s from a SOURCE_SIZE video."""
    frames = np.random.default_rng(seed).integers(0, 256, (count, CLIP_SIZE[1], CLIP_SIZE[0], 3), dtype=np.uint8)
    info = VideoInfo(
        path="random.mp4",
        container="mov,mp4,m4a,3gp,3g2,mj2",
        codec="h264",
        width=SOURCE_SIZE[0],
        height=SOURCE_SIZE[1],
        duration_s=count * 0.5,
        frame_count=count * 5,
        avg_fps=10.0,
        size_bytes=0,
        pixel_format="yuv420p",
    )
    times = np.arange(count) * 0.5  # [T]
    return Clip(frames, times, np.arange(count) * 5, info, SamplingConfig(fps=2.0), content_hash=f"random{seed}")


@pytest.fixture(scope="module")
def shapes_clip(tmp_path_factory):
    """A real synthetic video (160×120, 3.9 s at 10 fps) sampled at 2 fps into 80×60 frames by vidchat.video."""
    video = write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", n_frames=40, fps=10.0, size=(160, 120))
    clip = sample(video.path, SamplingConfig(fps=2.0, max_pixels=80 * 60, min_pixels=80 * 60))
    return video, clip


def _red(pixels: np.ndarray) -> np.ndarray:
    """[..., 3] RGB → bool: the synthetic red square's colour (after compression and resizing)."""
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return (r > 150) & (g < 90) & (b < 90)


# ---- RLE ---------------------------------------------------------------------------------------------


def test_rle_matches_pycocotools_compressed_strings():
    # Expected strings written by pycocotools 2.0 `mask.encode` for the same masks (checked once, offline).
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    mask[5, 0] = True
    assert Rle.encode(mask).to_coco() == {"size": [6, 8], "counts": "5172L00000005"}
    assert np.array_equal(Rle.from_coco({"size": [6, 8], "counts": "5172L00000005"}).decode(), mask)
    # A run shorter than the one two places back: a negative difference in the string.
    mask = np.zeros((4, 5), bool)
    mask[0, :] = True
    mask[3, 2] = True
    assert Rle.encode(mask).to_coco() == {"size": [4, 5], "counts": "013000O11O0"}
    assert Rle.encode(mask).counts.tolist() == [0, 1, 3, 1, 3, 1, 2, 2, 3, 1, 3]


def test_rle_is_column_major_and_starts_with_zeros():
    mask = np.array([[1, 1, 0], [0, 1, 0]], bool)  # columns: [1,0], [1,1], [0,0]
    rle = Rle.encode(mask)
    assert rle.counts.tolist() == [0, 1, 1, 2, 2]
    assert rle.area == 3
    assert rle.bbox() == (0, 0, 2, 2)
    assert Rle.encode(np.zeros((2, 3), bool)).counts.tolist() == [6]
    assert Rle.encode(np.zeros((2, 3), bool)).bbox() is None


@settings(max_examples=300, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_rle_round_trips_exactly(mask):
    rle = Rle.encode(mask)
    assert int(rle.counts.sum()) == mask.size
    assert rle.area == int(mask.sum())
    decoded = rle.decode()
    assert decoded.dtype == bool and decoded.shape == mask.shape and decoded.flags.c_contiguous
    assert np.array_equal(decoded, mask)
    assert Rle.from_coco(rle.to_coco()) == rle
    assert Rle.from_coco({"size": [rle.height, rle.width], "counts": rle.counts.tolist()}) == rle


def test_rle_rejects_counts_of_the_wrong_size():
    with pytest.raises(ValueError, match="sum to 5"):
        Rle.from_coco({"size": [2, 3], "counts": [2, 3]})


# ---- prompts -----------------------------------------------------------------------------------------


def test_object_prompts_group_by_label_and_keep_known_ids():
    found = [
        Box(1.0, 10, 20, 30, 40, "Red  square"),
        Point(2.0, 5, 6, "blue circle"),
        Point(3.0, 7, 8, "red square"),
        Box(0.5, 1, 2, 3, 4, "dog"),
    ]
    objects = object_prompts(found, known_ids={"blue circle": 4, "cat": 7})
    assert [(o.object_id, o.label) for o in objects] == [(8, "Red  square"), (4, "blue circle"), (9, "dog")]
    red = objects[0]
    assert red.prompts == (
        FramePrompt(1.0, box=(10, 20, 30, 40)),
        FramePrompt(3.0, points=(PromptPoint(7, 8),)),
    )
    assert label_key(" Blue   Circle ") == "blue circle" and label_key("") == "object"


def test_place_prompts_uses_nearest_frame_and_records_every_skip():
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    obj = ObjectPrompt(
        1,
        "thing",
        (
            FramePrompt(0.6, box=(-10, 10, 50, 200)),  # → frame 1, box clipped to the 100×80 frame
            FramePrompt(0.4, points=(PromptPoint(20, 30), PromptPoint(500, 30))),  # → frame 1, one point dropped
            FramePrompt(0.55, box=(0, 0, 5, 5)),  # second box on frame 1
            FramePrompt(None, box=(0, 0, 5, 5)),
            FramePrompt(-0.1, box=(0, 0, 5, 5)),
            FramePrompt(2.5, box=(0, 0, 5, 5)),  # after the end (duration 2.2 s)
            FramePrompt(1.9, box=(120, 0, 150, 10)),  # entirely right of the frame
            FramePrompt(1.2, points=(PromptPoint(10, 10, positive=False),)),
            FramePrompt(1.1, points=(PromptPoint(40, 40),)),  # → frame 2
        ),
    )
    placed, skipped = place_prompts(obj, times, duration_s=2.2, width=100, height=80)
    assert placed == {
        1: FramePrompt(0.6, box=(0.0, 10, 50, 80.0), points=(PromptPoint(20, 30),)),
        2: FramePrompt(1.1, points=(PromptPoint(40, 40),)),
    }
    reasons = [(s.t_s, s.reason) for s in skipped]
    assert reasons == [
        (0.4, "point (500, 30) is outside the 100×80 frame"),
        (0.55, "a second box for this object on the same sampled frame"),
        (None, "no time: the answer did not say when"),
        (-0.1, "time -0.10 s is outside the video (0–2.20 s)"),
        (2.5, "time 2.50 s is outside the video (0–2.20 s)"),
        (1.9, "box (120, 0, 150, 10) has no area inside the frame"),
        (1.2, "no box and no positive point: nothing says which object"),
    ]


def test_prompts_scale_to_the_sampled_frames_and_processor_layout():
    prompt = FramePrompt(1.0, box=(20, 40, 100, 80), points=(PromptPoint(60, 60), PromptPoint(10, 10, False)))
    in_clip = to_clip_pixels(prompt, source_size=(200, 100), clip_size=(50, 25))
    assert in_clip == FramePrompt(1.0, box=(5, 10, 25, 20), points=(PromptPoint(15, 15), PromptPoint(2.5, 2.5, False)))
    assert processor_inputs(in_clip) == {
        "input_points": [[[[15, 15], [2.5, 2.5]]]],
        "input_labels": [[[1, 0]]],
        "input_boxes": [[[5, 10, 25, 20]]],
    }


# The answer a model gives for the red square at 1.5 s, in its own coordinates: Qwen3-VL 0–1000 of the frame,
# Qwen2.5-VL pixels of its resized input (here 112×84).
@pytest.mark.parametrize("kind", ["relative1000", "absolute"])
def test_a_grounded_box_lands_on_the_object_in_the_frame_sam_sees(kind, shapes_clip, decoder):
    video, clip = shapes_clip
    source_frame = 15  # 1.5 s, also sampled frame 3
    true_box = video.boxes[RED_SQUARE][source_frame]  # [4] source pixels, end-exclusive
    extent = (1000, 1000) if kind == "relative1000" else (112, 84)
    model_box = [round(float(v) * extent[i % 2] / (160, 120)[i % 2]) for i, v in enumerate(true_box)]
    answer = f'[{{"time": 1.5, "bbox_2d": {model_box}, "label": "red square"}}]'
    frame = CoordinateFrame(kind, input_width=112, input_height=84, source_width=160, source_height=120)
    found = parse_answer(answer, frame, clip.info.duration_s)

    (obj,) = object_prompts(found.boxes)
    half_model_pixel = 0.5 * max(160 / extent[0], 120 / extent[1])  # the model's integer rounding, in source pixels
    np.testing.assert_allclose(obj.prompts[0].box, true_box, atol=half_model_pixel)
    placed, skipped = place_prompts(obj, clip.times_s, clip.info.duration_s, 160, 120)
    assert list(placed) == [3] and skipped == []
    x1, y1, x2, y2 = to_clip_pixels(placed[3], (160, 120), (80, 60)).box
    picture = clip.frames[3]  # [60, 80, 3]: what SAM 2 segments
    assert _red(picture[math.ceil(y1) + 1 : int(y2) - 1, math.ceil(x1) + 1 : int(x2) - 1]).all()
    assert _red(picture).sum() <= (x2 - x1 + 2) * (y2 - y1 + 2)  # no red outside the box

    # And through the model: the box corners the prompt encoder receives sit on the square of the image it encodes.
    seen = []
    hook = decoder.model.prompt_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_points"].clone()), with_kwargs=True
    )
    try:
        state = decoder.init_state(clip)
        decoder.track(state, [obj])
    finally:
        hook.remove()
    corners = seen[0][0, 0, :2].numpy()  # [2, 2]: SAM 2's box prompt is its two corners, in input pixels
    size = decoder.model.config.image_size
    image = state.frames[3].permute(1, 2, 0).numpy()  # [S, S, 3] normalised
    mean, std = (
        np.array(decoder.processor.video_processor.image_mean),
        np.array(decoder.processor.video_processor.image_std),
    )
    image = np.clip((image * std + mean) * 255, 0, 255)
    (cx1, cy1), (cx2, cy2) = corners
    np.testing.assert_allclose(corners, [[x1 * size / 80, y1 * size / 60], [x2 * size / 80, y2 * size / 60]], rtol=1e-5)
    assert _red(image[math.ceil(cy1) + 2 : int(cy2) - 2, math.ceil(cx1) + 2 : int(cx2) - 2]).all()
    assert not _red(image[math.ceil(cy2) + 2 :, :]).any()  # nothing red below the box


# ---- tracking ----------------------------------------------------------------------------------------


def test_checkpoint_reloads_with_its_config(decoder):
    config = tiny_sam2_video_config()
    assert decoder.model.config.image_size == config.image_size == 128
    assert decoder.model.config.vision_config.backbone_config.blocks_per_stage == [1, 2, 2, 1]
    assert decoder.processor.video_processor.size.height == 128
    assert decoder.device.type == "cpu" and decoder.dtype == torch.float32


def test_loading_something_that_is_not_sam2_says_so(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError, match="is a bert model, not SAM 2; use one of facebook/sam2.1-hiera-tiny"):
        MaskDecoder.from_pretrained(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        MaskDecoder.from_pretrained(str(tmp_path / "empty"))


def test_masklets_cover_every_sampled_frame_at_source_resolution(sam2_dir):
    decoder = _decoder_with_object_score(sam2_dir, 4.0)
    clip = _random_clip(12)
    state = decoder.init_state(clip)
    reports = []
    prompt = ObjectPrompt(3, "thing", (FramePrompt(2.6, box=(30, 20, 90, 70)),))  # nearest frame: 5 (2.5 s)
    masklet = decoder.track(state, [prompt], progress=lambda f, m: reports.append((f, m)))[3]

    assert masklet.prompt_frames == (5,)
    assert masklet.skipped == ()
    assert len(masklet.rles) == len(clip.times_s) == 12
    assert np.array_equal(masklet.times_s, clip.times_s)
    assert masklet.masks().shape == (12, SOURCE_SIZE[1], SOURCE_SIZE[0])
    assert all((rle.height, rle.width) == (SOURCE_SIZE[1], SOURCE_SIZE[0]) for rle in masklet.rles)
    # Frames never reached keep score 0: every frame, before and after the prompt, was tracked.
    np.testing.assert_allclose(masklet.scores, 1 / (1 + math.exp(-4.0)), rtol=1e-6)
    assert np.array_equal(masklet.visible, [rle.area > 0 for rle in masklet.rles])
    fractions = [f for f, _ in reports]
    assert len(reports) == 12 and fractions[-1] == 1.0 and all(np.diff(fractions) > 0)
    assert reports[0][1] == "Tracking 'thing' (1/1): frame 1/12"


def test_tracking_equals_transformers_own_propagation(decoder):
    """Lazy frames, the shared feature cache, dropping spent memories and the source→clip mapping change
    nothing: the masks and scores are those of transformers' reference session run on the whole clip."""
    clip = _random_clip(24, seed=1)
    state = decoder.init_state(clip)
    obj = ObjectPrompt(
        1, "thing", (FramePrompt(5.0, box=(20, 20, 100, 80)), FramePrompt(8.0, points=(PromptPoint(50, 40),)))
    )
    masklet = decoder.track(state, [obj])[1]
    assert masklet.prompt_frames == (10, 16)

    processor, model = decoder.processor, decoder.model
    session = processor.init_video_session(video=clip.frames, inference_device="cpu")
    # The same prompts in the sampled frames' pixels (half the source).
    processor.add_inputs_to_inference_session(session, frame_idx=10, obj_ids=1, input_boxes=[[[10, 10, 50, 40]]])
    model(inference_session=session, frame_idx=10)
    processor.add_inputs_to_inference_session(
        session, frame_idx=16, obj_ids=1, input_points=[[[[25, 20]]]], input_labels=[[[1]]]
    )
    model(inference_session=session, frame_idx=16)
    expected = {}
    for reverse in (False, True):
        for output in model.propagate_in_video_iterator(session, start_frame_idx=10, reverse=reverse):
            mask = processor.post_process_masks([output.pred_masks], original_sizes=[[SOURCE_SIZE[1], SOURCE_SIZE[0]]])
            expected[output.frame_idx] = (mask[0][0, 0].numpy(), float(output.object_score_logits))
    assert sorted(expected) == list(range(24))
    for frame, (mask, logit) in expected.items():
        assert np.array_equal(masklet.mask(frame), mask), frame
        assert masklet.scores[frame] == pytest.approx(1 / (1 + math.exp(-logit)), rel=1e-6)


def test_image_encoder_runs_once_per_frame_across_objects_and_calls(decoder):
    clip = _random_clip(10, seed=2)
    encoded = []
    hook = decoder.model.vision_encoder.register_forward_hook(
        lambda module, args, out: encoded.append(args[0].shape[0])
    )
    try:
        state = decoder.init_state(clip)
        first = [
            ObjectPrompt(1, "a", (FramePrompt(1.0, box=(10, 10, 60, 50)),)),
            ObjectPrompt(2, "b", (FramePrompt(4.0, points=(PromptPoint(90, 60),)),)),
        ]
        masklets = decoder.track(state, first)
        assert sum(encoded) == 10  # one frame per call, each frame once
        later = decoder.track(state, [ObjectPrompt(3, "c", (FramePrompt(2.0, box=(0, 0, 40, 40)),))])
        assert sum(encoded) == 10  # a later question on the same video encodes nothing
    finally:
        hook.remove()
    assert sorted(masklets) == [1, 2] and sorted(later) == [3]
    assert all(frame in state.features for frame in range(10))
    assert state.features.nbytes > 0
    state.close()
    assert state.features.nbytes == 0 and state.num_frames == 0
    with pytest.raises(RuntimeError, match="closed"):
        decoder.track(state, first)


def test_feature_budget_bounds_the_cache_without_changing_results(decoder):
    clip = _random_clip(10, seed=3)
    obj = ObjectPrompt(1, "a", (FramePrompt(2.0, box=(10, 10, 60, 50)),))
    unbounded = decoder.track(decoder.init_state(clip), [obj])[1]
    state = decoder.init_state(clip)
    decoder.track(state, [obj])
    per_frame = state.features.nbytes // 10
    small = decoder.init_state(clip, max_feature_bytes=3 * per_frame)
    bounded = decoder.track(small, [obj])[1]
    assert small.features.nbytes == 3 * per_frame
    assert all(a == b for a, b in zip(bounded.rles, unbounded.rles, strict=True))
    np.testing.assert_array_equal(bounded.scores, unbounded.scores)


def test_prompt_where_sam_finds_nothing_is_skipped_not_tracked(sam2_dir):
    decoder = _decoder_with_object_score(sam2_dir, -4.0)
    clip = _random_clip(6)
    objects = [
        ObjectPrompt(1, "ghost", (FramePrompt(1.0, box=(10, 10, 60, 50)), FramePrompt(9.0, box=(0, 0, 9, 9)))),
        ObjectPrompt(2, "nowhere", (FramePrompt(None, points=(PromptPoint(1, 1),)),)),
    ]
    masklets = decoder.track(decoder.init_state(clip), objects)
    ghost, nowhere = masklets[1], masklets[2]
    assert [s.reason for s in ghost.skipped] == [
        "time 9.00 s is outside the video (0–3.00 s)",
        "SAM 2 found no object at this prompt",
    ]
    assert [s.reason for s in nowhere.skipped] == ["no time: the answer did not say when"]
    for masklet in (ghost, nowhere):
        assert not masklet.tracked and not masklet.visible.any()
        assert len(masklet.rles) == 6 and all(rle.area == 0 for rle in masklet.rles)
        assert (masklet.height, masklet.width) == (SOURCE_SIZE[1], SOURCE_SIZE[0])
