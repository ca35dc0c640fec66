"""parse_answer on answers written the way Qwen3-VL and Qwen2.5-VL answer, and on whatever else a stream may hold."""

import math
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidchat.grounding import (
    Box,
    CoordinateFrame,
    Groundings,
    Point,
    TimeSpan,
    format_timestamp,
    name_spans,
    parse_answer,
)

# Qwen3-VL: 0–1000 of the frame; the input size does not matter. 1920×1080 source → ×1.92, ×1.08.
Q3 = CoordinateFrame("relative1000", input_width=448, input_height=252, source_width=1920, source_height=1080)
# Qwen2.5-VL: pixels of its resized input (multiples of 28, not the source's aspect exactly) → source 1280×720.
Q25 = CoordinateFrame("absolute", input_width=644, input_height=364, source_width=1280, source_height=720)
# a portrait phone video, input smaller than the source on both axes by different factors
Q25_PORTRAIT = CoordinateFrame("absolute", input_width=392, input_height=700, source_width=1080, source_height=1920)


def q3(x: float, y: float) -> tuple[float, float]:
    return x * 1920 / 1000, y * 1080 / 1000


def q25(x: float, y: float) -> tuple[float, float]:
    return x * 1280 / 644, y * 720 / 364


def box(t_s, corner1, corner2, label) -> Box:
    return Box(t_s, *corner1, *corner2, label)


def point(t_s, xy, label) -> Point:
    return Point(t_s, *xy, label)


@dataclass(frozen=True)
class T:
    """An expected time; `text` is the exact text it was read from (its position is looked up), None for -1."""

    start_s: float
    end_s: float
    text: str | None = None
    label: str = ""
    occurrence: int = 0  # which occurrence of `text` in the answer


@dataclass(frozen=True)
class Case:
    answer: str
    frame: CoordinateFrame
    duration_s: float | None
    times: tuple[T, ...] = ()
    points: tuple[Point, ...] = ()
    boxes: tuple[Box, ...] = ()


CASES = {
    # ---- times in prose -----------------------------------------------------------------------------------------
    "mm:ss.f instants": Case(
        "The man starts slicing the brisket at 00:12.4 and sets the knife down at 00:31.0.", Q3, 60.0,
        times=(T(12.4, 12.4, "00:12.4"), T(31.0, 31.0, "00:31.0"))),
    "m:ss": Case("The cat jumps onto the table at 0:12.", Q3, 60.0, times=(T(12.0, 12.0, "0:12"),)),
    "h:mm:ss.f": Case("The goal is scored at 1:02:03.5, right after the corner kick.", Q3, 4000.0,
                      times=(T(3723.5, 3723.5, "1:02:03.5"),)),
    "seconds word": Case("The red car turns left at 12.5 seconds.", Q3, 30.0, times=(T(12.5, 12.5, "12.5 seconds"),)),
    "s suffix": Case("At 12.5s, the ball hits the ground and bounces twice.", Q3, 30.0,
                     times=(T(12.5, 12.5, "12.5s"),)),
    "sec": Case("The door opens about 12 sec into the video.", Q3, 30.0, times=(T(12.0, 12.0, "12 sec"),)),
    "at 3 s": Case("A dog appears at 3 s and runs to the left.", Q3, 30.0, times=(T(3.0, 3.0, "3 s"),)),
    "min and s": Case("The balloon pops at 1 min 30 s.", Q3, 120.0, times=(T(90.0, 90.0, "1 min 30 s"),)),
    "from a to b s": Case("The person waves from 3 to 7 s.", Q3, 30.0, times=(T(3.0, 7.0, "3 to 7 s"),)),
    "from clock to clock": Case("The woman pours the batter from 00:03 to 00:07, then smooths it.", Q3, 30.0,
                                times=(T(3.0, 7.0, "00:03 to 00:07"),)),
    "hyphen seconds": Case("The traffic light flashes red during 3-7 seconds.", Q3, 30.0,
                           times=(T(3.0, 7.0, "3-7 seconds"),)),
    "en dash s": Case("The bird is visible 3 – 7 s, then flies away.", Q3, 30.0, times=(T(3.0, 7.0, "3 – 7 s"),)),
    "between clocks": Case("The runner overtakes two others between 1:02 and 1:10.", Q3, 120.0,
                           times=(T(62.0, 70.0, "1:02 and 1:10"),)),
    "between seconds": Case("The kettle whistles between 4.5 and 6 seconds.", Q3, 30.0,
                            times=(T(4.5, 6.0, "4.5 and 6 seconds"),)),
    "clock span in prose": Case("The chef trims the fat during 00:23.00 - 00:48.00.", Q3, 120.0,
                                times=(T(23.0, 48.0, "00:23.00 - 00:48.00"),)),
    "qwen2.5 temporal answer": Case("The given query happens in 64.0 - 72.0 seconds.", Q25, 90.0,
                                    times=(T(64.0, 72.0, "64.0 - 72.0 seconds"),)),
    "qwen3 frame stamps": Case("<3.5 seconds> A woman enters the kitchen. <7.0 seconds> She opens the fridge.", Q3,
                               10.0, times=(T(3.5, 3.5, "<3.5 seconds>"), T(7.0, 7.0, "<7.0 seconds>"))),
    "reversed span is ordered": Case("The ball rolls back from 00:07 to 00:03.", Q3, 10.0,
                                     times=(T(3.0, 7.0, "00:07 to 00:03"),)),
    "same time twice": Case("At 00:05 the dog sits; at 00:05 the cat also sits.", Q3, 10.0,
                            times=(T(5.0, 5.0, "00:05"), T(5.0, 5.0, "00:05", occurrence=1))),
    # ---- times next to Chinese, Japanese and Korean (Qwen answers in the question's language) ---------------------
    "zh clock span between": Case("这个动作发生在00:01.00 - 00:06.00之间。", Q3, 10.0,
                                  times=(T(1.0, 6.0, "00:01.00 - 00:06.00"),)),
    "zh from clock to clock": Case("从0:00到0:18，男人一直在切肉。", Q3, 30.0, times=(T(0.0, 18.0, "0:00到0:18"),)),
    "zh qwen3 frame stamp": Case("<5.6秒>女人走进厨房。<7.0秒>她打开冰箱。", Q3, 10.0,
                                 times=(T(5.6, 5.6, "<5.6秒>"), T(7.0, 7.0, "<7.0秒>"))),
    "zh seconds and composite": Case("气球在1分30秒时爆了，狗在第95秒跑开。", Q3, 120.0,
                                     times=(T(90.0, 90.0, "1分30秒"), T(95.0, 95.0, "95秒"))),
    "zh whole minutes": Case("视频第2分钟出现了一只猫。", Q3, 300.0, times=(T(120.0, 120.0, "2分钟"),)),
    "zh span with units": Case("他从3秒到7.5秒一直在挥手，然后在第12秒至第15秒坐下。", Q3, 30.0,
                               times=(T(3.0, 7.5, "3秒到7.5秒"), T(12.0, 15.0, "12秒至第15秒"))),
    "zh bare start to seconds": Case("球在3到7秒之间滚动。", Q3, 30.0, times=(T(3.0, 7.0, "3到7秒"),)),
    "zh between with 和": Case("水壶在4.5秒和6秒之间鸣叫。", Q3, 30.0, times=(T(4.5, 6.0, "4.5秒和6秒"),)),
    "zh tilde and wave dash": Case("鸟在3～7秒可见，在9〜10秒飞走。", Q3, 30.0,
                                   times=(T(3.0, 7.0, "3～7秒"), T(9.0, 10.0, "9〜10秒"))),
    "full-width digits, colon and brackets": Case("时间：０１：２３，标记为＜５．６秒＞。", Q3, 100.0,
                                                  times=(T(83.0, 83.0, "０１：２３"), T(5.6, 5.6, "＜５．６秒＞"))),
    "zh hours": Case("进球发生在1小时2分3.5秒。", Q3, 4000.0, times=(T(3723.5, 3723.5, "1小时2分3.5秒"),)),
    "ja span から まで": Case("男性は5秒から10秒まで走っています。", Q3, 30.0, times=(T(5.0, 10.0, "5秒から10秒"),)),
    "ja clock": Case("猫は00:12.4にテーブルに飛び乗ります。", Q3, 30.0, times=(T(12.4, 12.4, "00:12.4"),)),
    "ko span 부터 까지": Case("남자가 5초부터 10초까지 달립니다.", Q3, 30.0, times=(T(5.0, 10.0, "5초부터 10초"),)),
    "ko composite": Case("풍선은 2분 30초에 터집니다.", Q3, 300.0, times=(T(150.0, 150.0, "2분 30초"),)),
    "zh numbers that are not times": Case(
        "视频里有3个人和2只狗，拍摄于2023年，得了5分，画面是16:9。", Q3, 60.0),
    "cjk durations": Case("狗持续叫了5秒，每2秒眨一次眼，3秒后停下；5秒間待つ；3초 동안 멈춥니다.", Q3, 60.0),
    # ---- numbers that are not times --------------------------------------------------------------------------------
    "counts, years, versions": Case(
        "There are 3 cars and 2 people. It was filmed in 2023 with version 1.5 of the app, 4K at 60 fps.", Q3, 60.0),
    "durations": Case("The clip is 30 seconds long; the dog barks for 5 seconds, every 2 s, and stops 3 seconds later.",
                      Q3, 60.0),
    "clock time of day and ratios": Case("The sign says the shop opens at 10:30 am; the video is 16:9, score 3:1.",
                                         Q3, 60.0),
    "hyphenated adjective": Case("It is a 10-second clip of a 3-year-old child.", Q3, 60.0),
    "negative time": Case("The event happened at -3 s, before recording started.", Q3, 60.0),
    # ---- clamping to the video ------------------------------------------------------------------------------------
    "just past the end is clamped": Case("The screen fades out at 00:21.0.", Q3, 20.0,
                                         times=(T(20.0, 20.0, "00:21.0"),)),
    "far beyond the end is dropped": Case("The dog returns at 05:00, and the cat at 00:04.", Q3, 20.0,
                                          times=(T(4.0, 4.0, "00:04"),)),
    "unknown duration keeps an hour, drops days": Case("Kick-off at 1:00:00; the match report at 30:00:00.", Q3, None,
                                                        times=(T(3600.0, 3600.0, "1:00:00"),)),
    "invalid clock": Case("Timestamp 00:75 is not a time, 01:59 is.", Q3, 200.0, times=(T(119.0, 119.0, "01:59"),)),
    # ---- Qwen3-VL JSON (0–1000) -----------------------------------------------------------------------------------
    "qwen3 video grounding": Case(
        '```json\n[\n\t{"time": 1.0, "bbox_2d": [74, 361, 324, 808], "label": "plate"},\n'
        '\t{"time": 2.0, "bbox_2d": [80, 370, 330, 815], "label": "plate"}\n]\n```', Q3, 10.0,
        boxes=(box(1.0, q3(74, 361), q3(324, 808), "plate"), box(2.0, q3(80, 370), q3(330, 815), "plate"))),
    "qwen3 time strings": Case(
        '```json\n[{"time": "00:01.0", "bbox_2d": [0, 0, 500, 1000], "label": "man in red"},'
        ' {"time": "<2.5 seconds>", "bbox_2d": [500, 0, 1000, 1000], "label": "man in red"}]\n```', Q3, 10.0,
        boxes=(box(1.0, (0, 0), (960, 1080), "man in red"), box(2.5, (960, 0), (1920, 1080), "man in red"))),
    "qwen3 points": Case(
        '```json\n[\n  {"point_2d": [925, 618], "label": "cup"},\n  {"point_2d": [120, 40], "label": "lamp"}\n]\n```',
        Q3, 10.0, points=(point(None, q3(925, 618), "cup"), point(None, q3(120, 40), "lamp"))),
    "qwen3 temporal json": Case(
        '```json\n{"00:23.00 - 00:48.00": "trim the fat", "00:48.00 - 01:05.00": "season the meat"}\n```', Q3, 120.0,
        times=(T(23.0, 48.0, "00:23.00 - 00:48.00", "trim the fat"),
               T(48.0, 65.0, "00:48.00 - 01:05.00", "season the meat"))),
    "time without coordinates is an event": Case('[{"time": 3.0, "label": "the ball is kicked"}]', Q3, 10.0,
                                                 times=(T(3.0, 3.0, None, "the ball is kicked"),)),
    "event with a span as its time": Case('[{"time": "00:23.00 - 00:48.00", "event": "trim the fat"}]', Q3, 60.0,
                                          times=(T(23.0, 48.0, None, "trim the fat"),)),
    "json numbers are not prose times": Case(
        '[{"time": "00:01.0", "bbox_2d": [10, 20, 30, 40], "label": "3 s"}]', Q3, 10.0,
        boxes=(box(1.0, q3(10, 20), q3(30, 40), "3 s"),)),
    # ---- Qwen2.5-VL JSON (absolute pixels of the resized input) -------------------------------------------------
    "qwen2.5 boxes": Case(
        '```json\n[\n\t{"bbox_2d": [43, 171, 209, 353], "label": "cupcake"},\n'
        '\t{"bbox_2d": [300, 10, 644, 364], "label": "plate"}\n]\n```', Q25, None,
        boxes=(box(None, q25(43, 171), q25(209, 353), "cupcake"), box(None, (300 * 1280 / 644, 10 * 720 / 364),
                                                                       (1280, 720), "plate"))),
    "qwen2.5 points": Case('```json\n[{"point_2d": [322, 182], "label": "ball"}]\n```', Q25, None,
                           points=(point(None, (640.0, 360.0), "ball"),)),
    "qwen2.5 portrait": Case('[{"time": 2.0, "bbox_2d": [98, 175, 196, 350], "label": "phone"}]', Q25_PORTRAIT, 5.0,
                             boxes=(box(2.0, (270.0, 480.0), (540.0, 960.0), "phone"),)),
    "qwen2.5 start/end": Case('```json\n{"start_time": "00:23.90", "end_time": "00:48.00"}\n```', Q25, 60.0,
                              times=(T(23.9, 48.0),)),
    "qwen2.5 start/end seconds with event": Case(
        '{"start_time": 4.5, "end_time": 9.0, "event": "the man opens the door"}', Q25, 60.0,
        times=(T(4.5, 9.0, None, "the man opens the door"),)),
    # ---- broken and streamed JSON ---------------------------------------------------------------------------------
    "cut stream keeps complete objects": Case(
        '```json\n[{"time": 1.0, "bbox_2d": [100, 100, 200, 200], "label": "dog"}, '
        '{"time": 2.0, "bbox_2d": [110, 100, 210, 200], "label": "dog"}, {"time": 3.0, "bbox_2d": [120, 10',
        Q3, 10.0, boxes=(box(1.0, q3(100, 100), q3(200, 200), "dog"), box(2.0, q3(110, 100), q3(210, 200), "dog"))),
    "cut before the label": Case('[{"time": 1.0, "bbox_2d": [100, 100, 200, 200], "label": "do', Q3, 10.0),
    "cut temporal map keeps its pairs": Case(
        '{"00:01.00 - 00:04.00": "pick up the cup", "00:05.00 - 00:0', Q3, 10.0,
        times=(T(1.0, 4.0, "00:01.00 - 00:04.00", "pick up the cup"),)),
    "trailing commas": Case('[{"bbox_2d": [0, 0, 1000, 1000,], "label": "scene",},]', Q3, None,
                            boxes=(box(None, (0, 0), (1920, 1080), "scene"),)),
    "single quotes, comments, unquoted keys": Case(
        "```json\n[ // the dog\n  {'time': 1.0, 'bbox_2d': [0, 500, 500, 1000], 'label': \"dog's toy\"},\n"
        "  /* the cat */ {time: 2.0, point_2d: [250, 250], label: 'cat'}\n]\n```", Q3, 10.0,
        points=(point(2.0, (480.0, 270.0), "cat"),), boxes=(box(1.0, (0, 540), (960, 1080), "dog's toy"),)),
    "escaped label": Case('{"bbox_2d": [0, 0, 10, 10], "label": "the \\"big\\" dog"}', Q3, None,
                          boxes=(box(None, (0, 0), q3(10, 10), 'the "big" dog'),)),
    "several blocks between prose": Case(
        'The dog appears at 00:02.0:\n```json\n[{"time": 2.0, "bbox_2d": [0, 0, 100, 100], "label": "dog"}]\n```\n'
        'At 00:05.0 the cat arrives:\n```json\n{"time": 5.0, "point_2d": [500, 500], "label": "cat"}\n```\n'
        'Both leave from 00:08 to 00:09.', Q3, 10.0,
        times=(T(2.0, 2.0, "00:02.0"), T(5.0, 5.0, "00:05.0"), T(8.0, 9.0, "00:08 to 00:09")),
        points=(point(5.0, (960.0, 540.0), "cat"),), boxes=(box(2.0, (0, 0), q3(100, 100), "dog"),)),
    "unfenced json inside a sentence": Case('The dog is here: {"bbox_2d": [250, 250, 750, 750], "label": "dog"}.',
                                            Q3, None, boxes=(box(None, (480, 270), (1440, 810), "dog"),)),
    # ---- coordinates off the frame --------------------------------------------------------------------------------
    "boxes clipped, outside and degenerate dropped": Case(
        '[{"bbox_2d": [-50, 900, 200, 1100], "label": "cut by the edge"},'
        ' {"bbox_2d": [1100, 0, 1200, 100], "label": "outside"},'
        ' {"bbox_2d": [300, 300, 300, 400], "label": "no width"},'
        ' {"bbox_2d": [1e30, 1e30, 0, 0], "label": "huge"}]', Q3, None,
        boxes=(box(None, (0, 972), (384, 1080), "cut by the edge"), box(None, (0, 0), (1920, 1080), "huge"))),
    "swapped corners": Case('{"bbox_2d": [500, 600, 100, 200], "label": "kite"}', Q3, None,
                            boxes=(box(None, q3(100, 200), q3(500, 600), "kite"),)),
    "nan, infinite, wrong arity and off-frame points dropped": Case(
        '[{"bbox_2d": [NaN, 0, 10, 10], "label": "a"}, {"bbox_2d": [0, 0, 10], "label": "b"},'
        ' {"point_2d": [Infinity, 5], "label": "c"}, {"point_2d": [1500, 500], "label": "d"},'
        ' {"point_2d": ["10", 5], "label": "e"}, {"point_2d": [1005, 500], "label": "rounding"}]', Q3, None,
        points=(point(None, (1920.0, 540.0), "rounding"),)),
    "object times outside the video": Case(
        '[{"time": 99.0, "bbox_2d": [0, 0, 10, 10], "label": "late"},'
        ' {"time": 10.5, "bbox_2d": [0, 0, 10, 10], "label": "end"},'
        ' {"time": NaN, "point_2d": [5, 5], "label": "nan"}, {"time": -1, "point_2d": [5, 5], "label": "neg"},'
        ' {"time": "00:01 - 00:02", "point_2d": [5, 5], "label": "span, not a frame"}]',
        Q3, 10.0, boxes=(box(10.0, (0, 0), q3(10, 10), "end"),)),
}


def _expected_time(answer: str, expected: T) -> TimeSpan:
    if expected.text is None:
        return TimeSpan(expected.start_s, expected.end_s, -1, -1, expected.label)
    start = -1
    for _ in range(expected.occurrence + 1):
        start = answer.index(expected.text, start + 1)
    return TimeSpan(expected.start_s, expected.end_s, start, start + len(expected.text), expected.label)


def _approx_fields(item) -> tuple:
    return tuple(pytest.approx(v) if isinstance(v, float) else v for v in vars(item).values())


def _fields(item) -> tuple:
    return tuple(vars(item).values())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_real_answers(case: Case) -> None:
    found = parse_answer(case.answer, case.frame, case.duration_s)
    times = [_expected_time(case.answer, t) for t in case.times]
    assert [_fields(t) for t in found.times] == [_approx_fields(t) for t in times]
    assert [_fields(p) for p in found.points] == [_approx_fields(p) for p in case.points]
    assert [_fields(b) for b in found.boxes] == [_approx_fields(b) for b in case.boxes]
    for span, expected in zip(found.times, case.times, strict=True):
        if expected.text is not None:
            assert case.answer[span.char_start : span.char_end] == expected.text


def test_enough_real_answers() -> None:
    assert len(CASES) >= 40


def test_session_example_maps_exactly() -> None:
    """Integer 0–1000 coordinates on a 160×120 video land on exact pixels (no 0.16 rounding)."""
    found = parse_answer('[{"time": 1.0, "bbox_2d": [0, 0, 500, 1000], "label": "red square"}]',
                         CoordinateFrame("relative1000", 448, 336, 160, 120), 4.0)
    assert found == Groundings(times=(), points=(), boxes=(Box(1.0, 0.0, 0.0, 80.0, 120.0, "red square"),))


@pytest.mark.parametrize("seconds, text", [
    (0.0, "00:00.0"), (12.4, "00:12.4"), (59.96, "01:00.0"), (62.0, "01:02.0"), (3723.5, "1:02:03.5"),
    (36000.0, "10:00:00.0"),
])
def test_format_timestamp(seconds: float, text: str) -> None:
    assert format_timestamp(seconds) == text


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_format_timestamp_rejects_non_times(bad: float) -> None:
    with pytest.raises(ValueError):
        format_timestamp(bad)


@given(st.floats(min_value=0, max_value=86_000, allow_nan=False))
def test_format_timestamp_reads_back(seconds: float) -> None:
    stamp = format_timestamp(seconds)
    answer = f"The dog jumps at {stamp}."
    (span,) = parse_answer(answer, Q3).times
    assert span.start_s == span.end_s == pytest.approx(seconds, abs=0.05 + 1e-9)
    assert answer[span.char_start : span.char_end] == stamp


def test_adversarial_sizes_are_bounded() -> None:
    one = '{"time": 1.0, "bbox_2d": [1, 2, 3, 4], "point_2d": [1, 2], "label": "x"}, '
    spans = "at 00:01 and at 2 s, " * 2000
    nested = "[" * 50_000 + "{" * 50_000
    started = time.perf_counter()
    found = parse_answer("```json\n[" + one * 5000 + spans, Q3, 10.0)
    assert (len(found.boxes), len(found.points)) == (256, 256)
    found = parse_answer(spans, Q3, 10.0)
    assert len(found.times) == 256 and found.times[0] == TimeSpan(1.0, 1.0, 3, 8)
    assert parse_answer(nested, Q3, 10.0) == Groundings((), (), ())
    assert parse_answer('"' * 100_000 + "/*" * 1000, Q3) == Groundings((), (), ())
    assert parse_answer("[/*" * 30_000 + "[//" * 30_000, Q3) == Groundings((), (), ())
    assert parse_answer("9" * 5000 + " min 3 s, " + "9" * 5000 + " s", Q3) == Groundings((), (), ())
    assert time.perf_counter() - started < 10


def test_names_are_found_as_whole_words_in_any_script() -> None:
    text = "The red square and the Red Squares; 红色方块在左边，红色方块们在右边。"
    assert [text[a:b] for a, b in name_spans(text, "red square")] == ["red square"]
    assert [text[a:b] for a, b in name_spans(text, " 红色方块 ")] == ["红色方块", "红色方块"]
    assert name_spans(text, "  ") == []


def test_duration_must_be_a_duration() -> None:
    with pytest.raises(ValueError):
        parse_answer("at 00:01", Q3, math.nan)


# ---- moments of the video versus amounts of time -----------------------------------------------------------------

# answer → the times read from it (values and the exact text): durations, intervals, rates and relative times ("for
# 30 seconds", "every 2 s", "2 seconds later", "共18秒", "每2秒", "3秒后") are no moment to seek to; clocks always are.
MOMENTS_AND_AMOUNTS = {
    # ---- English amounts of time
    "for": ("The dog barks for 30 seconds.", ()),
    "for about": ("The ball bounces for about 3 seconds.", ()),
    "lasts": ("The shot lasts 5 s.", ()),
    "takes about": ("Pouring the batter takes about 3 seconds.", ()),
    "every": ("The light blinks every 2 seconds.", ()),
    "every decimal s": ("The light blinks every 0.5 s.", ()),
    "each": ("A frame is sampled each 0.5 s.", ()),
    "within": ("The ball lands within 2 seconds.", ()),
    "later": ("The cat jumps 2 seconds later.", ()),
    "after": ("After 5 seconds, the dog sits down.", ()),
    "ago": ("She says it happened 3 seconds ago.", ()),
    "apart": ("The two claps are 2 seconds apart.", ()),
    "in, from now": ("The countdown ends in 10 seconds.", ()),
    "long": ("The video is 18 seconds long.", ()),
    "in total after": ("The video is 18 seconds in total.", ()),
    "in total before": ("In total 18 s were recorded.", ()),
    "a total of": ("The song plays for a total of 18 seconds.", ()),
    "runs": ("The clip runs 18 seconds.", ()),
    "duration of": ("The scene has a duration of 30 seconds.", ()),
    "duration colon": ("Duration: 30 s", ()),
    "duration is": ("The video's duration is 30 seconds.", ()),
    "adjective before a noun": ("It is a 10 second clip of a beach.", ()),
    "the first": ("He speaks for the first 5 seconds.", ()),
    "in the last": ("In the last 3 seconds the screen fades.", ()),
    "up to": ("The pause can go up to 5 seconds.", ()),
    "at least": ("Hold the pose at least 5 seconds.", ()),
    "or more": ("The note is held 5 seconds or more.", ()),
    "of footage": ("The camera adds 30 seconds of silence.", ()),
    "waits": ("The man waits 4 seconds before speaking.", ()),
    "every span": ("The light blinks every 2 to 3 seconds.", ()),
    "lasts span": ("The pause lasts 3-5 seconds.", ()),
    "minutes and seconds for": ("The interview goes on for 1 min 30 s.", ()),
    # ---- English moments and spans
    "at": ("The dog jumps at 5 seconds.", (T(5.0, 5.0, "5 seconds"),)),
    "at clock": ("The dog jumps at 00:05.", (T(5.0, 5.0, "00:05"),)),
    "at m:ss": ("The goal is scored at 1:02.", (T(62.0, 62.0, "1:02"),)),
    "at around": ("The cup falls at around 5 seconds.", (T(5.0, 5.0, "5 seconds"),)),
    "bare, around": ("The cup falls around 5 seconds.", (T(5.0, 5.0, "5 seconds"),)),
    "bare, sentence start": ("12.5 seconds: the car turns left.", (T(12.5, 12.5, "12.5 seconds"),)),
    "into the video": ("The door opens 5 seconds into the video.", (T(5.0, 5.0, "5 seconds"),)),
    "n seconds in": ("The door opens about 12 sec in.", (T(12.0, 12.0, "12 sec"),)),
    "the mark": ("The flag goes up at the 5 second mark.", (T(5.0, 5.0, "5 second"),)),
    "by": ("By 5 seconds the ball is still.", (T(5.0, 5.0, "5 seconds"),)),
    "until": ("The music lasts until 20 s.", (T(20.0, 20.0, "20 s"),)),
    "from to": ("The person waves from 3 to 7 s.", (T(3.0, 7.0, "3 to 7 s"),)),
    "between and": ("The kettle whistles between 2.0 and 4.5 seconds.", (T(2.0, 4.5, "2.0 and 4.5 seconds"),)),
    "clock span": ("The chef trims the fat during 00:03 - 00:07.", (T(3.0, 7.0, "00:03 - 00:07"),)),
    "qwen2.5 'happens in' span": ("The given query happens in 64.0 - 72.0 seconds.",
                                  (T(64.0, 72.0, "64.0 - 72.0 seconds"),)),
    "clocks always are moments": ("After 00:05 the dog sits, for 00:02 to 00:04 it sleeps.",
                                  (T(5.0, 5.0, "00:05"), T(2.0, 4.0, "00:02 to 00:04"))),
    "qwen3 stamp after for": ("The dog barks for <3.5 seconds>.", (T(3.5, 3.5, "<3.5 seconds>"),)),
    # ---- Chinese amounts of time
    "共": ("视频共18秒。", ()),
    "总共": ("视频总共18秒。", ()),
    "一共": ("这段视频一共18秒。", ()),
    "持续": ("这个动作持续5秒。", ()),
    "持续了大约": ("狗叫持续了大约5秒。", ()),
    "每帧间隔": ("每帧间隔1秒。", ()),
    "每": ("灯每2秒闪一次。", ()),
    "时长": ("视频时长30秒。", ()),
    "时长为": ("视频时长为30秒。", ()),
    "长": ("视频长18秒。", ()),
    "秒长": ("这段视频18秒长。", ()),
    "秒钟, counted": ("他大约3秒钟就跑完了。", ()),
    "等了大约秒钟": ("他等了大约3秒钟。", ()),
    "秒钟后": ("大约3秒钟后，门开了。", ()),
    "秒后": ("3秒后，狗停了下来。", ()),
    "在…后": ("在5秒后，猫跳了起来。", ()),
    "过后": ("3秒过后，狗叫了。", ()),
    "内": ("球在5秒内落地。", ()),
    "前 n 秒": ("前5秒是黑屏。", ()),
    "最后 n 秒": ("最后3秒画面变暗。", ()),
    "的视频": ("这是一个5秒的视频。", ()),
    "用时": ("整个过程用时3秒。", ()),
    "花了": ("他花了3秒穿鞋。", ()),
    "至少": ("保持至少5秒。", ()),
    "每 span": ("灯每2～3秒闪一次。", ()),
    "持续 span": ("停顿持续3到5秒。", ()),
    "span 后": ("3到5秒后停下。", ()),
    "分钟, counted": ("采访进行了2分钟。", ()),
    # ---- Chinese moments and spans
    "在第": ("狗在第5秒跳起。", (T(5.0, 5.0, "5秒"),)),
    "秒时": ("5秒时狗跳起。", (T(5.0, 5.0, "5秒"),)),
    "在…时": ("狗在5秒时跳起。", (T(5.0, 5.0, "5秒"),)),
    "的时候": ("5秒的时候狗跳起。", (T(5.0, 5.0, "5秒"),)),
    "在大约秒钟时": ("在大约3秒钟时，门开了。", (T(3.0, 3.0, "3秒钟"),)),
    "约…处": ("约3秒处出现一只猫。", (T(3.0, 3.0, "3秒"),)),
    "在…左右": ("狗在5秒左右跳起。", (T(5.0, 5.0, "5秒"),)),
    "第 span 之间": ("狗在第3秒到第7秒之间奔跑。", (T(3.0, 7.0, "3秒到第7秒"),)),
    "span 之间": ("球在3到5秒之间滚动。", (T(3.0, 5.0, "3到5秒"),)),
    "从…到": ("从3秒到7秒他一直在挥手。", (T(3.0, 7.0, "3秒到7秒"),)),
    "在 clock": ("猫在00:05出现。", (T(5.0, 5.0, "00:05"),)),
    "第 分钟": ("视频第2分钟出现了一只猫。", (T(120.0, 120.0, "2分钟"),)),
    # ---- both in one sentence: only the moments
    "lasts, then starts at": ("It lasts 5 seconds and starts at 00:12.0.", (T(12.0, 12.0, "00:12.0"),)),
    "appears, barks, leaves": ("The dog appears at 12.5s, barks for 3 s, and leaves 2 seconds later at 00:17.5.",
                               (T(12.5, 12.5, "12.5s"), T(17.5, 17.5, "00:17.5"))),
    "at, for, every": ("At 5 seconds the light turns on; it stays on for 3 seconds and blinks every 2 seconds.",
                       (T(5.0, 5.0, "5 seconds"),)),
    "a clip with a moment and a span": ("The 18 second video shows a dog: it sits at 4 s and runs from 9 to 12 s.",
                                        (T(4.0, 4.0, "4 s"), T(9.0, 12.0, "9 to 12 s"))),
    "zh 出现, 叫了, 后, 在": ("狗在第3秒出现，叫了2秒，5秒后离开，在00:08.0消失。",
                             (T(3.0, 3.0, "3秒"), T(8.0, 8.0, "00:08.0"))),
    "zh 共, 在…时, 持续": ("视频共18秒，在5秒时猫跳上桌子，持续约3秒钟。", (T(5.0, 5.0, "5秒"),)),
    "zh 间隔, span 之间": ("每帧间隔1秒，球在4秒到6秒之间滚动。", (T(4.0, 6.0, "4秒到6秒"),)),
    # ---- a JSON key that says "time" makes its value a time, whatever its words
    "json time in the counting form": ('[{"time": "3秒钟", "label": "门开了"}]', (T(3.0, 3.0, None, "门开了"),)),
}


@pytest.mark.parametrize("answer, times", MOMENTS_AND_AMOUNTS.values(), ids=MOMENTS_AND_AMOUNTS.keys())
def test_moments_are_times_and_amounts_of_time_are_not(answer: str, times: tuple[T, ...]) -> None:
    found = parse_answer(answer, Q3)
    assert [_fields(t) for t in found.times] == [_approx_fields(_expected_time(answer, t)) for t in times]


# ---- fuzz: never raises, and everything it returns is a real place and moment of the video ------------------------

FRAGMENTS = [
    "{", "}", "[", "]", ",", ":", " ", "\n", "'", '"', "```json\n", "```", "//", "/*", "*/", "NaN", "Infinity",
    "-Infinity", "1e999", "-1e999", '"bbox_2d": ', '"point_2d": ', '"time": ', '"label": "x"', '"start_time": ',
    '"end_time": ', '"00:23.00 - 00:48.00": "e"', '"00:01.0"', "00:12.4", "1:02:03.5", "99:59:59", "3 s",
    "12.5 seconds", "<3.5 seconds>", " - ", " to ", "between ", " and ", "from ", "-", "–", "at ", "for ",
]
PIECES = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.floats().map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.text(max_size=4),
)
ANSWERS = st.lists(PIECES, max_size=60).map("".join)
FRAMES = st.sampled_from([Q3, Q25, Q25_PORTRAIT])
DURATIONS = st.one_of(st.none(), st.floats(min_value=0, max_value=10_000))


def _check_invariants(text: str, frame: CoordinateFrame, duration_s: float | None, found: Groundings) -> None:
    latest = 24 * 3600.0 if duration_s is None else duration_s
    for span in found.times:
        assert 0 <= span.start_s <= span.end_s <= latest
        assert (span.char_start, span.char_end) == (-1, -1) or 0 <= span.char_start < span.char_end <= len(text)
    for item in (*found.points, *found.boxes):
        assert item.t_s is None or 0 <= item.t_s <= latest
    for p in found.points:
        assert 0 <= p.x <= frame.source_width and 0 <= p.y <= frame.source_height
    for b in found.boxes:
        assert 0 <= b.x1 < b.x2 <= frame.source_width and 0 <= b.y1 < b.y2 <= frame.source_height
    assert max(len(found.times), len(found.points), len(found.boxes)) <= 256


@settings(max_examples=300, deadline=None)
@given(st.text(), FRAMES, DURATIONS)
def test_any_text_parses_to_valid_groundings(text: str, frame: CoordinateFrame, duration_s: float | None) -> None:
    _check_invariants(text, frame, duration_s, parse_answer(text, frame, duration_s))


@settings(max_examples=500, deadline=None)
@given(ANSWERS, FRAMES, DURATIONS)
def test_json_and_time_fragments_parse_to_valid_groundings(
    text: str, frame: CoordinateFrame, duration_s: float | None
) -> None:
    _check_invariants(text, frame, duration_s, parse_answer(text, frame, duration_s))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(), st.floats(), st.floats(), st.floats(), st.floats(allow_nan=True)),
        min_size=1, max_size=5,
    ),
    FRAMES,
    st.integers(min_value=0, max_value=200),
)
def test_grounding_json_with_any_numbers_cut_anywhere(rows, frame: CoordinateFrame, cut: int) -> None:
    """Well-formed grounding JSON with arbitrary numbers, cut at any point: only complete, valid objects survive."""
    objects = [f'{{"time": {t!r}, "bbox_2d": [{x1!r}, {y1!r}, {x2!r}, {y2!r}], "label": "o{i}"}}'
               for i, (x1, y1, x2, y2, t) in enumerate(rows)]
    text = "```json\n[" + ", ".join(objects) + "]\n```"
    text = text[: len(text) - cut] if cut < len(text) else ""
    found = parse_answer(text, frame, 100.0)
    _check_invariants(text, frame, 100.0, found)
    complete = {f'"o{i}"' for i in range(len(rows)) if objects[i] in text}
    assert {f'"{b.label}"' for b in found.boxes} <= complete


# ---- every time format, with Chinese, Japanese or Korean text around it -----------------------------------------

# Sentence text without digits and without the words that make a time a duration or join two times (秒, 后, 每, 到,
# 视频, 부터, 동안, ...): around one time, none of it may change what is read.
CJK_TEXT = st.text(
    alphabet="男人女孩狗猫画面中出现走跑进入厨房拿起杯子放下门打开球车红色的他她它们这那里一个是在，。！？、：「」【】（）"
    "はがをにでもねよカメラボール남자가공을던집니다고양이 ",
    max_size=12,
)
TENTHS = st.integers(min_value=0, max_value=35_999)  # times under an hour, to a tenth of a second


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _clock(tenths: int) -> str:
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes:02d}:{tenths // 10:02d}.{tenths % 10}"


# (format, seconds it means): one instant or span per format, every form parse_answer reads in prose
INSTANT_FORMATS = {
    "mm:ss.f": lambda t: (_clock(t), t / 10),
    "m:ss": lambda t: (f"{t // 600}:{t // 10 % 60:02d}", t // 10),
    "h:mm:ss.f": lambda t: (f"1:{_clock(t)}", 3600 + t / 10),
    "seconds": lambda t: (f"{t / 10:.1f} seconds", t / 10),
    "s": lambda t: (f"{t / 10:.1f}s", t / 10),
    "sec": lambda t: (f"{t // 10} sec", t // 10),
    "min s": lambda t: (f"{t // 600} min {t // 10 % 60} s", t // 600 * 60 + t // 10 % 60),
    "qwen3 stamp": lambda t: (f"<{t / 10:.1f} seconds>", t / 10),
    "秒": lambda t: (f"{t / 10:.1f}秒", t / 10),
    "分秒": lambda t: (f"{t // 600}分{t // 10 % 60}秒", t // 600 * 60 + t // 10 % 60),
    "분 초": lambda t: (f"{t // 600}분 {t // 10 % 60}초", t // 600 * 60 + t // 10 % 60),
    "<秒>": lambda t: (f"<{t / 10:.1f}秒>", t / 10),
    "full-width clock": lambda t: (_full_width(_clock(t)), t / 10),
    "full-width <秒>": lambda t: (_full_width(f"<{t / 10:.1f}") + "秒＞", t / 10),
}
SPAN_FORMATS = {
    "a to b s": lambda a, b: f"{a / 10:.1f} to {b / 10:.1f} s",
    "clock to clock": lambda a, b: f"{_clock(a)} to {_clock(b)}",
    "clock - clock": lambda a, b: f"{_clock(a)} - {_clock(b)}",
    "a-b seconds": lambda a, b: f"{a / 10:.1f}-{b / 10:.1f} seconds",
    "a – b s": lambda a, b: f"{a / 10:.1f} – {b / 10:.1f} s",
    "clock到clock": lambda a, b: f"{_clock(a)}到{_clock(b)}",
    "a到b秒": lambda a, b: f"{a / 10:.1f}到{b / 10:.1f}秒",
    "a秒至b秒": lambda a, b: f"{a / 10:.1f}秒至{b / 10:.1f}秒",
    "a～b秒": lambda a, b: f"{a / 10:.1f}～{b / 10:.1f}秒",
    "a〜b秒": lambda a, b: f"{a / 10:.1f}〜{b / 10:.1f}秒",
    "a秒からb秒": lambda a, b: f"{a / 10:.1f}秒から{b / 10:.1f}秒",
    "a초부터 b초": lambda a, b: f"{a / 10:.1f}초부터 {b / 10:.1f}초",
    "full-width clock～clock": lambda a, b: _full_width(f"{_clock(a)}~{_clock(b)}"),
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(INSTANT_FORMATS)), TENTHS, CJK_TEXT, CJK_TEXT)
def test_every_instant_format_inside_cjk_text(name: str, tenths: int, before: str, after: str) -> None:
    written, seconds = INSTANT_FORMATS[name](tenths)
    answer = before + written + after
    (span,) = parse_answer(answer, Q3).times
    assert span.start_s == span.end_s == pytest.approx(seconds)
    assert (span.char_start, span.char_end) == (len(before), len(before) + len(written))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SPAN_FORMATS)), TENTHS, TENTHS, CJK_TEXT, CJK_TEXT)
def test_every_span_format_inside_cjk_text(name: str, a: int, b: int, before: str, after: str) -> None:
    written = SPAN_FORMATS[name](a, b)
    answer = before + written + after
    (span,) = parse_answer(answer, Q3).times
    assert (span.start_s, span.end_s) == (pytest.approx(min(a, b) / 10), pytest.approx(max(a, b) / 10))
    assert (span.char_start, span.char_end) == (len(before), len(before) + len(written))
