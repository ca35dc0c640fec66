"""Groundings in a model's answer: times, points and boxes, in source-video seconds and pixels.

Qwen-VL models ground in prose ("at 00:12.4", "from 3 to 7 s", "64.0 - 72.0 seconds", "<3.5 seconds>"; in the
question's language, so also "发生在00:01.00 - 00:06.00之间", "从0:00到0:18", "<5.6秒>", "5秒から10秒まで", "2분 30초",
with full-width digits, colons and brackets) and in
their own JSON (`{"time": 1.0, "bbox_2d": [...], "label": ...}`, `{"00:23.00 - 00:48.00": "event"}`,
`{"start_time": ..., "end_time": ...}`). Qwen3-VL gives coordinates in 0–1000 of the frame, Qwen2.5-VL in pixels of
its resized input; `CoordinateFrame` says which. The text is model output, often streamed and cut mid-way, so
`parse_answer` never raises on it: it reads JSON leniently (code fences, trailing commas, single quotes, comments,
a cut at any point) and keeps what is complete.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CoordinateFrame:
    """How a model's spatial coordinates map to source-video pixels."""

    kind: Literal["relative1000", "absolute"]  # Qwen3-VL: 0–1000 relative; Qwen2.5-VL: pixels of its resized input
    input_width: int  # width of the frames the model saw (used by "absolute")
    input_height: int
    source_width: int  # the original video's size: outputs are in these pixels
    source_height: int

    def __post_init__(self) -> None:
        if self.kind not in ("relative1000", "absolute"):
            raise ValueError(f"unknown coordinate kind {self.kind!r}")
        sizes = (self.input_width, self.input_height, self.source_width, self.source_height)
        if min(sizes) <= 0:
            raise ValueError(f"frame sizes must be positive, got {sizes}")

    @property
    def model_extent(self) -> tuple[int, int]:
        """(width, height) of the frame in the model's coordinates."""
        if self.kind == "relative1000":
            return 1000, 1000
        return self.input_width, self.input_height

    def to_model(self, x: float, y: float) -> tuple[int, int]:
        """Source-video pixels → the model's own integer coordinates (to tell the model where something is)."""
        width, height = self.model_extent
        return round(x * width / self.source_width), round(y * height / self.source_height)


@dataclass(frozen=True)
class TimeSpan:
    start_s: float
    end_s: float  # == start_s for an instant
    char_start: int  # span of the matched text in the answer; -1 when it came from JSON without a clear text span
    char_end: int
    label: str = ""  # e.g. the event of {"00:23.00 - 00:48.00": "trim the fat"}


@dataclass(frozen=True)
class Point:
    t_s: float | None  # time the point refers to (None if the answer gave none)
    x: float  # source pixels
    y: float
    label: str


@dataclass(frozen=True)
class Box:
    t_s: float | None
    x1: float  # source pixels, x1 <= x2, y1 <= y2, clipped to the frame
    y1: float
    x2: float
    y2: float
    label: str


@dataclass(frozen=True)
class Groundings:
    times: tuple[TimeSpan, ...]  # in order of appearance
    points: tuple[Point, ...]
    boxes: tuple[Box, ...]


# A model answer is at most a few thousand tokens; anything longer is not an answer and is read only this far, so
# that the work stays bounded.
_MAX_TEXT_CHARS = 100_000
# No more groundings of one kind than a person can use (and than SAM 2 should be prompted with).
_MAX_PER_KIND = 256
# Nesting deeper than any grounding format needs: beyond it the JSON is treated as cut.
_MAX_DEPTH = 32
# Without a known duration, a time beyond a day is a misread number, not a moment of an uploaded video.
_MAX_SECONDS_UNKNOWN_DURATION = 24 * 3600.0
# A point this far outside the frame (fraction of its size) is a wrong answer; nearer, it is rounding.
_POINT_SLACK = 0.01


def parse_answer(text: str, frame: CoordinateFrame, duration_s: float | None = None) -> Groundings:
    """Every time, point and box in `text`, mapped to source pixels and seconds (clamped to [0, duration_s]).

    Times are moments and spans of the video, never amounts of time: clocks ("00:12.4", "1:02") and Qwen's stamps
    ("<3.5 seconds>") always are moments; a number with a unit ("5 seconds", "3 to 7 s", "5秒") is a moment unless
    the words around it make it a duration, interval, rate or relative time ("for 30 seconds", "every 2 s",
    "2 seconds later", "a 10 second clip", "共18秒", "每2秒", "3秒后", "大约3秒钟"). The rule is `_is_instant`'s.
    """
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be None or a finite non-negative number, got {duration_s}")
    text = text[:_MAX_TEXT_CHARS]
    found = _Found(frame, duration_s)
    prose = list(text)
    for start, end, value in _json_values(text):
        _walk(value, found)
        # numbers inside JSON (coordinates, "time": "00:01.0") are read as JSON, never again as prose
        prose[start:end] = "\0" * (end - start)
    for span in _prose_times("".join(prose)):
        found.add_time(span.char_start, span)
    times = [span for _, span in sorted(found.times, key=lambda item: item[0])]
    return Groundings(times=tuple(times[:_MAX_PER_KIND]), points=tuple(found.points), boxes=tuple(found.boxes))


def name_spans(text: str, name: str) -> list[tuple[int, int]]:
    """(start, end) of each whole-word mention of `name` in `text`, case-insensitive; a name inside Chinese,
    Japanese or Korean text ("红色方块在…") is a whole word, as those scripts put no spaces around words."""
    name = name.strip()
    if not name:
        return []
    pattern = re.compile(rf"(?<!{_WORD}){re.escape(name)}(?!{_WORD})", re.IGNORECASE)
    return [match.span() for match in pattern.finditer(text)]


def format_timestamp(t_s: float) -> str:
    """`12.4` → "00:12.4", `3723.5` → "1:02:03.5": the form prompts and UI links use, and `parse_answer` reads."""
    if not (math.isfinite(t_s) and t_s >= 0):
        raise ValueError(f"a timestamp must be finite and non-negative, got {t_s}")
    tenths = round(t_s * 10)  # rounded once, so that 59.96 s becomes "01:00.0", never "00:60.0"
    hours, tenths = divmod(tenths, 36000)
    minutes, tenths = divmod(tenths, 600)
    seconds = f"{tenths // 10:02d}.{tenths % 10}"
    return f"{hours}:{minutes:02d}:{seconds}" if hours else f"{minutes:02d}:{seconds}"


# ---------------------------------------------------------------------------------------------------------------
# Collecting and validating groundings


class _Found:
    """Groundings collected in order of appearance, each validated against the frame and duration."""

    def __init__(self, frame: CoordinateFrame, duration_s: float | None) -> None:
        self.frame = frame
        self.duration_s = duration_s
        self.times: list[tuple[int, TimeSpan]] = []  # (position in the text, span): JSON and prose are merged
        self.points: list[Point] = []
        self.boxes: list[Box] = []

    def time(self, t_s: float) -> float | None:
        """`t_s` clamped to the video, or None when it cannot be a moment of it."""
        if not math.isfinite(t_s) or t_s < 0:
            return None
        if self.duration_s is None:
            return t_s if t_s <= _MAX_SECONDS_UNKNOWN_DURATION else None
        # the last sampled frame and a model's rounding may lie a little past the probed duration
        if t_s > self.duration_s + 1.0 + 0.1 * self.duration_s:
            return None
        return min(t_s, self.duration_s)

    def add_time(self, position: int, span: TimeSpan) -> None:
        start_s, end_s = sorted((span.start_s, span.end_s))
        start, end = self.time(start_s), self.time(end_s)
        if start is None or end is None or len(self.times) >= _MAX_PER_KIND:
            return
        self.times.append((position, TimeSpan(start, end, span.char_start, span.char_end, span.label)))

    def add_box(self, t_s: float | None, raw: object, label: str) -> None:
        coords = _numbers(raw, 4)
        if coords is None or len(self.boxes) >= _MAX_PER_KIND:
            return
        width, height = self.frame.source_width, self.frame.source_height
        x1, x2 = sorted((self._x(coords[0]), self._x(coords[2])))
        y1, y2 = sorted((self._y(coords[1]), self._y(coords[3])))
        if any(math.isnan(v) for v in (x1, y1, x2, y2)):
            return
        # objects cut by the frame edge are common: clip, and drop only boxes with nothing left inside
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if x2 > x1 and y2 > y1:
            self.boxes.append(Box(t_s, x1, y1, x2, y2, label))

    def add_point(self, t_s: float | None, raw: object, label: str) -> None:
        coords = _numbers(raw, 2)
        if coords is None or len(self.points) >= _MAX_PER_KIND:
            return
        width, height = self.frame.source_width, self.frame.source_height
        x, y = self._x(coords[0]), self._y(coords[1])
        # a point off the frame prompts no object; within the slack it is rounding and is clipped
        if not (-_POINT_SLACK * width <= x <= (1 + _POINT_SLACK) * width):
            return
        if not (-_POINT_SLACK * height <= y <= (1 + _POINT_SLACK) * height):
            return
        self.points.append(Point(t_s, min(max(x, 0.0), width), min(max(y, 0.0), height), label))

    def _x(self, value: float) -> float:
        return value * self.frame.source_width / self.frame.model_extent[0]  # multiplied first: integers map exactly

    def _y(self, value: float) -> float:
        return value * self.frame.source_height / self.frame.model_extent[1]


def _numbers(raw: object, count: int) -> tuple[float, ...] | None:
    if not isinstance(raw, _Array) or len(raw.items) != count:
        return None
    if not all(isinstance(v, float) for v in raw.items):  # the parser makes every JSON number a float
        return None
    return tuple(raw.items)


_LABEL_KEYS = ("label", "event", "description")


def _label(obj: _Object) -> str:
    for key in _LABEL_KEYS:
        value = obj.pairs.get(key)
        if isinstance(value, str):
            return value.strip()
    return ""


def _walk(value: object, found: _Found) -> None:
    """Groundings of one parsed JSON value, in document order."""
    if isinstance(value, _Array):
        for item in value.items:
            _walk(item, found)
        return
    if not isinstance(value, _Object):
        return
    obj = value
    # {"00:23.00 - 00:48.00": "trim the fat", ...}: each complete pair stands alone, so a cut map keeps its pairs
    for key, item in obj.pairs.items():
        span = _whole_time_text(key) if isinstance(item, str) else None
        if span is not None:
            key_start = obj.key_starts[key]
            if key_start < 0:
                found.add_time(obj.start, TimeSpan(span[0], span[1], -1, -1, item.strip()))
            else:
                chars = (key_start + span[2], key_start + span[3])
                found.add_time(key_start, TimeSpan(span[0], span[1], *chars, item.strip()))
    # the other forms need the whole object: a cut one may have lost the key that changes its meaning
    if obj.complete:
        _read_object(obj, found)
    for item in obj.pairs.values():
        if isinstance(item, (_Object, _Array)):
            _walk(item, found)


def _read_object(obj: _Object, found: _Found) -> None:
    """The box, point or time of one complete object: {"time": 1.0, "bbox_2d": [...], "label": ...},
    {"time": "00:03.0", "label": "the ball is kicked"}, {"start_time": "00:23.90", "end_time": "00:48.00"}."""
    when = _json_span(obj.pairs["time"]) if "time" in obj.pairs else None
    if "bbox_2d" in obj.pairs or "point_2d" in obj.pairs:
        t_s = None
        if when is not None and when[0] == when[1]:
            t_s = found.time(when[0])
        # an object at a time that is no moment of the video, or at a span rather than a frame, is not trusted
        if "time" not in obj.pairs or t_s is not None:
            if "bbox_2d" in obj.pairs:
                found.add_box(t_s, obj.pairs["bbox_2d"], _label(obj))
            if "point_2d" in obj.pairs:
                found.add_point(t_s, obj.pairs["point_2d"], _label(obj))
    elif when is not None:
        found.add_time(obj.start, TimeSpan(when[0], when[1], -1, -1, _label(obj)))
    if "start_time" in obj.pairs and "end_time" in obj.pairs:
        start, end = _json_span(obj.pairs["start_time"]), _json_span(obj.pairs["end_time"])
        if start is not None and end is not None and start[0] == start[1] and end[0] == end[1]:
            found.add_time(obj.start, TimeSpan(start[0], end[0], -1, -1, _label(obj)))


_BARE_SECONDS = re.compile(r"\s*\d+(?:\.\d+)?\s*")


def _json_span(value: object) -> tuple[float, float] | None:
    """(start_s, end_s) of a JSON time value: seconds as a number or a string ("1.0"), or a time or span as written
    in prose ("00:01.0", "1.0s", "<1.0 seconds>", "00:23.00 - 00:48.00"); start_s == end_s for an instant."""
    if isinstance(value, float):
        return value, value
    if not isinstance(value, str):
        return None
    if _BARE_SECONDS.fullmatch(value):  # the key says it is a time, so a bare number is seconds
        return float(value), float(value)
    span = _whole_time_text(value)
    return None if span is None else (span[0], span[1])


def _whole_time_text(text: str) -> tuple[float, float, int, int] | None:
    """(start_s, end_s, char_start, char_end) when `text` is nothing but one time or span, else None."""
    spans = _prose_times(text, amounts_are_times=True)
    stripped_start = len(text) - len(text.lstrip())
    stripped_end = len(text.rstrip())
    if len(spans) != 1 or (spans[0].char_start, spans[0].char_end) != (stripped_start, stripped_end):
        return None
    return spans[0].start_s, spans[0].end_s, spans[0].char_start, spans[0].char_end


# ---------------------------------------------------------------------------------------------------------------
# Times in prose

# Chinese, Japanese and Korean write times straight after or before their words ("发生在00:01.00", "5.6秒之间",
# "12초에"), and a CJK character is a word character to `\w`: next to a time, only a Latin-script word character (or
# digit) makes a number part of a word.
_CJK = "\u1100-\u11ff\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = rf"[^\W{_CJK}]"
_HOURS_UNIT = r"(?:hours?|hrs?|h|小时|小時|時間|时|時|시간)"
_MINUTES_UNIT = r"(?:minutes?|mins?|m|分钟|分鐘|分|분)"
_SECONDS_UNIT = r"(?:seconds?|secs?|s|秒钟|秒鐘|秒|초)"
# minutes alone are a time only where the unit cannot mean anything else (Chinese 分 is also "points")
_WHOLE_MINUTES_UNIT = r"(?:分钟|分鐘|분)"
_TIME_TOKEN = re.compile(
    rf"""
    # 00:12, 0:12, 00:12.4, 1:02:03.5 (also before a colon ending a sentence) — but not 10:30 am, nor in 12:34:56:78
    # (after a colon only when no digit precedes it, so that "时间：00:12" is read and 12:34:56:78 is not)
    (?<!{_WORD})(?<![.])(?<!\d:)(?P<clock>(?:(?P<h>\d{{1,2}}):)?(?P<m>\d{{1,2}}):(?P<s>\d{{2}}(?:\.\d+)?))
    (?![.:]?\d|\s*[ap]\.?m\b)
    # Qwen3-VL's own frame stamps: <3.5 seconds>, <5.6秒>, 〈5.6秒〉
  | [<〈《]\s*(?P<angle>\d+(?:\.\d+)?)\s*{_SECONDS_UNIT}?\s*[>〉》]
    # 12.5 seconds, 12.5s, 12 sec, 1 min 30 s, 1分30秒, 1小时2分3秒, 2분 30초
  | (?<!{_WORD}|\.)(?:(?P<hours>\d+)\s*{_HOURS_UNIT}\s*(?:and\s+)?)?(?:(?P<minutes>\d+)\s*{_MINUTES_UNIT}\s*(?:and\s+)?)?
    (?P<unit>\d+(?:\.\d+)?)\s*{_SECONDS_UNIT}(?!{_WORD})
    # 第2分钟, 3분
  | (?<!{_WORD}|\.)(?P<whole_minutes>\d+(?:\.\d+)?)\s*{_WHOLE_MINUTES_UNIT}
    # a bare number is a time only as the start of a span whose end has a unit: "from 3 to 7 s", "64.0 - 72.0 seconds"
  | (?<!{_WORD}|\.)(?P<bare>\d+(?:\.\d+)?)(?!{_WORD}|\.\d)
    """,
    re.VERBOSE | re.IGNORECASE,
)
# "3 to 7 s", "0:00到0:18", "5秒至10秒", "3～7秒" (full-width forms are read as ASCII), "5秒から10秒", "5초부터 10초"
_CONNECTOR = re.compile(
    r"\s*(?:-{1,2}|–|—|~|〜|to|until|till|through|到|至|から|부터|에서)\s*第?\s*", re.IGNORECASE
)
_BETWEEN = re.compile(r"\bbetween\s+$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
# "在3秒和7秒之间", "3秒と7秒の間", "3초와 7초 사이": between, with the word after the second end
_CJK_AND = re.compile(r"\s*(?:和|与|與|跟|及|と|및|와|과)\s*")
_CJK_BETWEEN_AFTER = re.compile(r"\s*(?:之间|之間|の間|사이)")
# A number with a unit is a moment of the video or an amount of time ("lasts 5 seconds", "every 2 s", "共18秒"); a
# link that seeks to an amount would mislead. The words around it tell which (see `_is_instant`).
_ZH_FILLER = r"(?:大约|大約|约|約|大概|差不多|将近|將近|近|了|是|为|為|有|仅|僅|只|才|足足|整整|短短|达|達)"
_EN_FILLER = (
    r"(?:the|a|an|about|around|approximately|approx\.?|roughly|nearly|almost|some|just|only|exactly|precisely"
    r"|merely|barely|like|full|whole|entire|time|timestamp)"
)
_EN_INSTANT_BEFORE = r"(?:at|by|until|till|since|from)"
_EN_DURATION_BEFORE = (
    r"(?:for|every|each|per|within|after|before|over|under|than|least|most|up\s+to"
    r"|first|last|next|final|previous|preceding|following|remaining|another|additional|extra|other"
    r"|lasts|lasted|lasting|takes?|taking|took|taken|waits?|waited|waiting|spends?|spending|spent|holds?|holding"
    r"|held|pauses?|paused|pausing|runs?|running|ran|stays?|stayed|staying|remains?|remained|needs?|needed"
    r"|(?:(?:duration|length|runtime|total|interval|gap|delay|period|lag)s?|(?:total|running|run|playing)\s+time)"
    r"(?:\s+(?:of|is|was|are|were)|\s*[:=])?"
    r"|(?:video|clip|footage|recording|film|movie)\s+(?:is|was))"
)
_ZH_INSTANT_BEFORE = r"(?:在|于|於|从|從|自|到|至|直到|截至|截止到?|当|當|@)"
_ZH_DURATION_BEFORE = (  # 了: 叫了5秒, 用了3秒; 前/头/后: 前5秒 are the first five seconds
    r"(?:持续|持續|历时|歷時|耗时|耗時|用时|用時|花费|花費|每隔|每|间隔|間隔|隔|共|共计|共計|总计|總計|合计|合計"
    r"|全长|全長|总长|總長|时长|時長|长度|長度|长|長|为期|為期|了|超过|超過|不到|不足|少于|少於|多于|多於|至少|最多"
    r"|只有|仅有|僅有|前|头|頭|后|後)"
)
# a cue word, then only fillers up to the number ("for about", "at around", "持续了大约", "时长为"); searched leftmost,
# so that the cue farthest back through fillers wins ("到了5秒", reached 5 s, is 到 and not 了)
_CUE_BEFORE = re.compile(
    rf"""(?:
        (?<!{_WORD})(?:(?P<en_instant>{_EN_INSTANT_BEFORE})|(?P<en_duration>{_EN_DURATION_BEFORE})|(?P<en_in>in))
        \s+(?:{_EN_FILLER}\s+)*
      | (?:(?P<zh_instant>{_ZH_INSTANT_BEFORE})|(?P<zh_duration>{_ZH_DURATION_BEFORE}))\s*(?:{_ZH_FILLER}\s*)*
    )[~≈]?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_ORDINAL_BEFORE = re.compile(r"第\s*$")  # 第5秒: "the fifth second", a position
_FILLER_AFTER = r"(?:\s*(?:左右|上下|多|or\s+so\b))*"
# after the number, words that make it an amount even after "at"/"在" (在5秒后 is "after 5 seconds")
_RELATIVE_AFTER = re.compile(
    rf"""{_FILLER_AFTER}\s*(?:
        (?:long|longer|shorter|later|earlier|ago|apart|before|after|afterwards|left|remaining|to\s+go|from\s+now)\b
      | 之?[后後]|以[后後]|[过過][后後]|之?前(?![后後])|以前|[之以]?[内內]|[长長]
      | ごと|おき|毎|동안|후|뒤|전|마다
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_SINGLE_RELATIVE_AFTER = re.compile(rf"{_FILLER_AFTER}\s*[间間]")  # 5秒間 "for 5 s"; but 3到5秒间 is a span
_CUE_AFTER = re.compile(
    rf"""{_FILLER_AFTER}\s*(?:
        (?P<instant>
            (?:mark|into|in(?!\s+(?:length|duration|total|all|a\s+row|which)\b))\b
          | [时時](?![间間长長])|的?[时時]候|[处處]|那一?刻|的位置|之[际際]|之间|之間|の間|사이)
      | (?P<duration>
            (?:each|per|of|total|straight|or\s+(?:more|less|longer|shorter)|at\s+a\s+time|worth|in\s+(?:length
              |duration|total|all|a\s+row)|clips?|videos?|segments?|windows?|intervals?|gaps?|delays?|pauses?
              |breaks?|spans?|periods?|loops?|countdown|timer)\b
          | 一次|一帧|一幀|的?(?:视频|視頻|片段|短片|录像|錄像|时间|時間|间隔|間隔|时长|時長|停顿|停頓|延迟|延遲))
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_COUNTED_UNIT = "钟鐘"  # 3秒钟, 2分钟: the counting form, a length of time (a position is 第3秒, 3秒时, 在3秒)
# Full-width digits, colons, brackets and tildes (０１：２３, ＜５.６秒＞, 3～7秒) read as their ASCII forms. Each is one
# character for one, so positions in the answer stay those of the text as written.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: ord(" ")}


@dataclass(frozen=True)
class _Token:
    kind: Literal["clock", "angle", "unit", "bare"]
    seconds: float | None  # None for a clock that is not a time (00:75)
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _TIME_TOKEN.finditer(text):
        group = next(name for name in ("clock", "angle", "unit", "whole_minutes", "bare") if match[name] is not None)
        kind = "unit" if group == "whole_minutes" else group
        if group == "clock":
            hours = int(match["h"]) if match["h"] else 0
            minutes, seconds = int(match["m"]), float(match["s"])
            valid = seconds < 60 and (match["h"] is None or minutes < 60)
            value = hours * 3600 + minutes * 60 + seconds if valid else None
        elif group == "unit":  # float: int() refuses 4300+ digits
            value = float(match["unit"]) + 60 * float(match["minutes"] or 0) + 3600 * float(match["hours"] or 0)
        elif group == "whole_minutes":
            value = 60 * float(match["whole_minutes"])
        else:
            value = float(match[group])
        tokens.append(_Token(kind, value, match.start(), match.end()))
    return tokens


def _joins(text: str, first: _Token, second: _Token) -> bool:
    """Whether two neighbouring tokens are the two ends of one span."""
    if first.seconds is None or second.seconds is None:
        return False
    if first.kind == "clock":
        if second.kind != "clock":
            return False
    elif second.kind not in ("unit", "angle"):  # "3 to 7" alone could be anything; "3 to 7 s" is a span
        return False
    gap = text[first.end : second.start]
    if len(gap) > 16:
        return False
    if _CONNECTOR.fullmatch(gap):
        return True
    if _CJK_AND.fullmatch(gap) and _CJK_BETWEEN_AFTER.match(text, second.end):
        return True
    return bool(_AND.fullmatch(gap)) and bool(_BETWEEN.search(text[max(0, first.start - 16) : first.start]))


def _negative(text: str, token: _Token) -> bool:
    return token.start > 0 and text[token.start - 1] in "-−"


def _is_instant(text: str, start: int, end: int, span: bool) -> bool:
    """Whether the number with a unit at text[start:end] ("5 seconds", "3 to 7 s", "3秒钟") is a moment of the video
    rather than an amount of time; the first rule that applies decides:

    1. after 第 ("第5秒", "the fifth second"): a moment;
    2. followed by a word that makes it relative or a length — "later", "ago", "long", "apart", "before", "after",
       后, 前, 内, 长, 間 (single times only: "3到5秒间" is a span), 동안, 후 — an amount, even after "at"/"在"
       ("在5秒后" is "after 5 seconds");
    3. the word before it, through fillers ("about", "the", 大约, 了, 是 …): "at", "by", "until", "since", "from",
       在, 于, 从, 到, 当 make a moment; "for", "every", "each", "per", "within", "after", "over", "up to",
       "at least", "the first/last/next", "lasts", "takes", "waits", "runs", "duration (of/is/:)", "total",
       "the video is", 持续, 每, 间隔, 共, 时长, 长, 用时, 了, 超过, 前 (前5秒, the first five) make an amount;
       "in" makes a span a moment ("happens in 64.0 - 72.0 seconds", Qwen2.5-VL's own words) and a single number
       an amount ("in 2 seconds", from now);
    4. the words after it: "mark", "into", "in" (not "in length/total/duration"), 时, 处, 的时候, 之间 make a moment;
       "each", "per", "of", "in total", "in length", "or more", "clip", "video", "interval", 一次, 的视频 an amount;
    5. the counting form 秒钟/分钟 ("大约3秒钟") is an amount;
    6. anything else ("5 seconds", "12.5s", "3 to 7 s", "5秒") is a moment: that is how models ground.
    """
    if _ORDINAL_BEFORE.search(text, max(0, start - 4), start):
        return True
    if _RELATIVE_AFTER.match(text, end) or (not span and _SINGLE_RELATIVE_AFTER.match(text, end)):
        return False
    if cue := _CUE_BEFORE.search(text, max(0, start - 48), start):
        return bool(cue["en_instant"] or cue["zh_instant"] or (cue["en_in"] and span))
    if cue := _CUE_AFTER.match(text, end):
        return cue["instant"] is not None
    return text[end - 1] not in _COUNTED_UNIT


def _prose_times(text: str, amounts_are_times: bool = False) -> list[TimeSpan]:
    """Times written in prose, unvalidated (seconds as written), in order of appearance. Amounts of time ("for 5 s")
    are left out unless `amounts_are_times`: where a JSON key already says the text is a time."""
    text = text.translate(_FULL_WIDTH)
    tokens = _tokens(text)
    spans = []
    i = 0
    while i < len(tokens):
        first = tokens[i]
        second = tokens[i + 1] if i + 1 < len(tokens) else None
        if second is not None and _joins(text, first, second):
            # clocks and Qwen's <stamps> are always moments; "3 to 5 seconds" may be an amount ("lasts 3 to 5 s")
            moment = second.kind != "unit" or amounts_are_times or _is_instant(text, first.start, second.end, True)
            if moment and not _negative(text, first):
                spans.append(TimeSpan(first.seconds, second.seconds, first.start, second.end))
            i += 2
            continue
        i += 1
        if first.seconds is None or first.kind == "bare" or _negative(text, first):
            continue
        if first.kind == "unit" and not amounts_are_times and not _is_instant(text, first.start, first.end, False):
            continue
        spans.append(TimeSpan(first.seconds, first.seconds, first.start, first.end))
    return spans


# ---------------------------------------------------------------------------------------------------------------
# Lenient JSON
#
# json.loads rejects what models write (trailing commas, single quotes, comments, prose around it, a stream cut
# mid-object). This reader takes JSON5-ish input and, on an error or the end of the text, stops and returns what it
# has: containers closed properly are `complete`; a cut container keeps its complete members.


@dataclass(frozen=True)
class _Object:
    pairs: dict[str, object]
    key_starts: dict[str, int]  # where each key's text starts in the answer (inside its quotes); -1 if unknown
    start: int
    complete: bool


@dataclass(frozen=True)
class _Array:
    items: list[object]
    complete: bool


_MISSING = object()  # no value could be read here
_SPACE = re.compile(r"\s*")
_NUMBER = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|NaN\b|Infinity\b|inf\b)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_OPENING = re.compile(r"[\[{]")
_UNESCAPED_QUOTE = {quote: re.compile(rf"(?<!\\)(?:\\\\)*{quote}") for quote in "\"'"}


def _json_values(text: str) -> list[tuple[int, int, object]]:
    """(start, end, value) of every JSON value in `text` that holds an object, fenced or not."""
    reader = _JsonReader(text)
    values = []
    position = 0
    while (opening := _OPENING.search(text, position)) is not None:
        start = opening.start()
        value, end = reader.value(start, 0)
        if _holds_object(value, 0):
            values.append((start, end, value))
            position = end
        elif end < len(text):
            # a failed read resumes where it failed (an object may start there)
            position = max(end, start + 1)
        else:
            # it ran to the end, e.g. from a prose apostrophe read as an unterminated string: an object may lie inside
            position = start + 1
    return values


def _holds_object(value: object, depth: int) -> bool:
    if isinstance(value, _Object):
        return True
    return isinstance(value, _Array) and depth < _MAX_DEPTH and any(_holds_object(v, depth + 1) for v in value.items)


def _ends(pattern: re.Pattern[str], text: str) -> list[int]:
    return [match.end() for match in pattern.finditer(text)]


class _JsonReader:
    """Reads values at any position of one text.

    The text is read from many starting points (every "{" and "["), so where strings and comments end is found once
    for the whole text: a read never rescans to find a closing quote, and the total work stays linear.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.quote_ends = {quote: _ends(pattern, text) for quote, pattern in _UNESCAPED_QUOTE.items()}
        self.line_ends = [match.start() for match in re.finditer(r"\n", text)]
        self.comment_ends = _ends(re.compile(r"\*/"), text)

    def value(self, position: int, depth: int) -> tuple[object, int]:
        """(value, end); `_MISSING` when nothing can be read at `position`."""
        text = self.text
        if depth > _MAX_DEPTH or position >= len(text):
            return _MISSING, position
        char = text[position]
        if char == "{":
            return self.object(position, depth)
        if char == "[":
            return self.array(position, depth)
        if char in self.quote_ends:
            body, end = self.string(position)
            return (_MISSING, end) if body is None else (body, end)
        if number := _NUMBER.match(text, position):
            return float(number[0]), number.end()
        if (word := _IDENTIFIER.match(text, position)) and word[0] in _LITERALS:
            return _LITERALS[word[0]], word.end()
        return _MISSING, position

    def string(self, position: int) -> tuple[str | None, int]:
        quote = self.text[position]
        end = _first_after(self.quote_ends[quote], position + 2)  # the end of a closing quote after this one
        if end is None:  # unterminated: the stream was cut inside it, so it runs to the end of the text
            return None, len(self.text)
        body = self.text[position + 1 : end - 1]
        if "\\" in body:
            if quote == "'":  # make it a double-quoted JSON string
                body = re.sub(r'(?<!\\)((?:\\\\)*)"', r'\1\\"', body.replace("\\'", "'"))
            try:
                body = json.loads(f'"{body}"', strict=False)
            except ValueError:
                pass  # an escape JSON does not know: keep the text as written
        return body, end

    def skip(self, position: int) -> int:
        """Past white space and // or /* */ comments."""
        text = self.text
        while True:
            position = _SPACE.match(text, position).end()
            if text.startswith("//", position):
                line_end = _first_after(self.line_ends, position)
                position = len(text) if line_end is None else line_end
            elif text.startswith("/*", position):
                comment_end = _first_after(self.comment_ends, position + 4)
                position = len(text) if comment_end is None else comment_end
            else:
                return position

    def array(self, position: int, depth: int) -> tuple[_Array, int]:
        items: list[object] = []
        position = self.skip(position + 1)
        while True:
            if self.text.startswith("]", position):
                return _Array(items, True), position + 1
            item, position = self.value(position, depth + 1)
            if item is _MISSING:
                return _Array(items, False), position
            items.append(item)
            if isinstance(item, (_Object, _Array)) and not item.complete:
                return _Array(items, False), position
            position = self.skip(position)
            if self.text.startswith(",", position):  # a trailing comma before "]" is accepted by the loop's first test
                position = self.skip(position + 1)
            elif not self.text.startswith("]", position):
                return _Array(items, False), position

    def object(self, start: int, depth: int) -> tuple[_Object, int]:
        text = self.text
        pairs: dict[str, object] = {}
        key_starts: dict[str, int] = {}
        position = self.skip(start + 1)
        while True:
            if text.startswith("}", position):
                return _Object(pairs, key_starts, start, True), position + 1
            if position < len(text) and text[position] in self.quote_ends:
                key, key_end = self.string(position)
                if key is None:
                    return _Object(pairs, key_starts, start, False), key_end
                # offsets inside the key hold only when no escape changed its length
                key_start = position + 1 if key_end - position - 2 == len(key) else -1
            elif word := _IDENTIFIER.match(text, position):  # unquoted keys, as in JavaScript
                key, key_end, key_start = word[0], word.end(), position
            else:
                return _Object(pairs, key_starts, start, False), position
            position = self.skip(key_end)
            if not text.startswith(":", position):
                return _Object(pairs, key_starts, start, False), position
            value, position = self.value(self.skip(position + 1), depth + 1)
            if value is _MISSING:
                return _Object(pairs, key_starts, start, False), position
            pairs[key] = value
            key_starts[key] = key_start
            if isinstance(value, (_Object, _Array)) and not value.complete:
                return _Object(pairs, key_starts, start, False), position
            position = self.skip(position)
            if text.startswith(",", position):
                position = self.skip(position + 1)
            elif not text.startswith("}", position):
                return _Object(pairs, key_starts, start, False), position


def _first_after(sorted_positions: list[int], position: int) -> int | None:
    """The first of `sorted_positions` that is >= `position`."""
    index = bisect.bisect_left(sorted_positions, position)
    return sorted_positions[index] if index < len(sorted_positions) else None
