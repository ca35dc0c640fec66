"""Many users on one process: concurrent sessions get their own answers, caches stay within their byte budgets,
temp files stay in their session's folder, and hostile model output is handled within bounds."""

from __future__ import annotations

import json
import math
import os
import tempfile
from functools import partial
from pathlib import Path

import pytest

from bench import load
from vidchat.segment import MaskDecoder
from vidchat.session import MAX_OBJECTS_PER_ANSWER, MAX_OBJECTS_PER_SESSION, ChatSession, SessionSettings
from vidchat.testing.sam2 import build_sam2_video
from vidchat.testing.videos import write_video
from vidchat.testing.scripted import Script, ScriptedLLM
from vidchat.video import SamplingConfig
from vidchat.vlm import TokenCache, VideoLLM

SETTINGS = SessionSettings(sampling=SamplingConfig(fps=2.0, max_frames=8), max_new_tokens=8, selector=None)


@pytest.fixture(scope="module")
def llm(tiny_model_dirs) -> VideoLLM:
    return VideoLLM.from_pretrained(str(tiny_model_dirs["qwen3_vl"]))


@pytest.fixture(scope="module")
def sam(tmp_path_factory) -> MaskDecoder:
    return MaskDecoder.from_pretrained(str(build_sam2_video(tmp_path_factory.mktemp("sam2"))))


def scripted(llm: VideoLLM, answer: str, grounding: str = "[]") -> ScriptedLLM:
    return ScriptedLLM(llm, Script(answer, grounding))


# ---- many users -------------------------------------------------------------------------------------------


def temp_entries() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if not name.startswith("pytest-of-")}


def test_a_short_load_run_loses_and_mixes_up_no_answer(tiny_model_dirs, tmp_path):
    before = temp_entries()
    report = load.run_load(sessions=5, turns=3, timeout_s=120, work_dir=tmp_path, model_dir=tiny_model_dirs["qwen3_vl"])
    assert report["problems"] == []
    assert report["answers_received"] == report["answers_expected"] == 15
    assert report["lost"] == report["mixed_up"] == report["errors"] == 0
    assert report["markers_distinct"] and report["sessions_hold_their_own_video"]
    assert report["workspaces_isolated"] and report["temp_folders_deleted_on_close"]
    assert report["files_left_in_gradio_cache"] == 0  # the uploads went with their sessions
    # Nothing was left in the system temp folder.
    assert temp_entries() == before


def test_the_load_check_catches_an_answer_from_another_session():
    own, other = 0.5, 0.6
    answer = {
        "done": True,
        "text": f"The last moment I see is at {other:.2f} seconds.",
        "times": [{"start_s": other}],
        "boxes": [{"t_s": other, "label": f"marker {other:.2f}"}],
    }
    assert load.check_answer(answer, other) == ""
    assert "does not name this session's 0.50 s" in load.check_answer(answer, own)
    answer["text"] += f" ({own:.2f})"
    assert "miss 0.50 s" in load.check_answer(answer, own)


# ---- bounded caches ---------------------------------------------------------------------------------------


def test_the_token_cache_stays_within_budget_over_50_uploads(llm, tmp_path):
    one = llm.encode(_clip(tmp_path, 0)).nbytes
    llm.cache = TokenCache(max_bytes=int(3.5 * one))  # room for three videos' tokens
    model = scripted(
        llm, "At 00:00.5 the red square moves.", '[{"time": 0.5, "bbox_2d": [1, 2, 300, 400], "label": "square"}]'
    )
    for i in range(50):
        video = write_video(tmp_path / f"upload{i}.mp4", n_frames=4 + i % 5, fps=10.0, size=(64 + 2 * i, 48))
        session = ChatSession.open(video.path, model, SETTINGS)
        *_, answer = session.ask("What moves?")
        assert answer.object_ids == (1,)
        assert llm.cache.nbytes <= llm.cache.max_bytes
        session.close()
    assert 1 <= len(llm.cache) <= 3


def test_a_single_entry_over_the_budget_is_not_kept(llm, tmp_path):
    tokens = llm.encode(_clip(tmp_path, 1))
    cache = TokenCache(max_bytes=tokens.nbytes - 1)
    cache.put(("video", "sampling", "model"), tokens)
    assert cache.nbytes <= cache.max_bytes and len(cache) == 0


def test_sam2_features_stay_within_the_session_budget_and_go_on_close(llm, sam, tmp_path, monkeypatch):
    video = write_video(tmp_path / "masks.mp4", n_frames=20, fps=10.0, size=(64, 48))
    budget = 300_000  # two frames' features of the tiny SAM 2 (128 KiB each): the clip has four
    monkeypatch.setattr(sam, "init_state", partial(MaskDecoder.init_state, sam, max_feature_bytes=budget))
    grounding = '[{"time": 0.5, "bbox_2d": [100, 300, 400, 600], "label": "square"}]'
    for i in range(3):
        session = ChatSession.open(video.path, scripted(llm, "A square.", grounding), SETTINGS, masks=sam)
        *_, answer = session.ask("What moves?")
        features = session._mask_state.features
        assert answer.object_ids == (1,) and 0 < features.nbytes <= budget
        assert 1 <= len(features._features) < len(session.clip.frames)  # past the budget, frames are re-encoded
        assert session.objects["square"].masklet is not None
        session.close()
        assert features.nbytes == 0 and session._mask_state is None


def test_a_session_counts_its_bytes_and_gives_back_its_caches(llm, sam, tmp_path):
    video = write_video(tmp_path / "count.mp4", n_frames=20, fps=10.0, size=(64, 48))
    square = '[{"time": 0.5, "bbox_2d": [100, 300, 400, 600], "label": "square"}]'
    session = ChatSession.open(video.path, scripted(llm, "A square.", square), SETTINGS, masks=sam)
    opened = session.memory_bytes()
    assert opened == session.clip.frames.nbytes + session.tokens.nbytes
    *_, answer = session.ask("What moves?")
    features = session.feature_bytes
    masklet = session.objects["square"].masklet
    assert features == session._mask_state.features.nbytes > 0
    answer_bytes = len(answer.prompt) + len(answer.text) + len(answer.grounding_reply)
    # without selection the video's prefix KV of every layer is kept for the follow-ups
    prefix = session.prefix_bytes
    layers = llm.model.config.text_config
    kv_bytes_per_token = 2 * layers.num_hidden_layers * layers.num_key_value_heads * layers.head_dim * 4  # fp32
    assert prefix == session._prefix.length * kv_bytes_per_token > 0
    assert session.memory_bytes() == opened + features + prefix + masklet.nbytes + answer_bytes

    assert session.drop_caches() == features + prefix
    assert session.feature_bytes == session.prefix_bytes == 0
    assert session.memory_bytes() == opened + masklet.nbytes + answer_bytes
    # tracking goes on after the features are gone: the frames it needs are encoded again
    circle = '[{"time": 1.0, "bbox_2d": [500, 100, 900, 500], "label": "circle"}]'
    session.llm = scripted(llm, "A circle.", circle)
    *_, answer = session.ask("And the circle?")
    assert answer.object_ids == (2,) and session.objects["circle"].masklet.visible.shape == (len(session.clip.frames),)
    assert session.feature_bytes > 0
    session.close()


# ---- hostile model output ---------------------------------------------------------------------------------

HOSTILE = {  # name → (answer, grounding reply)
    "huge-numbers": (
        'At 1e308 seconds [{"time": 1e308, "bbox_2d": [1e308, -1e308, 9e99, 12345678901234567890], "label": "x"}]',
        '[{"time": 1e400, "point_2d": [1e400, 5], "label": "p"}, {"time": 99999999999, "bbox_2d": [1, 2, 3, 4]}]',
    ),
    "nan-and-infinity": (
        'At NaN seconds {"time": NaN, "bbox_2d": [NaN, Infinity, -Infinity, 5], "label": "n"}',
        '[{"time": "nan", "bbox_2d": ["NaN", 1, 2, 3], "label": "n2"}, {"time": Infinity, "point_2d": [1, 2]}]',
    ),
    "negative-times-and-coordinates": (
        "From -3 to -1 seconds, then at -00:05.",
        '[{"time": -1, "bbox_2d": [-100, -100, -50, -50], "label": "neg"}, {"time": -0.5, "point_2d": [-3, -4]}]',
    ),
    "very-long-text": ("word " * 200_000, "[" + '{"time": 1, "bbox_2d": [' * 20_000),
    "deep-nesting": ("[" * 10_000 + "]" * 10_000, '{"a":' * 5_000 + "1" + "}" * 5_000),
    "control-and-odd-characters": (
        "\x00\x1b[31m at 00:01.0 \ud800 \u202e 🎬",
        '[{"time": 1, "bbox_2d": [1,2,3,4], "label": "\\u0000\\ud800"}]',
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_answers_give_bounded_valid_groundings(llm, tmp_path, name):
    answer_text, grounding = HOSTILE[name]
    video = write_video(tmp_path / "v.mp4", n_frames=20, fps=10.0, size=(160, 120))
    session = ChatSession.open(video.path, scripted(llm, answer_text, grounding), SETTINGS)
    *_, answer = session.ask("What is there?")
    info = session.clip.info
    found = answer.groundings
    for span in found.times:
        assert 0 <= span.start_s <= span.end_s <= info.duration_s
    for box in found.boxes:
        assert all(math.isfinite(v) for v in (box.t_s, box.x1, box.y1, box.x2, box.y2))
        assert 0 <= box.t_s <= info.duration_s
        assert 0 <= box.x1 <= box.x2 <= info.width and 0 <= box.y1 <= box.y2 <= info.height
    for point in found.points:
        assert 0 <= point.t_s <= info.duration_s and 0 <= point.x <= info.width and 0 <= point.y <= info.height
    assert len(session.objects) <= MAX_OBJECTS_PER_ANSWER
    for obj in session.objects.values():
        json.dumps(session.overlay_masks(obj.object_id, range(len(session.clip.times_s))))
    video_file, document = session.export(tmp_path / "out")
    json.loads(document.read_text())
    assert video_file.stat().st_size > 0


def test_thousands_of_objects_are_capped_per_answer_and_per_session(llm, tmp_path):
    video = write_video(tmp_path / "v.mp4", n_frames=20, fps=10.0, size=(160, 120))

    def many(prefix: str) -> str:
        return json.dumps(
            [{"time": 1.0, "bbox_2d": [i % 900, 10, i % 900 + 50, 60], "label": f"{prefix} {i}"} for i in range(3000)]
        )

    session = ChatSession.open(video.path, scripted(llm, "Many things.", many("thing")), SETTINGS)
    *_, answer = session.ask("What is there?")
    assert len(answer.object_ids) == len(session.objects) == MAX_OBJECTS_PER_ANSWER
    assert answer.objects_dropped == 256 - MAX_OBJECTS_PER_ANSWER  # the parser keeps 256 boxes per reply
    labels = [obj.label for obj in session.objects.values()]
    assert labels == [f"thing {i}" for i in range(MAX_OBJECTS_PER_ANSWER)]  # the first ones named
    for turn in range(1, 6):
        session.llm = scripted(llm, "More.", many(f"turn{turn}"))
        *_, answer = session.ask("And more?")
        assert len(session.objects) <= MAX_OBJECTS_PER_SESSION
    assert len(session.objects) == MAX_OBJECTS_PER_SESSION and answer.object_ids == ()
    # objects already known are still located when named again
    session.llm = scripted(llm, "Again.", json.dumps([{"time": 1.0, "bbox_2d": [1, 2, 30, 40], "label": "thing 3"}]))
    *_, answer = session.ask("Where is thing 3?")
    assert answer.object_ids == (session.objects["thing 3"].object_id,) and answer.objects_dropped == 0


def _clip(folder: Path, seed: int):
    from vidchat.video import sample

    video = write_video(folder / f"clip{seed}.mp4", n_frames=8 + seed, fps=10.0)
    return sample(video.path, SETTINGS.sampling)


def test_uploads_are_decoded_while_a_turn_holds_the_model(tiny_model_dirs, tmp_path, monkeypatch):
    import threading
    import time

    from gradio_client import Client, handle_file

    import vidchat.session
    from tests.helpers import start_app
    from vidchat.ui.gpu import MODEL_LOCK

    decoded = threading.Event()
    real_sample = vidchat.session.sample

    def recording_sample(*args, **kwargs):
        clip = real_sample(*args, **kwargs)
        decoded.set()
        return clip

    monkeypatch.setattr(vidchat.session, "sample", recording_sample)
    video = write_video(tmp_path / "upload.mp4", n_frames=20, fps=10.0)
    app, url = start_app(model=str(tiny_model_dirs["qwen3_vl"]), sam=None, settings=SETTINGS)
    try:
        client = Client(url, verbose=False)
        with MODEL_LOCK:  # as a running turn holds it
            job = client.submit(handle_file(video.path), 2.0, 8, api_name="/upload")
            assert decoded.wait(30), "the upload is decoded while the model is busy"
            time.sleep(0.5)
            assert not job.done(), "its encoding waits for the model"
        info = job.result(timeout=60)
        assert (info["width"], info["height"]) == (64, 48)
        assert client.submit("What moves?", api_name="/ask").result(timeout=60)["done"] is True
    finally:
        app.close()


def test_visitors_who_never_close_their_tab_keep_the_server_within_its_limits(tiny_model_dirs, tmp_path):
    from gradio_client import Client, handle_file

    from tests.helpers import start_app
    from vidchat.ui import ServerLimits

    app, url = start_app(model=str(tiny_model_dirs["qwen3_vl"]), sam=None, settings=SETTINGS)
    try:
        videos = [write_video(tmp_path / f"visitor{i}.mp4", n_frames=8, fps=10.0 + i / 100).path for i in range(25)]
        client = Client(url, verbose=False)
        client.predict(handle_file(videos[0]), 2.0, 8, api_name="/upload")
        assert client.submit("What is there?", api_name="/ask").result()["done"] is True
        one = app.workspaces._items[client.session_hash]
        # the newest session holds its video prefix KV; the others give theirs back to make room
        full, cached = one.memory_bytes, one.session.cache_bytes
        assert cached > 0
        limits = ServerLimits(memory_bytes=int(4.5 * (full - cached) + full), disk_bytes=int(8.5 * one.disk_bytes))
        app.workspaces.limits = limits
        memory, disk, files, open_sessions = [], [], [], []
        for video in videos[1:]:
            client.reset_session()  # another visitor
            client.predict(handle_file(video), 2.0, 8, api_name="/upload")
            assert client.submit("What is there?", api_name="/ask").result()["done"] is True
            memory.append(app.workspaces.memory_bytes)
            disk.append(app.workspaces.disk_bytes)
            files.append(len(list(app.inputs.cache_dir.rglob("visitor*.mp4"))))
            open_sessions.append(len(app.workspaces))
        assert max(memory) <= limits.memory_bytes and max(disk) <= limits.disk_bytes
        assert max(open_sessions) == 5  # the memory limit holds five sessions; older ones were closed
        assert max(files) == 5  # each open session keeps its upload; the closed ones' uploads are gone
        app.workspaces.close_all()
        assert list(app.inputs.cache_dir.rglob("visitor*")) == [] and list(app.workspaces.root.iterdir()) == []
    finally:
        app.close()
