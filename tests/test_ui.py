"""The web app in-process on 127.0.0.1 with tiny checkpoints, driven through gradio_client's named endpoints."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.helpers import SETTINGS, build_visible_sam2, free_port, square_box_1000, start_app
from vidchat import ui
from vidchat.grounding import CoordinateFrame, TimeSpan, parse_answer
from vidchat.session import GROUNDING_REQUEST_START, GroundedObject, load_model
from vidchat.testing.scripted import Script, ScriptedLLM, scripted_loader
from vidchat.testing.videos import RED_SQUARE, write_text_file, write_video
from vidchat.ui import VidchatApp
from vidchat.ui.views import MASK_CHUNK_FRAMES, answer_markdown, chat_messages, mask_chunks, overlay_payload
from vidchat.ui.workspaces import Workspace

REPO = Path(__file__).resolve().parent.parent


# ---- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """4 s of moving shapes at 160×120, 10 fps: 8 frames sampled at 2 fps."""
    return write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", n_frames=40, fps=10.0, size=(160, 120))


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory):
    return build_visible_sam2(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def served(tiny_model_dirs, sam2_dir, tmp_path_factory):
    """The app with the tiny Qwen3-VL (its own random words) and the tiny SAM 2."""
    app, url = start_app(model=str(tiny_model_dirs["qwen3_vl"]), sam=str(sam2_dir), settings=SETTINGS)
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def scripted(tiny_model_dirs, sam2_dir, clip, tmp_path_factory):
    """The same app with the model's words scripted: an answer with two times, a grounding reply with a box."""
    grounding = f'[{{"time": 1.5, "bbox_2d": {square_box_1000(clip, 1.5)}, "label": "red square"}}]'
    script = Script(
        answer="The red square moves right from 00:00.5 to 00:02.5, then stops at 3 seconds.", grounding=grounding
    )
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(sam2_dir),
        settings=SETTINGS,
        load=scripted_loader(script),
    )
    yield app, url
    app.close()


def _workspace(app: VidchatApp, client: Client) -> Workspace:
    return app.workspaces._items[client.session_hash]


def close_tab(app: VidchatApp, client: Client) -> None:
    app.on_unload(SimpleNamespace(session_hash=client.session_hash))  # what demo.unload calls


# ---- formatting ----------------------------------------------------------------------------------------------


def test_times_become_links_that_seek_and_object_names_take_their_colour():
    text = "The red square moves from 00:01.0 to 00:03.5; the Red Square stops at 4 seconds near the square."
    span, instant = text.index("00:01.0 to 00:03.5"), text.index("4 seconds")
    times = (TimeSpan(1.0, 3.5, span, span + 18), TimeSpan(4.0, 4.0, instant, instant + 9))
    objects = [GroundedObject(1, "red square"), GroundedObject(2, "square")]
    out = answer_markdown(text, times, objects)
    assert out == (
        f'The <span class="vc-obj" style="color:{objects[0].color}">red square</span> moves from '
        "[00:01.0 to 00:03.5](#t=1.0); the "  # a span seeks to its start
        f'<span class="vc-obj" style="color:{objects[0].color}">Red Square</span> stops at [4 seconds](#t=4.0) near the '
        f'<span class="vc-obj" style="color:{objects[1].color}">square</span>.'
    )
    assert objects[0].color != objects[1].color


def test_a_chinese_answer_gets_its_links_and_coloured_names():
    text = "红色方块在00:02.0到达中间，从0:01到0:03一直向右移动，方块很红。"
    times = parse_answer(text, CoordinateFrame("relative1000", 448, 336, 160, 120), 4.0).times
    objects = [GroundedObject(1, "红色方块")]
    assert answer_markdown(text, times, objects) == (
        f'<span class="vc-obj" style="color:{objects[0].color}">红色方块</span>在[00:02.0](#t=2.0)到达中间，'
        "从[0:01到0:03](#t=1.0)一直向右移动，方块很红。"
    )


def test_existing_links_and_times_without_a_text_span_are_left_alone():
    text = "Look at [00:02.0](#t=2.0) and at 00:05.0."
    linked, plain = text.index("00:02.0"), text.index("00:05.0")
    times = (
        TimeSpan(2.0, 2.0, linked, linked + 7),
        TimeSpan(5.0, 5.0, plain, plain + 7),
        TimeSpan(7.0, 8.0, -1, -1, "from JSON"),
    )
    assert answer_markdown(text, times) == "Look at [00:02.0](#t=2.0) and at [00:05.0](#t=5.0)."


# ---- the API, with the tiny model's own words --------------------------------------------------------------


def test_upload_then_two_streamed_questions_then_point(served, clip):
    app, url = served
    client = Client(url, verbose=False)
    info = client.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
    assert info["name"] == "shapes.mp4"
    assert (info["width"], info["height"]) == (160, 120)
    assert info["sampled_times_s"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    session = _workspace(app, client).session

    encodes = []
    visual = session.llm.model.model.visual
    original = visual.forward
    visual.forward = lambda *a, **k: encodes.append(1) or original(*a, **k)
    try:
        finals = []
        for question in ["What does the red square do?", "And then?"]:
            job = client.submit(question, api_name="/ask")
            outputs = [*job]
            final = job.result()
            assert final["done"] is True and final == outputs[-1]
            streamed = [o for o in outputs if not o["done"]]
            assert streamed, "the answer arrives in pieces before the final result"
            assert all(final["text"].startswith(o["text"]) for o in streamed)
            assert set(final) >= {"text", "times", "boxes", "points", "objects"}
            finals.append(final)
    finally:
        del visual.forward
    assert encodes == []  # follow-ups reuse the encoded video
    assert [a.question for a in session.answers] == ["What does the red square do?", "And then?"]
    assert [a.text for a in session.answers] == [f["text"] for f in finals]
    # what the model looked at: the session's selector's own choice, in all and per temporal patch
    for final, answer in zip(finals, session.answers, strict=True):
        heat = answer.selection.heatmap(session.tokens)
        assert final["selection"]["on"] and final["selection"]["kept"] == len(answer.selection.keep_indices)
        assert final["selection"]["total"] == len(session.tokens.embeddings) > final["selection"]["kept"]
        per_step = heat.kept.reshape(len(heat.kept), -1).sum(axis=1).tolist()
        assert [step["kept"] for step in final["selection"]["steps"]] == per_step

    summary = client.predict(1.0, 60.0, 30.0, api_name="/point")  # on the red square at 1 s
    masklet = summary["masklet"]
    assert summary["label"].startswith("clicked object") and summary["color"].startswith("#")
    assert masklet["frames"] == 8 and masklet["times_s"] == pytest.approx(info["sampled_times_s"])
    assert masklet["prompt_frames"] == [2]  # the click at 1.0 s lands on the sampled frame at 1.0 s
    assert masklet["visible_frames"] >= 1 and masklet["areas"][2] > 0
    x1, y1, x2, y2 = masklet["boxes"][2]
    assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
    # the next question refers to the clicked object, in the model's 0–1000 coordinates
    list(client.submit("What is this?", api_name="/ask"))
    assert session.answers[-1].prompt.startswith("I mean the object at 00:01.0")


def test_a_text_file_named_mp4_is_refused_and_the_next_upload_works(served, clip, tmp_path):
    app, url = served
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="is not a video"):
        client.predict(handle_file(write_text_file(tmp_path / "notes.mp4")), 2.0, 8, api_name="/upload")
    assert _workspace(app, client).session is None
    info = client.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
    assert len(info["sampled_times_s"]) == 8
    assert client.submit("What is there?", api_name="/ask").result()["done"] is True


def test_export_returns_the_annotated_mp4_and_the_json(served, clip):
    _, url = served
    client = Client(url, verbose=False)
    client.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
    client.predict(2.0, 60.0, 30.0, api_name="/point")
    video, document = client.predict(api_name="/export")
    assert Path(video).suffix == ".mp4" and Path(document).suffix == ".json"
    import json

    import av

    with av.open(video) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    objects = json.loads(Path(document).read_text())["objects"]
    assert [o["label"] for o in objects] == ["clicked object 1"] and len(objects[0]["masklet"]["masks"]) == 8


# ---- the API, with scripted words: the parser, SAM 2 and the overlays are real -----------------------------


def test_answers_come_back_with_times_and_located_objects(scripted, clip):
    app, url = scripted
    client = Client(url, verbose=False)
    client.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
    final = client.submit("What does the red square do?", api_name="/ask").result()
    assert final["text"] == "The red square moves right from 00:00.5 to 00:02.5, then stops at 3 seconds."
    assert [(t["start_s"], t["end_s"], t["text"]) for t in final["times"]] == [
        (0.5, 2.5, "00:00.5 to 00:02.5"),
        (3.0, 3.0, "3 seconds"),
    ]
    (box,) = final["boxes"]
    x1, y1, x2, y2 = clip.boxes[RED_SQUARE][15]  # the frame at 1.5 s
    assert box["t_s"] == 1.5 and box["label"] == "red square"
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == pytest.approx((x1, y1, x2, y2), abs=0.2)
    (obj,) = final["objects"]
    assert obj["object_id"] == 1 and obj["masklet"]["prompt_frames"] == [3]
    # the page's overlay data for this session: the object and its masks' version; the masks themselves come in
    # chunks near the playhead, each frame's mask a PNG in the object's colour
    session = _workspace(app, client).session
    overlay = overlay_payload(session)
    assert (overlay["width"], overlay["height"]) == (160, 120) and len(overlay["frame_times_s"]) == 8
    assert "frames" not in overlay and "png" not in json.dumps(overlay)
    (shown,) = overlay["objects"]
    assert (shown["id"], shown["color"]) == (1, obj["color"]) and shown["masks"]
    wish = {"video": overlay["video"], "seq": 7, "want": [{"id": 1, "masks": shown["masks"], "chunk": 0}]}
    chunks = mask_chunks(session, wish)
    assert chunks["seq"] == 7 and [c["chunk"] for c in chunks["chunks"]] == [0]
    frames = chunks["chunks"][0]["frames"]
    assert [f["i"] for f in frames] == list(range(MASK_CHUNK_FRAMES))[:8]
    assert all(f["png"].startswith("data:image/png;base64,") for f in frames if f["box"] is not None)
    # masks of another version (the object changed since the page asked) or another video are not sent
    assert mask_chunks(session, {**wish, "want": [{"id": 1, "masks": "1.0", "chunk": 0}]})["chunks"] == []
    assert mask_chunks(session, {**wish, "video": "another video"})["chunks"] == []


# ---- start-up, model loading, isolation --------------------------------------------------------------------


def test_without_weights_the_app_starts_and_says_how_to_fetch_them(tiny_model_dirs, tmp_path, clip):
    app, url = start_app(model="nobody/no-such-vlm", sam=ui.NO_MASKS, settings=SETTINGS)
    try:
        status = ui.views.status_html(app.models)
        assert "not available" in status and "python -m vidchat download nobody/no-such-vlm" in status
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="python -m vidchat download nobody/no-such-vlm"):
            client.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
        # the settings panel's "Load these models" (what its button calls): another model, and the app works
        app.on_models(str(tiny_model_dirs["qwen2_5_vl"]), ui.NO_MASKS, "none", "none")
        assert len(client.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")["sampled_times_s"]) == 8
        assert "not available" not in ui.views.status_html(app.models)
    finally:
        app.close()


def test_uploads_are_decoded_while_the_model_is_still_loading(tiny_model_dirs, tmp_path, clip, monkeypatch):
    import vidchat.session

    gate = threading.Event()
    real_sample = vidchat.session.sample
    decoded = threading.Event()
    monkeypatch.setattr(vidchat.session, "sample", lambda *a, **k: (real_sample(*a, **k), decoded.set())[0])
    app = VidchatApp(
        model=str(tiny_model_dirs["qwen2_5_vl"]),
        sam=ui.NO_MASKS,
        settings=SETTINGS,
        load=lambda kind, model_id: gate.wait() and load_model(kind, model_id),
    )
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        job = client.submit(handle_file(clip.path), 2.0, 8, api_name="/upload")
        assert decoded.wait(30)  # the frames are decoded while the model loads ...
        time.sleep(0.3)
        assert not job.done()  # ... and encoding them waits for it
        gate.set()
        assert len(job.result()["sampled_times_s"]) == 8
        status = ui.views.status_html(app.models)
        assert "vc-ok" in status and "loading" not in status
    finally:
        gate.set()
        app.close()


def test_each_tab_has_its_own_workspace_deleted_a_while_after_the_tab_closes(served, clip):
    app, url = served
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    first.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
    second.predict(handle_file(clip.path), 2.0, 8, api_name="/upload")
    one, two = _workspace(app, first), _workspace(app, second)
    assert one is not two and one.session is not two.session and one.folder != two.folder
    assert len(one.folder.name) == len("session-") + 32  # unguessable: Gradio serves its files by path
    second.predict(1.0, 60.0, 30.0, api_name="/point")
    assert one.session.objects == {} and len(two.session.objects) == 1
    assert one.folder.is_dir()
    app.workspaces.limits = ui.ServerLimits(disconnect_grace_s=1.0)
    try:
        close_tab(app, first)
        close_tab(app, second)
        assert one.session is not None  # not at once: a page that reconnects keeps its session
        second.predict(2.0, 60.0, 30.0, api_name="/point")  # the second tab came back
        time.sleep(1.5)
    finally:
        app.workspaces.limits = ui.ServerLimits()
    assert first.session_hash not in app.workspaces._items and not one.folder.exists() and one.session is None
    assert two.session is not None and len(two.session.objects) == 2
    with pytest.raises(AppError, match="Your video was closed after this page disconnected. Upload it again"):
        first.predict(1.0, 60.0, 30.0, api_name="/point")


def test_example_clips_are_generated_with_their_questions(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", REPO / "assets" / "make_examples.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    listed = module.ensure_examples(tmp_path)
    assert [Path(v).name for v, _ in listed] == ["shapes.mp4", "road.mp4", "clock.mp4"]
    assert all(q.endswith("?") for _, q in listed)
    import av

    for video, _ in listed:
        assert Path(video).stat().st_size < 200_000
        with av.open(video) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.width, stream.height, stream.frames) == ("h264", 480, 270, 90)


# ---- one server, many visitors: files go with their session, limits hold ------------------------------------


@pytest.fixture(scope="module")
def limited_app(tiny_model_dirs, sam2_dir, clip):
    """An app whose limits each test sets; the clip is also its example."""
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(sam2_dir),
        settings=SETTINGS,
        examples=[(clip.path, "What moves?")],
    )
    yield app, url
    app.close()


@pytest.fixture
def limited(limited_app):
    app, url = limited_app
    app.workspaces.limits = ui.ServerLimits(disconnect_grace_s=0)  # a closed tab's session goes at once
    yield app, url
    app.workspaces.close_all()


def other_video(folder: Path, i: int) -> str:
    """A clip like `clip` (same size, 8 sampled frames) with other bytes, so Gradio keeps it as another file."""
    return write_video(folder / f"other{i}.mp4", n_frames=40, fps=10.01 + i / 100, size=(160, 120)).path


def upload(url: str, video: str) -> Client:
    client = Client(url, verbose=False)
    client.predict(handle_file(video), 2.0, 8, api_name="/upload")
    return client


def test_an_upload_goes_when_its_session_opens_another_video_and_when_the_tab_closes(limited, tmp_path):
    app, url = limited
    client = upload(url, other_video(tmp_path, 0))
    workspace = _workspace(app, client)
    first = workspace.input
    assert first.is_file() and first.is_relative_to(app.inputs.cache_dir) and first.name == "other0.mp4"
    client.predict(handle_file(other_video(tmp_path, 1)), 2.0, 8, api_name="/upload")
    second = workspace.input
    assert second.is_file() and not first.exists() and not first.parent.exists()
    close_tab(app, client)
    assert not second.exists() and not workspace.folder.exists() and len(app.inputs) == 0
    assert not any({str(first), str(second)} & files for files in app.demo.temp_file_sets)  # Gradio forgot them


def test_a_session_that_opens_the_same_upload_again_keeps_it(limited, tmp_path):
    app, url = limited
    video = other_video(tmp_path, 17)
    client = upload(url, video)
    held = _workspace(app, client).input
    info = client.predict(handle_file(video), 2.0, 8, api_name="/upload")  # the same file once more
    assert len(info["sampled_times_s"]) == 8 and _workspace(app, client).input == held and held.is_file()


def test_two_sessions_share_one_upload_until_both_close(limited, tmp_path):
    app, url = limited
    video = other_video(tmp_path, 2)
    one, two = upload(url, video), upload(url, video)
    shared = _workspace(app, one).input
    assert shared == _workspace(app, two).input  # Gradio names an upload by its content
    close_tab(app, one)
    assert shared.is_file()
    close_tab(app, two)
    assert not shared.exists()


def test_the_examples_copy_stays_when_a_session_that_used_it_closes(limited, clip):
    app, url = limited
    (example,) = app.inputs.keep
    assert example.is_file() and example.name == "shapes.mp4"
    client = upload(url, clip.path)  # the example's bytes: Gradio keeps the upload as the example's own copy
    assert _workspace(app, client).input is None
    workspace = app.workspaces.get(SimpleNamespace(session_hash="example tab"))  # what picking the example does
    app.open_video(workspace, str(example), SETTINGS, lambda fraction, message: None)
    close_tab(app, client)
    app.workspaces.disconnected(SimpleNamespace(session_hash="example tab"))
    assert example.is_file()


def test_only_the_latest_export_is_kept_and_gradio_makes_no_copy_of_it(limited, tmp_path):
    app, url = limited
    client = upload(url, other_video(tmp_path, 3))
    client.predict(api_name="/export")
    video, document = client.predict(api_name="/export")
    workspace = _workspace(app, client)
    assert [path.name for path in workspace.folder.iterdir()] == ["export-2"]
    handed_out = set().union(*app.demo.temp_file_sets)
    assert str(workspace.folder / "export-2" / "vidchat.mp4") in handed_out
    assert str(workspace.folder / "export-1" / "vidchat.mp4") not in handed_out  # deleted, and Gradio forgot it
    exported = workspace.folder / "export-2" / "vidchat.mp4"
    assert exported.read_bytes() == Path(video).read_bytes()
    same = [p for p in app.inputs.cache_dir.rglob("*.mp4") if p.stat().st_size == exported.stat().st_size]
    assert [p for p in same if p.read_bytes() == exported.read_bytes()] == [exported]
    files = [*workspace.folder.rglob("*.*"), workspace.input]
    assert workspace.disk_bytes == sum(path.stat().st_size for path in files)


def test_past_the_memory_limit_the_least_recently_used_session_is_closed_and_told_why(limited, tmp_path):
    app, url = limited
    first = upload(url, other_video(tmp_path, 4))
    one = _workspace(app, first).memory_bytes
    assert one > 0
    app.workspaces.limits = ui.ServerLimits(memory_bytes=int(2.5 * one))  # room for two sessions
    second = upload(url, other_video(tmp_path, 5))
    third = upload(url, other_video(tmp_path, 6))
    assert set(app.workspaces._items) == {second.session_hash, third.session_hash}
    assert app.workspaces.memory_bytes <= app.workspaces.limits.memory_bytes
    with pytest.raises(AppError, match="closed to make room for other visitors. Upload it again to go on"):
        first.submit("What is there?", api_name="/ask").result()
    first.predict(handle_file(other_video(tmp_path, 4)), 2.0, 8, api_name="/upload")  # back: now the second goes
    assert set(app.workspaces._items) == {first.session_hash, third.session_hash}
    assert first.submit("What is there?", api_name="/ask").result()["done"] is True


def test_a_session_in_a_call_is_never_closed_and_a_video_with_no_room_is_refused(limited, tmp_path):
    app, url = limited
    first = upload(url, other_video(tmp_path, 7))
    busy = _workspace(app, first)
    app.workspaces.limits = ui.ServerLimits(memory_bytes=int(1.5 * busy.memory_bytes))  # room for one session
    second = Client(url, verbose=False)
    with busy.lock:  # a turn is running in the first session
        with pytest.raises(AppError, match="The server has no room for this video now"):
            second.predict(handle_file(other_video(tmp_path, 8)), 2.0, 8, api_name="/upload")
        refused = _workspace(app, second)
        assert refused.session is None and refused.input is None and refused.memory_bytes == 0
        assert list(app.inputs.cache_dir.rglob("other8.mp4")) == []  # the refused upload is deleted
        assert busy.session is not None
    second.predict(handle_file(other_video(tmp_path, 8)), 2.0, 8, api_name="/upload")  # the first is idle now
    assert first.session_hash not in app.workspaces._items and busy.session is None


def test_sam2_features_of_idle_sessions_make_room_before_any_session_is_closed(limited, tmp_path):
    app, url = limited
    first = upload(url, other_video(tmp_path, 9))
    first.predict(1.0, 60.0, 30.0, api_name="/point")
    idle = _workspace(app, first)
    features = idle.session.feature_bytes
    assert features > 0
    session_without_objects = idle.session.clip.frames.nbytes + idle.session.tokens.nbytes
    # room for both sessions, but not for the first one's features
    app.workspaces.limits = ui.ServerLimits(memory_bytes=idle.memory_bytes + session_without_objects - features // 2)
    upload(url, other_video(tmp_path, 10))
    assert idle.session is not None and idle.session.feature_bytes == 0
    assert app.workspaces.memory_bytes <= app.workspaces.limits.memory_bytes
    assert first.predict(2.0, 60.0, 30.0, api_name="/point")["masklet"]["frames"] == 8  # encoded again


def test_past_the_session_limit_the_least_recently_used_goes_and_busy_ones_make_the_server_refuse(limited, tmp_path):
    app, url = limited
    app.workspaces.limits = ui.ServerLimits(max_sessions=2)
    first, second = upload(url, other_video(tmp_path, 11)), upload(url, other_video(tmp_path, 12))
    third = upload(url, other_video(tmp_path, 13))
    assert set(app.workspaces._items) == {second.session_hash, third.session_hash}
    with pytest.raises(AppError, match="closed to make room for other visitors"):
        first.predict(1.0, 60.0, 30.0, api_name="/point")
    assert set(app.workspaces._items) == {first.session_hash, third.session_hash}  # the tab came back, empty
    with _workspace(app, first).lock, _workspace(app, third).lock:
        with pytest.raises(AppError, match="The server is busy: 2 sessions are in use, the most it takes at once"):
            upload(url, other_video(tmp_path, 14))
    assert len(app.workspaces) == 2 and list(app.inputs.cache_dir.rglob("other14.mp4")) == []


def test_an_idle_session_is_closed_after_the_timeout_and_told_why(limited, tmp_path):
    app, url = limited
    app.workspaces.limits = ui.ServerLimits(idle_timeout_s=60)
    client = upload(url, other_video(tmp_path, 15))
    workspace = _workspace(app, client)
    workspace.touched -= 61
    with pytest.raises(AppError, match="Your video was closed after 1 minute without use. Upload it again"):
        client.submit("What is there?", api_name="/ask").result()
    assert not workspace.folder.exists() and workspace.session is None


def test_an_upload_over_the_size_limit_is_refused_while_it_arrives(limited, tmp_path):
    app, url = limited
    assert app.demo.max_file_size == SETTINGS.limits.max_bytes  # set from the video limits at launch
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 200_000)
    app.demo.max_file_size = 100_000
    try:
        with big.open("rb") as file:
            response = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.mp4", file, "video/mp4")})
    finally:
        app.demo.max_file_size = SETTINGS.limits.max_bytes
    assert response.status_code == 413 and "maximum allowed size" in response.text
    assert list(app.inputs.cache_dir.rglob("big.mp4")) == []


def test_questions_over_the_length_limit_are_refused_and_lone_surrogates_are_answered(limited, tmp_path):
    app, url = limited
    client = upload(url, other_video(tmp_path, 16))
    too_long = "x" * (SETTINGS.max_question_chars + 1)
    with pytest.raises(AppError, match=f"the limit is {SETTINGS.max_question_chars:,}"):
        client.submit(too_long, api_name="/ask").result()
    # A browser's JSON can carry half a surrogate pair ("\ud800"); gradio_client cannot send one, so the handler
    # gets it directly, as the server would, and what it returns must still encode.
    request = SimpleNamespace(session_hash=client.session_hash)
    *_, final = app.api_ask("What is \ud800 there?", request, lambda *args, **kwargs: None)
    assert final["done"] is True and orjson.dumps(final)
    workspace = _workspace(app, client)
    chat = chat_messages(workspace.session)
    assert workspace.session.answers[-1].question == chat[-2]["content"] == "What is ? there?"


def test_the_servers_limits_come_from_app_py_flags_and_space_variables(monkeypatch, capsys):
    import app as entry

    built = {}
    monkeypatch.setattr(entry, "example_clips", lambda: [])
    monkeypatch.setattr(entry, "VidchatApp", lambda **kwargs: built.update(kwargs) or SimpleNamespace(launch=lambda **kw: None))
    monkeypatch.setenv("VIDCHAT_MAX_SESSIONS", "5")
    entry.main(["--memory-gb", "0.5"])
    assert built["limits"] == ui.ServerLimits(max_sessions=5, memory_bytes=512 * 1024**2, disk_bytes=16 * 1024**3)
    with pytest.raises(SystemExit) as exit_:
        entry.main(["--max-sessions", "0"])
    assert exit_.value.code == 2 and "max_sessions must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setenv("VIDCHAT_DISK_GB", "lots")
    with pytest.raises(SystemExit):
        entry.main([])
    assert "argument --disk-gb: invalid float value: 'lots'" in capsys.readouterr().err
    monkeypatch.delenv("VIDCHAT_DISK_GB")
    entry.main(["--engine", "vllm", "--engine-url", "http://127.0.0.1:8000"])
    assert built["limits"].turns_at_once == 5 == built["limits"].max_sessions  # every session's turn in flight
    assert ui.ServerLimits().turns_at_once == 1
    assert built["settings"].zoom.on  # the closer look is on unless turned off
    entry.main(["--no-zoom"])
    assert not built["settings"].zoom.on
    monkeypatch.setenv("VIDCHAT_ZOOM", "off")
    entry.main([])
    assert not built["settings"].zoom.on and built["settings"].zoom.windows == 2
    assert built["url_guard"].allow_networks == ()  # visitors' URLs reach public addresses only, unless allowed
    entry.main(["--allow-networks", "10.1.0.0/16", "127.0.0.2"])
    assert [str(n) for n in built["url_guard"].allow_networks] == ["10.1.0.0/16", "127.0.0.2/32"]
    with pytest.raises(SystemExit):
        entry.main(["--allow-networks", "10.1.0.0/33"])
    assert "10.1.0.0/33" in capsys.readouterr().err


def test_with_an_engine_that_answers_elsewhere_two_sessions_questions_run_side_by_side(tiny_model_dirs, clip):
    both_answering = threading.Barrier(2, timeout=60)

    class Remote(ScriptedLLM):
        answers_here = False  # as VllmLLM: the answer runs on the server, outside this process's model lock

        def generate(self, tokens, history, question, *args, **kwargs):
            if not question.startswith(GROUNDING_REQUEST_START):
                both_answering.wait()  # returns only once the other session's answer is running too
            yield from super().generate(tokens, history, question, *args, **kwargs)

    def load(kind, model_id):
        model = load_model(kind, model_id)
        return Remote(model, Script(answer="Both at once.")) if kind == "llm" else model

    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=ui.NO_MASKS,
        settings=SETTINGS,
        load=load,
        limits=ui.ServerLimits(turns_at_once=2),
    )
    try:
        jobs = [upload(url, clip.path).submit("What happens?", api_name="/ask") for _ in range(2)]
        assert [job.result(timeout=120)["text"] for job in jobs] == ["Both at once."] * 2
        assert both_answering.n_waiting == 0 and not both_answering.broken
    finally:
        app.close()


def test_the_timeline_data_marks_every_time_with_its_sentence_and_fills_lanes_where_objects_are_seen():
    from vidchat.ui.views import sentence_around, visible_runs

    text = "The cat sits at 00:01.0. Then it jumps at 00:03.5! 猫在00:05.0跳下。最后离开。"
    assert sentence_around(text, text.index("00:01.0")) == "The cat sits at 00:01.0."
    assert sentence_around(text, text.index("00:03.5")) == "Then it jumps at 00:03.5!"
    assert sentence_around(text, text.index("00:05.0")) == "猫在00:05.0跳下。"
    times, duration = [0.0, 0.5, 1.0, 1.5, 2.0], 2.2
    assert visible_runs(times, [True, True, False, True, False], duration) == [
        {"t_s": 0.0, "start_s": 0.0, "end_s": 0.75},
        {"t_s": 1.5, "start_s": 1.25, "end_s": 1.75},
    ]
    assert visible_runs(times, [False, False, False, False, True], duration) == [
        {"t_s": 2.0, "start_s": 1.75, "end_s": 2.2}
    ]
    assert visible_runs(times, [False] * 5, duration) == []


def test_the_timeline_says_when_the_engine_takes_the_whole_clip_although_a_selector_is_set(tiny_model_dirs, clip):
    from vidchat.session import ChatSession
    from vidchat.ui.views import timeline_data

    class WholeClip(ScriptedLLM):
        selection_unit = "none"  # as Qwen2.5-VL through vLLM

    llm = load_model("llm", str(tiny_model_dirs["qwen3_vl"]))
    for model, caption in [
        (ScriptedLLM(llm, Script(answer="Seen.")), "Looked at for the latest answer: kept "),
        (WholeClip(llm, Script(answer="Seen.")), "Selection does not apply with this engine and model"),
    ]:
        session = ChatSession.open(clip.path, model, SETTINGS)
        assert session.settings.selector is not None
        list(session.ask("What moves?"))
        assert timeline_data(session)["heat"]["caption"].startswith(caption)
    session.set_selector(None)
    list(session.ask("And then?"))
    assert timeline_data(session)["heat"]["caption"].startswith("Selection is off: the latest answer saw all ")
