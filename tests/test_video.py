"""vidchat.video on synthetic videos whose every frame carries its own index and known shapes."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidchat.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    UnsupportedCodecError,
    VideoError,
    VideoTooLargeError,
    VideoTooLongError,
)
from vidchat import video
from vidchat.testing import videos
from vidchat.video import SamplingConfig, VideoLimits, choose_frames, frame_size, probe, sample

MS = 1e-3

CODECS = {  # name → (file suffix, write_video arguments)
    "h264-mp4": (".mp4", dict(codec="libx264")),
    "vp9-webm": (".webm", dict(codec="libvpx-vp9")),
    "mjpeg-avi": (".avi", dict(codec="mjpeg")),
    "hevc-mp4": (".mp4", dict(codec="libx265")),
    "h264-mkv": (".mkv", dict(codec="libx264")),
    "h264-mp4-odd": (".mp4", dict(codec="libx264", size=(161, 97))),
    "hevc-mp4-odd": (".mp4", dict(codec="libx265", size=(161, 97))),
    "vp9-webm-odd": (".webm", dict(codec="libvpx-vp9", size=(161, 97))),
    "mjpeg-avi-odd": (".avi", dict(codec="mjpeg", size=(161, 97))),
    "h264-mp4-29.97fps": (".mp4", dict(codec="libx264", fps=30000 / 1001, n_frames=40)),
    "h264-mov": (".mov", dict(codec="libx264")),
    "prores-mov": (".mov", dict(codec="prores_ks", pix_fmt="yuv422p10le")),
    "mpeg4-mp4": (".mp4", dict(codec="mpeg4", pix_fmt="yuv420p")),
    "h264-flv": (".flv", dict(codec="libx264")),
    "wmv2-asf": (".wmv", dict(codec="wmv2", pix_fmt="yuv420p")),
    "h264-ts": (".ts", dict(codec="libx264")),
    "h264-m2ts": (".m2ts", dict(codec="libx264")),
    "mpeg2-ps": (".mpg", dict(codec="mpeg2video", pix_fmt="yuv420p")),
    "mpeg1-ps": (".mpg", dict(codec="mpeg1video", fps=25, pix_fmt="yuv420p")),
    "mpeg2-mxf": (".mxf", dict(codec="mpeg2video", fps=25, pix_fmt="yuv420p")),
    "h263-3gp": (".3gp", dict(codec="h263", size=(176, 144))),
    "flv1-flv": (".flv", dict(codec="flv")),
    "gif": (".gif", dict(codec="gif", pix_fmt="rgb8")),
    "apng": (".apng", dict(codec="apng", pix_fmt="rgb24")),
    "h264-10bit-mp4": (".mp4", dict(codec="libx264", pix_fmt="yuv420p10le")),
    "hevc-10bit-mkv": (".mkv", dict(codec="libx265", pix_fmt="yuv420p10le")),
    "av1-mp4": (".mp4", dict(codec="libsvtav1")),
    # These containers store decode times: with B-frames the decoded frames' own times are wrong.
    "h264-b-frames-avi": (".avi", dict(codec="libx264")),
    "h264-b-frames-asf": (".wmv", dict(codec="libx264")),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def h264(folder) -> videos.SyntheticVideo:
    """2 s at 10 fps, 64×48."""
    return videos.write_video(folder / "h264.mp4", n_frames=20, fps=10)


def frame_numbers(clip) -> list[int]:
    return [videos.read_frame_index(frame) for frame in clip.frames]


def assert_nearest_to_targets(chosen: np.ndarray, starts_s: np.ndarray, targets_s: np.ndarray) -> None:
    """Every target is served by its nearest frame, and every chosen frame serves some target (ties allowed)."""
    distance = np.abs(targets_s[:, None] - starts_s[None, :])  # [T, N]
    nearest = distance.min(axis=1)  # [T]
    served = distance[:, chosen]  # [T, C]
    assert np.all(served.min(axis=1) <= nearest + 1e-9)
    assert np.all((served <= nearest[:, None] + 1e-9).any(axis=0))


def expected_targets(duration_s: float, frame_count: int, sampling: SamplingConfig) -> np.ndarray | None:
    """The spec: T = clamp(ceil(duration * fps)); targets k / fps, spread over the duration when clamped."""
    wanted = max(1, math.ceil(duration_s * sampling.fps - 1e-6))
    count = min(max(wanted, sampling.min_frames), sampling.max_frames)
    if count >= frame_count:
        return None
    step = 1 / sampling.fps if count == wanted else duration_s / count
    return np.arange(count) * step


# ---- codecs, times, frames ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CODECS))
def test_every_codec_decodes_the_right_frames_at_their_true_times(folder, name):
    suffix, arguments = CODECS[name]
    synthetic = videos.write_video(folder / f"{name}{suffix}", **{"n_frames": 20, **arguments})

    clip = sample(synthetic.path, SamplingConfig(fps=4))

    assert (clip.info.width, clip.info.height) == (synthetic.width, synthetic.height)
    assert clip.frames.shape == (len(clip.frame_indices), synthetic.height, synthetic.width, 3)
    assert clip.frames.dtype == np.uint8
    assert frame_numbers(clip) == clip.frame_indices.tolist()
    np.testing.assert_allclose(clip.times_s, synthetic.pts_s[clip.frame_indices], atol=MS)
    assert clip.info.frame_count == synthetic.n_frames


def test_odd_sizes_use_a_chroma_layout_that_allows_them(folder):
    synthetic = videos.write_video(folder / "odd.mp4", size=(161, 97))
    with av.open(synthetic.path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.pix_fmt, stream.width, stream.height) == ("yuv444p", 161, 97)


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".webm", "libvpx-vp9"), (".mkv", "libx265")])
def test_variable_frame_rate_times_are_the_true_pts_and_frames_the_nearest(folder, suffix, codec):
    gaps_ms = np.random.default_rng(1).integers(5, 400, 59)  # irregular: 5 ms to 0.4 s between frames
    pts_s = np.concatenate([[0], np.cumsum(gaps_ms)]) / 1000
    synthetic = videos.write_video(folder / f"vfr{suffix}", n_frames=60, codec=codec, pts_s=pts_s)
    sampling = SamplingConfig(fps=3, min_frames=4)

    clip = sample(synthetic.path, sampling)

    assert frame_numbers(clip) == clip.frame_indices.tolist()
    np.testing.assert_allclose(clip.times_s, synthetic.pts_s[clip.frame_indices], atol=MS)
    assert clip.info.duration_s == pytest.approx(synthetic.pts_s[-1], abs=0.5)
    targets = expected_targets(clip.info.duration_s, synthetic.n_frames, sampling)
    assert_nearest_to_targets(clip.frame_indices, synthetic.pts_s, targets)
    assert len(clip.frame_indices) <= len(targets)


def test_times_start_at_the_first_frame_and_are_spaced_by_the_sampling_rate(h264):
    clip = sample(h264.path, SamplingConfig(fps=2))
    assert clip.frame_indices.tolist() == [0, 5, 10, 15]
    np.testing.assert_allclose(clip.times_s, [0.0, 0.5, 1.0, 1.5], atol=MS)
    assert clip.times_s.dtype == np.float64 and clip.frame_indices.dtype == np.int64


@pytest.mark.parametrize(
    "n_frames, sampling, expected_count",
    [
        (20, SamplingConfig(fps=2), 4),  # 2 s × 2 fps
        (20, SamplingConfig(fps=5), 10),
        (20, SamplingConfig(fps=0.5), 4),  # round(1) raised to min_frames
        (20, SamplingConfig(fps=0.5, min_frames=6), 6),
        (60, SamplingConfig(fps=5, max_frames=10), 10),  # round(30) lowered to max_frames
        (20, SamplingConfig(fps=30), 20),  # more targets than frames: every frame
        (3, SamplingConfig(fps=2), 3),  # min_frames above the frame count: every frame
    ],
)
def test_frame_counts_respect_fps_and_bounds(folder, n_frames, sampling, expected_count):
    synthetic = videos.write_video(folder / f"count{n_frames}.mp4", n_frames=n_frames, fps=10)
    clip = sample(synthetic.path, sampling)
    assert len(clip.frame_indices) == expected_count
    assert frame_numbers(clip) == clip.frame_indices.tolist()
    targets = expected_targets(clip.info.duration_s, n_frames, sampling)
    if targets is None:
        assert clip.frame_indices.tolist() == list(range(n_frames))
    else:
        assert_nearest_to_targets(clip.frame_indices, synthetic.pts_s, targets)


@pytest.mark.parametrize("n_frames", [289, 199])  # 9.64 s and 6.64 s of 29.97 fps, as cameras record
@pytest.mark.parametrize(
    "sampling", [SamplingConfig(fps=2), SamplingConfig(fps=1), SamplingConfig(fps=0.3), SamplingConfig(fps=2, max_frames=7)]
)
def test_the_sampling_reaches_the_end_of_the_clip(folder, n_frames, sampling):
    synthetic = videos.write_video(folder / f"end{n_frames}.mp4", n_frames=n_frames, fps=30000 / 1001)
    clip = sample(synthetic.path, sampling)
    assert frame_numbers(clip) == clip.frame_indices.tolist()
    count, step_s = video.sampling_grid(clip.info.duration_s, n_frames, sampling)
    # the last sampled frame is within one sampling interval of the last frame ("what happens at the end?")
    assert synthetic.pts_s[-1] - clip.times_s[-1] <= step_s + MS
    assert len(clip.frame_indices) <= count
    if sampling == SamplingConfig(fps=2):  # 0 … 9.5 s (or 6.5 s) at 2 fps: rounding stopped at 9.0 s (6.5 s)
        assert clip.times_s[-1] == pytest.approx(math.floor(synthetic.pts_s[-1] * 2) / 2, abs=0.02)


def test_clamped_counts_spread_over_the_whole_video(folder):
    synthetic = videos.write_video(folder / "long.mp4", n_frames=60, fps=10)  # 6 s
    clip = sample(synthetic.path, SamplingConfig(fps=5, max_frames=10))
    np.testing.assert_allclose(clip.times_s, np.arange(10) * 0.6, atol=MS)


def test_frames_held_over_a_gap_are_kept_once():
    starts_s = np.array([0.0, 0.1, 0.2, 0.3, 3.0, 3.1, 3.2, 3.3])
    # 7 targets 0, 0.5 … 3 s: those in the gap all fall to frame 3 or frame 4
    assert choose_frames(starts_s, 3.4, SamplingConfig(fps=2)).tolist() == [0, 3, 4]


@settings(max_examples=200, deadline=None)
@given(
    gaps_ms=st.lists(st.integers(1, 2000), min_size=0, max_size=80),
    last_ms=st.integers(0, 2000),
    fps=st.floats(0.05, 40),
    min_frames=st.integers(1, 8),
    extra_frames=st.integers(0, 40),
)
def test_choose_frames_picks_unique_nearest_frames(gaps_ms, last_ms, fps, min_frames, extra_frames):
    starts_s = np.concatenate([[0], np.cumsum(gaps_ms)]) / 1000
    duration_s = starts_s[-1] + last_ms / 1000
    sampling = SamplingConfig(fps=fps, min_frames=min_frames, max_frames=min_frames + extra_frames)

    chosen = choose_frames(starts_s, duration_s, sampling)

    assert chosen.dtype == np.int64
    assert np.all(np.diff(chosen) > 0) and 0 <= chosen[0] and chosen[-1] < len(starts_s)
    targets = expected_targets(duration_s, len(starts_s), sampling)
    if targets is None:
        assert chosen.tolist() == list(range(len(starts_s)))
        return
    assert len(chosen) <= len(targets) <= sampling.max_frames
    step_s = targets[1] - targets[0] if len(targets) > 1 else duration_s
    # the whole clip is covered: the last chosen frame is within one sampling step of the last frame
    assert starts_s[-1] - starts_s[chosen[-1]] <= step_s + 1e-9
    nearest = np.unique(np.abs(targets[:, None] - starts_s[None, :]).argmin(axis=1))
    if chosen[-1] in nearest:
        assert_nearest_to_targets(chosen, starts_s, targets)
        return
    # the last frame stood in for the end: added to the nearest frames, or in place of the last target's one
    assert chosen[-1] == len(starts_s) - 1
    added = len(chosen) == len(nearest) + 1
    assert_nearest_to_targets(chosen[:-1], starts_s, targets if added else targets[:-1])


# ---- pixel budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampling, budget",
    [
        (SamplingConfig(fps=2, max_pixels=9000, min_pixels=100), 9000),
        (SamplingConfig(fps=2, max_pixels=50_000, min_pixels=100, total_pixels=4 * 5000), 5000),  # T = 4
        (SamplingConfig(fps=2, max_pixels=50_000, min_pixels=3000, total_pixels=4 * 1000), 3000),  # floor
    ],
)
def test_frames_fit_the_pixel_budget_and_keep_the_aspect_ratio(folder, sampling, budget):
    synthetic = videos.write_video(folder / "vga.mp4", n_frames=20, size=(320, 240))
    clip = sample(synthetic.path, sampling)
    _, height, width, _ = clip.frames.shape
    assert len(clip.frames) == 4
    assert width * height <= budget
    assert width * height > budget * 0.95  # as large as the budget allows
    assert abs(width / height - 320 / 240) < 320 / 240 * (1 / height + 1 / width)
    assert frame_numbers(clip) == clip.frame_indices.tolist()


def test_small_frames_are_never_upscaled(h264):
    clip = sample(h264.path, SamplingConfig(fps=2, min_pixels=100_000, max_pixels=200_000))
    assert clip.frames.shape[1:] == (48, 64, 3)


@pytest.mark.parametrize("width, height", [(1920, 1080), (1080, 1920), (161, 97), (7680, 4320), (3, 1000)])
@pytest.mark.parametrize("frame_count", [1, 16, 768])
def test_frame_size_is_within_budget_with_the_same_aspect(width, height, frame_count):
    sampling = SamplingConfig()
    budget = max(min(sampling.max_pixels, sampling.total_pixels / frame_count), sampling.min_pixels)
    new_width, new_height = frame_size(width, height, frame_count, sampling)
    assert new_width <= width and new_height <= height
    assert new_width * new_height <= max(budget, 1)
    scale = new_width / width
    assert abs(new_height - height * scale) <= 1 + height / width


# ---- rotation, shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("rotation_deg", [90, -90, 180])
def test_rotated_videos_come_upright_at_display_size(folder, rotation_deg):
    synthetic = videos.write_video(folder / f"rot{rotation_deg}.mp4", size=(48, 64), rotation_deg=rotation_deg)
    info = probe(synthetic.path)
    assert (info.width, info.height) == (48, 64)
    clip = sample(synthetic.path, SamplingConfig(fps=2))
    assert clip.frames.shape[1:] == (64, 48, 3)
    assert frame_numbers(clip) == clip.frame_indices.tolist()
    assert_shapes_where_recorded(synthetic, clip)


@pytest.mark.parametrize("width", [16, 24, 48, 72])
def test_narrow_videos_decode(folder, width):
    # decord 0.6.0 fails on these widths unless asked for a larger output
    synthetic = videos.write_video(folder / f"narrow{width}.mp4", size=(width, 64))
    clip = sample(synthetic.path, SamplingConfig(fps=2))
    assert clip.frames.shape == (4, 64, width, 3)
    if width >= 48:  # wide enough for the index cells
        assert frame_numbers(clip) == clip.frame_indices.tolist()


def assert_shapes_where_recorded(synthetic: videos.SyntheticVideo, clip) -> None:
    for frame, index in zip(clip.frames, clip.frame_indices):
        red = (frame[..., 0] > 150) & (frame[..., 2] < 100)  # [h, w]
        blue = (frame[..., 2] > 150) & (frame[..., 0] < 100)
        masks = synthetic.masks(index)
        for found, name in ((red, videos.RED_SQUARE), (blue, videos.BLUE_CIRCLE)):
            overlap = (found & masks[name]).sum() / (found | masks[name]).sum()
            assert overlap > 0.7, (name, index, overlap)


@pytest.mark.parametrize("suffix", [".mp4", ".ts", ".mkv", ".avi"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_frames_across_many_keyframes_are_exact_with_any_number_of_decoding_threads(folder, monkeypatch, suffix, workers):
    # 12 keyframes with B-frames between; a transport stream's seeks land a keyframe late, AVI has no times.
    synthetic = videos.write_video(
        folder / f"gops{suffix}", n_frames=300, fps=25, codec_options={"g": "25", "bf": "2"}
    )
    monkeypatch.setattr(video, "_cpu_count", lambda: workers)
    monkeypatch.setattr(video, "_MIN_FRAMES_PER_WORKER", 1)
    clip = sample(synthetic.path, SamplingConfig(fps=7, max_frames=1000))
    assert not clip.keyframes_only and len(clip.frame_indices) == 84
    assert frame_numbers(clip) == clip.frame_indices.tolist()
    np.testing.assert_allclose(clip.times_s, synthetic.pts_s[clip.frame_indices], atol=MS)


@pytest.mark.parametrize("suffix", [".mp4", ".ts", ".avi"])
def test_a_long_sparse_sampling_takes_the_nearest_keyframes_at_their_true_times(folder, monkeypatch, suffix):
    synthetic = videos.write_video(folder / f"sparse{suffix}", n_frames=400, fps=25, codec_options={"g": "20"})
    with av.open(synthetic.path) as container:
        keyframes = [i for i, packet in enumerate(sorted(
            (p for p in container.demux(video=0) if p.size), key=lambda p: p.pts)) if packet.is_keyframe]
    monkeypatch.setattr(video, "_EXACT_DECODE_BUDGET_PIXELS", 0)  # as if the video were long
    clip = sample(synthetic.path, SamplingConfig(fps=1.5))  # 24 targets, 20 keyframes
    assert clip.keyframes_only
    # keyframes, and the last frame decoded exactly: the keyframe nearest the last target (15.33 s) is 380 (15.2 s),
    # more than a step (0.67 s) before the last frame (15.96 s), whose end would go unseen
    assert clip.frame_indices[-2:].tolist() == [380, 399] and 399 not in keyframes
    assert set(clip.frame_indices[:-1].tolist()) <= set(keyframes) and len(clip.frame_indices) >= 12
    assert frame_numbers(clip) == clip.frame_indices.tolist()
    np.testing.assert_allclose(clip.times_s, synthetic.pts_s[clip.frame_indices], atol=MS)
    dense = sample(synthetic.path, SamplingConfig(fps=10))  # 160 targets: keyframes would keep too few
    assert not dense.keyframes_only and len(dense.frame_indices) == 160


def _index(times_s: list[float], keyframe_every: int) -> video.FrameIndex:
    pts = np.round(np.asarray(times_s) * 1000).astype(np.int64)
    keyframe = np.arange(len(pts)) % keyframe_every == 0
    return video.FrameIndex(pts, keyframe, Fraction(1, 1000), float(times_s[-1]) + 0.04, counted=False)


@pytest.mark.parametrize(
    "keyframe_every, wanted_every, pixels, expected",
    [
        (250, 140, 1280 * 720, True),  # an hour at 768 frames: exact frames decode ~90 per frame
        (250, 15, 1280 * 720, False),  # 2 fps: keyframes would keep 1 frame in 17
        (30, 15, 1280 * 720, False),  # a minute: exact frames decode few enough
        (250, 140, 64 * 48, False),  # tiny frames decode fast: exact
        (8, 140, 1280 * 720, False),  # keyframes close together: exact frames cost little more
    ],
)
def test_keyframes_stand_in_only_when_exact_frames_cost_far_more(keyframe_every, wanted_every, pixels, expected):
    index = _index(list(np.arange(108_000 if wanted_every == 140 else 1800) / 30), keyframe_every)
    wanted = np.arange(0, len(index.pts), wanted_every)
    chosen = video.keyframes_instead(index, wanted, pixels)
    assert (chosen is not None) == expected
    if chosen is not None:
        assert np.all(index.keyframe[chosen]) and 2 * len(chosen) >= len(wanted)
        # each is the keyframe nearest some wanted frame
        keys = np.flatnonzero(index.keyframe)
        nearest = keys[np.abs(keys[None, :] - wanted[:, None]).argmin(axis=1)]
        assert set(chosen.tolist()) == set(nearest.tolist())


def test_shapes_move_and_are_drawn_in_their_boxes(folder):
    synthetic = videos.write_video(folder / "shapes.mp4", n_frames=20, size=(160, 120))
    clip = sample(synthetic.path, SamplingConfig(fps=4))
    assert_shapes_where_recorded(synthetic, clip)
    square, circle = synthetic.boxes[videos.RED_SQUARE], synthetic.boxes[videos.BLUE_CIRCLE]
    assert square[0, 0] == 0 and square[-1, 2] == 160 and np.all(np.diff(square[:, 0]) >= 0)
    assert circle[-1, 3] == 120 and np.all(np.diff(circle[:, 1]) >= 0)


# ---- probe, hash, progress -------------------------------------------------------------------------


def test_probe_reports_the_header(h264):
    info = probe(h264.path)
    assert info.codec == "h264"
    assert "mp4" in info.container
    assert (info.width, info.height, info.frame_count) == (64, 48, 20)
    assert info.duration_s == pytest.approx(2.0)
    assert info.avg_fps == pytest.approx(10.0)
    assert info.size_bytes == len(open(h264.path, "rb").read())


def test_content_hash_is_the_sha256_of_the_file(h264, folder):
    clip = sample(h264.path)
    assert clip.content_hash == hashlib.sha256(open(h264.path, "rb").read()).hexdigest()
    other = videos.write_video(folder / "other.mp4", n_frames=21)
    assert sample(other.path).content_hash != clip.content_hash


def test_progress_reports_fractions_up_to_one(folder):
    synthetic = videos.write_video(folder / "progress.mp4", n_frames=100, fps=10, codec_options={"g": "10"})
    with av.open(synthetic.path) as container:
        keyframes = sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size)
    calls = []
    sample(synthetic.path, SamplingConfig(fps=10), progress=lambda *call: calls.append(call))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert keyframes >= 10 and len(fractions) == 2 + keyframes  # checking, indexing, then each keyframe's frames
    assert all(isinstance(message, str) and message for _, message in calls)


# ---- bad inputs ------------------------------------------------------------------------------------


def test_empty_file_is_not_a_video(folder):
    with pytest.raises(NotAVideoError, match="empty"):
        probe(videos.write_empty_file(folder / "empty.mp4"))


def test_missing_file_is_not_a_video(folder):
    with pytest.raises(NotAVideoError, match="no file"):
        probe(folder / "missing.mp4")


def test_text_file_is_not_a_video(folder):
    with pytest.raises(NotAVideoError, match="not a video"):
        sample(videos.write_text_file(folder / "text.mp4"))


def test_image_is_not_a_video(folder):
    with pytest.raises(NotAVideoError, match="image"):
        probe(videos.write_png_file(folder / "picture.mp4"))


@pytest.mark.parametrize("suffix, codec, pix_fmt", [(".gif", "gif", "rgb8"), (".apng", "apng", "rgb24")])
def test_a_single_picture_animation_format_is_an_image(folder, suffix, codec, pix_fmt):
    synthetic = videos.write_video(folder / f"still{suffix}", n_frames=1, codec=codec, pix_fmt=pix_fmt)
    with pytest.raises(NotAVideoError, match="is an image"):
        probe(synthetic.path)


def test_an_animated_webp_is_refused_as_ffmpeg_cannot_decode_it(folder):
    synthetic = videos.write_video(folder / "animation.webp", codec="libwebp_anim", pix_fmt="yuv420p")
    with pytest.raises(UnsupportedCodecError, match="animated WebP, which FFmpeg"):
        probe(synthetic.path)


def test_audio_only_is_not_a_video(folder):
    with pytest.raises(NotAVideoError, match="only audio"):
        probe(videos.write_audio_only(folder / "tone.mp4"))


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_container_without_frames_is_empty(folder, suffix):
    path = videos.write_no_frames(folder / f"no_frames{suffix}", codec="mjpeg" if suffix == ".avi" else "libx264")
    with pytest.raises(EmptyVideoError, match="no frames"):
        probe(path)


def test_mp4_cut_before_its_index_is_corrupt(folder):
    synthetic = videos.write_video(folder / "whole.mp4", n_frames=60, size=(160, 120))
    cut = videos.truncated_copy(synthetic.path, folder / "cut.mp4", 0.5)
    with pytest.raises(CorruptVideoError, match="incomplete"):
        probe(cut)


def test_mp4_cut_after_its_index_is_corrupt(folder):
    synthetic = videos.write_video(folder / "streamable.mp4", n_frames=60, size=(160, 120), faststart=True)
    cut = videos.truncated_copy(synthetic.path, folder / "streamable_cut.mp4", 0.7)
    with pytest.raises(CorruptVideoError, match="cut short"):
        sample(cut)


def test_avi_cut_short_is_corrupt(folder):
    # A cut AVI loses its index; decord then returns wrong frames near the end.
    synthetic = videos.write_video(folder / "whole.avi", codec="mjpeg", n_frames=30, size=(96, 64))
    cut = videos.truncated_copy(synthetic.path, folder / "cut.avi", 0.8)
    with pytest.raises(CorruptVideoError, match="cut short"):
        probe(cut)


def test_webm_cut_mid_stream_keeps_the_frames_it_holds(folder):
    synthetic = videos.write_video(folder / "whole.webm", codec="libvpx-vp9", n_frames=60, size=(160, 120))
    cut = videos.truncated_copy(synthetic.path, folder / "cut.webm", 0.5)
    clip = sample(cut, SamplingConfig(fps=10))
    kept = clip.info.frame_count
    assert 5 < kept < 60
    assert clip.info.duration_s == pytest.approx(kept / 10, abs=MS)
    assert probe(cut).duration_s == pytest.approx(6.0)  # the header still promises the whole video
    assert frame_numbers(clip) == clip.frame_indices.tolist() == list(range(kept))
    np.testing.assert_allclose(clip.times_s, synthetic.pts_s[:kept], atol=MS)


def test_garbage_in_the_first_packets_is_corrupt(folder):
    synthetic = videos.write_video(folder / "garbled_start_src.mp4", n_frames=60, size=(160, 120))
    garbled = videos.garbled_copy(synthetic.path, folder / "garbled_start.mp4", 0.1, 0.6)
    with pytest.raises(CorruptVideoError, match="first frame"):
        probe(garbled)


@pytest.mark.parametrize("seed", [0, 1])
def test_garbage_in_later_packets_is_corrupt(folder, seed):
    synthetic = videos.write_video(folder / "garbled_middle_src.mp4", n_frames=60, size=(160, 120))
    garbled = videos.garbled_copy(synthetic.path, folder / f"garbled_middle{seed}.mp4", 0.3, 0.6, seed=seed)
    probe(garbled)  # the header and the first frame are intact
    with pytest.raises(CorruptVideoError, match="damaged"):
        sample(garbled, SamplingConfig(fps=10))


def test_unknown_codec_is_unsupported(folder):
    with pytest.raises(UnsupportedCodecError, match="codec"):
        probe(videos.write_unknown_codec(folder / "unknown.avi"))


def test_metadata_in_another_encoding_than_utf8_is_fine(h264, folder):
    latin1 = folder / "latin1.mp4"
    latin1.write_bytes(open(h264.path, "rb").read().replace(b"Lavf", b"\xe9avf"))  # the encoder tag
    assert probe(latin1).frame_count == 20


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".webm", "libvpx-vp9"), (".avi", "mjpeg")])
def test_damaged_files_give_a_clip_or_a_video_error(folder, suffix, codec):
    """Cut or byte-flipped copies: never another exception (or a crash of the process)."""
    synthetic = videos.write_video(folder / f"fuzz_src{suffix}", codec=codec, n_frames=30, size=(96, 64))
    data = open(synthetic.path, "rb").read()
    rng = np.random.default_rng(0)
    for trial in range(16):
        damaged = bytearray(data[: int(len(data) * rng.uniform(0.05, 1))] if trial % 2 else data)
        for position in rng.integers(0, len(damaged), size=trial % 5 + 1 if trial % 2 == 0 else 0):
            damaged[position] = rng.integers(256)
        path = folder / f"fuzz{trial}{suffix}"
        path.write_bytes(bytes(damaged))
        try:
            clip = sample(path, SamplingConfig(fps=5))
        except VideoError:
            continue
        assert clip.frames.shape[0] == len(clip.times_s) > 0


# ---- limits ----------------------------------------------------------------------------------------


def test_file_over_the_byte_limit_is_too_large(h264):
    with pytest.raises(VideoTooLargeError, match="bytes"):
        probe(h264.path, VideoLimits(max_bytes=100))


def test_video_over_the_duration_limit_is_too_long(h264):
    with pytest.raises(VideoTooLongError, match="0:00:02.0 long"):
        sample(h264.path, limits=VideoLimits(max_duration_s=1.5))


def test_video_over_the_resolution_limit_is_too_large(h264):
    with pytest.raises(VideoTooLargeError, match="64×48 pixels"):
        probe(h264.path, VideoLimits(max_width=32, max_height=24))


def test_resolution_limit_allows_either_orientation(folder):
    portrait = videos.write_video(folder / "portrait.mp4", size=(48, 64))
    assert probe(portrait.path, VideoLimits(max_width=64, max_height=48)).height == 64
    with pytest.raises(VideoTooLargeError):
        probe(portrait.path, VideoLimits(max_width=60, max_height=48))


def test_video_over_the_frame_limit_is_too_large(h264):
    with pytest.raises(VideoTooLargeError, match="20 frames"):
        probe(h264.path, VideoLimits(max_frame_count=10))
