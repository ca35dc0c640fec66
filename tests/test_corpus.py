"""Every kind of hostile upload in tests/corpus.py meets its exact outcome, and the process goes on serving."""

from __future__ import annotations

import json
import os
import re
import tracemalloc

import av
import torch

import numpy as np
import pytest

from tests import corpus
from vidchat.errors import VidchatError
from vidchat.segment import MaskDecoder
from vidchat.session import ChatSession, SessionSettings, transcribe
from vidchat.testing.sam2 import build_sam2_video
from vidchat.testing import videos
from vidchat.testing.speech import EchoRecognizer
from vidchat.video import SamplingConfig, VideoLimits, frame_size, sample
from vidchat.vlm import VideoLLM

SAMPLING = SamplingConfig()


@pytest.fixture(scope="session")
def cases(tmp_path_factory) -> dict[str, corpus.Case]:
    return {case.name: case for case in corpus.build(tmp_path_factory.mktemp("corpus"))}


def check_outcome(case: corpus.Case) -> None:
    expect = case.expect
    if isinstance(expect, corpus.Refused):
        with pytest.raises(expect.error) as raised:
            sample(case.path, SAMPLING, case.limits)
        assert type(raised.value) is expect.error
        assert expect.fragment in str(raised.value)
        str(raised.value).encode("utf-8")  # printable and sendable as it is
        return
    clip = sample(case.path, SAMPLING, case.limits)
    info = clip.info
    assert (info.width, info.height) == (expect.width, expect.height)
    assert info.path == os.fspath(case.path)
    if expect.frame_count >= 0:
        assert info.frame_count == expect.frame_count
    if expect.duration_s is not None:
        assert info.duration_s == pytest.approx(expect.duration_s, abs=1e-3)
    count = len(clip.frames)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[3] == 3
    assert clip.frames.shape[1:3] == frame_size(info.width, info.height, count, SAMPLING)[::-1]
    assert 1 <= count <= SAMPLING.max_frames and count == len(clip.times_s) == len(clip.frame_indices)
    assert clip.times_s[0] == 0 and np.all(np.diff(clip.times_s) > 0) and clip.times_s[-1] < info.duration_s
    if expect.exact_indices:
        assert [videos.read_frame_index(frame) for frame in clip.frames] == clip.frame_indices.tolist()
    if expect.pts_s is not None:
        np.testing.assert_allclose(clip.times_s, np.asarray(expect.pts_s)[clip.frame_indices], atol=1e-3)
    if expect.heard is not None:
        check_transcript(case.path, clip, expect.heard)


def check_transcript(path: str, clip, heard: corpus.Heard) -> None:
    """The video's words: the sound decoded (whatever its tracks, rate or damage), its speech found, one window of
    the recognizer per sentence; or a note that says why there are none."""
    recognizer = EchoRecognizer()
    transcript = transcribe(path, recognizer, video_start_s=clip.info.start_s, duration_s=clip.info.duration_s)
    assert transcript.source == heard.source and heard.note in transcript.note
    assert [len(segment.text) > 0 for segment in transcript.segments] == [True] * len(heard.spoken_s)
    heard_at = [offset_s for offset_s, _ in recognizer.calls]
    assert len(heard_at) == len(heard.spoken_s)
    for window_s, spoken_s in zip(heard_at, heard.spoken_s):
        assert spoken_s - 0.5 <= window_s <= spoken_s + 0.5  # the window opens where the sentence is spoken


def test_the_corpus_has_thirty_kinds_and_every_path_is_inside_its_folder(cases, tmp_path_factory):
    assert len(cases) >= 30
    refusals = {case.expect.error for case in cases.values() if isinstance(case.expect, corpus.Refused)}
    assert len(refusals) == 6  # every VideoError subclass is met
    root = os.path.realpath(os.path.dirname(os.path.dirname(next(iter(cases.values())).path)))
    for case in cases.values():
        where = os.path.realpath(os.path.dirname(os.path.abspath(case.path)))
        assert where.startswith(root + os.sep), case.name


@pytest.mark.parametrize("name", corpus.names())
def test_every_entry_has_its_expected_outcome(cases, name):
    check_outcome(cases[name])


def test_defaults_are_safe_limits():
    limits, sampling = VideoLimits(), SamplingConfig()
    assert limits.max_bytes <= 2 * 1024**3
    assert limits.max_duration_s <= 3 * 3600
    assert (limits.max_width, limits.max_height) == (7680, 4320)
    # The sampled frames of any accepted video (uint8 RGB) are bounded: at worst 768 frames at the per-frame
    # floor of min_pixels (qwen-vl-utils' defaults), 231 MB; a session holds one clip.
    per_frame = max(min(sampling.max_pixels, sampling.total_pixels / sampling.max_frames), sampling.min_pixels)
    most_pixels = max(sampling.max_frames * per_frame, sampling.total_pixels)
    assert most_pixels * 3 <= 256 * 1024**2


def test_an_8k_video_never_makes_a_full_size_picture(cases):
    # A decoded 8K frame converts and shrinks in one swscale pass: no 100 MB RGB copy is made (numpy's
    # allocations are traced), only the sampled frames at the budget size.
    tracemalloc.start()
    try:
        clip = sample(cases["8k"].path, SAMPLING)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(clip.frames) == 2 and clip.frames.shape[1:3] == frame_size(7680, 4320, 2, SAMPLING)[::-1]
    assert peak < 7680 * 4320 * 3 / 4


def test_the_process_serves_a_good_video_after_the_whole_corpus(cases, tmp_path):
    for case in cases.values():
        try:
            sample(case.path, SAMPLING, case.limits)
        except VidchatError:
            pass
    good = videos.write_video(tmp_path / "after.mp4", n_frames=20)
    clip = sample(good.path)
    assert [videos.read_frame_index(frame) for frame in clip.frames] == clip.frame_indices.tolist()


SESSION_KINDS = ["zero-bytes", "png-named-mp4", "mp4-cut-before-index", "av1-mp4", "rotated-90", "non-utf8-name"]


def test_chat_sessions_open_or_refuse_and_then_serve_a_good_video(cases, tiny_model_dirs, tmp_path):
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen3_vl"]))
    settings = SessionSettings(sampling=SamplingConfig(fps=2, max_frames=4), max_new_tokens=4, ground_objects=False)
    for name in SESSION_KINDS:
        case = cases[name]
        if isinstance(case.expect, corpus.Refused):
            with pytest.raises(case.expect.error, match=None):
                ChatSession.open(case.path, llm, settings)
        else:
            session = ChatSession.open(case.path, llm, settings)
            assert (session.clip.info.width, session.clip.info.height) == (case.expect.width, case.expect.height)
            *_, answer = session.ask("What moves?")
            assert answer.text
            video_file, document = session.export(tmp_path / name)
            assert video_file.stat().st_size > 0 and document.stat().st_size > 0
            session.close()
    good = videos.write_video(tmp_path / "good.mp4", n_frames=20)
    session = ChatSession.open(good.path, llm, settings)
    *_, answer = session.ask("What moves?")
    assert isinstance(answer.text, str)


# Kinds of issue 10: every clip length, and containers and codecs beyond the common ones.
NEW_KINDS = [
    "one-frame", "two-frames", "0.1-seconds", "mpeg-ts", "m2ts", "gif-animated", "animated-webp", "h264-10-bit",
    "mpeg-2",
]  # fmt: skip


@pytest.fixture(scope="module")
def masks(tmp_path_factory) -> MaskDecoder:
    decoder = MaskDecoder.from_pretrained(str(build_sam2_video(tmp_path_factory.mktemp("sam2"))))
    head = decoder.model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():  # the object is "there" on every frame, so every clicked object gets a mask
        head.weight.zero_()
        head.bias.fill_(4.0)
    return decoder


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_every_clip_length_and_format_opens_is_answered_pointed_at_and_exported(cases, tiny_model_dirs, masks, family, tmp_path):
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs[family]))
    settings = SessionSettings(sampling=SamplingConfig(fps=2), max_new_tokens=4, ground_objects=False)
    for name in NEW_KINDS:
        case = cases[name]
        if isinstance(case.expect, corpus.Refused):
            with pytest.raises(case.expect.error, match=re.escape(case.expect.fragment)):
                ChatSession.open(case.path, llm, settings, masks=masks)
            continue
        session = ChatSession.open(case.path, llm, settings, masks=masks)
        info = session.clip.info
        assert (info.width, info.height) == (case.expect.width, case.expect.height), name
        np.testing.assert_allclose(session.clip.times_s, np.asarray(case.expect.pts_s)[session.clip.frame_indices], atol=1e-3)
        *pieces, answer = session.ask("What moves?")
        assert answer.text == "".join(pieces) and answer.text, name
        # Only times inside the video can be grounded: a 1-frame video's answer can only name t = 0.
        times = session.times_in("It shows at 0:00, then at 0:05.")  # every video here is at most 2 s long
        assert [(t.start_s, t.end_s) for t in times] == [(0.0, 0.0)], name
        clicked = session.point_at(float(session.clip.times_s[-1]), info.width / 2, info.height / 2)
        assert len(clicked.masklet.rles) == len(session.clip.times_s) and clicked.masklet.visible.all(), name
        video_file, document = session.export(tmp_path / family / name)
        with av.open(str(video_file)) as exported:
            assert exported.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in exported.decode(video=0)) == case.expect.frame_count, name
        exported_objects = json.loads(document.read_text())["objects"]
        assert [len(o["masklet"]["masks"]) for o in exported_objects] == [len(session.clip.times_s)], name
        session.close()


# (A file name that is not UTF-8 cannot be sent at all: HTTP clients encode the multipart name as UTF-8.)
UPLOAD_KINDS = ["text-named-mp4", "png-named-mp4", "audio-only", "mp4-cut-before-index", "av1-mp4", "rotated-90"]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_uploads_through_the_app_are_refused_with_their_message_then_a_good_one_works(cases, tiny_model_dirs, family, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from tests.test_ui import start_app

    settings = SessionSettings(sampling=SamplingConfig(fps=2, max_frames=4), max_new_tokens=4, ground_objects=False)
    app, url = start_app(model=str(tiny_model_dirs[family]), sam=None, settings=settings)
    try:
        client = Client(url, verbose=False)
        for name in UPLOAD_KINDS + NEW_KINDS:
            case = cases[name]
            if isinstance(case.expect, corpus.Refused):
                with pytest.raises(AppError) as raised:
                    client.predict(handle_file(case.path), 2.0, 4, api_name="/upload")
                assert case.expect.fragment in str(raised.value), name
            else:
                info = client.predict(handle_file(case.path), 2.0, 4, api_name="/upload")
                assert (info["width"], info["height"]) == (case.expect.width, case.expect.height), name
                if name in NEW_KINDS:
                    assert info["duration_s"] == pytest.approx(case.expect.duration_s or info["duration_s"], abs=1e-3)
                    final = client.submit("What moves?", api_name="/ask").result()
                    assert final["done"] is True and final["text"], name
        good = videos.write_video(tmp_path / "good.mp4", n_frames=20)
        info = client.predict(handle_file(good.path), 2.0, 4, api_name="/upload")
        assert info["name"] == "good.mp4" and info["duration_s"] == pytest.approx(2.0)
        final = client.submit("What moves?", api_name="/ask").result()
        assert final["done"] is True
    finally:
        app.close()
