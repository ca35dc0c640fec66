"""vidchat.render: overlays drawn in each object's colour, the annotated H.264 video, JSON and UI exports."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vidchat import render
from vidchat.errors import VideoError
from vidchat.grounding import Box, Point
from vidchat.render import (
    CAPTION_BAR_OPACITY,
    CAPTION_EM_FRACTION,
    LABEL_PX_PER_LINE,
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
    srt_text,
    vtt_text,
    write_srt,
    write_video,
    write_vtt,
)
from vidchat.segment import FramePrompt, Masklet, ObjectPrompt, PromptPoint, Rle, SkippedPrompt
from vidchat.session import GroundedObject, object_json
from vidchat.speech import Segment, Word
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
    # Without labels: at this size the circle's label would cover the square's lower edge (labels: see below).
    masklets = {i: dataclasses.replace(m, label="") for i, m in masklets.items()}
    reports = []
    path = write_video(tmp_path / "annotated.mp4", clip, masklets, progress=lambda f, m: reports.append(f))

    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video"]  # the source has no sound: nor has the export
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


# ---- text in any script -------------------------------------------------------------------------------------

NOTO_CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"  # Debian's fonts-noto-cjk (./run installs it)


def _noto(size_px: int) -> ImageFont.FreeTypeFont:
    assert Path(NOTO_CJK).is_file(), "the tests need Debian's fonts-noto-cjk (./run test installs it)"
    return ImageFont.truetype(NOTO_CJK, size_px, index=2)  # the collection's Simplified Chinese face


def _text_mismatch(area: np.ndarray, text: str, font, bar_rgb, ink_rgb) -> float:
    """How far `area` ([h, w, 3]) is from `text` drawn by Pillow with `font` in `ink_rgb` on `bar_rgb`, where
    it fits best: the mean absolute difference of luma over the text's box (0: the same pixels). Luma: the
    glyphs' shapes are there, and H.264 keeps it at full resolution (colour at half)."""
    canvas = Image.new("RGB", (4 * font.size * (len(text) + 2), 3 * font.size), bar_rgb)
    ImageDraw.Draw(canvas).text((font.size, 2 * font.size), text, font=font, fill=ink_rgb, anchor="ls")
    drawn = np.asarray(canvas)
    ink = np.argwhere(np.any(drawn != bar_rgb, axis=-1))
    (y1, x1), (y2, x2) = ink.min(axis=0), ink.max(axis=0) + 1
    template = cv2.cvtColor(drawn[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY).astype(np.float32)  # the glyphs' box
    area = cv2.cvtColor(np.ascontiguousarray(area), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if template.shape[0] > area.shape[0] or template.shape[1] > area.shape[1]:
        return float("inf")
    scores = cv2.matchTemplate(area, template, cv2.TM_SQDIFF)
    y, x = np.unravel_index(np.argmin(scores), scores.shape)
    return float(np.abs(area[y : y + template.shape[0], x : x + template.shape[1]] - template).mean())


def _wrong_renderings(text: str, font) -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """What a font without the script shows: question marks (OpenCV's Hershey font did that), or boxes."""
    return [("?" * len(text), font), (text, ImageFont.load_default(font.size))]


def test_a_chinese_label_is_drawn_with_the_glyphs_of_its_script():
    frame = np.full((540, 640, 3), 128, np.uint8)  # 2 px lines at 540p: a 24 px label
    out = draw(frame, [Overlay(object_id=1, label="红色方块", box=(100, 150, 300, 300))])
    color = object_color(1)
    area = out[100:150, 96:260]  # above the box's top-left corner
    assert np.mean(np.all(area == color, axis=-1)) > 0.2  # the bar in the object's colour
    font = _noto(LABEL_PX_PER_LINE * 2)
    assert _text_mismatch(area, "红色方块", font, color, (0, 0, 0)) < 0.5  # the same pixels as Pillow draws
    for wrong, wrong_font in _wrong_renderings("红色方块", font):
        assert _text_mismatch(area, wrong, wrong_font, color, (0, 0, 0)) > 15


def test_labels_with_any_characters_are_drawn_and_bounded():
    """Labels are the model's words: control characters, half a surrogate pair, a thousand letters."""
    frame = np.full((200, 300, 3), 40, np.uint8)

    def drawn(label: str) -> np.ndarray:
        return draw(frame, [Overlay(object_id=5, label=label, box=(20, 60, 120, 160))])

    assert np.array_equal(drawn("a\x00b\tc\nd"), drawn("a b c d"))  # controls are spaces
    assert np.array_equal(drawn("cup \ud800"), drawn("cup ?"))  # FreeType cannot take a lone surrogate
    assert np.array_equal(drawn("x" * 1000), drawn("x" * 47 + "…"))  # at most 48 characters
    for label in ("\u202ecup", "🎬" * 60, "a" + "\u0301" * 40, "مرحبا", "\uffff\U0010ffff"):
        assert not np.array_equal(drawn(label), frame)
    white = np.all(drawn("cup") == 255, axis=-1)  # light ink on this dark blue
    assert white[40:60, 20:60].any() and not white[:40].any() and not white[60:].any()


def test_without_a_cjk_font_labels_are_drawn_with_pillows_font_and_a_warning_said_once(monkeypatch):
    monkeypatch.setattr(render, "FONT_FILES", ("/nonexistent/NotoSansCJK-Regular.ttc",))
    render._font_source.cache_clear()
    render._text_font.cache_clear()
    try:
        frame = np.full((200, 300, 3), 40, np.uint8)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            first = draw(frame, [Overlay(object_id=1, label="dog", box=(50, 80, 150, 160))])
            draw(frame, [Overlay(object_id=1, label="红色方块", box=(50, 80, 150, 160))])
        assert [str(w.message) for w in said if "fonts-noto-cjk" in str(w.message)] == [
            str(said[0].message)
        ]  # once
        assert said[0].category is RuntimeWarning and "fonts-noto-cjk" in str(said[0].message)
        area = first[55:80, 46:120]
        assert _text_mismatch(area, "dog", ImageFont.load_default(LABEL_PX_PER_LINE), object_color(1), (0, 0, 0)) < 0.5
    finally:
        render._font_source.cache_clear()
        render._text_font.cache_clear()


@pytest.fixture(scope="module")
def labelled_export(tmp_path_factory):
    """A 640×540 export (2 px lines: 24 px labels) whose red square is labelled in Chinese."""
    folder = tmp_path_factory.mktemp("labelled")
    video = write_synthetic_video(folder / "shapes.mp4", n_frames=10, fps=10.0, size=(640, 540))
    clip = sample(video.path, SamplingConfig(fps=10.0, max_pixels=160 * 135, min_pixels=160 * 135))
    masklets = {1: _shape_masklet(video, clip, RED_SQUARE, 1, "红色方块")}
    return video, _frames(write_video(folder / "annotated.mp4", clip, masklets))


def test_an_exported_frame_shows_a_chinese_label_in_its_glyphs(labelled_export):
    video, frames = labelled_export
    x1, y1, _, _ = video.boxes[RED_SQUARE][5]
    area = frames[5][max(y1 - 45, 0) : y1 + 5, max(x1 - 5, 0) : x1 + 160]  # the bar above the square
    font = _noto(LABEL_PX_PER_LINE * 2)
    color = object_color(1)
    right = _text_mismatch(area, "红色方块", font, color, (0, 0, 0))
    assert right < 8  # H.264 is lossy: close, not exact
    for wrong, wrong_font in _wrong_renderings("红色方块", font):
        assert _text_mismatch(area, wrong, wrong_font, color, (0, 0, 0)) > 2.5 * right + 10


# ---- burned captions ----------------------------------------------------------------------------------------


GREY = (128, 128, 128)


def _grey_video(path: Path, size: tuple[int, int], seconds: float) -> Path:
    """A plain grey picture at 10 fps: what is drawn on it is all there is to see."""
    source = f"color=c=0x808080:size={size[0]}x{size[1]}:rate=10:duration={seconds}"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)  # fmt: skip
    return path


def _bar_rgb(background) -> tuple[int, ...]:
    """The caption bar's colour over a plain background: black at CAPTION_BAR_OPACITY."""
    opacity_256 = round(CAPTION_BAR_OPACITY * 256)
    return tuple(int(c) for c in (np.array(background) * (256 - opacity_256) + 128) >> 8)


def test_an_exported_frame_shows_the_line_spoken_at_its_time_burned_in(tmp_path):
    video = _grey_video(tmp_path / "grey.mp4", (640, 540), 1.0)  # 27 px captions at 540p
    clip = sample(str(video), SamplingConfig(fps=2.0))
    captions = [
        Segment(0.0, 0.45, "你好，世界", (Word(0.0, 0.2, "你好"), Word(0.25, 0.45, "世界"))),
        Segment(0.45, 0.8, "第二句话"),
    ]
    frames = _frames(write_video(tmp_path / "annotated.mp4", clip, {}, captions=captions))
    font = _noto(round(540 * CAPTION_EM_FRACTION))
    bar = _bar_rgb(GREY)
    bottom = [frame[400:] for frame in frames]  # [140, 640, 3]
    for index, line, other in ((2, "你好，世界", "第二句话"), (6, "第二句话", "你好，世界")):
        right = _text_mismatch(bottom[index], line, font, bar, (255, 255, 255))
        assert right < 8  # H.264 is lossy: close, not exact
        assert _text_mismatch(bottom[index], other, font, bar, (255, 255, 255)) > 2.5 * right + 10
        for wrong, wrong_font in _wrong_renderings(line, font):
            assert _text_mismatch(bottom[index], wrong, wrong_font, bar, (255, 255, 255)) > 2.5 * right + 10
    # At 0.9 s nobody speaks: the bottom is the plain picture.
    assert np.abs(bottom[9].astype(int) - np.array(GREY)).max() < 6


def test_a_long_caption_wraps_within_the_frame_in_at_most_three_lines(tmp_path):
    video = _grey_video(tmp_path / "grey.mp4", (320, 240), 1.0)
    clip = sample(str(video), SamplingConfig(fps=2.0))
    words = "every word of this caption is said in a sentence far too long for one line of the frame " * 3
    captions = [Segment(0.0, 0.5, "short"), Segment(0.5, 1.0, words), Segment(1.0, 1.0, "never shown")]
    frames = _frames(write_video(tmp_path / "annotated.mp4", clip, {}, captions=captions))
    bar = np.array(_bar_rgb(GREY))

    def bar_rows_and_width(frame: np.ndarray) -> tuple[int, int]:
        on_bar = np.all(np.abs(frame[120:].astype(int) - bar) < 12, axis=-1)  # [120, 320]
        rows, cols = np.flatnonzero(on_bar.sum(axis=1) > 6), np.flatnonzero(on_bar.any(axis=0))
        return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1

    short_h, short_w = bar_rows_and_width(frames[2])
    long_h, long_w = bar_rows_and_width(frames[7])
    assert short_w < 80 and 300 <= long_w <= 320  # the long one as wide as the frame allows
    assert 2 * short_h < long_h < 3 * short_h  # three lines (the last ending in "…"), not two or four


# ---- the source's sound in the export --------------------------------------------------------------------------

BURST_S = 1.0  # a 1 kHz tone from 1.0 s to 1.2 s of the audio's own clock, silence around it
_TONE = "aevalsrc=if(between(t\\,1\\,1.2)\\,0.5*sin(2*PI*1000*t)\\,0):s={rate}:c={layout}:d=2.5"


def _toned_video(path: Path, video_codec: str, audio_codec: str, rate: int = 44100, layout: str = "mono",
                 video_offset_s: float = 0.0, audio_offset_s: float = 0.0) -> Path:  # fmt: skip
    """A 2 s test picture at 25 fps with the tone burst; the offsets delay the video's or the audio's start in
    the file (their packets' timestamps), as cameras, streams and editors leave them."""
    command = ["ffmpeg", "-v", "error", "-itsoffset", str(video_offset_s), "-f", "lavfi", "-i",
               "testsrc=size=96x64:rate=25:duration=2", "-itsoffset", str(audio_offset_s), "-f", "lavfi", "-i",
               _TONE.format(rate=rate, layout=layout), "-c:v", video_codec, "-pix_fmt", "yuv420p",
               "-c:a", audio_codec, str(path)]  # fmt: skip
    subprocess.run(command, check=True)
    return path


def _burst_s(path) -> float:
    """Seconds from the video stream's first frame to the start of the tone, as a player plays the file."""
    with av.open(str(path)) as container:
        first_frame_s = float(next(container.decode(video=0)).time)
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        start_s, chunks = None, []
        for frame in container.decode(audio=0):
            for mono in resampler.resample(frame):
                start_s = float(mono.time) if start_s is None else start_s
                chunks.append(mono.to_ndarray()[0])
    loud = np.flatnonzero(np.abs(np.concatenate(chunks)) > 0.25)  # the tone is at 0.5
    return start_s + loud[0] / 48000 - first_frame_s


def _packets(path, kind: str) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(getattr(container.streams, kind)[0]) if p.size]


@pytest.mark.parametrize(
    ("name", "video_codec", "audio_codec", "options", "codec", "rate", "channels", "copied"),
    [
        ("aac.mp4", "libx264", "aac", {}, "aac", 44100, 1, True),  # AAC's priming in the source
        ("late_picture.mkv", "libx264", "libopus", {"video_offset_s": 0.5, "rate": 48000}, "opus", 48000, 1, True),
        ("late_sound.mkv", "libx264", "libmp3lame", {"audio_offset_s": 0.3}, "mp3", 44100, 1, True),
        ("pcm.mov", "libx264", "pcm_s16le", {"audio_offset_s": 0.25}, "aac", 44100, 1, False),
        ("surround.mov", "libx264", "pcm_s24le", {"rate": 192000, "layout": "5.1"}, "aac", 48000, 2, False),
        ("vorbis.webm", "libvpx", "libvorbis", {"video_offset_s": 0.3}, "aac", 44100, 1, False),
    ],
)
def test_the_export_keeps_the_sound_in_time_with_the_picture(
    tmp_path, name, video_codec, audio_codec, options, codec, rate, channels, copied
):
    """Copied where an mp4 holds the codec and browsers play it, else encoded to AAC; either way the tone is where
    it was relative to the first frame (measured from the video's first frame, whichever stream starts first)."""
    source = _toned_video(tmp_path / name, video_codec, audio_codec, **options)
    offset = options.get("audio_offset_s", 0.0) - options.get("video_offset_s", 0.0)
    assert _burst_s(source) == pytest.approx(BURST_S + offset, abs=0.03)  # (x264's first frame is not at 0 in MKV)
    clip = sample(str(source), SamplingConfig(fps=2.0))
    path = write_video(tmp_path / "annotated.mp4", clip, {})

    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        audio = container.streams.audio[0].codec_context
        assert (audio.codec.canonical_name, audio.sample_rate, audio.channels) == (codec, rate, channels)
    assert _burst_s(path) == pytest.approx(_burst_s(source), abs=0.02)  # half a frame at 25 fps
    source_packets, exported_packets = set(_packets(source, "audio")), set(_packets(path, "audio"))
    assert exported_packets
    if copied:  # every packet is one of the source's, byte for byte (those long before the first frame are cut)
        assert exported_packets <= source_packets
    else:
        assert not exported_packets & source_packets


@pytest.mark.parametrize("damage", ["codec setup", "unknown codec"])
def test_sound_that_cannot_be_decoded_leaves_the_export_silent(tmp_path, damage):
    if damage == "codec setup":  # Vorbis whose setup headers are broken: FFmpeg knows the codec, no packet decodes
        source = _toned_video(tmp_path / "vorbis.webm", "libvpx", "libvorbis")
        renames = [(b"\x01vorbis", b"\x01broken"), (b"\x05vorbis", b"\x05broken")]
    else:  # a Matroska codec id FFmpeg does not know
        source = _toned_video(tmp_path / "pcm.mkv", "libx264", "pcm_s16le")
        renames = [(b"A_PCM/INT/LIT", b"A_NOT/A/CODEC")]
    data = source.read_bytes()
    for old, new in renames:
        assert data.count(old) == 1
        data = data.replace(old, new)
    source.write_bytes(data)
    clip = sample(str(source), SamplingConfig(fps=2.0))
    path = write_video(tmp_path / "annotated.mp4", clip, {})
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video"]
        assert len(list(container.decode(video=0))) == 50


def test_damaged_sound_packets_become_silence_and_the_rest_stays_in_time(tmp_path):
    good = _toned_video(tmp_path / "good.webm", "libvpx", "libvorbis")
    source = tmp_path / "damaged.webm"
    rng = np.random.default_rng(0)
    with av.open(str(good)) as original, av.open(str(source), "w") as damaged:
        streams = {s.index: damaged.add_stream_from_template(s) for s in original.streams}
        for packet in original.demux():
            if packet.size == 0:
                continue
            stream = streams[packet.stream.index]
            if stream.type == "audio" and 0.2 <= packet.pts * packet.time_base < 0.6:  # bytes of noise instead
                garbage = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                garbage.pts, garbage.dts, garbage.duration = packet.pts, packet.dts, packet.duration
                garbage.time_base, packet = packet.time_base, garbage
            packet.stream = stream
            damaged.mux(packet)
    clip = sample(str(source), SamplingConfig(fps=2.0))
    path = write_video(tmp_path / "annotated.mp4", clip, {})
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    assert _burst_s(path) == pytest.approx(BURST_S, abs=0.02)


# ---- transcript files ------------------------------------------------------------------------------------------

LINES = [
    Segment(1.0, 2.5, "Salt & pepper <to taste>", (Word(1.0, 1.4, "Salt"),)),
    Segment(3723.4567, 3725.0, "第一行\n\n  second line -->  \r\nthird"),
    Segment(4000.0, 4001.0, " \n "),  # nothing to show: no cue
    Segment(-0.2, 0.0004, "\x00before \ud800"),
]


def test_webvtt_escapes_its_markup_and_keeps_every_cue_whole(tmp_path):
    expected = (
        "WEBVTT\n"
        "\n"
        "00:00:01.000 --> 00:00:02.500\n"
        "Salt &amp; pepper &lt;to taste&gt;\n"
        "\n"
        "01:02:03.457 --> 01:02:05.000\n"
        "第一行\n"
        "second line --&gt;\n"
        "third\n"
        "\n"
        "00:00:00.000 --> 00:00:00.000\n"
        "before ?\n"
    )
    assert vtt_text(LINES) == expected
    assert write_vtt(tmp_path / "t.vtt", LINES).read_text(encoding="utf-8") == expected
    assert vtt_text([]) == "WEBVTT\n"


def test_subrip_numbers_its_cues_with_comma_milliseconds(tmp_path):
    expected = (
        "1\n"
        "00:00:01,000 --> 00:00:02,500\n"
        "Salt & pepper <to taste>\n"
        "\n"
        "2\n"
        "01:02:03,457 --> 01:02:05,000\n"
        "第一行\n"
        "second line ->\n"
        "third\n"
        "\n"
        "3\n"
        "00:00:00,000 --> 00:00:00,000\n"
        "before ?\n"
    )
    assert srt_text(LINES) == expected
    assert write_srt(tmp_path / "t.srt", LINES).read_text(encoding="utf-8") == expected
    assert srt_text([]) == ""
