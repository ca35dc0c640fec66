"""Zoom: the windows a question's attention chooses, their dense decoding at true times, and the whole coarse-to-fine
turn on tiny models of both families whose attention is rigged to a needle planted in a long video."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from vidchat.selector import SelectorSettings, budget_bounds
from vidchat.session import ChatSession, SessionSettings, answer_json, selection_json
from vidchat.testing.models import build_qwen2_5_vl, build_qwen3_vl
from vidchat.testing.needle import NEEDLE_QUESTION, needle_patches, rig_attention, write_needle_video
from vidchat.testing.videos import read_frame_index, write_video
from vidchat.video import SamplingConfig, sample, sample_span
from vidchat.vlm import VideoLLM
from vidchat.zoom import Window, ZoomSettings, choose_windows, merge, relevance, window_sampling

ZOOM = ZoomSettings()


def patches(count: int, interval_s: float) -> np.ndarray:
    """[count, 2] first and last frame time of each temporal patch of two frames `interval_s` apart."""
    first = np.arange(count) * 2 * interval_s
    return np.stack([first, first + interval_s], axis=1)


# ---- choosing windows -----------------------------------------------------------------------------


def test_a_peak_gives_one_window_around_its_patches_and_one_frame_beyond():
    weights = np.full(40, 0.001)
    weights[20] = 1.0  # the patch of frames at 80 s and 82 s
    windows = choose_windows(weights, patches(40, 2.0), 160.0, 2.0, ZOOM)
    # the patch's frames (80 s, 82 s), and one frame (2 s) beyond on each side: the event lies between samples
    assert windows == (Window(78.0, 84.0),)


def test_flat_relevance_or_dense_coarse_sampling_gives_no_window():
    # the question gains a little over the baseline everywhere: no patch gains 4 × 1/40 of the attention
    flat = np.random.default_rng(0).uniform(0, 0.03, 40)
    assert choose_windows(flat, patches(40, 2.0), 160.0, 2.0, ZOOM) == ()
    weights = np.zeros(40)
    assert choose_windows(weights, patches(40, 2.0), 160.0, 2.0, ZOOM) == ()  # no relevance left after the baseline
    weights[20] = 1.0
    assert choose_windows(weights, patches(40, 0.5), 40.0, 0.5, ZOOM) == ()  # the coarse pass is 2 fps already
    assert choose_windows(weights, patches(40, 2.0), 160.0, 2.0, replace(ZOOM, on=False)) == ()


def test_two_peaks_give_two_windows_in_order_and_a_weak_third_none():
    weights = np.full(60, 0.001)
    weights[[45, 10]] = [1.0, 0.8]
    weights[30] = 0.2  # under half the highest peak
    windows = choose_windows(weights, patches(60, 2.0), 240.0, 2.0, replace(ZOOM, windows=3))
    assert [(w.start_s, w.end_s) for w in windows] == [(38.0, 44.0), (178.0, 184.0)]


def test_windows_at_the_start_and_the_end_stay_inside_the_video():
    weights = np.full(40, 0.001)
    weights[[0, 39]] = 1.0
    windows = choose_windows(weights, patches(40, 2.0), 160.0, 2.0, ZOOM)
    assert windows == (Window(0.0, 6.0), Window(154.0, 160.0))  # one frame beyond, moved inside: 6 s each


def test_overlapping_windows_merge_and_long_events_are_cut_to_what_the_dense_rate_covers():
    assert merge([Window(10, 20), Window(0, 5), Window(18, 30), Window(30, 31)]) == (Window(0, 5), Window(10, 31))
    weights = np.full(100, 0.001)
    weights[40:60] = 1.0  # an event from 158 s to 240 s: the window is max_seconds = 48 s around its middle
    windows = choose_windows(weights, patches(100, 2.0), 400.0, 2.0, ZOOM)
    assert windows == (Window(175.0, 223.0),)
    # an event seen by one patch of two frames 14 s apart (a 3-hour video's coarse pass) is covered whole: 42 s
    weights = np.full(100, 0.001)
    weights[50] = 1.0
    assert choose_windows(weights, patches(100, 14.0), 2800.0, 14.0, ZOOM) == (Window(1386.0, 1428.0),)


def test_a_peak_inside_a_window_looked_at_before_reuses_it():
    weights = np.full(40, 0.001)
    weights[20] = 1.0
    before = Window(79.0, 90.0)
    assert choose_windows(weights, patches(40, 2.0), 160.0, 2.0, ZOOM, known=[before]) == (before,)


def test_relevance_is_the_questions_share_minus_the_baselines():
    baseline = torch.tensor([5.0, 1, 1, 1, 1, 1, 1, 1])  # 4 patches of 2 tokens: a sink on the first
    question = torch.tensor([5.0, 1, 1, 1, 1, 6, 1, 1])
    weights = relevance(question, baseline, steps=4)
    assert weights.argmax() == 2 and weights[0] == 0 and weights[1] == 0
    np.testing.assert_allclose(relevance(baseline, baseline, steps=4), 0, atol=1e-12)


def test_a_short_window_is_sampled_up_to_the_source_rate_a_long_one_at_the_dense_rate():
    short = window_sampling(Window(10.0, 14.0), source_fps=25.0, settings=ZOOM)
    assert short.fps == pytest.approx(8.0) and short.max_frames == 32  # 32 frames over 4 s
    slow_source = window_sampling(Window(10.0, 14.0), source_fps=5.0, settings=ZOOM)
    assert slow_source.fps == 5.0 and slow_source.max_frames == 20
    long = window_sampling(Window(10.0, 40.0), source_fps=25.0, settings=ZOOM)
    assert long.fps == 2.0 and long.max_frames == 60
    assert long.max_pixels == ZOOM.max_pixels


# ---- the dense decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("window", [(0.0, 1.5), (6.2, 8.0), (3.05, 4.4)])
def test_a_window_decodes_every_frame_it_asks_for_at_its_true_time_in_a_variable_frame_rate_file(tmp_path, window):
    gaps_ms = np.random.default_rng(3).integers(20, 160, 89)
    pts_s = np.concatenate([[0], np.cumsum(gaps_ms)]) / 1000  # irregular, about 7.9 s
    synthetic = write_video(tmp_path / "vfr.mp4", n_frames=90, pts_s=pts_s, size=(96, 64), codec_options={"g": "30"})
    coarse = sample(synthetic.path, SamplingConfig(fps=0.5, min_frames=4))
    start_s, end_s = window
    end_s = min(end_s, float(pts_s[-1]))

    dense = sample_span(coarse, start_s, end_s, window_sampling(Window(start_s, end_s), 10.0, ZOOM))

    assert not dense.keyframes_only and dense.span_s == (start_s, end_s)
    assert [read_frame_index(frame) for frame in dense.frames] == dense.frame_indices.tolist()
    np.testing.assert_allclose(dense.times_s, synthetic.pts_s[dense.frame_indices], atol=1e-3)
    assert start_s - 0.16 <= dense.times_s[0] and dense.times_s[-1] <= end_s + 1e-9
    inside = np.flatnonzero((pts_s >= start_s) & (pts_s <= end_s))
    # at 10 fps, more than the coarse pass, each frame the nearest to its target; the end within one step
    assert len(dense.frame_indices) >= min(len(inside), 8)
    assert pts_s[inside[-1]] - dense.times_s[-1] <= 0.1 + 1e-9


# ---- a turn, on tiny models rigged to a needle ------------------------------------------------------------

FAMILIES = ["qwen3_vl", "qwen2_5_vl"]
NEEDLE_AT_S = 70.0
COARSE = SamplingConfig(fps=2, max_frames=64)  # 120 s → a frame every 1.875 s


@pytest.fixture(scope="module")
def needle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("needle")
    return write_needle_video(folder / "haystack.mp4", seconds=120, fps=4, needle_s=NEEDLE_AT_S, size=(64, 48))


@pytest.fixture(scope="module", params=FAMILIES)
def rigged(request, tmp_path_factory, needle):
    """A tiny model of the family, rigged so that the needle question's attention at the scoring layer (0) peaks at
    the needle's temporal patches of the coarse pass; and that coarse pass."""
    folder = tmp_path_factory.mktemp(request.param)
    (build_qwen3_vl if request.param == "qwen3_vl" else build_qwen2_5_vl)(folder)
    llm = VideoLLM.from_pretrained(str(folder))
    coarse = sample(needle.path, COARSE)
    tokens = llm.encode(coarse)
    seen = needle_patches(coarse.times_s, tokens.steps, needle)  # [T'] the patches with needle frames
    rig_attention(llm, tokens, seen, layer=0)
    return llm, seen


def settings(**changes) -> SessionSettings:
    selector = SelectorSettings(max_fraction=0.3, duplicate_cosine=1.1)
    base = SessionSettings(sampling=COARSE, ground_objects=False, max_new_tokens=4, selector=selector)
    return replace(base, **changes)


def open_session(rigged, needle, **changes) -> ChatSession:
    llm, _ = rigged
    return ChatSession.open(needle.path, llm, settings(**changes))


def finish(session: ChatSession, question: str):
    return [event for event in session.ask(question)][-1]


def window_tokens(session: ChatSession, look):
    """The visual tokens of a window the session looked at: what encoding its dense clip gives (the model's cache)."""
    window = look.window
    dense = sample_span(session.clip, window.start_s, window.end_s, window_sampling(window, 4.0, ZOOM))
    return session.llm.encode(dense)


def test_the_needle_question_looks_closer_at_a_window_that_covers_the_needle(rigged, needle):
    session = open_session(rigged, needle)
    answer = finish(session, NEEDLE_QUESTION)

    assert len(answer.zoom) == 1
    look = answer.zoom[0]
    assert look.window.start_s <= needle.start_s and needle.end_s <= look.window.end_s
    assert look.window.end_s - look.window.start_s <= ZOOM.max_seconds
    # dense: at least 2 fps around the needle, where the coarse pass had a frame every 1.875 s
    assert look.fps >= 2.0 and np.diff(look.times_s).max() <= 0.5 + 1e-9
    # the frames are the ones asked for, at their true times: the frame-index codes say which frames they are
    again = sample_span(session.clip, look.window.start_s, look.window.end_s, window_sampling(look.window, 4.0, ZOOM))
    assert again.frame_indices.tolist() == look.frame_indices.tolist()
    assert [read_frame_index(frame) for frame in again.frames] == look.frame_indices.tolist()
    np.testing.assert_allclose(look.times_s, look.frame_indices / 4.0, atol=1e-3)
    assert set(needle.frames()) <= set(look.frame_indices.tolist())  # every needle frame seen (the 4 fps source)

    document = answer_json(answer, session)
    assert document["zoom"] == [
        {"start_s": look.window.start_s, "end_s": look.window.end_s, "fps": look.fps, "frames": len(look.times_s)}
    ]


def test_the_prompt_carries_the_windows_true_times(rigged, needle):
    llm, _ = rigged
    session = open_session(rigged, needle)
    look = finish(session, NEEDLE_QUESTION).zoom[0]
    encoded = window_tokens(session, look)
    prompt = llm.prompt(session.tokens, [], NEEDLE_QUESTION, "", [encoded])
    text = llm.processor.tokenizer.decode(prompt.input_ids[0])
    start, end = look.window.start_s, look.window.end_s
    assert f"A closer look at the video from {start:.1f} to {end:.1f} seconds:" in text
    window_part = text[text.index("A closer look") :]
    if llm.family == "qwen3_vl":  # each dense temporal patch at its true time, <t seconds>
        patch_times_s = encoded.step_time_s
        assert np.allclose(patch_times_s, look.times_s.reshape(-1, 2).mean(axis=1), atol=1e-3)
        for t in patch_times_s:
            assert f"<{t:.1f} seconds>" in window_part
    else:  # the window's own time axis: its temporal patches one rate-step apart in M-RoPE time
        window_positions = prompt.position_ids[0, 0, prompt.visual_mask][-len(encoded.embeddings) :]
        steps = torch.unique(window_positions)
        assert len(steps) == encoded.steps
    # the window comes after the video prefix (system, video, transcript): the prefix stays the same
    assert prompt.prefix_length == llm.prompt(session.tokens, [], NEEDLE_QUESTION).prefix_length
    assert prompt.input_ids[0, : prompt.prefix_length].tolist() == llm.prompt(
        session.tokens, [], "Anything else?"
    ).input_ids[0, : prompt.prefix_length].tolist()


def test_a_question_about_the_whole_video_does_not_zoom(rigged, needle):
    session = open_session(rigged, needle)
    assert finish(session, "Summarise the video.").zoom == ()


def test_zoom_keeps_one_visual_token_budget(rigged, needle):
    session = open_session(rigged, needle)
    answer = finish(session, NEEDLE_QUESTION)
    coarse = len(session.tokens.embeddings)
    window = sum(len(window_tokens(session, look).embeddings) for look in answer.zoom)
    _, most = budget_bounds(coarse, session.settings.selector)
    kept = answer.selection.keep_indices
    assert len(kept) <= most
    assert (kept >= coarse).any() and kept.max() < coarse + window  # tokens of the window kept, within the budget
    assert len(answer.selection.scores) == coarse + window
    heat = selection_json(answer.selection, session)  # what the page's heat strip says
    assert (heat["windows_kept"], heat["windows_total"]) == (int((kept >= coarse).sum()), window)
    assert heat["kept"] == int((kept < coarse).sum()) and heat["total"] == coarse


def test_a_follow_up_reuses_the_window_and_the_video_prefix(rigged, needle, monkeypatch):
    llm, _ = rigged
    session = open_session(rigged, needle, selector=replace(settings().selector, kept_tokens="cached"))
    first = finish(session, NEEDLE_QUESTION)
    prefix = session._prefix
    encoded, prefixes = [], []
    encode, video_prefix = llm.encode, llm.video_prefix
    monkeypatch.setattr(llm, "encode", lambda clip, progress=None: encoded.append(clip) or encode(clip, progress))
    monkeypatch.setattr(llm, "video_prefix", lambda *a, **k: prefixes.append(a) or video_prefix(*a, **k))

    second = finish(session, "And the yellow flash, what colour is it?")

    assert second.zoom and second.zoom[0] is first.zoom[0]
    assert encoded == []  # not decoded nor encoded again
    assert prefixes == [] and session._prefix is prefix  # the coarse prefix is not computed again

    # other zoom settings: the same window is looked at again as they say (smaller frames here)
    session.settings = replace(session.settings, zoom=replace(ZOOM, max_pixels=32 * 24))
    third = finish(session, "Is the yellow flash bright?")
    assert third.zoom[0].window == first.zoom[0].window and third.zoom[0] is not first.zoom[0]
    assert [clip.span_s for clip in encoded] == [(first.zoom[0].window.start_s, first.zoom[0].window.end_s)]
    assert encoded[0].frames.shape[1] * encoded[0].frames.shape[2] <= 32 * 24 and prefixes == []


def test_zoom_off_and_short_videos_do_not_zoom(rigged, needle, clip):
    off = open_session(rigged, needle, zoom=replace(ZOOM, on=False))
    assert finish(off, NEEDLE_QUESTION).zoom == ()
    llm, _ = rigged
    short = ChatSession.open(clip.path, llm, settings(sampling=SamplingConfig(fps=2)))  # 4 s at 2 fps
    assert not short.zooms and finish(short, NEEDLE_QUESTION).zoom == ()


def test_with_the_duplicate_pre_pass_only_the_needle_makes_a_peak(rigged, needle):
    # The haystack is static: the pre-pass drops nearly every token but the first patch's and the needle's. The
    # baseline is compared on the same tokens, so the first patch is no peak for a question about the whole video.
    session = open_session(rigged, needle, selector=SelectorSettings(max_fraction=0.3))
    assert finish(session, "Summarise the video.").zoom == ()
    looks = finish(session, NEEDLE_QUESTION).zoom
    assert len(looks) == 1 and looks[0].window.start_s <= needle.start_s and needle.end_s <= looks[0].window.end_s
