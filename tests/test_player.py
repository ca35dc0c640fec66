"""The player in a real browser (Debian's Chromium driven by Playwright): the frame shown after a seek is the right one
whatever clock the file keeps, fullscreen keeps the overlay, the chat's trash button starts a new conversation, copy
gives the text as it reads, a long question is never cut silently, located objects show without SAM 2, clicks reach
the export, a reload keeps the session, and click-to-refer works from the keyboard.

Which frame the player shows is read off the picture: the synthetic videos carry their frame index as a binary code
in a band at the top (`vidchat.testing.videos`), and the test draws the `<video>` to a canvas and decodes it.
Screenshots go to test-output/.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import (
    CANVAS_PIXEL,
    SETTINGS,
    build_visible_sam2,
    interior_pixel,
    open_video,
    rgb,
    square_box_1000,
    start_app,
    visitor,
)
from vidchat.testing.scripted import Script, scripted_loader
from vidchat.testing.videos import RED_SQUARE, read_frame_index, write_video
from vidchat.ui import NO_MASKS, POINT_QUESTION

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
# Times on frame boundaries of a 10 fps clip (0.5, 1.3, 2.0) and between frames of the variable-rate one (1.0).
ANSWER = "It starts at 00:00.0, moves at 00:00.5 and 00:01.0, turns at 00:01.3 and the red square stops at 00:02.0."
TIMES = [0.0, 0.5, 1.0, 1.3, 2.0]
LONG_ANSWER_GATE = threading.Event()  # an answer that waits for it: a reload in the middle of an answer
VIDEO = "document.querySelector('#player video')"

# The <video>'s current picture as a PNG data URL, at the video's own size.
PICTURE = """() => {
  const v = document.querySelector('#player video');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  return c.toDataURL('image/png');
}"""


def shown_frame(page) -> int:
    """The frame index the player shows, read off its picture."""
    data = page.evaluate(PICTURE).split(",", 1)[1]
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    return read_frame_index(picture)


def frame_at(pts_s: np.ndarray, t: float) -> int:
    """The frame on the screen at app time `t`: the last one that starts at or before it."""
    return int(np.searchsorted(pts_s, t + 1e-6, side="right")) - 1


def settled(page) -> None:
    """Wait until the player has finished seeking and shows a picture."""
    page.wait_for_function(f"{VIDEO} && !{VIDEO}.seeking && {VIDEO}.readyState >= 2", timeout=10_000)
    page.wait_for_timeout(60)  # the picture of the new frame is painted


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[str, np.ndarray]]:
    """Clips and their frames' times counted from the first frame: one that starts at 0, a copy whose timestamps
    start at 3 s, an MPEG-TS (which starts at 1.4 s, FFmpeg's usual delay), and a variable-frame-rate one."""
    folder = tmp_path_factory.mktemp("clocks")
    zero = write_video(folder / "zero.mp4", n_frames=30, fps=10.0, size=(320, 240))
    ffmpeg("-i", zero.path, "-c", "copy", "-output_ts_offset", "3", str(folder / "offset.mp4"))
    ffmpeg("-i", zero.path, "-c", "copy", "-f", "mpegts", str(folder / "stream.ts"))
    vfr_times = [0.0, 0.04, 0.1, 0.5, 0.52, 1.3, 1.31, 2.0, 2.6, 3.0]
    vfr = write_video(folder / "vfr.mp4", n_frames=len(vfr_times), pts_s=vfr_times, size=(320, 240))
    return {
        "starts at 0": (zero.path, zero.pts_s),
        "timestamps from 3 s": (str(folder / "offset.mp4"), zero.pts_s),
        "MPEG-TS": (str(folder / "stream.ts"), zero.pts_s),
        "variable frame rate": (vfr.path, vfr.pts_s),
    }


def _answer(tokens) -> str:
    LONG_ANSWER_GATE.wait(60)
    return ANSWER


@pytest.fixture(scope="module")
def served(tiny_model_dirs, clip, tmp_path_factory):
    grounding = f'[{{"time": 2.0, "bbox_2d": {square_box_1000(clip, 2.0)}, "label": "red square"}}]'
    LONG_ANSWER_GATE.set()
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(build_visible_sam2(tmp_path_factory.mktemp("sam2"))),
        settings=SETTINGS,
        load=scripted_loader(Script(answer=_answer, grounding=grounding)),
    )
    yield app, url
    app.close()


@pytest.fixture
def page(browser, served):
    permissions = ["clipboard-read", "clipboard-write"]
    with visitor(browser, served[1], viewport={"width": 1280, "height": 900}, permissions=permissions) as page:
        yield page


def ask(page, question: str = "What does the red square do?", links: int = len(TIMES)) -> None:
    before = page.locator('#chat a[href^="#t="]').count()
    page.fill("#question textarea", question)
    page.click("#ask-btn")
    page.wait_for_function(
        f"document.querySelectorAll('#chat a[href^=\"#t=\"]').length >= {before + links}", timeout=60_000
    )
    page.wait_for_function("window.vidchat.overlay && window.vidchat.overlay.timeline.marks.length", timeout=60_000)


def session_of(app):
    """The session of the page used last (earlier tests' pages leave theirs for the grace time)."""
    used = [w for w in app.workspaces._items.values() if w.session is not None]
    return max(used, key=lambda w: w.touched).session


@pytest.mark.parametrize("kind", ["starts at 0", "timestamps from 3 s", "MPEG-TS", "variable frame rate"])
def test_links_marks_and_clicks_show_the_right_frame(kind, clips, served, page):
    path, pts_s = clips[kind]
    app, _ = served
    open_video(page, path)
    ask(page)
    session = session_of(app)

    for t in TIMES:  # the answer's time links
        page.locator(f'#chat a[href="#t={t:.1f}"]').first.click()
        settled(page)
        assert shown_frame(page) == frame_at(pts_s, t), (kind, "link", t)
    marks = page.eval_on_selector_all("#timeline .vc-tl-mark", "ms => ms.map(m => parseFloat(m.dataset.t))")
    assert marks == TIMES
    for i, t in enumerate(marks):  # the timeline's marks
        page.locator("#timeline .vc-tl-mark").nth(i).click()
        settled(page)
        assert shown_frame(page) == frame_at(pts_s, t), (kind, "mark", t)

    # A click on the paused video: the time the server records is the time of the frame on the screen.
    page.locator('#chat a[href="#t=1.0"]').first.click()
    settled(page)
    shown = shown_frame(page)
    point_at_video(page, 0.5, 0.5)
    click = session.conversation[-1]
    assert frame_at(pts_s, click.t_s) == shown, (kind, click.t_s)

    # The timeline ends where the player does (on the app's clock: within the last frame's length of the end the
    # server measured, which a player may count or not), and the playhead reaches it at the end.
    player_end = page.evaluate(f"{VIDEO}.duration - window.vidchat.clock.offset_s")
    assert pts_s[-1] <= player_end <= session.clip.info.duration_s + 0.01
    assert page.evaluate("window.vidchat.timelineEnd") == pytest.approx(player_end, abs=1e-6)
    page.evaluate(f"{VIDEO}.currentTime = {VIDEO}.duration")
    settled(page)
    head = page.evaluate("""(() => {
      const t = document.querySelector('#timeline .vc-tl-marks .vc-tl-track');
      const h = t.querySelector('.vc-tl-head').getBoundingClientRect(), r = t.getBoundingClientRect();
      return (h.left + h.width / 2 - r.left - t.clientLeft) / t.clientWidth; })()""")
    assert head == pytest.approx(1.0, abs=0.02)


def _mask_centre(masklet, frame: int, size=(320, 240)) -> list[float]:
    """The middle of the object's mask on a sampled frame, as fractions of the picture."""
    x, y = interior_pixel(masklet.mask(frame))
    return [(x + 0.5) / size[0], (y + 0.5) / size[1]]


def point_at_video(page, fx: float, fy: float) -> None:
    """Click the paused video at a point (fractions of the overlay) and wait for the click to be taken."""
    box = page.eval_on_selector("#vc-overlay", "c => c.getBoundingClientRect().toJSON()")
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    page.wait_for_function(f"document.querySelector('#question textarea').value === {POINT_QUESTION!r}", timeout=60_000)


def test_fullscreen_keeps_the_overlay_in_sync(served, page, clip):
    app, _ = served
    open_video(page, clip.path)
    ask(page)
    page.wait_for_function("window.vidchat.overlay.objects.some(o => o.masks)", timeout=60_000)
    square = session_of(app).objects[RED_SQUARE]
    page.locator('#chat a[href="#t=2.0"]').first.click()
    settled(page)
    page.click('#player [aria-label="full-screen"]')
    page.wait_for_function("document.fullscreenElement !== null", timeout=5_000)
    # The player's container is fullscreen, holding the video and its overlay, both filling the screen.
    inside = page.evaluate("""(() => { const f = document.fullscreenElement;
      return [f.contains(document.querySelector('#player video')), f.contains(document.querySelector('#vc-overlay'))]; })()""")
    assert inside == [True, True]
    page.wait_for_function(
        "document.querySelector('#vc-overlay').getBoundingClientRect().width > 1000"
        " && Math.abs(document.querySelector('#vc-overlay').getBoundingClientRect().width"
        " - document.querySelector('#player video').getBoundingClientRect().width) < 1",
        timeout=5_000,
    )
    frames = session_of(app).clip.times_s
    for t in (2.0, 3.0):  # in sync: the mask of the frame shown, wherever the player is
        page.evaluate(f"window.vidchat.seek({t})")
        settled(page)
        centre = _mask_centre(square.masklet, int(np.argmin(np.abs(frames - t))))
        page.wait_for_function(f"({CANVAS_PIXEL})({centre}).rgba[3] > 0", timeout=10_000)
        rgba = page.evaluate(CANVAS_PIXEL, centre)["rgba"]
        assert rgba[:3] == pytest.approx(rgb(square.color), abs=6)
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "fullscreen-overlay.png"))
    page.evaluate("document.exitFullscreen()")
    page.wait_for_function("document.fullscreenElement === null", timeout=5_000)


def test_the_trash_button_starts_a_new_conversation_on_the_same_video(served, page, clip):
    app, _ = served
    open_video(page, clip.path)
    ask(page)
    page.wait_for_function("window.vidchat.overlay.objects.length === 1", timeout=60_000)
    session = session_of(app)
    page.click('#chat button[aria-label="Clear"]')
    page.wait_for_function("window.vidchat.overlay.objects.length === 0", timeout=30_000)
    assert (session.conversation, session.objects) == ([], {})
    assert page.locator("#objects .vc-object").count() == 0
    assert page.locator("#timeline .vc-tl-mark").count() == 0
    ask(page, "Where is it now?")
    assert session_of(app) is session  # the same video, not opened again
    assert [event.question for event in session.conversation] == ["Where is it now?"]
    assert page.locator("#chat .message-row.user-row").count() == 1


def test_copy_gives_the_answer_as_it_reads(served, page, clip):
    open_video(page, clip.path)
    ask(page)
    page.wait_for_selector("#chat .vc-note", timeout=60_000)
    page.locator('#chat button[aria-label="Copy message"]').last.click()
    page.wait_for_timeout(200)
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"{ANSWER}\n\nLocated: red square (8/8 frames)"


def test_a_long_question_is_kept_whole_and_not_sent(served, page, clip):
    app, _ = served
    open_video(page, clip.path)
    limit = SETTINGS.max_question_chars
    question = ("Describe every moving shape and what it does. " * 200)[: limit + 1000]
    page.fill("#question textarea", question)
    assert page.eval_on_selector("#question textarea", "t => t.value.length") == limit + 1000  # nothing cut
    page.wait_for_function("document.querySelector('#vc-count').innerText.includes('shorten')", timeout=5_000)
    assert page.inner_text("#vc-count").startswith(f"{limit + 1000:,} / {limit:,} characters")
    page.click("#ask-btn")
    page.press("#question textarea", "Enter")
    page.wait_for_timeout(500)
    assert session_of(app).conversation == []  # not sent
    assert page.eval_on_selector("#question textarea", "t => t.value.length") == limit + 1000
    page.fill("#question textarea", question[:limit])  # at the limit it goes
    page.click("#ask-btn")
    page.wait_for_function("document.querySelectorAll('#chat .message-row.user-row').length === 1", timeout=60_000)


def test_clicks_reach_the_export_in_conversation_order(served, page, clip):
    app, _ = served
    open_video(page, clip.path)
    ask(page)
    page.locator('#chat a[href="#t=2.0"]').first.click()
    settled(page)
    point_at_video(page, 0.3, 0.5)
    page.click("#ask-btn")
    page.wait_for_function("document.querySelectorAll('#chat .message-row.user-row').length === 2", timeout=60_000)
    page.click("#export-btn")
    page.wait_for_selector("#downloads a", timeout=60_000)
    session = session_of(app)
    folder = next(w.folder for w in app.workspaces._items.values() if w.session is session)
    document = json.loads(next(folder.glob("export-*/vidchat.json")).read_text())
    turns = document["turns"]
    assert [turn["kind"] for turn in turns] == ["answer", "click", "answer"]
    click, after = turns[1], turns[2]
    clicked = session.objects["clicked object 1"]
    assert (click["object_id"], click["label"]) == (clicked.object_id, "clicked object 1")
    assert click["t_s"] == pytest.approx(2.0, abs=0.01)
    assert click["box"] is not None and len(click["box"]) == 4
    assert after["question"] == POINT_QUESTION and after["refers_to"] == clicked.object_id


def test_a_reload_keeps_the_session_even_in_the_middle_of_an_answer(served, page, clip):
    app, _ = served
    open_video(page, clip.path)
    ask(page)
    page.wait_for_function("window.vidchat.overlay.objects.length === 1", timeout=60_000)
    session = session_of(app)

    page.reload()
    page.wait_for_function("document.querySelectorAll('#chat a[href=\"#t=2.0\"]').length === 1", timeout=30_000)
    page.wait_for_function(f"{VIDEO} && {VIDEO}.readyState >= 2", timeout=30_000)
    page.wait_for_function("window.vidchat.overlay && window.vidchat.overlay.objects.length === 1", timeout=30_000)
    assert page.locator("#objects .vc-object").count() == 1
    assert "shapes.mp4" in page.inner_text("#notice")
    assert session_of(app) is session
    assert [w.session for w in app.workspaces._items.values()].count(session) == 1  # moved, not copied

    LONG_ANSWER_GATE.clear()  # the next answer takes its time
    try:
        page.fill("#question textarea", "And then?")
        page.click("#ask-btn")
        page.wait_for_function("document.querySelectorAll('#chat .message-row.user-row').length === 2", timeout=30_000)
        page.reload()
        page.wait_for_timeout(1000)
    finally:
        LONG_ANSWER_GATE.set()
    # The answer being written when the page went away is there when it comes back.
    page.wait_for_function("document.querySelectorAll('#chat a[href=\"#t=2.0\"]').length === 2", timeout=60_000)
    assert [event.question for event in session.conversation] == ["What does the red square do?", "And then?"]


def test_a_copy_of_the_tab_gets_a_session_of_its_own(served, page, clip, browser):
    app, _ = served
    open_video(page, clip.path)
    token = page.evaluate("sessionStorage.getItem('vidchat-tab')")
    assert token
    other = page.context.new_page()
    other.goto(served[1])
    other.evaluate(f"sessionStorage.setItem('vidchat-tab', {token!r})")  # what "duplicate tab" copies
    other.reload()
    other.wait_for_selector("#status .vc-ok")
    other.wait_for_timeout(6000)  # longer than the server waits for the first tab to go
    assert other.locator("#chat .message-row").count() == 0  # the first tab's session stays with it
    assert page.locator("#chat .message-row").count() == 1


def test_the_keyboard_points_at_an_object(served, page, clip):
    app, _ = served
    open_video(page, clip.path)
    page.evaluate("window.vidchat.seek(2.0)")
    settled(page)
    page.focus("#vc-overlay")
    assert page.evaluate("document.activeElement.id") == "vc-overlay"
    circle = clip.boxes["blue circle"][20]
    target = ((circle[0] + circle[2]) / 2 / 320, (circle[1] + circle[3]) / 2 / 240)
    # from the centre, in steps of 2 % (Shift: 10 %) of the picture
    for key, delta in (("ArrowRight", target[0] - 0.5), ("ArrowDown", target[1] - 0.5)):
        if delta < 0:
            key = {"ArrowRight": "ArrowLeft", "ArrowDown": "ArrowUp"}[key]
        for _ in range(round(abs(delta) / 0.02)):
            page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#question textarea').value === {POINT_QUESTION!r}", timeout=60_000)
    click = session_of(app).conversation[-1]
    assert click.t_s == pytest.approx(2.0, abs=0.01)
    assert (click.x, click.y) == pytest.approx(((circle[0] + circle[2]) / 2, (circle[1] + circle[3]) / 2), abs=0.02 * 320)


def test_without_masks_located_objects_are_drawn_as_boxes_with_a_lane(tiny_model_dirs, clip, browser):
    box = square_box_1000(clip, 2.0)
    grounding = f'[{{"time": 2.0, "bbox_2d": {box}, "label": "red square"}}]'
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=NO_MASKS,
        settings=SETTINGS,
        load=scripted_loader(Script(answer=ANSWER, grounding=grounding)),
    )
    try:
        with visitor(browser, url, viewport={"width": 1280, "height": 900}) as page:
            _boxes_are_drawn(app, page, clip)
    finally:
        app.close()


def _boxes_are_drawn(app, page, clip) -> None:
    open_video(page, clip.path)
    ask(page)
    page.wait_for_function("window.vidchat.overlay.objects.length === 1", timeout=60_000)
    square = session_of(app).objects[RED_SQUARE]
    assert square.masklet is None and len(square.boxes) == 1
    b = square.boxes[0]
    # The lane shows where it was located: around 2.0 s.
    lane = f'#timeline .vc-tl-lane[data-object="{square.object_id}"] .vc-tl-run'
    runs = page.eval_on_selector_all(lane, "rs => rs.map(r => parseFloat(r.dataset.t))")
    assert runs == [2.0]
    # Its box is drawn in its colour at its time (the middle of its top edge), and not at another time.
    top = [float((b.x1 + b.x2) / 2 / 320), float(b.y1 / 240)]
    page.locator('#chat a[href="#t=2.0"]').first.click()
    settled(page)
    page.wait_for_function(f"({CANVAS_PIXEL})({top}).rgba[3] > 0", timeout=10_000)
    rgba = page.evaluate(CANVAS_PIXEL, top)["rgba"]
    assert rgba[:3] == pytest.approx(rgb(square.color), abs=40)
    page.locator('#chat a[href="#t=0.5"]').first.click()
    settled(page)
    page.wait_for_function(f"({CANVAS_PIXEL})({top}).rgba[3] === 0", timeout=10_000)
    assert "located at 00:02.0" in page.inner_text("#objects")
