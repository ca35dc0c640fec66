"""Both engines, the same session: in-process transformers and a real `vllm serve` (CPU build, tiny checkpoints).

A random model says nothing a test can ground, so both engines are given the same scripted words: in process by
`ScriptedLLM`, in the server by the `vidchat.testing.vllm_script` logits processor (the server still builds the
prompt from the video embeddings and their times, caches prefixes, batches and streams). Questions no rule
matches get each model's own greedy words, which the two engines must agree on.

Needs vLLM's environment (`./run test` makes .venv-vllm); skipped with that reason without it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file

from tests.helpers import build_visible_sam2, start_app
from vidchat.session import (
    GROUNDING_REQUEST_START,
    ChatSession,
    Engine,
    EngineError,
    Failure,
    MaskDecoder,
    ModelError,
    SessionSettings,
    transcribe,
)
from vidchat.selector import SelectorSettings, select, whole_patches
from vidchat.speech import Segment, Transcript
from vidchat.serving import VllmLLM, VllmRecognizer
from vidchat.testing.models import (
    VLLM_TINY_QWEN2_5_VISION,
    VLLM_TINY_QWEN3_VISION,
    VLLM_TINY_TEXT,
    build_qwen2_5_vl,
    build_qwen3_vl,
)
from vidchat.testing.needle import NEEDLE_QUESTION, needle_patches, rig_attention, write_needle_video
from vidchat.testing.scripted import Script, ScriptedLLM
from vidchat.testing.speech import write_speech_video
from vidchat.testing.videos import RED_SQUARE, write_video
from vidchat.testing.vllm_server import MISSING, VLLM_PYTHON, VllmServer
from vidchat.testing.whisper import TINY as TINY_WHISPER
from vidchat.testing.whisper import build_whisper
from vidchat.video import SamplingConfig, sample_span
from vidchat.vlm import Turn, VideoLLM
from vidchat.zoom import ZoomSettings, window_sampling
from vidchat.livechat import LiveChat, LiveChatSettings
from vidchat.recording import RecordingSettings
from vidchat.session import Alert
from vidchat.testing.videos import draw_frame, read_frame_index
from vidchat.watch import CHECK_QUESTION_START

ZOOM = ZoomSettings()

pytestmark = pytest.mark.vllm

SETTINGS = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=24, max_grounding_tokens=64)
QUESTION = "Where is the red square?"
ANSWER = "The red square is on the left at 00:01.0 and moves right."
FOLLOW_UP = "What does it do next?"
UNSCRIPTED = "Describe the video."
# Spoken lines (the words of a cooking video), enough of them to fill vLLM prefix-cache blocks of their own.
LONG_TRANSCRIPT = Transcript(
    "speech",
    "en",
    tuple(Segment(0.1 * i, 0.1 * i + 0.1, f"Step {i}: stir the sauce and keep the oven at {200 + i} degrees.")
          for i in range(30)),
)  # fmt: skip
BUILD = {
    "qwen3_vl": lambda folder: build_qwen3_vl(folder, text=VLLM_TINY_TEXT, vision=VLLM_TINY_QWEN3_VISION),
    "qwen2_5_vl": lambda folder: build_qwen2_5_vl(folder, text=VLLM_TINY_TEXT, vision=VLLM_TINY_QWEN2_5_VISION),
}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("vllm-video") / "shapes.mp4", n_frames=40, fps=10.0, size=(160, 120))


@pytest.fixture(scope="module")
def masks(tmp_path_factory) -> MaskDecoder:
    return MaskDecoder.from_pretrained(str(build_visible_sam2(tmp_path_factory.mktemp("vllm-sam2"))))


def grounding_reply(llm: VideoLLM, video) -> str:
    """The red square's box at 1.0 s in the family's own coordinates (0–1000, or pixels of the frames it saw)."""
    frame = int(np.argmin(np.abs(video.pts_s - 1.0)))
    x1, y1, x2, y2 = video.boxes[RED_SQUARE][frame]
    if llm.family == "qwen3_vl":
        sx, sy = 1000 / video.width, 1000 / video.height
    else:
        clip = ChatSession.open(video.path, llm, SETTINGS).tokens
        sx, sy = clip.input_size[0] / video.width, clip.input_size[1] / video.height
    box = [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]
    return json.dumps([{"time": 1.0, "bbox_2d": box, "label": "red square"}])


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def served(request, tmp_path_factory, video):
    """(family, checkpoint folder, script, running server) for each family."""
    if not VLLM_PYTHON.is_file():
        pytest.skip(MISSING)
    family = request.param
    work = tmp_path_factory.mktemp(f"vllm-{family}")
    folder = BUILD[family](work / "model")
    script = Script(answer=ANSWER, grounding=grounding_reply(VideoLLM.from_pretrained(str(folder)), video))
    rules = [
        {"when": GROUNDING_REQUEST_START, "say": script.grounding},
        # paced, so that the stream is not merged into one piece (the tests look at the streaming)
        {"when": QUESTION, "say": script.answer, "pause_s": 0.05},
        {"when": FOLLOW_UP, "say": script.answer, "pause_s": 0.05},
        {"when": "What is this?", "say": script.answer},
        {"when": CHECK_QUESTION_START, "say": "Yes."},
    ]
    with VllmServer(folder, rules, work) as server:
        yield family, folder, script, server


@pytest.fixture(params=["transformers", "vllm"])
def engine(request, served):
    """The family's model behind either engine, saying the same scripted words."""
    family, folder, script, server = served
    if request.param == "vllm":
        return VllmLLM.connect(server.url, str(folder))
    return ScriptedLLM(VideoLLM.from_pretrained(str(folder)), script)


def test_the_server_builds_the_in_process_prompt_with_the_same_frame_times(served, video):
    family, folder, _, server = served
    local = VideoLLM.from_pretrained(str(folder))
    remote = VllmLLM.connect(server.url, str(folder))
    session = ChatSession.open(video.path, remote, SETTINGS)
    tokens = session.tokens
    assert torch.equal(local.encode(session.clip).embeddings, tokens.embeddings)  # one vision tower, two processes
    history = [Turn(QUESTION, ANSWER)]
    # the whole clip: token for token the prompt the in-process engine builds, its <t seconds> text included
    assert remote.prompt_token_ids(tokens, history, FOLLOW_UP) == local.prompt(tokens, history, FOLLOW_UP).input_ids[0].tolist()
    if family == "qwen3_vl":
        # whole kept patches travel with their own true times, not renumbered from zero
        wide = SelectorSettings(max_fraction=0.5, min_fraction=0.3)
        selection = whole_patches(select(local, tokens, history, FOLLOW_UP, wide), tokens)
        kept_steps = np.unique(tokens.token_grid[selection.keep_indices.numpy(), 0])
        assert 0 < len(kept_steps) < tokens.steps
        ids = remote.prompt_token_ids(tokens, history, FOLLOW_UP, selection.keep_indices)
        text = local.processor.tokenizer.decode(ids)
        assert re.findall(r"<[0-9.]+ seconds>", text) == [f"<{tokens.step_time_s[s]:.1f} seconds>" for s in kept_steps]
        assert ids.count(local.video_token_id) == len(selection.keep_indices)
    else:
        assert remote.selection_unit == "none"  # Qwen2.5-VL's times cannot travel with sparse patches


def test_the_transcript_goes_after_the_video_in_both_engines_and_a_follow_up_reads_it_from_the_prefix_cache(
    served, video
):
    family, folder, _, server = served
    local = VideoLLM.from_pretrained(str(folder))
    remote = VllmLLM.connect(server.url, str(folder))
    heard = local.transcript_text(LONG_TRANSCRIPT, SETTINGS.transcript_tokens)
    assert heard.lines == len(LONG_TRANSCRIPT.segments)
    session = ChatSession.open(video.path, remote, SETTINGS)
    tokens, history = session.tokens, [Turn(QUESTION, ANSWER)]
    ids = remote.prompt_token_ids(tokens, history, FOLLOW_UP, transcript=heard.text)
    prompt = local.prompt(tokens, history, FOLLOW_UP, heard.text)
    assert ids == prompt.input_ids[0].tolist()  # token for token, the timed lines included
    assert local.processor.tokenizer.decode(ids[: prompt.prefix_length]).endswith(heard.text)
    # a follow-up finds the video and its transcript in the server's prefix cache, beyond the video's own blocks
    bare = local.prompt(tokens, [], FOLLOW_UP).prefix_length
    assert prompt.prefix_length // 128 > bare // 128
    session.transcript = LONG_TRANSCRIPT
    list(session.ask(QUESTION))
    before = remote.cache_counters()["prefix_cache_hits"]
    *_, answer = session.ask(FOLLOW_UP)
    assert answer.text == ANSWER and answer.transcript_lines == heard.lines
    assert remote.cache_counters()["prefix_cache_hits"] - before >= prompt.prefix_length // 128 * 128


def test_unscripted_words_are_the_same_from_both_engines(served, video):
    family, folder, _, server = served
    local = VideoLLM.from_pretrained(str(folder))
    remote = VllmLLM.connect(server.url, str(folder))
    tokens = ChatSession.open(video.path, local, SETTINGS).tokens
    history = [Turn(QUESTION, ANSWER)]
    here = "".join(local.generate(tokens, history, UNSCRIPTED, 12))
    there = "".join(remote.generate(tokens, history, UNSCRIPTED, 12))
    assert there.rstrip("\ufffd") == here.rstrip("\ufffd") and len(here) > 0  # same greedy words, both families


def test_a_session_streams_grounds_tracks_refers_and_exports_on_both_engines(engine, video, masks, tmp_path):
    session = ChatSession.open(video.path, engine, SETTINGS, masks=masks)
    counters = engine.cache_counters() if isinstance(engine, VllmLLM) else None

    events = list(session.ask(QUESTION))
    pieces, first = [e for e in events if isinstance(e, str)], events[-1]
    assert len(pieces) > 3 and "".join(pieces) == ANSWER == first.text  # streamed, piece by piece
    assert [span.start_s for span in first.groundings.times] == [1.0]
    square = session.objects["red square"]
    assert first.object_ids == (square.object_id,) and square.masklet.visible.any()
    remote = isinstance(engine, VllmLLM)
    if engine.family == "qwen3_vl" or not remote:  # the query-aware selection applied
        kept = first.selection.heatmap(session.tokens).kept.reshape(session.tokens.steps, -1)
        assert 0 < kept.sum() < kept.size
        if remote:  # whole temporal patches with their times: each patch all in or all out
            assert set(kept.sum(axis=1).tolist()) <= {0, kept.shape[1]}
    else:
        assert first.selection is None  # Qwen2.5-VL through vLLM: the whole clip

    second = list(session.ask(FOLLOW_UP))[-1]
    assert second.text == ANSWER and session.history[0] == Turn(QUESTION, ANSWER)
    if counters is not None:  # the follow-up's video prefix came from the server's prefix cache
        after = engine.cache_counters()
        assert after["prefix_cache_hits"] - counters["prefix_cache_hits"] >= 128  # vLLM's block size

    t_s = float(session.clip.times_s[2])
    clicked = session.point_at(t_s, 40.0, 40.0)
    assert clicked.masklet is not None and clicked.masklet.visible.any()
    third = list(session.ask("What is this?"))[-1]
    assert third.prompt != third.question and third.text == ANSWER  # the click went into the prompt

    mp4, json_path = session.export(tmp_path / "export")
    document = json.loads(json_path.read_text())
    assert [turn.get("question") for turn in document["turns"]] == [QUESTION, FOLLOW_UP, None, "What is this?"]
    assert document["turns"][2]["kind"] == "click" and document["turns"][3]["refers_to"] == clicked.object_id
    assert [obj["label"] for obj in document["objects"]] == ["red square", "clicked object 1"]
    assert mp4.stat().st_size > 0


def test_a_server_that_is_down_or_refuses_gives_a_clear_message_and_loses_nothing(served, video):
    family, folder, _, server = served
    remote = VllmLLM.connect(server.url, str(folder))
    session = ChatSession.open(video.path, remote, SETTINGS)
    first = list(session.ask(QUESTION))[-1]

    remote.url = "http://127.0.0.1:9"  # nothing listens there
    with pytest.raises(EngineError, match=r"vLLM server at http://127\.0\.0\.1:9 is not answering"):
        list(session.ask(FOLLOW_UP))
    assert session.answers == [first] and isinstance(session.conversation[-1], Failure)

    remote.url = server.url
    session.settings = SessionSettings(sampling=SETTINGS.sampling, max_new_tokens=10**6)  # beyond the model length
    with pytest.raises(EngineError, match=r"refused the request \(HTTP 400\)"):
        list(session.ask(FOLLOW_UP))
    assert session.answers == [first]

    session.settings = SETTINGS
    assert list(session.ask(FOLLOW_UP))[-1].text == ANSWER  # the same session answers again
    assert [answer.question for answer in session.answers] == [QUESTION, FOLLOW_UP]


def test_connecting_to_a_server_that_serves_another_model_says_which(served):
    _, folder, _, server = served
    with pytest.raises(Exception, match="serves .* not 'Qwen/Qwen3-VL-2B-Instruct'"):
        VllmLLM.connect(server.url, "Qwen/Qwen3-VL-2B-Instruct")
    with pytest.raises(EngineError, match="not answering"):
        VllmLLM.connect("http://127.0.0.1:9", str(folder))


def test_the_app_answers_through_vllm_over_its_api(served, video, tmp_path_factory):
    family, folder, _, server = served
    sam = build_visible_sam2(tmp_path_factory.mktemp("vllm-app-sam2"))
    app, url = start_app(model=str(folder), sam=str(sam), settings=SETTINGS, load=Engine("vllm", server.url).load)
    try:
        assert isinstance(app.models.llm(), VllmLLM)
        client = Client(url, verbose=False)
        client.predict(handle_file(video.path), 2.0, 8, api_name="/upload")
        before = app.models.llm().cache_counters()["prefix_cache_hits"]
        finals = []
        for question in [QUESTION, FOLLOW_UP]:
            job = client.submit(question, api_name="/ask")
            outputs = [*job]
            assert any(not output["done"] for output in outputs)  # streamed to the client
            finals.append(job.result())
        assert [final["text"] for final in finals] == [ANSWER, ANSWER]
        assert finals[0]["times"][0]["start_s"] == 1.0 and finals[0]["objects"][0]["label"] == "red square"
        assert app.models.llm().cache_counters()["prefix_cache_hits"] - before >= 128
        assert finals[1]["selection"]["on"] == (family == "qwen3_vl")
        clicked = client.predict(1.0, 60.0, 30.0, api_name="/point")
        assert clicked["masklet"]["visible_frames"] >= 1
        _, document = client.predict(api_name="/export")
        turns = json.loads(Path(document).read_text())["turns"]
        assert [(turn["kind"], turn.get("question")) for turn in turns] == [
            ("answer", QUESTION), ("answer", FOLLOW_UP), ("click", None)
        ]
    finally:
        app.close()


def test_a_live_source_answers_through_vllm_over_the_api(served, tmp_path):
    """A client's own frames (/live_start, /live_frame), a question about now and a standing question answered by the
    server, and /live_stop into a video whose follow-up the server answers too."""
    family, folder, _, server = served
    frames = []
    for index in range(24):  # 12 s at 2 fps, each frame carrying its index
        x = 10 + 4 * index
        path = tmp_path / f"frame-{index}.png"
        cv2.imwrite(str(path), draw_frame(index, {RED_SQUARE: np.array([x, 40, x + 30, 70])}, (160, 120))[..., ::-1])
        frames.append(path)
    live_settings = LiveChatSettings(recording=RecordingSettings(fps=2.0, window_s=4.0), check_every_s=1.0)
    app, url = start_app(
        model=str(folder), settings=SETTINGS, load=Engine("vllm", server.url).load, live=live_settings
    )
    try:
        client = Client(url, verbose=False)
        assert client.predict("", 2, 4, api_name="/live_start")["live"] is True
        assert client.predict("tell me when the square is right", api_name="/live_watch") == {
            "watching": "the square is right"
        }
        for index, path in enumerate(frames):
            assert client.predict(handle_file(str(path)), index * 0.5, api_name="/live_frame")["kept"]
        final = client.submit(QUESTION, api_name="/ask").result()
        assert final["text"] == ANSWER and final["times"][0]["start_s"] == 1.0
        deadline = time.monotonic() + 60
        while not client.predict(api_name="/live_status")["alerts"] and time.monotonic() < deadline:
            time.sleep(0.2)
        alerts = client.predict(api_name="/live_status")["alerts"]
        assert len(alerts) == 1 and alerts[0]["reply"] == "Yes." and 0 <= alerts[0]["t_s"] <= 11.5
        stopped = client.predict(api_name="/live_stop")
        assert sorted(turn["kind"] for turn in stopped["turns"]) == ["alert", "answer"]
        follow_up = client.submit(FOLLOW_UP, api_name="/ask").result()
        assert follow_up["text"] == ANSWER
    finally:
        app.close()


# ---- speech heard on a vLLM server serving Whisper ------------------------------------------------------------

SPOKEN_LINE = "Preheat the oven."


@pytest.fixture(scope="module")
def whisper_server(tmp_path_factory):
    """A tiny Whisper (head_dim 32, the CPU attention's smallest) served by vLLM, its words scripted: the language
    it detects (its one-token request) is English, and each window it hears says SPOKEN_LINE from 0.00 to 0.60 s."""
    if not VLLM_PYTHON.is_file():
        pytest.skip(MISSING)
    work = tmp_path_factory.mktemp("vllm-whisper")
    folder = build_whisper(work / "model", replace(TINY_WHISPER, heads=2))
    rules = [
        {"when": "<|transcribe|>", "say": f"<|0.00|> {SPOKEN_LINE}<|0.60|>"},
        {"when": "<|startoftranscript|>", "say": "<|en|>"},
    ]
    with VllmServer(folder, rules, work, flags=()) as server:
        yield folder, server


def test_speech_is_heard_on_a_vllm_server_with_its_lines_on_the_video_clock(whisper_server, tmp_path):
    folder, server = whisper_server
    talk = write_speech_video(tmp_path / "talk.mp4", [(1.0, "Preheat the oven."), (6.5, "Now stir it.")], 9.0)
    recognizer = Engine(asr_url=server.url).load("asr", str(folder))
    assert isinstance(recognizer, VllmRecognizer)
    transcript = transcribe(talk.path, recognizer)
    assert transcript.source == "speech" and transcript.language == "en"
    # one window per spoken sentence (the voice detector's regions); each line at its window's start + 0.00–0.60
    assert [segment.text for segment in transcript.segments] == [SPOKEN_LINE, SPOKEN_LINE]
    for segment, said in zip(transcript.segments, talk.utterances):
        assert segment.start_s == pytest.approx(said.voice_s[0], abs=0.4)
        assert segment.end_s - segment.start_s == pytest.approx(0.6, abs=0.02)
        assert segment.words == ()  # the server's API gives no word times
    with pytest.raises(ModelError, match="not the speech recognizer 'openai/whisper-small'"):
        Engine(asr_url=server.url).load("asr", "openai/whisper-small")


# ---- zoom: windows as more videos with their own times --------------------------------------------------------


@pytest.fixture(scope="module")
def haystack(tmp_path_factory):
    return write_needle_video(tmp_path_factory.mktemp("vllm-needle") / "haystack.mp4", seconds=120, fps=4, needle_s=70.0)


def test_zoom_windows_go_to_the_server_with_their_times_and_a_follow_up_hits_the_prefix_cache(served, haystack):
    family, folder, _, server = served
    local = VideoLLM.from_pretrained(str(folder))
    remote = VllmLLM.connect(server.url, str(folder))
    # The coarse pass whole (no selection: its embeddings and uuid are the same for every question), a frame every
    # 1.875 s; the app's scoring layer (the server's layer 0, loaded here too) rigged to the needle.
    settings = replace(SETTINGS, sampling=SamplingConfig(fps=2, max_frames=64), selector=None, max_new_tokens=4)
    session = ChatSession.open(haystack.path, remote, settings)
    tokens = session.tokens
    rig_attention(remote, tokens, needle_patches(session.clip.times_s, tokens.steps, haystack), layer=0)

    first = list(session.ask(NEEDLE_QUESTION))[-1]
    assert len(first.zoom) == 1
    look = first.zoom[0]
    assert look.window.start_s <= haystack.start_s and haystack.end_s <= look.window.end_s
    # the server builds the in-process prompt token for token: the window's label, and for Qwen3-VL its true times
    window = look.window
    encoded = remote.encode(sample_span(session.clip, window.start_s, window.end_s, window_sampling(window, 4.0, ZOOM)))
    ids = remote.prompt_token_ids(tokens, [], NEEDLE_QUESTION, windows=[encoded])
    prompt = local.prompt(tokens, [], NEEDLE_QUESTION, "", [encoded])
    assert ids == prompt.input_ids[0].tolist()
    text = local.processor.tokenizer.decode(ids)
    assert f"from {look.window.start_s:.1f} to {look.window.end_s:.1f} seconds" in text
    if family == "qwen3_vl":
        window_part = text[text.index("A closer look") :]
        assert re.findall(r"<[0-9.]+ seconds>", window_part) == [f"<{t:.1f} seconds>" for t in encoded.step_time_s]

    before = remote.cache_counters()["prefix_cache_hits"]
    second = list(session.ask("And the yellow flash, how long is it?"))[-1]
    assert second.zoom and second.zoom[0] is look  # the window reused, not decoded nor encoded again
    # the system prompt and the whole coarse video came from the server's prefix cache
    assert remote.cache_counters()["prefix_cache_hits"] - before >= prompt.prefix_length // 128 * 128 > 0


# ---- a live source ----------------------------------------------------------------------------------------


def test_a_live_window_goes_to_the_server_with_its_times_and_a_standing_question_fires_once(served, tmp_path):
    family, folder, script, server = served
    local = VideoLLM.from_pretrained(str(folder))
    remote = VllmLLM.connect(server.url, str(folder))
    settings = LiveChatSettings(recording=RecordingSettings(fps=2.0, window_s=4.0), check_every_s=1.0)
    live = LiveChat(remote, tmp_path, settings, replace(SETTINGS, ground_objects=False))
    for index in range(40):  # 20 s of a 2 fps source
        x = 10 + 2 * index
        live.add_frame(draw_frame(index, {RED_SQUARE: np.array([x, 40, x + 30, 70])}, (160, 120)), index * 0.5)
    pieces = list(live.ask(QUESTION))
    assert "".join(pieces[:-1]) == ANSWER == pieces[-1].text
    chat = live.chat
    assert [read_frame_index(frame) for frame in chat.clip.frames] == list(range(31, 40))  # the newest 4 s
    # the server builds the in-process prompt token for token: the window's seconds, and for Qwen3-VL its times
    tokens = remote.encode(chat.clip, cached=False)
    ids = remote.prompt_token_ids(tokens, [], QUESTION)
    assert ids == local.prompt(tokens, [], QUESTION).input_ids[0].tolist()
    text = local.processor.tokenizer.decode(ids)
    assert "The live video from 15.5 to 19.5 seconds" in text
    if family == "qwen3_vl":
        assert re.findall(r"<[0-9.]+ seconds>", text) == ["<15.8 seconds>", "<16.8 seconds>", "<17.8 seconds>",
                                                         "<18.8 seconds>", "<19.5 seconds>"]  # fmt: skip
    live.watch("the square reaches the right")
    for _ in range(2):  # the server says yes to every check: one alert
        live.check()
    assert [(type(e).__name__, getattr(e, "t_s", None)) for e in live.conversation[1:]] == [("Alert", 19.5)]
    assert isinstance(live.conversation[1], Alert) and live.conversation[1].reply == "Yes."
    live.close()
