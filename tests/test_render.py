"""vidchat.render: overlays drawn in each object's colour, the annotated H.264 video, JSON and UI exports."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vidchat.render import (
    MASK_OPACITY,
    PALETTE,
    Overlay,
    browser_plays,
    color_hex,
    draw,
    frame_overlays,
    object_color,
    overlay_masks,
    playable_copy,
    write_video,
)
from vidchat.errors import VideoError
from vidchat.grounding import Box, Point
from vidchat.segment import FramePrompt, Masklet, ObjectPrompt, PromptPoint, Rle, SkippedPrompt
from vidchat.session import GroundedObject, object_json
from vidchat.testing.videos import BACKGROUND_RGB, BLUE_CIRCLE, RED_SQUARE, SHAPE_RGB
from vidchat.testing.videos import write_video as write_synthetic_video
from vidchat.video import SamplingConfig, probe, sample


def _blend(pixels: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """MASK_OPACITY of the colour over the picture, rounded to the nearest integer."""
    return np.floor(pixels * (1 - MASK_OPACITY) + np.array(color) * MASK_OPACITY + 0.5).astype(np.uint8)


def _shape_masklet(video, clip, shape: str, object_id: int, label: str) -> Masklet:
    """A masklet holding the synthetic shape's true pixels on every sampled frame (what SAM 2 should find)."""
    rles = tuple(Rle.encode(video.masks(int(i))[shape]) for i in clip.frame_indices)
    count = len(rles)
    return Masklet(object_id, label, clip.times_s, rles, np.ones(count, np.float32), np.ones(count, bool), (0,))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """An odd-sized synthetic video (3 s at 10 fps) sampled at 2 fps, and the true masklets of its shapes."""
    video = write_synthetic_video(
        tmp_path_factory.mktemp("video") / "shapes.mp4", n_frames=30, fps=10.0, size=(161, 121)
    )
    clip = sample(video.path, SamplingConfig(fps=2.0, max_pixels=80 * 60, min_pixels=80 * 60))
    masklets = {
        1: _shape_masklet(video, clip, RED_SQUARE, 1, "red square"),
        2: _shape_masklet(video, clip, BLUE_CIRCLE, 2, "blue circle"),
    }
    return video, clip, masklets


def test_object_colours_are_stable_and_distinct():
    assert len(set(PALETTE)) == len(PALETTE) == 12
    assert [object_color(i) for i in range(1, 13)] == list(PALETTE)
    assert object_color(13) == object_color(1)
    assert color_hex((230, 159, 0)) == "#e69f00"


def test_mask_pixels_take_the_colour_blend_and_the_rest_is_unchanged():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[30:90, 40:100] = True
    cv2.circle(mask.view(np.uint8), (120, 60), 20, 1, -1)
    out = draw(frame, [Overlay(object_id=2, label="", mask=mask)])

    color = object_color(2)
    line = 1  # the outline's width at this size (2 px at 540p)
    kernel = np.ones((2 * line + 3, 2 * line + 3), np.uint8)
    interior = cv2.erode(mask.astype(np.uint8), kernel) > 0
    far = cv2.dilate(mask.astype(np.uint8), kernel) == 0
    assert interior.sum() > 3000 and far.sum() > 8000
    assert np.array_equal(out[interior], _blend(frame[interior], color))
    assert np.array_equal(out[far], frame[far])
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    edge = mask & ~(cv2.erode(mask.astype(np.uint8), cross) > 0)  # mask pixels next to the outside
    assert np.all(out[edge] == color)  # the contour runs on them
    assert not np.shares_memory(out, frame)


def test_boxes_points_and_labels_are_drawn_in_the_object_colour():
    frame = np.full((200, 300, 3), 40, np.uint8)
    out = draw(frame, [Overlay(object_id=1, label="dog", box=(50, 80, 150, 160), points=((220, 100),))])
    color = object_color(1)
    assert np.all(out[120, 50] == color) and np.all(out[159, 120] == color)  # left and bottom edges
    assert np.all(out[120, 100] == 40)  # inside the box stays untouched
    assert np.all(out[100, 220] == color)  # the point's centre
    assert np.any(np.all(out[100 - 7 : 100 + 8, 220 - 7 : 220 + 8] == 255, axis=-1))  # its white ring
    label_bar = out[64:80, 50:72]  # a bar above the box's top-left corner
    assert np.mean(np.all(label_bar == color, axis=-1)) > 0.5
    assert np.any(np.all(label_bar == 0, axis=-1))  # dark text on this light colour


def test_frame_overlays_show_visible_masks_and_the_prompts_of_that_frame(shapes):
    video, clip, masklets = shapes
    hidden = Masklet(
        3, "gone", clip.times_s, masklets[1].rles, masklets[1].scores, np.zeros(len(clip.times_s), bool), ()
    )
    objects = [
        ObjectPrompt(1, "red square", (FramePrompt(1.05, box=(10, 20, 30, 40)), FramePrompt(9.0, box=(1, 2, 3, 4)))),
        ObjectPrompt(4, "cup", (FramePrompt(0.9, points=(PromptPoint(5, 6), PromptPoint(500, 6))),)),
    ]
    overlays = frame_overlays(2, clip, {**masklets, 3: hidden}, objects)  # frame 2 is at 1.0 s
    assert [(o.object_id, o.label) for o in overlays] == [(1, "red square"), (2, "blue circle"), (4, "cup")]
    assert np.array_equal(overlays[0].mask, video.masks(int(clip.frame_indices[2]))[RED_SQUARE])
    assert overlays[0].box == (10, 20, 30, 40) and overlays[1].box is None
    assert overlays[2].mask is None and overlays[2].points == ((5, 6),)  # the point off the frame is not drawn
    last = frame_overlays(len(clip.times_s) - 1, clip, {}, objects)
    assert last == []  # the box at 9 s, after the end of the video, is drawn nowhere


def test_annotated_video_is_h264_at_source_size_and_rate_and_shows_the_masks(shapes, tmp_path):
    video, clip, masklets = shapes
    reports = []
    path = write_video(tmp_path / "annotated.mp4", clip, masklets, progress=lambda f, m: reports.append(f))

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 10
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == video.n_frames == 30
    assert frames[0].shape == (122, 162, 3)  # 161×121 padded to even sides
    assert reports[-1] == 1.0 and len(reports) == 30

    # Source frame 15 (1.5 s) is a sampled frame: the square's inside shows red blended with object 1's colour.
    square = video.masks(15)[RED_SQUARE]
    inside = cv2.erode(square.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    picture = frames[15][:121, :161]
    expected = _blend(np.array(SHAPE_RGB[RED_SQUARE]), object_color(1)).astype(int)
    assert np.abs(picture[inside].mean(axis=0) - expected).max() < 8  # H.264 is lossy: close, not exact
    background = ~(cv2.dilate((square | video.masks(15)[BLUE_CIRCLE]).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0)
    background[: 121 // 6 + 2] = False  # the frame-index band at the top
    assert np.abs(picture[background].mean(axis=0) - np.array(BACKGROUND_RGB)).max() < 4
    # Frame 17 (1.7 s) shows the masks of its nearest sample (1.5 s), where the square was then.
    between = frames[17][:121, :161]
    assert np.abs(between[inside].mean(axis=0) - expected).max() < 12


def test_annotated_video_of_a_rotated_phone_video_is_upright(tmp_path):
    """Masks are in display pixels; the source frames are stored turned and must be turned back to match."""
    video = write_synthetic_video(tmp_path / "phone.mp4", n_frames=20, fps=10.0, size=(96, 160), rotation_deg=90)
    clip = sample(video.path, SamplingConfig(fps=2.0))
    path = write_video(tmp_path / "annotated.mp4", clip, {1: _shape_masklet(video, clip, RED_SQUARE, 1, "red square")})
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 20 and frames[10].shape == (160, 96, 3)
    inside = cv2.erode(video.masks(10)[RED_SQUARE].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    expected = _blend(np.array(SHAPE_RGB[RED_SQUARE]), object_color(1)).astype(int)
    assert np.abs(frames[10][inside].mean(axis=0) - expected).max() < 8


def test_json_of_an_object_has_its_id_label_colour_prompts_and_coco_masks(shapes):
    _, clip, masklets = shapes
    skipped = SkippedPrompt(9.0, "time 9.00 s is outside the video (0–3.00 s)")
    red = masklets[1]
    red = Masklet(1, red.label, red.times_s, red.rles, red.scores, red.visible, (2,), (skipped,))
    obj = GroundedObject(
        1, "red square", boxes=(Box(1.0, 10, 20, 50, 60, "red square"), Box(9.0, 0, 0, 1, 1, "red square")),
        points=(Point(2.0, 80, 90, "red square"),), masklet=red,
    )
    document = json.loads(json.dumps(object_json(obj, masks=True)))

    assert (document["object_id"], document["label"], document["color"]) == (1, "red square", color_hex(object_color(1)))
    assert document["boxes"] == [
        {"t_s": 1.0, "x1": 10, "y1": 20, "x2": 50, "y2": 60},
        {"t_s": 9.0, "x1": 0, "y1": 0, "x2": 1, "y2": 1},
    ]
    assert document["points"] == [{"t_s": 2.0, "x": 80, "y": 90}]
    summary = document["masklet"]
    assert summary["skipped"] == [{"t_s": 9.0, "reason": "time 9.00 s is outside the video (0–3.00 s)"}]
    assert summary["prompt_frames"] == [2]
    assert summary["frames"] == len(clip.times_s) == len(summary["masks"])
    assert summary["times_s"] == pytest.approx(clip.times_s.tolist())
    assert summary["visible"] == [True] * len(clip.times_s) and summary["scores"] == [1.0] * len(clip.times_s)
    for i, mask in enumerate(summary["masks"]):
        assert isinstance(mask["counts"], str)
        assert np.array_equal(Rle.from_coco(mask).decode(), red.mask(i))
    assert "masks" not in object_json(obj)["masklet"]  # the API's summary leaves the masks out


def test_overlay_masks_give_each_visible_frame_a_png_in_its_colour(shapes):
    _, clip, masklets = shapes
    visible = masklets[2].visible.copy()
    visible[0] = False
    circle = Masklet(2, "blue circle", clip.times_s, masklets[2].rles, masklets[2].scores, visible, (0,))
    count = len(clip.times_s)
    frames = overlay_masks(circle, object_color(2), range(0, count + 5), max_side=80)

    assert [f["i"] for f in frames] == list(range(count))  # frames past the clip are left out
    assert frames[0] == {"i": 0, "box": None, "png": None}  # not visible there
    red = overlay_masks(masklets[1], object_color(1), range(1, 2), max_side=80)
    assert [f["i"] for f in red] == [1]
    assert red[0]["box"] == list(masklets[1].box(1))
    header, data = red[0]["png"].split(",", 1)
    assert header == "data:image/png;base64"
    rgba = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)  # [h, w, 4] BGRA
    assert rgba.shape == (60, 80, 4)  # 161×121 scaled to 80 on the longer side
    mask = cv2.resize(masklets[1].mask(1).astype(np.uint8), (80, 60), interpolation=cv2.INTER_AREA) > 0
    assert np.array_equal(rgba[..., 3] > 0, mask)
    assert np.all(rgba[~mask] == 0)
    assert set(np.unique(rgba[mask][:, 3])) <= {round(255 * MASK_OPACITY), 255}  # fill, contour
    assert np.all(rgba[mask][:, 2::-1] == object_color(1))  # BGR back to RGB


# ---- a copy for the browser's player ----------------------------------------------------------------------


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [np.rot90(f.to_ndarray(format="rgb24"), round(f.rotation / 90) % 4) for f in container.decode(video=0)]


@pytest.mark.parametrize(
    ("name", "codec", "rotation_deg"),
    [("shapes.avi", "mjpeg", 0), ("phone.mov", "mjpeg", 90), ("shapes.mkv", "libx265", 0)],
)
def test_a_video_browsers_cannot_play_gets_an_h264_copy_with_the_same_pictures(tmp_path, name, codec, rotation_deg):
    video = write_synthetic_video(tmp_path / name, n_frames=12, fps=10.0, size=(96, 64), codec=codec,
                                  rotation_deg=rotation_deg)  # fmt: skip
    info = probe(video.path)
    assert not browser_plays(info)
    copy = playable_copy(info, tmp_path / "player")
    assert copy == tmp_path / "player" / f"{Path(name).stem}.mp4"
    assert browser_plays(probe(copy))
    with av.open(str(copy)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    source, played = _frames(video.path), _frames(copy)
    assert len(played) == len(source) == 12 and played[0].shape == (64, 96, 3)  # as displayed, upright
    assert np.abs(played[6].astype(int) - source[6].astype(int)).mean() < 6  # the same picture, re-encoded


def test_h264_in_another_container_is_copied_as_it_is_with_its_sound(tmp_path):
    source = tmp_path / "talk.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10:duration=1", "-f", "lavfi",
         "-i", "sine=frequency=440:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "libopus",
         str(source)],
        check=True,
    )  # fmt: skip
    info = probe(source)
    assert info.codec == "h264" and not browser_plays(info)
    copy = playable_copy(info, tmp_path / "player")
    with av.open(str(source)) as original, av.open(str(copy)) as copied:
        assert [s.codec_context.name for s in copied.streams] == ["h264", "aac"]
        first = bytes(next(original.demux(video=0))), bytes(next(copied.demux(video=0)))
    assert first[0] == first[1]  # the video stream is copied, not encoded again


def test_ten_bit_h264_is_encoded_again_at_eight_bits_which_browsers_play(tmp_path):
    video = write_synthetic_video(tmp_path / "ten.mp4", n_frames=12, size=(96, 64), pix_fmt="yuv420p10le")
    info = probe(video.path)
    assert info.codec == "h264" and info.pixel_format == "yuv420p10le" and not browser_plays(info)
    copy = playable_copy(info, tmp_path / "player")
    assert browser_plays(probe(copy)) and probe(copy).pixel_format == "yuv420p"
    source, played = _frames(video.path), _frames(copy)
    assert len(played) == len(source) == 12
    assert np.abs(played[6].astype(int) - source[6].astype(int)).mean() < 6


def test_a_copy_that_cannot_be_made_raises_a_video_error_and_leaves_no_file(tmp_path):
    video = write_synthetic_video(tmp_path / "shapes.avi", n_frames=12, fps=10.0, size=(96, 64), codec="mjpeg")
    info = probe(video.path)
    Path(video.path).write_bytes(b"not a video any more")
    with pytest.raises(VideoError, match="A copy of shapes.avi that browsers play could not be made"):
        playable_copy(info, tmp_path / "player")
    assert list((tmp_path / "player").iterdir()) == []
