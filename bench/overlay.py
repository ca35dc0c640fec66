"""Overlay traffic in the browser: the bytes the page receives for an answer that locates objects and for a
follow-up, and how soon a mask is drawn after a seek. The app is served in-process and driven in Chromium
(Debian's /usr/bin/chromium through Playwright) on 127.0.0.1.

    .venv/bin/python bench/overlay.py [--runs 3] [--seeks 9] [--out bench/results/overlay.json]

The clip: 384 s of the synthetic shapes video (`vidchat.testing.videos`) at 4 fps, 320×240, sampled at 2 fps:
768 frames, 96 chunks of `MASK_CHUNK_FRAMES`. The tiny random Qwen3-VL (`vidchat.testing.models`) answers with
scripted words: the first answer names three objects and its grounding reply boxes them at 10 s (Qwen3-VL's 0–1000
coordinates); the follow-up names none. The frames are sampled at a small pixel budget (128×96) so that encoding
768 frames is quick; the overlay data does not depend on it (masks are in source pixels, and the visual tokens are
counted per temporal patch).

THE MASKS ARE NOT SAM 2'S. `ShapeMasks`, a mask decoder with `MaskDecoder`'s interface, returns the true pixels of
the video's shapes as the masklets: the red square, the blue circle, and an ellipse of this script's own that
orbits the middle of the frame, turning (it is not drawn in the video). They stand in for what SAM 2 would track:
SAM 2 with random weights (the only one offline) gives noise, whose PNGs are nothing like a real object's mask, and
tracking 768 frames with it takes long on a CPU. Real objects have more ragged outlines than these shapes, so
their PNGs are somewhat larger.

Measured in each run (a fresh tab: upload, question, follow-up, a long follow-up, seeks); the table shows medians
over the runs:
- first_update_mb: the bytes the page received from the moment the question was sent (the request that joins
  Gradio's queue) until both the answer was done (its process_completed came and the page closed the event
  stream) and the masks of the frame at the playhead were drawn (`window.vidchat.maskDrawn`): the streamed answer
  (67 words) and the overlay data over Gradio's event stream, the mask chunks the page fetched, and whatever else
  came in that time (the 1 s status timer, heartbeats);
- followup_update_mb: the same for the follow-up (38 words, no new object: no mask is fetched again);
- seek_to_mask_ms: from `vidchat.seek` to the time of a chunk the page has not fetched until the masks of that
  frame are drawn (median of the seeks, each to a different unvisited chunk);
- in `detail`: the same bytes for a long follow-up (about 400 words, near the 512 new tokens an answer may have),
  the event stream's bytes by message (the answer streaming word by word, the final view, process_completed),
  and what the server makes without the browser: the overlay data, a chunk of masks, the masks as COCO RLE.

Bytes are counted with the Chrome DevTools Protocol (a CDP session on the tab, `Network.enable`): every
response's header bytes (`Network.responseReceived`) and its body bytes (`Network.dataReceived`), each counted
when its CDP timestamp falls in the window; the page's `performance.now()` (maskDrawn) is mapped onto CDP's clock
through the wall clock. See `NetLog` for why the body is counted by dataLength. A known download (the video
file, fetched again by the page) checks the counting: file size + headers. The old design's one payload (every
frame's mask PNG of every object, `vidchat.render.overlay_masks`) is measured as JSON, without the browser.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vidchat.segment import FeatureCache, Masklet, ObjectPrompt, Rle, place_prompts  # noqa: E402
from vidchat.session import GROUNDING_REQUEST_START, ChatSession, SessionSettings, load_model  # noqa: E402
from vidchat.testing.models import build_qwen3_vl  # noqa: E402
from vidchat.testing.scripted import Script, ScriptedLLM  # noqa: E402
from vidchat.testing.videos import BLUE_CIRCLE, RED_SQUARE, SyntheticVideo, write_video  # noqa: E402
from vidchat.ui import VidchatApp  # noqa: E402
from vidchat.ui.views import MASK_CHUNK_FRAMES, mask_chunks, overlay_payload  # noqa: E402
from vidchat.video import Clip, SamplingConfig  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
RESULTS = Path(__file__).resolve().parent / "results" / "overlay.json"
TARGETS = {"first_update_mb": 1.0, "followup_update_mb": 0.1, "seek_to_mask_ms": 250.0}

VIDEO_SIZE = (320, 240)
SOURCE_FPS = 4.0
DURATION_S = 384.0
SAMPLING = SamplingConfig(fps=2.0, max_frames=768, min_pixels=128 * 96, max_pixels=128 * 96)
ELLIPSE = "orbiting ellipse"
GROUND_AT_S = 10.0  # the time of the grounding reply's boxes
# The scripted words come at a model's pace (40 words/s, about 50 tokens/s), not all at once: the app runs a turn in
# a thread of its own, and words that outran the page would reach it after the objects were located.
WORD_PACE_S = 0.025

FIRST_QUESTION = "What moves in this video, and where does it go?"
FIRST_ANSWER = (
    "Three things move in this video. The red square crosses the upper half from left to right, from 00:00.0 to "
    "06:23.5; at 00:10.0 it is still near the left edge. The blue circle goes down the lower half over the same "
    "time and reaches the bottom at 06:23.5. The orbiting ellipse circles the middle of the frame, turning as it "
    "goes, and stands upright again at 03:12.0."
)
FOLLOWUP_QUESTION = "Do the square and the circle ever touch?"
FOLLOWUP_ANSWER = (
    "No, they never touch: the square stays in the upper half and the circle in the lower half. They are closest "
    "around 03:12.0, when the square passes above the circle's column, and they are farthest apart at 06:23.5."
)

LONG_QUESTION = "Where is each of them every 40 seconds?"


def long_answer() -> str:
    """About 400 words (near the app's 512-token answer limit), a time in every sentence."""
    sentences = []
    for t in range(0, int(DURATION_S), 40):
        across = round(100 * t / DURATION_S)
        turn = round((4 * 360 * t / DURATION_S) % 180)
        sentences.append(
            f"At {t // 60:02d}:{t % 60:02d}.0 the red square is about {across} % of the way across the upper half, "
            f"the blue circle about {across} % of the way down the lower half, and the orbiting ellipse is "
            f"tilted by {turn} degrees."
        )
    return " ".join(sentences) + " None of them stops or changes speed at any time in the video."


# ---- the masks: the video's true shapes, standing in for SAM 2 ---------------------------------------------


def ellipse_mask(t_s: float, size: tuple[int, int]) -> np.ndarray:
    """[height, width] bool: an ellipse orbiting the frame's centre twice over the clip, turning four times."""
    width, height = size
    phase = 2 * np.pi * t_s / DURATION_S
    center = (round(width / 2 + 0.3 * width * np.cos(2 * phase)), round(height / 2 + 0.25 * height * np.sin(2 * phase)))
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, center, (round(0.12 * width), round(0.06 * width)), np.degrees(4 * phase) % 360, 0, 360, 1, -1)
    return mask.astype(bool)


@dataclass(eq=False)
class ShapeState:
    """What `ShapeMasks` keeps about a clip (no image features: `features` stays empty, for the session's memory)."""

    clip: Clip
    features: FeatureCache
    closed: bool = False

    def close(self) -> None:
        self.closed = True


class ShapeMasks:
    """A mask decoder with `vidchat.segment.MaskDecoder`'s interface whose masklets are the synthetic video's true
    shapes (by label): what SAM 2 would track, without SAM 2. Every sampled frame's mask is the shape's pixels
    on the source frame it was sampled from."""

    model_id = "synthetic shapes (stand-in for SAM 2)"

    def __init__(self, video: SyntheticVideo):
        self.video = video
        self._rles: dict[tuple[str, bytes], tuple[Rle, ...]] = {}  # (label, frame indices) → masks, every run's

    def init_state(self, clip: Clip, max_feature_bytes: int = 0) -> ShapeState:
        return ShapeState(clip, FeatureCache(torch.device("cpu"), 0))

    def shape_mask(self, label: str, source_frame: int) -> np.ndarray:
        if label == ELLIPSE:
            return ellipse_mask(float(self.video.pts_s[source_frame]), (self.video.width, self.video.height))
        return self.video.masks(source_frame)[label]

    def track(self, state: ShapeState, objects: list[ObjectPrompt], progress=None) -> dict[int, Masklet]:
        clip, result = state.clip, {}
        for obj in objects:
            label = obj.label.strip().lower()
            if label not in (RED_SQUARE, BLUE_CIRCLE, ELLIPSE):
                raise ValueError(f"ShapeMasks knows no shape named {obj.label!r}")
            placed, skipped = place_prompts(obj, clip.times_s, clip.info.duration_s, clip.info.width, clip.info.height)
            key = (label, clip.frame_indices.tobytes())
            if key not in self._rles:
                self._rles[key] = tuple(Rle.encode(self.shape_mask(label, int(i))) for i in clip.frame_indices)
            rles = self._rles[key]
            count = len(rles)
            result[obj.object_id] = Masklet(
                object_id=obj.object_id,
                label=obj.label,
                times_s=clip.times_s,
                rles=rles,
                scores=np.ones(count, np.float32),
                visible=np.array([rle.area > 0 for rle in rles]),
                prompt_frames=tuple(sorted(placed)),
                skipped=tuple(skipped),
            )
            if progress is not None:
                progress(1.0, f"Tracking '{obj.label}'")
        return result


# ---- the model's words: one script per turn ----------------------------------------------------------------


def grounding_reply(video: SyntheticVideo) -> str:
    """The three shapes' boxes at GROUND_AT_S, as Qwen3-VL writes them for a video (0–1000 coordinates)."""
    frame = int(np.argmin(np.abs(video.pts_s - GROUND_AT_S)))
    decoder = ShapeMasks(video)
    found = []
    for label in (RED_SQUARE, BLUE_CIRCLE, ELLIPSE):
        x1, y1, x2, y2 = Rle.encode(decoder.shape_mask(label, frame)).bbox()
        box = [round(x1 * 1000 / video.width), round(y1 * 1000 / video.height),
               round(x2 * 1000 / video.width), round(y2 * 1000 / video.height)]  # fmt: skip
        found.append({"time": GROUND_AT_S, "bbox_2d": box, "label": label})
    return json.dumps(found)


class TurnScriptedLLM(ScriptedLLM):
    """`ScriptedLLM` with a script per turn of the conversation, word by word at WORD_PACE_S: the turn is told by
    the history's length (the grounding request carries the answer just given as its last turn)."""

    def __init__(self, llm, turns: list[Script]):
        super().__init__(llm, turns[0])
        self.turns = turns

    def generate(self, tokens, history, question, *args, **kwargs):
        grounding = question.startswith(GROUNDING_REQUEST_START)
        script = self.turns[min(len(history) - grounding, len(self.turns) - 1)]
        text = script.grounding if grounding else script.answer
        for word in re.findall(r"\s*\S+", text):
            time.sleep(WORD_PACE_S)
            yield word


def loader(video: SyntheticVideo):
    turns = [Script(FIRST_ANSWER, grounding_reply(video)), Script(FOLLOWUP_ANSWER, "[]"), Script(long_answer(), "[]")]
    masks = ShapeMasks(video)

    def load(kind: str, model_id: str):
        if kind == "sam":
            return masks
        model = load_model(kind, model_id)
        return TurnScriptedLLM(model, turns) if kind == "llm" else model

    return load


# ---- counting bytes with the DevTools protocol -------------------------------------------------------------


class NetLog:
    """Every response the tab receives, from CDP Network events: header and body bytes at their CDP timestamps.

    Body bytes are `Network.dataReceived`'s dataLength (the body as the page gets it; no API response here is
    compressed, which `compressed` would list), not its encodedDataLength: for a streamed response Chrome reports
    the wire bytes late, settling them only in loadingFinished, and a stream the page closes ends in loadingFailed
    with them never reported (a follow-up's 77 kB event stream showed 12 kB of encodedDataLength). What this leaves
    out is the chunked transfer framing, about 0.5 % of a stream. The event stream's messages are read too
    (`Network.streamResourceContent`), so that its bytes can be told apart by message.
    """

    def __init__(self, cdp, categories):
        self.cdp = cdp
        self.categories = categories  # (url, post data) → category name
        self.requests: dict[str, dict] = {}  # request id → url, sent_s, category
        self.received: list[tuple[float, int, str]] = []  # (CDP timestamp s, bytes, request id)
        self.finished: dict[str, int] = {}  # request id → loadingFinished's encodedDataLength (all its bytes)
        self.ended_s: dict[str, float] = {}  # request id → when it finished or failed (CDP timestamp)
        self.messages: list[tuple[float, int, str]] = []  # event stream: (CDP timestamp s, bytes, kind)
        self.compressed: set[str] = set()  # URLs of API responses with a Content-Encoding
        self._streams: dict[str, bytes] = {}  # event stream request id → bytes not yet split into messages
        self._unread: set[str] = set()  # event streams to read from their body when they end
        self.wall_minus_cdp_s: float | None = None  # wall clock − CDP's monotonic clock
        for event in ("requestWillBeSent", "responseReceived", "dataReceived", "loadingFinished", "loadingFailed"):
            cdp.on(f"Network.{event}", getattr(self, f"_{event}"))
        cdp.send("Network.enable")

    def _requestWillBeSent(self, event: dict) -> None:
        request = event["request"]
        self.wall_minus_cdp_s = event["wallTime"] - event["timestamp"]
        if request["url"].startswith("data:"):  # decoded in the page (the masks' PNGs), not received
            return
        self.requests[event["requestId"]] = {
            "url": request["url"],
            "sent_s": event["timestamp"],
            "category": self.categories(request["url"], request.get("postData", "")),
        }
        if "/queue/data" in request["url"]:  # read its messages as they come (asked as early as can be)
            request_id = event["requestId"]
            self._streams[request_id] = b""
            try:
                buffered = self.cdp.send("Network.streamResourceContent", {"requestId": request_id})["bufferedData"]
            except Exception:  # over already: its messages are read from its body, if it ends well
                self._unread.add(request_id)
                return
            self._split(request_id, base64.b64decode(buffered), event["timestamp"])

    def _responseReceived(self, event: dict) -> None:
        request_id = event["requestId"]
        if request_id not in self.requests:
            return
        response = event["response"]
        encoded = any(k.lower() == "content-encoding" and v != "identity" for k, v in response["headers"].items())
        if encoded and "/gradio_api/" in response["url"]:  # (the page's own scripts and styles come gzipped)
            self.compressed.add(response["url"])
        # the bytes received for the request so far: its status line and headers
        self.received.append((event["timestamp"], int(response.get("encodedDataLength", 0)), request_id))

    def _dataReceived(self, event: dict) -> None:
        request_id = event["requestId"]
        if request_id not in self.requests:
            return
        self.received.append((event["timestamp"], int(event["dataLength"]), request_id))
        if request_id in self._streams and event.get("data"):
            self._split(request_id, base64.b64decode(event["data"]), event["timestamp"])

    def _loadingFailed(self, event: dict) -> None:
        # The page closes Gradio's event stream once its events are done: a stream often ends this way.
        self.ended_s[event["requestId"]] = event["timestamp"]
        self._unread.discard(event["requestId"])

    def _loadingFinished(self, event: dict) -> None:
        request_id = event["requestId"]
        self.finished[request_id] = int(event["encodedDataLength"])
        self.ended_s[request_id] = event["timestamp"]
        if request_id in self._unread:
            self._unread.discard(request_id)
            body = self.cdp.send("Network.getResponseBody", {"requestId": request_id})
            data = base64.b64decode(body["body"]) if body["base64Encoded"] else body["body"].encode()
            self._split(request_id, data, event["timestamp"])

    def _split(self, request_id: str, data: bytes, t: float) -> None:
        """Server-sent events: each message, counted when its last byte came."""
        *complete, self._streams[request_id] = (self._streams[request_id] + data).split(b"\n\n")
        for message in complete:
            self.messages.append((t, len(message) + 2, _message_kind(message)))


    def first_request(self, fragment: str, after_s: float, category: str | None = None) -> tuple[str, float]:
        """(request id, CDP timestamp) of the first request whose URL holds `fragment` (and of `category`) sent
        after `after_s`."""
        for request_id, request in self.requests.items():
            if fragment in request["url"] and request["sent_s"] >= after_s and category in (None, request["category"]):
                return request_id, request["sent_s"]
        raise RuntimeError(f"no request to …{fragment}… after {after_s}")

    def streams_end_s(self, after_s: float) -> float | None:
        """When the event streams that received bytes after `after_s` ended (None while one is still open)."""
        streams = {rid for t, _, rid in self.received if t >= after_s and rid in self._streams}
        if not streams or any(rid not in self.ended_s for rid in streams):
            return None
        return max(self.ended_s[rid] for rid in streams)

    def latest_s(self) -> float:
        return max((t for t, _, _ in self.received), default=0.0)

    def to_cdp_s(self, page_ms: float, time_origin_ms: float) -> float:
        """A page's performance.now() as a CDP timestamp (both clocks are tied to the wall clock)."""
        return (time_origin_ms + page_ms) / 1000 - self.wall_minus_cdp_s

    def window(self, start_s: float, end_s: float) -> dict[str, int]:
        """Bytes received in [start_s, end_s], by category."""
        by_category: dict[str, int] = {}
        for request in self.window_requests(start_s, end_s):
            by_category[request["category"]] = by_category.get(request["category"], 0) + request["bytes"]
        return by_category

    def window_requests(self, start_s: float, end_s: float) -> list[dict]:
        """Bytes received in [start_s, end_s], by request: its category, URL path and bytes."""
        by_request: dict[str, int] = {}
        for t, size, request_id in self.received:
            if start_s <= t <= end_s:
                by_request[request_id] = by_request.get(request_id, 0) + size
        out = []
        for request_id, size in by_request.items():
            request = self.requests[request_id]
            path = request["url"].split("//", 1)[-1].split("/", 1)[-1].split("?")[0]
            out.append({"category": request["category"], "path": "/" + path[:80], "bytes": size})
        return out

    def window_messages(self, start_s: float, end_s: float) -> dict[str, dict]:
        """The event stream's messages in [start_s, end_s], by kind: how many and their bytes."""
        kinds: dict[str, dict] = {}
        for t, size, kind in self.messages:
            if start_s <= t <= end_s:
                entry = kinds.setdefault(kind, {"messages": 0, "bytes": 0})
                entry["messages"] += 1
                entry["bytes"] += size
        return kinds

    def request_bytes(self, request_id: str) -> tuple[int, int]:
        """(headers + body bytes counted from the events, loadingFinished's total) of one request."""
        return sum(size for _, size, rid in self.received if rid == request_id), self.finished.get(request_id, -1)


STREAM = "event stream (SSE)"
COMPLETED = "process_completed (final view again)"
# The outputs of the question's event, in the order of `layout.build`'s ask event: question, chat, objects, overlay.
_OVERLAY_OUTPUT = 3


def _message_kind(message: bytes) -> str:
    """What a message of Gradio's event stream carries: a streamed word (the chat only), the turn's final view
    (the object list and overlay data too), the same final view again in process_completed, or queue news."""
    text = message.decode("utf-8", "replace")
    try:
        data = json.loads(text[text.index("{") :])
    except ValueError:
        return "other"
    kind = data.get("msg", "other")
    if kind == "process_generating":
        outputs = (data.get("output") or {}).get("data") or []
        overlay = outputs[_OVERLAY_OUTPUT] if len(outputs) > _OVERLAY_OUTPUT else None
        return "final view (diff)" if overlay not in (None, [], {"__type__": "update"}) else "answer streaming"
    if kind == "process_completed":
        return COMPLETED
    return "queue news (estimation, progress, …)"


def categorizer(app: VidchatApp):
    """Names what a request is: the event stream, the masks or status calls (by their function's index), …"""
    index = {}
    for fn_index, block_fn in app.demo.fns.items():
        for name in ("on_masks", "on_status", "on_ask"):
            if getattr(block_fn.fn, "__func__", None) is getattr(VidchatApp, name):
                index[fn_index] = name
    names = {"on_masks": "mask chunks", "on_status": "status timer", "on_ask": "question (queue join)"}

    def category(url: str, post: str) -> str:
        if "/queue/data" in url:
            return STREAM
        if "/heartbeat/" in url:
            return "heartbeat"
        if post:
            try:
                fn_index = json.loads(post).get("fn_index")
            except ValueError:
                fn_index = None
            if fn_index in index:
                return names[index[fn_index]]
        if "/file=" in url or url.endswith((".mp4", ".png")):
            return "files"
        return "other"

    return category


# ---- the page ----------------------------------------------------------------------------------------------

# Instruments the page: when the overlay data and the mask chunks arrive (the app's own functions, wrapped).
INSTRUMENT = """() => {
  const vc = window.vidchat;
  if (window.__bench) return;
  const b = (window.__bench = { overlayAt: 0, masksAt: [] });
  const setOverlay = vc.setOverlay, addMasks = vc.addMasks;
  vc.setOverlay = (data) => { b.overlayAt = performance.now(); return setOverlay(data); };
  vc.addMasks = (data) => { b.masksAt.push(performance.now()); return addMasks(data); };
}"""

# Whether the turn asked at `sentAt` is done: no spinner in the chat, its final overlay data came, and the masks
# of the frame at the playhead were drawn after it.
TURN_DONE = """([sentAt, objects]) => {
  const vc = window.vidchat, b = window.__bench;
  if (document.querySelector('#chat .vc-spin') || !(b.overlayAt > sentAt)) return false;
  const o = vc.overlay;
  if (!o || o.objects.filter((x) => x.masks).length !== objects) return false;
  const d = vc.maskDrawn, v = vc.video();
  if (!d || d.at < b.overlayAt || !v) return false;
  const t = vc.appTime(v), times = o.frame_times_s;
  let frame = 0;
  for (let i = 1; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[frame] - t)) frame = i;
  return d.frame === frame ? { drawnAt: d.at, overlayAt: b.overlayAt, timeOrigin: performance.timeOrigin } : false;
}"""

# Seek to `t` (a frame whose chunk is not here yet) and wait for its masks to be drawn, and for the video's seek.
SEEK = """async ([t, frame]) => {
  const vc = window.vidchat, v = vc.video();
  const chunk = Math.floor(frame / vc.overlay.chunk_frames);
  const fetched = vc.overlay.objects.some((o) => o.masks && vc.masks.has(`${o.masks}/${chunk}`));
  if (fetched) return { error: 'chunk already fetched' };
  let seeked = null;
  v.addEventListener('seeked', () => { seeked = performance.now(); }, { once: true });
  const t0 = performance.now();
  vc.seek(t);
  while (!(vc.maskDrawn && vc.maskDrawn.frame === frame && vc.maskDrawn.at > t0)) {
    if (performance.now() - t0 > 20000) return { error: 'no mask after 20 s' };
    await new Promise((r) => requestAnimationFrame(r));
  }
  const drawnAt = vc.maskDrawn.at;
  while (seeked === null && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
  return { t0, drawnAt, mask_ms: drawnAt - t0, seeked_ms: seeked === null ? null : seeked - t0,
           timeOrigin: performance.timeOrigin };
}"""

# A known download through the page: the played video file, fetched again (a marker in the query tells it apart).
DOWNLOAD = """async () => {
  const src = window.vidchat.video().currentSrc;
  const url = src + (src.includes('?') ? '&' : '?') + 'bench-download=' + Date.now();
  const body = await (await fetch(url, { cache: 'no-store' })).arrayBuffer();
  return { url, bytes: body.byteLength };
}"""


def drain(page, ms: int = 300) -> None:
    """Let the CDP events in flight reach Python (Playwright delivers them while it waits)."""
    page.wait_for_timeout(ms)


def ask(page, net: NetLog, question: str, objects: int, timeout_s: float = 120.0) -> dict:
    """Send a question; the bytes received from the question's request until the answer is done and the masks
    at the playhead are drawn, by category, and how long that took."""
    drain(page)
    since_s = net.latest_s()
    sent_at = page.evaluate("performance.now()")
    page.fill("#question textarea", question)
    page.click("#ask-btn")
    done = page.wait_for_function(TURN_DONE, arg=[sent_at, objects], timeout=timeout_s * 1000).json_value()
    _, start_s = net.first_request("/queue/join", since_s)
    # The answer is done with Gradio's process_completed, which may come just after the masks were drawn; the page
    # then closes the event stream.
    for _ in range(50):
        drain(page, 100)
        completed_s = net.streams_end_s(start_s)
        if completed_s is not None:
            break
    else:
        raise RuntimeError("the question's event stream did not end")
    end_s = max(net.to_cdp_s(done["drawnAt"], done["timeOrigin"]), completed_s)
    by_category = net.window(start_s, end_s)
    messages = net.window_messages(start_s, end_s)
    stream_bytes = by_category.get(STREAM, 0)
    return {
        "bytes": sum(by_category.values()),
        "by_category": by_category,
        "stream_messages": messages,
        # the messages were all read (see NetLog: a stream over before CDP could ask for its data is not)
        "stream_messages_complete": abs(sum(m["bytes"] for m in messages.values()) - stream_bytes) < stream_bytes / 50,
        "requests": net.window_requests(start_s, end_s),
        "seconds": round(end_s - start_s, 3),
        "mask_responses": page.evaluate("(sentAt) => window.__bench.masksAt.filter((t) => t > sentAt).length", sent_at),
    }


def seek_targets(frames: int, count: int) -> list[int]:
    """Frames in the middle of `count` chunks spread over the clip, none of them the chunks 0–2 a turn fetched,
    and no two next to each other (a fetch brings the chunk after the playhead's too)."""
    chunks = frames // MASK_CHUNK_FRAMES
    picks = np.linspace(4, chunks - 2, count).round().astype(int)
    if len(set(picks)) < count or np.any(np.diff(picks) < 2):
        raise ValueError(f"{count} seeks do not fit {chunks} chunks two apart")
    return [int(c) * MASK_CHUNK_FRAMES + MASK_CHUNK_FRAMES // 2 for c in picks]


def run_once(
    browser, url: str, app: VidchatApp, video: SyntheticVideo, seeks: int, check_download: bool
) -> tuple[dict, ChatSession]:
    """One tab: upload, the three questions and the seeks; what was measured, and the tab's session."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        net = NetLog(context.new_cdp_session(page), categorizer(app))
        page.goto(url)
        page.wait_for_selector("#status .vc-ok", timeout=60_000)
        page.set_input_files("#player input[type=file]", video.path)
        page.wait_for_function(
            "document.querySelector('#notice').innerText.includes('frames sampled')", timeout=180_000
        )
        page.wait_for_function(
            "document.querySelector('#player video') && document.querySelector('#player video').readyState >= 2",
            timeout=60_000,
        )
        page.evaluate(INSTRUMENT)
        run: dict = {}
        if check_download:
            drain(page)
            since_s = net.latest_s()
            got = page.evaluate(DOWNLOAD)
            drain(page, 500)
            request_id = next(
                rid for rid, r in net.requests.items() if r["url"] == got["url"] and r["sent_s"] >= since_s
            )
            counted, finished = net.request_bytes(request_id)
            run["download_check"] = {
                "file_bytes": os.path.getsize(video.path),
                "fetched_bytes": got["bytes"],
                "counted_bytes": counted,  # headers + body, from responseReceived and dataReceived
                "loading_finished_bytes": finished,
            }
        run["first"] = ask(page, net, FIRST_QUESTION, objects=3)
        run["followup"] = ask(page, net, FOLLOWUP_QUESTION, objects=3)
        run["long_followup"] = ask(page, net, LONG_QUESTION, objects=3)
        frames = page.evaluate("window.vidchat.overlay.frame_times_s.length")
        times = page.evaluate("window.vidchat.overlay.frame_times_s")
        run["seeks"] = []
        for frame in seek_targets(frames, seeks):
            drain(page, 400)
            result = page.evaluate(SEEK, [times[frame], frame])
            if "error" in result:
                raise RuntimeError(f"seek to frame {frame}: {result['error']}")
            drain(page)
            start_s = net.to_cdp_s(result["t0"], result["timeOrigin"])
            end_s = net.to_cdp_s(result["drawnAt"], result["timeOrigin"])
            by_category = net.window(start_s, end_s)
            # where the time went: the page asking, the server answering (and the transfer), the page drawing
            request_id, asked_s = net.first_request("/", start_s, category="mask chunks")
            answered_s = net.ended_s.get(request_id, end_s)
            run["seeks"].append(
                {
                    "frame": frame,
                    "t_s": times[frame],
                    "mask_ms": round(result["mask_ms"], 1),
                    "video_seeked_ms": None if result["seeked_ms"] is None else round(result["seeked_ms"], 1),
                    "bytes": sum(by_category.values()),
                    "mask_bytes": by_category.get("mask chunks", 0),
                    "until_request_ms": round(1000 * (asked_s - start_s), 1),
                    "request_ms": round(1000 * (answered_s - asked_s), 1),
                    "response_to_drawn_ms": round(1000 * (end_s - answered_s), 1),
                }
            )
        run["page_errors"] = errors
        run["compressed"] = sorted(net.compressed)
        # the session this tab used (the newest with objects), kept for the measures made without the browser
        sessions = [w.session for w in app.workspaces._items.values() if w.session is not None and w.session.objects]
        return run, max(sessions, key=lambda session: session.revision)
    finally:
        context.close()


# ---- what the server sends, measured without the browser ---------------------------------------------------


def server_side_sizes(session: ChatSession) -> dict:
    """JSON bytes of the overlay data, of the mask chunks, and of the old design's payload (every frame's mask
    PNG of every object at once), from a session's objects."""
    frames = len(session.clip.times_s)
    objects = sorted(session.objects.values(), key=lambda o: o.object_id)
    started = time.perf_counter()
    every_frame = range(frames)
    old = {"objects": [{"id": o.object_id, "frames": session.overlay_masks(o.object_id, every_frame)} for o in objects]}
    old_seconds = time.perf_counter() - started
    old_bytes = len(json.dumps(old).encode())
    pngs = [f["png"] for o in old["objects"] for f in o["frames"] if f["png"]]
    payload = overlay_payload(session)  # what the page knows: the video's key and each object's masks key
    chunks = frames // MASK_CHUNK_FRAMES
    chunk_bytes, chunk_seconds = [], []
    for chunk in range(chunks):
        want = [{"id": o["id"], "masks": o["masks"], "chunk": chunk} for o in payload["objects"]]
        started = time.perf_counter()
        answer = mask_chunks(session, {"video": payload["video"], "seq": 1, "want": want})
        chunk_seconds.append(time.perf_counter() - started)
        chunk_bytes.append(len(json.dumps(answer).encode()))
    rle_chars = [len(o.masklet.rles[i].to_coco()["counts"]) for o in objects for i in range(frames)]
    heat = payload["timeline"]["heat"]
    return {
        "coco_rle_chars_mean": round(statistics.mean(rle_chars)),  # the same masks as COCO RLE strings
        "timeline_heat_bytes": len(json.dumps(heat).encode()),
        "old_design_bytes": old_bytes,
        "old_design_seconds_to_make": round(old_seconds, 2),
        "png_data_url_chars_mean": round(statistics.mean(len(p) for p in pngs)),
        "png_data_url_chars_max": max(len(p) for p in pngs),
        "chunk_response_bytes_mean": round(statistics.mean(chunk_bytes)),  # one chunk of every object
        "chunk_response_bytes_max": max(chunk_bytes),
        "chunk_response_ms_median": round(1000 * statistics.median(chunk_seconds), 1),  # PNGs made, one chunk
        "overlay_payload_bytes": len(json.dumps(payload).encode()),
        "overlay_payload_parts_bytes": {key: len(json.dumps(value).encode()) for key, value in payload.items()},
    }


# ---- the run -----------------------------------------------------------------------------------------------


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh tabs, each: upload, question, follow-up, seeks")
    parser.add_argument("--seeks", type=int, default=9, help="seeks per run, each to an unvisited chunk")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        sys.exit(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vidchat-bench-overlay-") as folder:
        work = Path(folder)
        os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio-cache")
        frames_in_source = round(DURATION_S * SOURCE_FPS)
        video = write_video(work / "shapes.mp4", n_frames=frames_in_source, fps=SOURCE_FPS, size=VIDEO_SIZE)
        model = build_qwen3_vl(work / "qwen3_vl")
        app = VidchatApp(
            model=str(model),
            sam=ShapeMasks.model_id,
            settings=SessionSettings(sampling=SAMPLING),
            load=loader(video),
            allow_model_change=False,
        )
        port = _free_port()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            while not app.models.settled:
                time.sleep(0.05)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                try:
                    runs = []
                    for number in range(args.runs):
                        url = f"http://127.0.0.1:{port}/"
                        run, session = run_once(browser, url, app, video, args.seeks, check_download=number == 0)
                        runs.append(run)
                        first, follow = runs[-1]["first"], runs[-1]["followup"]
                        print(
                            f"run {number + 1}: first {first['bytes'] / 1e6:.3f} MB in {first['seconds']} s, "
                            f"follow-up {follow['bytes'] / 1e6:.4f} MB, seek→mask median "
                            f"{median([s['mask_ms'] for s in runs[-1]['seeks']]):.0f} ms",
                            flush=True,
                        )
                    chromium = browser.version
                finally:
                    browser.close()
            sizes = server_side_sizes(session)
            setup = {
                "frames": len(session.clip.times_s),
                "objects": len(session.objects),
                "video": f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {DURATION_S:.0f} s at {SOURCE_FPS:g} fps, H.264",
                "sampling": f"{SAMPLING.fps:g} fps, max {SAMPLING.max_frames} frames, sampled frames "
                f"{session.clip.frames.shape[2]}x{session.clip.frames.shape[1]}",
                "chunk_frames": MASK_CHUNK_FRAMES,
                "masks": "the synthetic video's true shapes (red square, blue circle) and an orbiting ellipse, "
                "standing in for SAM 2's masklets",
                "model": "tiny random Qwen3-VL, scripted words; selector: the app's default",
            }
        finally:
            app.close()

    first = [run["first"]["bytes"] for run in runs]
    follow = [run["followup"]["bytes"] for run in runs]
    seek_ms = [s["mask_ms"] for run in runs for s in run["seeks"]]
    report = {
        "frames": setup["frames"],
        "objects": setup["objects"],
        "first_update_mb": round(median(first) / 1e6, 4),
        "followup_update_mb": round(median(follow) / 1e6, 4),
        "seek_to_mask_ms": round(median(seek_ms), 1),
        "old_design_mb": round(sizes["old_design_bytes"] / 1e6, 3),
        "targets": TARGETS,
        "met": {
            "first_update_mb": median(first) / 1e6 <= TARGETS["first_update_mb"],
            "followup_update_mb": median(follow) / 1e6 <= TARGETS["followup_update_mb"],
            "seek_to_mask_ms": median(seek_ms) <= TARGETS["seek_to_mask_ms"],
        },
        "detail": {
            "first_update_by_category_bytes": _median_categories([run["first"]["by_category"] for run in runs]),
            "followup_update_by_category_bytes": _median_categories([run["followup"]["by_category"] for run in runs]),
            # the event stream's bytes by message (see NetLog): the answer streaming, the final view, and the final
            # view again in process_completed
            "first_update_stream_messages": _stream_messages(runs, "first"),
            "followup_update_stream_messages": _stream_messages(runs, "followup"),
            "long_followup_update_mb": round(median([run["long_followup"]["bytes"] for run in runs]) / 1e6, 4),
            "long_followup_stream_messages": _stream_messages(runs, "long_followup"),
            "answer_chars": {"first": len(FIRST_ANSWER), "followup": len(FOLLOWUP_ANSWER),
                             "long_followup": len(long_answer())},  # fmt: skip
            "answer_words": {"first": len(FIRST_ANSWER.split()), "followup": len(FOLLOWUP_ANSWER.split()),
                             "long_followup": len(long_answer().split())},  # fmt: skip
            "first_update_seconds": median([run["first"]["seconds"] for run in runs]),
            "seek_to_mask_ms_all": seek_ms,
            "seek_to_mask_ms_p90": round(float(np.percentile(seek_ms, 90)), 1),
            "seek_video_seeked_ms_median": median([s["video_seeked_ms"] for run in runs for s in run["seeks"]]),
            "seek_phases_ms_median": {
                phase: median([s[phase] for run in runs for s in run["seeks"]])
                for phase in ("until_request_ms", "request_ms", "response_to_drawn_ms")
            },
            "seek_bytes_median": median([s["bytes"] for run in runs for s in run["seeks"]]),
            "server_side": sizes,
        },
        "setup": setup,
        "bytes_counted": (
            "Chrome DevTools Protocol on the tab: response header bytes (Network.responseReceived) and body bytes "
            "(Network.dataReceived dataLength, the SSE stream's chunks included; no API response is compressed, and "
            "the chunked framing, ~0.5 %, is left out; encodedDataLength is not settled for a stream), counted when "
            "their CDP timestamp is between the question's /queue/join request and the later of the page's "
            "maskDrawn (performance.now() mapped to CDP time through the wall clock) and the end of the answer's "
            "event stream (closed by the page after process_completed)"
        ),
        "download_check": runs[0].get("download_check"),
        "compressed_responses": sorted({url for run in runs for url in run["compressed"]}),
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "chromium": chromium,
            "load_average_1m_before": round(load_before, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
        "wall_s": round(time.monotonic() - started, 1),
    }
    print_table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(report["met"].values()) and not any(run["page_errors"] for run in runs) else 1


def _stream_messages(runs: list[dict], turn: str) -> dict[str, dict]:
    """Medians of the turn's event stream messages by kind, over the runs where they were all read."""
    return _median_messages([run[turn]["stream_messages"] for run in runs if run[turn]["stream_messages_complete"]])


def _median_messages(runs: list[dict[str, dict]]) -> dict[str, dict]:
    names = sorted({name for run in runs for name in run})
    return {
        name: {key: median([run.get(name, {}).get(key, 0) for run in runs]) for key in ("messages", "bytes")}
        for name in names
    }


def _median_categories(runs: list[dict[str, int]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run})
    return {name: median([run.get(name, 0) for run in runs]) for name in names}


def print_table(report: dict) -> None:
    side = report["detail"]["server_side"]
    check = report["download_check"] or {}
    rows = [
        ("masks", "STAND-IN for SAM 2: the synthetic video's true shapes (see the docstring)"),
        ("frames × objects",
         f"{report['frames']} × {report['objects']} (chunks of {report['setup']['chunk_frames']} frames)"),
        ("first update (question → masks drawn)",
         f"{report['first_update_mb']:.3f} MB  (target ≤ {TARGETS['first_update_mb']})"),
        ("follow-up update (no new objects)",
         f"{report['followup_update_mb']:.4f} MB  (target ≤ {TARGETS['followup_update_mb']})"),
        ("seek → mask drawn (median)",
         f"{report['seek_to_mask_ms']:.0f} ms  (target ≤ {TARGETS['seek_to_mask_ms']:.0f}; "
         f"p90 {report['detail']['seek_to_mask_ms_p90']:.0f} ms, n={len(report['detail']['seek_to_mask_ms_all'])})"),
        ("  seek phases (medians)",
         ", ".join(f"{k.removesuffix('_ms').replace('_', ' ')} {v:.0f} ms"
                   for k, v in report["detail"]["seek_phases_ms_median"].items())
         + f"; the server makes one chunk of 3 objects in {side['chunk_response_ms_median']:.0f} ms"),
        ("old design: every mask in one payload", f"{report['old_design_mb']:.3f} MB "
         f"({side['old_design_seconds_to_make']} s to make)"),
        ("first update by part (bytes)", _parts(report["detail"]["first_update_by_category_bytes"])),
        ("  its event stream by message", _messages(report["detail"]["first_update_stream_messages"])),
        ("follow-up by part (bytes)", _parts(report["detail"]["followup_update_by_category_bytes"])),
        ("  its event stream by message", _messages(report["detail"]["followup_update_stream_messages"])),
        (f"long follow-up ({report['detail']['answer_words']['long_followup']} words, no new objects)",
         f"{report['detail']['long_followup_update_mb']:.3f} MB"),
        ("  its event stream by message", _messages(report["detail"]["long_followup_stream_messages"])),
        ("overlay data (its heat strip)", f"{side['overlay_payload_bytes']:,} B ({side['timeline_heat_bytes']:,} B)"),
        ("one chunk of 3 objects' masks", f"{side['chunk_response_bytes_mean']:,} B mean; a frame's mask: PNG data "
         f"URL {side['png_data_url_chars_mean']:,} chars, COCO RLE {side['coco_rle_chars_mean']:,} chars"),
        ("download check: counted / file (+ headers)",
         f"{check.get('counted_bytes', 0):,} / {check.get('file_bytes', 0):,} B"),
        ("machine", f"{report['machine']['cpus']} CPUs, load {report['machine']['load_average_1m_before']}"
         f"→{report['machine']['load_average_1m_after']}, Chromium {report['machine']['chromium']}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _messages(kinds: dict[str, dict]) -> str:
    ordered = sorted(kinds.items(), key=lambda kv: -kv[1]["bytes"])
    return ", ".join(f"{name} {v['bytes']:,.0f} ({v['messages']:.0f} msgs)" for name, v in ordered)


def _parts(by_category: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:,.0f}" for name, value in sorted(by_category.items(), key=lambda kv: -kv[1]))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
