"""Live sources through `LiveChat`: the recording kept at its rate, questions about now answered from the newest
window, standing questions, live tracking, stopping into a video session, and memory that stays flat; on tiny models
of both families, with frames that carry their index as a code (read back from what the model saw)."""

import gc
import threading

import av
import numpy as np
import psutil
import pytest

from vidchat.errors import PromptError, UrlRefusedError
from vidchat.livechat import LiveChat, LiveChatSettings
from vidchat.recording import Recording, RecordingSettings
from vidchat.segment import MaskDecoder
from vidchat.session import Alert, Answer, SessionSettings, turn_json
from vidchat.testing.models import build_qwen2_5_vl, build_qwen3_vl
from vidchat.testing.sam2 import build_sam2_video
from vidchat.testing.scripted import Script, ScriptedLLM
from vidchat.testing.videos import RED_SQUARE, draw_frame, read_frame_index
from vidchat.url_guard import UrlGuard
from vidchat.vlm import VideoLLM, live_label
from vidchat.watch import Watch, said_yes, watch_condition

SIZE = (160, 120)


def picture(index: int) -> np.ndarray:
    """Frame `index` of a source: its index code on top, a red square moving right by 2 pixels a frame."""
    x = 10 + (2 * index) % 100
    return draw_frame(index, {RED_SQUARE: np.array([x, 40, x + 30, 70])}, SIZE)


def feed(live: LiveChat, first: int, count: int, fps: float = 30.0) -> None:
    for index in range(first, first + count):
        live.add_frame(picture(index), index / fps)


def codes(frames: np.ndarray) -> list[int]:
    return [read_frame_index(frame) for frame in frames]


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def llm(request, tmp_path_factory) -> VideoLLM:
    folder = tmp_path_factory.mktemp(request.param)
    (build_qwen3_vl if request.param == "qwen3_vl" else build_qwen2_5_vl)(folder)
    return VideoLLM.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def sam2(tmp_path_factory) -> MaskDecoder:
    return MaskDecoder.from_pretrained(str(build_sam2_video(tmp_path_factory.mktemp("sam2"))))


# ---- the recording ---------------------------------------------------------------------------------------


def test_a_30_fps_source_is_kept_at_the_set_rate_and_recorded_at_its_times(tmp_path):
    recording = Recording(tmp_path / "r.mp4", RecordingSettings(fps=2.0, window_s=4.0))
    for index in range(300):  # 10 s at 30 fps, starting at 100 s on the source's clock
        recording.add(picture(index), 100 + index / 30)
    assert recording.received == 300 and recording.kept == 21  # 2 per second: 0 s, 0.4 s, 0.9 s … 9.9 s
    times = [f.t_s for f in recording.window]
    assert times[0] >= times[-1] - 4.0 and len(times) == 9  # the newest 4 s
    assert np.allclose(np.diff(times), 0.5, atol=1 / 30 + 1e-9)
    path = recording.close()
    with av.open(str(path)) as container:
        decoded = [(float(f.time), read_frame_index(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)]
    assert len(decoded) == 21 and decoded[0] == (0.0, 0)
    for t_s, index in decoded:  # each frame at its source time, counted from the first frame
        assert t_s == pytest.approx(index / 30, abs=1e-3)
    assert recording.add(picture(300), 110.0) is None  # closed: nothing more


def test_a_jittery_webcam_at_the_set_rate_keeps_every_frame(tmp_path):
    recording = Recording(tmp_path / "r.mp4", RecordingSettings(fps=2.0))
    jitter = np.random.default_rng(0).uniform(-0.06, 0.06, 40)
    arrivals = np.arange(40) * 0.5 + jitter
    kept = [recording.add(picture(i), t) is not None for i, t in enumerate(arrivals)]
    assert all(kept)
    recording.close()


def test_the_window_clip_is_the_newest_frames_at_their_times(tmp_path):
    recording = Recording(tmp_path / "r.mp4", RecordingSettings(fps=2.0, window_s=4.0))
    for index in range(120):
        recording.add(picture(index), index / 10)  # 10 fps source, 12 s
    clip = recording.clip()
    # kept when due within a quarter step: 0 s, 0.4 s, then every 0.5 s (no look-ahead on a live source)
    np.testing.assert_allclose(clip.times_s, np.arange(16, 25) * 0.5 - 0.1)
    assert codes(clip.frames) == list(range(79, 120, 5))  # each frame the one of its time
    assert clip.span_s == pytest.approx((7.9, 11.9)) and clip.info.duration_s == pytest.approx(11.9)
    assert recording.clip(since_s=11.3).times_s == pytest.approx([11.4, 11.9])
    assert recording.clip(since_s=11.9).times_s == pytest.approx([11.4, 11.9])  # at least two frames
    recording.close()


def test_a_full_recording_says_why_and_keeps_nothing_more(tmp_path):
    recording = Recording(tmp_path / "r.mp4", RecordingSettings(fps=2.0, max_duration_s=3.0))
    for index in range(20):
        recording.add(picture(index), index * 0.5)
    assert recording.kept == 7 and recording.full == "The recording reached its limit of 0:00:03.0."
    by_size = Recording(tmp_path / "s.mp4", RecordingSettings(fps=2.0, max_bytes=2000))
    for index in range(20):
        by_size.add(np.random.default_rng(index).integers(0, 255, (120, 160, 3), np.uint8), index * 0.5)
    assert 0 < by_size.kept < 20 and by_size.full == "The recording reached its limit of 2,000 bytes."
    recording.close(), by_size.close()


# ---- standing questions --------------------------------------------------------------------------------


def test_a_standing_question_fires_when_its_answer_turns_to_yes():
    assert watch_condition("Tell me when the dog sits down!") == "the dog sits down"
    assert watch_condition("  let me know if   a car passes?") == "a car passes"
    with pytest.raises(ValueError, match="Say what to watch for"):
        watch_condition("tell me when ?")
    assert [said_yes(r) for r in ("Yes.", " no, it is not", "Maybe", "")] == [True, False, None, None]
    watch = Watch("a car passes")
    replies = ["no", "yes", "Yes, a car.", "unsure", "yes", "no", "yes"]
    fired = [watch.update(reply, float(t)) for t, reply in enumerate(replies)]
    assert [(a.t_s, a.reply) for a in fired if a is not None] == [(1.0, "yes"), (6.0, "yes")]


# ---- a live conversation ---------------------------------------------------------------------------------


def test_a_question_about_now_sees_the_newest_window_at_its_times(llm, tmp_path):
    seen = []

    def answer(tokens) -> str:
        seen.append(tokens)
        return f"The square moves right at {tokens.span_s[1]:.1f} seconds."

    scripted = ScriptedLLM(llm, Script(answer=answer))
    settings = LiveChatSettings(recording=RecordingSettings(fps=2.0, window_s=4.0))
    live = LiveChat(scripted, tmp_path, settings, SessionSettings(selector=None, ground_objects=False))
    with pytest.raises(PromptError, match="No picture has come from the webcam yet"):
        list(live.ask("What happens now?"))
    feed(live, 0, 300)  # 10 s of a 30 fps source
    *pieces, done = live.ask("What happens now?")
    assert isinstance(done, Answer) and done.text == "The square moves right at 9.9 seconds."
    chat = live.chat
    assert codes(chat.clip.frames) == list(range(177, 300, 15))  # the newest 4 s at 2 fps (kept 0, 0.4, 0.9 … s)
    assert seen[-1].span_s == pytest.approx((5.9, 9.9)) and [t.start_s for t in done.groundings.times] == [9.9]
    prompt = llm.processor.tokenizer.decode(llm.prompt(seen[-1], [], "What happens now?").input_ids[0])
    assert live_label(seen[-1].span_s) in prompt  # the model is told which seconds it sees
    if llm.family == "qwen3_vl":  # and Qwen3-VL sees each frame's time: the last patch, 9.9 s twice
        assert "<9.9 seconds>" in prompt

    feed(live, 300, 150)  # 5 s later, a follow-up sees the frames of then, with the conversation
    *_, follow_up = live.ask("And now?")
    assert codes(chat.clip.frames) == list(range(327, 450, 15))
    assert chat.history[0].answer == done.text and live.conversation == [done, follow_up]
    assert len(llm.cache) == 0  # a window is seen once: never cached
    live.close()


def test_a_standing_question_fires_once_and_the_checks_run_one_at_a_time(llm, tmp_path):
    running, most_at_once, checked = [0], [0], []
    lock = threading.Lock()

    def check(tokens) -> str:
        with lock:
            running[0] += 1
            most_at_once[0] = max(most_at_once[0], running[0])
        checked.append(tokens.span_s)
        threading.Event().wait(0.05)
        with lock:
            running[0] -= 1
        return "Yes." if tokens.span_s[1] >= 6.0 else "No."

    scripted = ScriptedLLM(llm, Script(answer="", check=check))
    settings = LiveChatSettings(recording=RecordingSettings(fps=2.0, window_s=8.0), check_every_s=1.0)
    live = LiveChat(scripted, tmp_path, settings)
    assert live.watch("Tell me when the square reaches the middle.") == "the square reaches the middle"
    for index in range(40):  # 20 s at 2 fps, in real time / 20
        live.add_frame(picture(index), index * 0.5)
        threading.Event().wait(0.025)
    live.check()  # waits for a check under way, then checks the newest frames
    alerts = [event for event in live.conversation if isinstance(event, Alert)]
    assert len(alerts) == 1 and alerts[0].t_s >= 6.0 and alerts[0].condition == "the square reaches the middle"
    assert min(end for _, end in checked if end >= alerts[0].t_s) == alerts[0].t_s  # the first check saying yes
    assert most_at_once[0] == 1
    assert all(end - start <= settings.check_window_s for start, end in checked)
    assert turn_json(alerts[0], None) == {
        "kind": "alert", "condition": "the square reaches the middle", "t_s": alerts[0].t_s, "reply": "Yes.",
    }  # fmt: skip
    live.watch(None)
    live.close()


def test_a_clicked_object_is_tracked_on_every_new_frame_and_drawn(llm, sam2, tmp_path):
    live = LiveChat(llm, tmp_path, LiveChatSettings(), masks=sam2)
    feed(live, 0, 60, fps=2.0)
    clicked = live.point_at(25, 55)  # the red square of the newest frame (59: x = 128 … 158)
    assert clicked.label == "clicked object 1" and live.tracker.object_ids == (clicked.object_id,)
    first = live.masks_now[clicked.object_id]
    feed(live, 60, 10, fps=2.0)
    later = live.masks_now[clicked.object_id]
    assert later is not first and later.mask.shape == (120, 160)
    drawn, t_s = live.newest()
    assert t_s == 34.5
    if later.visible:  # the live view shows the tracker's current mask, in the object's colour
        changed = np.any(drawn != live.recording.latest().picture, axis=2)
        assert changed[later.mask].mean() > 0.9
    with pytest.raises(PromptError, match="outside the 160×120 frame"):
        live.point_at(400, 10)
    live.close()


def test_stopping_turns_the_recording_into_a_video_session_with_the_conversation(llm, tmp_path):
    scripted = ScriptedLLM(llm, Script(answer="Something moves at 4.0 seconds.", check="yes"))
    live = LiveChat(scripted, tmp_path, LiveChatSettings(check_every_s=1.0), SessionSettings(ground_objects=False))
    live.watch("something moves")
    feed(live, 0, 24, fps=3.0)  # 8 s
    live.check()
    *_, answer = live.ask("What happens?")
    session = live.stop()
    assert live.add_frame(picture(99), 20.0) is None and live.ended == "Stopped."
    assert session.clip.info.path == str(tmp_path / "live.mp4")
    # kept from 3 fps at 2 fps: 0, 0.67, 1.0, 1.67 … 7.67 s; the last frame lasts a step (0.5 s)
    assert session.clip.info.duration_s == pytest.approx(7.667 + 0.5, abs=0.01)
    assert codes(session.clip.frames) == [int(t * 3) for t in session.clip.times_s]  # each frame at its own time
    kinds = [turn["kind"] for turn in session.to_json()["turns"]]
    assert kinds == ["alert", "answer"] and [a.text for a in session.answers] == [answer.text]
    assert session.answers[0].selection is None  # it kept tokens of a live window, not of the recording's
    *_, follow_up = session.ask("And then?")  # an ordinary video session from here on
    assert follow_up.text == "Something moves at 4.0 seconds." and len(session.answers) == 2
    session.close()


def test_nothing_recorded_and_refused_urls_say_so(llm, tmp_path):
    live = LiveChat(llm, tmp_path)
    with pytest.raises(UrlRefusedError):
        live.follow("http://127.0.0.1:9/live.m3u8", UrlGuard())
    with pytest.raises(PromptError, match="Nothing was recorded"):
        live.stop()
    with pytest.raises(PromptError, match="must be an RGB picture"):
        LiveChat(llm, tmp_path / "b").add_frame(np.zeros((10, 10), np.uint8))


# ---- hours of it -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("llm", ["qwen3_vl"], indirect=True)  # one family: the memory is the same for both
def test_ten_minutes_of_a_live_source_keep_memory_flat(llm, sam2, tmp_path):
    """10 minutes of source time at 2 fps (fed faster than real time), with a tracked object, a standing question
    and questions about now: what the session holds stops growing once the window is full, and the process's
    memory after minute 2 stays within 10 %."""
    scripted = ScriptedLLM(llm, Script(answer="Now.", check="no"))
    settings = LiveChatSettings(recording=RecordingSettings(fps=2.0, window_s=8.0), check_every_s=5.0)
    live = LiveChat(scripted, tmp_path, settings, SessionSettings(ground_objects=False), masks=sam2)
    live.watch("the square turns blue")
    feed(live, 0, 20, fps=2.0)
    live.point_at(25, 55)
    held, rss = {}, {}
    for minute in range(1, 11):
        first = 20 if minute == 1 else (minute - 1) * 120
        feed(live, first, minute * 120 - first, fps=2.0)
        list(live.ask("What is happening now?"))
        live.check()
        gc.collect()
        held[minute] = (live.recording.nbytes, live.tracker.stored_frames(), live.tracker.nbytes)
        rss[minute] = psutil.Process().memory_info().rss
    assert live.recording.kept == 1200 and live.recording.duration_s == 599.5
    assert len({held[m] for m in range(2, 11)}) == 1, held  # the window, SAM 2's frames and features: flat
    growth = max(rss[m] for m in range(2, 11)) / rss[2] - 1
    assert growth <= 0.10, {m: r // 2**20 for m, r in rss.items()}
    live.close()
