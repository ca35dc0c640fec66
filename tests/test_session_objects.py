"""Objects of a conversation: grounded objects tracked by SAM 2, click-to-refer, overlays and exports.

The language model is scripted in these tests (a random tiny model says nothing parseable); parsing,
prompting SAM 2 (a tiny random checkpoint of the real class), tracking, rendering and export are real.
"""

import json
import re

import av
import numpy as np
import pytest
import torch

from vidchat.errors import PromptError
from vidchat.segment import MaskDecoder
from vidchat.session import ChatSession, Click, Failure, SessionSettings, answer_json, selector_settings
from vidchat.testing.sam2 import build_sam2_video
from vidchat.testing.videos import write_video
from vidchat.video import SamplingConfig
from vidchat.vlm import VideoLLM

SETTINGS = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=8, max_grounding_tokens=8)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("objects") / "shapes.mp4", n_frames=30, fps=10.0, size=(160, 120))


@pytest.fixture(scope="module")
def masks(tmp_path_factory) -> MaskDecoder:
    decoder = MaskDecoder.from_pretrained(str(build_sam2_video(tmp_path_factory.mktemp("sam2"))))
    head = decoder.model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():  # the object is "there" on every frame, so every frame gets tracked
        head.weight.zero_()
        head.bias.fill_(4.0)
    return decoder


def scripted(llm: VideoLLM, replies: list[str]) -> list[str]:
    """Make the model say `replies` in turn; returns the list of questions it was asked."""
    asked, queue = [], iter(replies)

    def generate(tokens, history, question, max_new_tokens, keep_indices=None, prefix=None, transcript="", windows=()):
        asked.append(question)
        return iter([next(queue)])

    llm.generate = generate
    return asked


def session_for(family, tiny_model_dirs, video, masks) -> ChatSession:
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs[family]))
    return ChatSession.open(video.path, llm, SETTINGS, masks=masks)


def test_every_grounded_object_gets_a_masklet_and_keeps_its_id(tiny_model_dirs, video, masks):
    session = session_for("qwen3_vl", tiny_model_dirs, video, masks)
    scripted(session.llm, [
        "A red square and a blue circle.",
        '[{"time": 0.5, "bbox_2d": [100, 100, 400, 500], "label": "red square"},'
        ' {"time": 2.0, "bbox_2d": [500, 200, 900, 900], "label": "blue circle"}]',
        "The red square keeps moving right.",
        '[{"time": 2.5, "bbox_2d": [300, 100, 600, 500], "label": "Red square"}]',
    ])
    first = list(session.ask("What is there?"))[-1]
    assert first.object_ids == (1, 2)
    square, circle = session.objects["red square"], session.objects["blue circle"]
    times = session.clip.times_s
    for obj in (square, circle):
        assert obj.masklet is not None and obj.masklet.object_id == obj.object_id
        assert len(obj.masklet.rles) == len(times)
        assert obj.masklet.masks().shape == (len(times), 120, 160)  # source resolution, every sampled frame
        assert obj.masklet.visible.all()  # tracked forward and backward from the prompt
    assert (square.color, circle.color) != (None, None) and square.color != circle.color
    # the prompt landed on the sampled frame nearest 0.5 s; 0–1000 coordinates became source pixels
    assert square.masklet.prompt_frames == (int(np.argmin(abs(times - 0.5))),)
    assert (square.boxes[0].x1, square.boxes[0].y1, square.boxes[0].x2, square.boxes[0].y2) == (16, 12, 64, 60)

    second = list(session.ask("What does the red square do?"))[-1]
    assert second.object_ids == (1,)
    square = session.objects["red square"]
    assert square.object_id == 1 and len(square.boxes) == 2  # same object, both prompts
    assert len(square.masklet.prompt_frames) == 2
    assert session.objects["blue circle"].masklet is circle.masklet  # not re-tracked


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_the_question_after_a_click_carries_the_objects_box_in_the_models_format(family, tiny_model_dirs, video, masks):
    session = session_for(family, tiny_model_dirs, video, masks)
    clicked = session.point_at(1.0, 40.0, 30.0)
    assert clicked.label == "clicked object 1" and session.referred is clicked
    assert clicked.masklet is not None and len(clicked.masklet.rles) == len(session.clip.times_s)
    asked = scripted(session.llm, ["It is a red square.", "[]", "It moves.", "[]"])
    answer = list(session.ask("What is this?"))[-1]
    assert answer.question == "What is this?" and answer.prompt.endswith("What is this?")
    match = re.search(r'"bbox_2d": \[(\d+), (\d+), (\d+), (\d+)\]', asked[0])
    assert match, asked[0]
    box = [int(v) for v in match.groups()]
    frame = session.coordinate_frame
    nearest = int(np.argmin(abs(session.clip.times_s - 1.0)))
    x1, y1, x2, y2 = clicked.masklet.box(nearest) if clicked.masklet.visible[nearest] else (39, 29, 41, 31)
    assert box == [*frame.to_model(x1, y1), *frame.to_model(x2, y2)]
    if family == "qwen3_vl":
        assert "0 to 1000" in asked[0]
    else:
        width, height = session.tokens.input_size
        assert f"pixels of the {width}x{height} frames" in asked[0]
        assert box[2] <= width and box[3] <= height
    assert "00:01.0" in asked[0]
    # the grounding request and later questions are not about the click any more
    later = list(session.ask("And then?"))[-1]
    assert asked[2] == "And then?"
    assert session.history[0].question == answer.prompt  # the model keeps seeing what it was asked
    assert (answer.refers_to, later.refers_to) == (clicked.object_id, None)

    # The export lists the click in its place, with its object, time and box, in the same shapes as the API.
    turns = session.to_json()["turns"]
    assert [turn["kind"] for turn in turns] == ["click", "answer", "answer"]
    click = turns[0]
    assert (click["t_s"], click["x"], click["y"]) == (1.0, 40.0, 30.0)
    assert (click["object_id"], click["label"]) == (clicked.object_id, "clicked object 1")
    assert click["box"] == (list(clicked.masklet.box(nearest)) if clicked.masklet.visible[nearest] else None)
    assert turns[1] == answer_json(answer, session) and turns[1]["refers_to"] == clicked.object_id
    assert turns[1]["question"] == "What is this?"


def test_a_new_conversation_forgets_the_turns_and_objects_but_not_the_video(tiny_model_dirs, video, masks):
    session = session_for("qwen3_vl", tiny_model_dirs, video, masks)
    asked = scripted(session.llm, [
        "A red square.", '[{"time": 0.5, "bbox_2d": [100, 100, 400, 500], "label": "red square"}]',
        "Nothing yet.", "[]",
    ])  # fmt: skip
    list(session.ask("What is there?"))
    session.point_at(1.0, 40.0, 30.0)
    tokens, revision = session.tokens, session.revision
    session.new_conversation()
    assert (session.conversation, session.objects, session.referred, session.history) == ([], {}, None, [])
    assert session.revision != revision and session.tokens is tokens
    answer = list(session.ask("What is there now?"))[-1]
    assert answer.refers_to is None and asked[-2] == "What is there now?"  # no click, no history in the prompt
    assert [turn["question"] for turn in session.to_json()["turns"]] == ["What is there now?"]


def test_clicks_outside_the_video_are_refused(tiny_model_dirs, video, masks):
    session = session_for("qwen3_vl", tiny_model_dirs, video, masks)
    with pytest.raises(PromptError, match="outside the 160×120 frame"):
        session.point_at(1.0, 200.0, 10.0)
    with pytest.raises(PromptError, match="outside the video"):
        session.point_at(99.0, 10.0, 10.0)
    assert session.objects == {} and session.referred is None


def test_overlay_and_exports(tiny_model_dirs, video, masks, tmp_path):
    session = session_for("qwen2_5_vl", tiny_model_dirs, video, masks)
    width, height = session.tokens.input_size
    scripted(session.llm, ["A square.", f'[{{"time": 1.0, "bbox_2d": [0, 0, {width // 2}, {height // 2}], "label": "square"}}]'])
    list(session.ask("What is there?"))
    square = session.objects["square"]
    frames = session.overlay_masks(square.object_id, range(0, 4))
    assert [f["i"] for f in frames] == [0, 1, 2, 3]
    assert [f["box"] for f in frames] == [list(square.masklet.box(i)) for i in range(4)]
    assert frames[0]["png"].startswith("data:image/png;base64,")

    mp4, document = session.export(tmp_path / "out")
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (160, 120)
        assert sum(1 for _ in container.decode(stream)) == 30
    saved = json.loads(document.read_text())
    (square,) = saved["objects"]
    assert square["label"] == "square" and square["masklet"]["frames"] == len(session.clip.times_s)
    assert square["masklet"]["masks"][0]["size"] == [120, 160]
    assert saved["turns"][0]["object_ids"] == [1]

    session.close()
    assert session._mask_state is None


# ---- the conversation and its one JSON shape -------------------------------------------------------------------


def test_the_conversation_holds_answers_clicks_and_failures_in_order(tiny_model_dirs, video, masks):
    session = session_for("qwen3_vl", tiny_model_dirs, video, masks)
    scripted(session.llm, ["A square at 00:01.0.", '[{"time": 1.0, "bbox_2d": [0, 0, 500, 500], "label": "square"}]'])
    start = session.revision
    answer = list(session.ask("What is there?"))[-1]
    after_answer = session.revision
    clicked = session.point_at(2.0, 120.0, 90.0)
    after_click = session.revision
    with pytest.raises(PromptError):
        list(session.ask("x" * (SETTINGS.max_question_chars + 1)))
    first, click, failure = session.conversation
    assert first is answer and session.answers == [answer]
    assert isinstance(click, Click)
    assert (click.t_s, click.x, click.y, click.object_id) == (2.0, 120.0, 90.0, clicked.object_id)
    assert isinstance(failure, Failure) and "characters long" in failure.error
    # the objects' revision changes with every change of the objects, and only then
    assert start < after_answer < after_click == session.revision


def test_answers_and_objects_have_one_json_shape_for_the_api_the_cli_and_the_export(
    tiny_model_dirs, video, masks, tmp_path
):
    session = session_for("qwen3_vl", tiny_model_dirs, video, masks)
    scripted(session.llm, ["A square from 00:01.0 to 00:02.0.",
                           '[{"time": 1.0, "bbox_2d": [0, 0, 500, 500], "label": "square"}]'])
    answer = list(session.ask("What is there?"))[-1]
    document = answer_json(answer, session)
    assert document["question"] == "What is there?" and document["text"] == answer.text
    assert document["times"] == [{"start_s": 1.0, "end_s": 2.0, "text": "00:01.0 to 00:02.0", "label": ""}]
    assert [b["label"] for b in document["boxes"]] == ["square"] and document["object_ids"] == [1]
    # which visual tokens the model looked at: the selection's own counts, per temporal patch of two frames
    heat = answer.selection.heatmap(session.tokens)
    selection = document["selection"]
    assert selection["on"] and selection["kept"] == len(answer.selection.keep_indices)
    assert selection["total"] == len(session.tokens.embeddings)
    assert [step["kept"] for step in selection["steps"]] == heat.kept.reshape(len(heat.kept), -1).sum(axis=1).tolist()
    assert [step["frames_s"] for step in selection["steps"]] == [
        session.clip.times_s[i : i + 2].tolist() for i in range(0, len(session.clip.times_s), 2)
    ]
    # the export and the CLI's --json write the same shapes
    _, written = session.export(tmp_path / "export")
    saved = json.loads(written.read_text())
    assert saved["turns"] == [json.loads(json.dumps(document))]
    (square,) = saved["objects"]
    assert square["object_id"] == 1 and len(square["masklet"]["masks"]) == len(session.clip.times_s)
    assert session.to_json()["turns"] == saved["turns"] and "masks" not in session.to_json()["objects"][0]["masklet"]

    session.set_selector(None)
    scripted(session.llm, ["Still there.", "[]"])
    unselected = answer_json(list(session.ask("And now?"))[-1], session)["selection"]
    assert not unselected["on"] and unselected["kept"] == unselected["total"] == len(session.tokens.embeddings)
    with pytest.raises(PromptError, match="needs QTSplus weights"):
        session.set_selector(selector_settings("qtsplus"))
