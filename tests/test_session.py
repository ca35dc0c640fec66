"""ChatSession end to end on synthetic video files and tiny checkpoints of both families."""

from dataclasses import replace

import pytest

from vidchat.errors import NotAVideoError, PromptError
from vidchat.grounding import Box
from vidchat.session import Answer, ChatSession, Failure, SessionSettings
from vidchat.testing.videos import write_text_file, write_video
from vidchat.video import SamplingConfig
from vidchat.vlm import VideoLLM

SETTINGS = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=8, max_grounding_tokens=8)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", n_frames=40, fps=10.0, size=(160, 120))


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def llm(request, tiny_model_dirs):
    return VideoLLM.from_pretrained(str(tiny_model_dirs[request.param]))


def test_ask_streams_then_returns_the_answer_and_keeps_history(llm, video):
    session = ChatSession.open(video.path, llm, SETTINGS)
    assert session.clip.times_s.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    events = list(session.ask("What does the red square do?"))
    assert all(isinstance(e, str) for e in events[:-1]) and isinstance(events[-1], Answer)
    first = events[-1]
    assert first.text == "".join(events[:-1])
    assert first.question == "What does the red square do?"

    seen_histories = []
    generate = llm.generate

    def recording_generate(tokens, history, question, max_new_tokens, keep_indices, prefix, transcript="", windows=()):
        seen_histories.append((list(history), question))
        return generate(tokens, history, question, max_new_tokens, keep_indices, prefix, transcript, windows)

    llm.generate = recording_generate
    try:
        second = list(session.ask("What does it do next?"))[-1]
    finally:
        del llm.generate
    # the follow-up is asked with the first exchange as history; the grounding call adds the new one
    assert seen_histories[0][0][0].question == "What does the red square do?"
    assert seen_histories[0][0][0].answer == first.text
    assert seen_histories[0][1] == "What does it do next?"
    assert seen_histories[1][0][-1].answer == second.text
    assert [a.question for a in session.answers] == ["What does the red square do?", "What does it do next?"]


def test_follow_ups_never_run_the_vision_encoder_again(llm, video):
    calls = []
    original = llm.model.model.visual.forward
    llm.model.model.visual.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        llm.cache = type(llm.cache)(llm.cache.max_bytes)  # start cold
        session = ChatSession.open(video.path, llm, SETTINGS)
        encodes_after_open = len(calls)
        for question in ["What is there?", "And then?", "What colour is it?"]:
            list(session.ask(question))
        assert encodes_after_open >= 1 and len(calls) == encodes_after_open
        # a second session on the same file (another browser tab) reuses the cached tokens too
        ChatSession.open(video.path, llm, SETTINGS)
        assert len(calls) == encodes_after_open
    finally:
        del llm.model.model.visual.forward


def test_groundings_of_the_answer_and_the_grounding_reply_are_in_source_pixels(tiny_model_dirs, video):
    """The model is scripted here (a random tiny model says nothing parseable); parsing and mapping are real."""
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen3_vl"]))
    session = ChatSession.open(video.path, llm, SETTINGS)
    replies = iter(["The red square crosses from 00:00.5 to 00:02.5.",
                    '[{"time": 1.0, "bbox_2d": [0, 0, 500, 1000], "label": "red square"}]'])
    llm.generate = lambda *args, **kwargs: iter([next(replies)])
    answer = list(session.ask("What does the red square do?"))[-1]
    assert [(t.start_s, t.end_s) for t in answer.groundings.times] == [(0.5, 2.5)]
    # 0–1000 relative → the 160×120 source: the left half of the frame
    assert answer.groundings.boxes == (Box(t_s=1.0, x1=0.0, y1=0.0, x2=80.0, y2=120.0, label="red square"),)
    assert session.objects["red square"].object_id == 1
    assert answer.grounding_reply.startswith('[{"time"')


def test_objects_keep_their_ids_across_turns(tiny_model_dirs, video):
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen2_5_vl"]))
    session = ChatSession.open(video.path, llm, SETTINGS)
    width, height = session.tokens.input_size
    replies = iter([
        "A square and a circle.", f'[{{"bbox_2d": [0, 0, {width}, {height}], "label": "circle"}}, '
                                  f'{{"bbox_2d": [0, 0, 10, 10], "label": "square"}}]',
        "The circle moves down.", '[{"point_2d": [5, 5], "label": "Circle"}]',
    ])
    llm.generate = lambda *args, **kwargs: iter([next(replies)])
    list(session.ask("What is there?"))
    list(session.ask("What does the circle do?"))
    assert {key: obj.object_id for key, obj in session.objects.items()} == {"circle": 1, "square": 2}
    circle = session.objects["circle"]
    # absolute input pixels → source pixels: the whole model frame is the whole 160×120 video
    assert (circle.boxes[0].x2, circle.boxes[0].y2) == (pytest.approx(160.0), pytest.approx(120.0))
    assert len(circle.points) == 1


def test_a_bad_file_raises_before_any_model_work(tiny_model_dirs, tmp_path):
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen3_vl"]))
    with pytest.raises(NotAVideoError):
        ChatSession.open(write_text_file(tmp_path / "notes.mp4"), llm, SETTINGS)
    assert len(llm.cache) == 0


# ---- a long conversation stays bounded ---------------------------------------------------------------------


def test_the_model_sees_the_latest_turns_only_and_a_conversation_has_a_turn_limit(tiny_model_dirs, video):
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen3_vl"]))
    settings = replace(SETTINGS, max_history_turns=2, max_turns=4, ground_objects=False)
    session = ChatSession.open(video.path, llm, settings)
    histories = []

    def generate(tokens, history, question, *rest, **kwargs):
        histories.append(list(history))
        return iter([f"A{len(histories)}"])

    llm.generate = generate
    for n in range(1, 5):
        list(session.ask(f"Q{n}?"))
    assert [[turn.question for turn in history] for history in histories] == [
        [],
        ["Q1?"],
        ["Q1?", "Q2?"],
        ["Q2?", "Q3?"],  # the oldest turn is no longer in the prompt
    ]
    with pytest.raises(PromptError, match="reached 4 turns, the most one video keeps"):
        list(session.ask("Q5?"))
    assert len(session.answers) == 4  # every answer is kept for the export


def test_a_question_over_the_length_limit_is_refused_and_lone_surrogates_are_replaced(tiny_model_dirs, video):
    llm = VideoLLM.from_pretrained(str(tiny_model_dirs["qwen3_vl"]))
    session = ChatSession.open(video.path, llm, replace(SETTINGS, max_question_chars=20, ground_objects=False))
    with pytest.raises(PromptError, match="The question is 21 characters long; the limit is 20"):
        list(session.ask("x" * 21))
    answer = list(session.ask("  what is \ud800 this?  "))[-1]  # a browser can send half a surrogate pair
    assert answer.question == "what is ? this?"
    assert answer.prompt.encode("utf-8")  # it can be encoded, sent and shown
    assert session.answers == [answer]
    # the refused question stays in the conversation with its reason, never in the model's history
    refused, answered = session.conversation
    assert isinstance(refused, Failure) and refused.question == "x" * 21 and "limit is 20" in refused.error
    assert answered is answer and [turn.question for turn in session.history] == ["what is ? this?"]
