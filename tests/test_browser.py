"""The page in a real browser (Debian's Chromium driven by Playwright): upload, a refused upload, a streamed answer
whose time link seeks the player, the mask drawn over the video in the object's colour, toggles, click-to-refer, and
a Chinese answer whose times are links too.

The model's words are scripted (`vidchat.testing.scripted`) so that the answer holds a known time and object;
the session, the answer parser, SAM 2 (tiny, random weights), the overlay data and the page are all real.
Screenshots go to test-output/.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import (
    CANVAS_PIXEL,
    SETTINGS,
    build_visible_sam2,
    interior_pixel,
    rgb,
    square_box_1000,
    start_app,
    visitor,
)
from vidchat.testing.scripted import Script, scripted_loader
from vidchat.testing.videos import BLUE_CIRCLE, RED_SQUARE, write_text_file, write_video
from vidchat.ui import POINT_QUESTION
from vidchat.ui.views import overlay_payload, visible_runs

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
ANSWER = "The red square reaches the middle at 00:02.0 and keeps moving right."


@pytest.fixture(scope="module")
def served(tiny_model_dirs, clip, tmp_path_factory):
    grounding = f'[{{"time": 2.0, "bbox_2d": {square_box_1000(clip, 2.0)}, "label": "red square"}}]'
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(build_visible_sam2(tmp_path_factory.mktemp("sam2"))),
        settings=SETTINGS,
        load=scripted_loader(Script(answer=ANSWER, grounding=grounding)),
        examples=[(clip.path, "Where is the blue circle at 00:01.0?")],
    )
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def page(browser, served):
    with visitor(browser, served[1], viewport={"width": 1440, "height": 1000}) as page:
        yield page


def _dismiss_toasts(page) -> None:
    page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")


def test_the_page_end_to_end(served, page, clip, tmp_path):
    app, _ = served
    page.wait_for_selector("#status .vc-ok")

    # A text file named .mp4: the page says why, and the next upload works.
    page.set_input_files("#player input[type=file]", write_text_file(tmp_path / "notes.mp4"))
    page.wait_for_selector("#notice .vc-notice-error", timeout=30_000)
    assert "is not a video" in page.inner_text("#notice")
    _dismiss_toasts(page)  # the player's own "Video not playable" toast
    page.set_input_files("#player input[type=file]", clip.path)
    page.wait_for_function("document.querySelector('#notice').innerText.includes('frames sampled')", timeout=60_000)
    page.wait_for_function(
        "document.querySelector('#player video') && document.querySelector('#player video').readyState >= 2"
    )

    # A question: the answer streams in, its time is a link, the object's name is in its colour.
    page.fill("#question textarea", "What does the red square do?")
    page.click("#ask-btn")
    link = page.wait_for_selector('#chat a[href="#t=2.0"]', timeout=60_000)
    assert link.inner_text() == "00:02.0"
    page.wait_for_function("window.vidchat.overlay && window.vidchat.overlay.objects.some(o => o.masks)")
    session = next(w.session for w in app.workspaces._items.values() if w.session is not None)
    square = session.objects["red square"]
    name_color = page.eval_on_selector("#chat .vc-obj", "e => getComputedStyle(e).color")
    assert name_color == "rgb({}, {}, {})".format(*rgb(square.color))

    # The link seeks the player.
    page.click('#chat a[href="#t=2.0"]')
    page.wait_for_function("Math.abs(document.querySelector('#player video').currentTime - 2.0) < 0.05", timeout=10_000)
    assert page.evaluate("document.querySelector('#player video').currentTime") == pytest.approx(2.0, abs=0.05)

    # The overlay shows the object's colour where SAM 2's mask of the frame at 2.0 s is, and nothing far from it.
    frame = int(np.argmin(np.abs(session.clip.times_s - 2.0)))
    mask = square.masklet.mask(frame)  # [240, 320] bool, source pixels
    assert square.masklet.visible[frame] and mask.any()
    x, y = interior_pixel(mask)
    inside = [(x + 0.5) / 320, (y + 0.5) / 240]
    page.wait_for_function(f"({CANVAS_PIXEL})({inside}).rgba[3] > 0", timeout=10_000)
    pixel = page.evaluate(CANVAS_PIXEL, inside)
    assert pixel["rgba"][:3] == pytest.approx(rgb(square.color), abs=6)
    assert pixel["rgba"][3] == pytest.approx(128, abs=12)  # the mask fill is half transparent
    outside = np.argwhere(cv2.dilate(mask.astype(np.uint8), np.ones((25, 25), np.uint8)) == 0)
    if len(outside):
        oy, ox = outside[len(outside) // 2]
        assert page.evaluate(CANVAS_PIXEL, [(ox + 0.5) / 320, (oy + 0.5) / 240])["rgba"][3] == 0
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "browser-answer.png"))
    # The same pixel on the screen: half the object's colour over the video.
    shot = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]  # RGB
    px, py = (round(v) for v in pixel["page"])
    seen = shot[py, px].astype(int)
    under = session.clip.frames[frame]  # the sampled frame, as a check of what the video shows under the mask
    sy, sx = int(y * under.shape[0] / 240), int(x * under.shape[1] / 320)
    expected = (np.array(rgb(square.color)) + under[sy, sx].astype(int)) / 2
    assert np.abs(seen - expected).max() < 40

    # The timeline under the player: the answer's time, the object's lane, what the model looked at.
    _check_timeline(page, session, square)

    # Toggling the object hides its mask, and shows it again.
    toggle = f'#objects .vc-toggle[value="{square.object_id}"]'
    page.click(toggle)
    page.wait_for_function(f"({CANVAS_PIXEL})({inside}).rgba[3] === 0", timeout=5_000)
    lane = f'#timeline .vc-tl-lane[data-object="{square.object_id}"]'
    page.wait_for_selector(f"{lane}.vc-tl-hidden", timeout=5_000)  # the lane follows the toggle
    page.click(toggle)
    page.wait_for_selector(f"{lane}:not(.vc-tl-hidden)", timeout=5_000)
    page.wait_for_function(f"({CANVAS_PIXEL})({inside}).rgba[3] > 0", timeout=5_000)

    # A follow-up; then the first message's link still seeks.
    page.fill("#question textarea", "And then?")
    page.click("#ask-btn")
    page.wait_for_function("document.querySelectorAll('#chat a[href=\"#t=2.0\"]').length === 2", timeout=60_000)
    page.evaluate("document.querySelector('#player video').currentTime = 0.5")
    page.locator('#chat a[href="#t=2.0"]').first.click()
    page.wait_for_function("Math.abs(document.querySelector('#player video').currentTime - 2.0) < 0.05", timeout=10_000)

    # Click-to-refer: on the paused video, a click on the blue circle → marker, SAM 2 track, "What is this?".
    assert page.evaluate("document.querySelector('#player video').paused")
    circle = clip.boxes[BLUE_CIRCLE][int(np.argmin(np.abs(clip.pts_s - 2.0)))]
    target = [((circle[0] + circle[2]) / 2) / 320, ((circle[1] + circle[3]) / 2) / 240]
    cx, cy = page.evaluate(CANVAS_PIXEL, target)["page"]
    page.mouse.click(cx, cy)
    page.wait_for_function(f"document.querySelector('#question textarea').value === {POINT_QUESTION!r}", timeout=60_000)
    clicked = next(o for o in session.objects.values() if o.label.startswith("clicked object"))
    point = clicked.points[0]
    assert point.t_s == pytest.approx(2.0, abs=0.05)
    assert (point.x, point.y) == pytest.approx(((circle[0] + circle[2]) / 2, (circle[1] + circle[3]) / 2), abs=2)
    page.wait_for_selector(f'#objects .vc-toggle[value="{clicked.object_id}"]')
    assert page.locator("#objects .vc-object").count() == 2
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUTPUT / "browser-point.png"))
    assert session.objects[RED_SQUARE].object_id == square.object_id  # earlier objects keep their id


# Where each element of a timeline row lies, as fractions of its track: [left, right].
ROW_GEOMETRY = """(selector) => {
  const t = document.querySelector(selector + ' .vc-tl-track');
  const track = {left: t.getBoundingClientRect().left + t.clientLeft, width: t.clientWidth};  // inside its border
  return Array.from(document.querySelectorAll(selector + ' .vc-tl-track > [data-t]')).map((e) => {
    const r = e.getBoundingClientRect();
    return {left: (r.left - track.left) / track.width, right: (r.right - track.left) / track.width,
            t: parseFloat(e.dataset.t), kept: e.dataset.kept, color: getComputedStyle(e).backgroundColor};
  });
}"""


def _check_timeline(page, session, square) -> None:
    duration = session.clip.info.duration_s
    page.wait_for_selector("#timeline .vc-tl-mark")
    marks = page.eval_on_selector_all("#timeline .vc-tl-mark", "ms => ms.map(m => [parseFloat(m.dataset.t), m.title])")
    assert marks == [[2.0, ANSWER]]  # the answer's one time, titled with its sentence
    page.evaluate("document.querySelector('#player video').currentTime = 0.3")
    page.click("#timeline .vc-tl-mark")
    page.wait_for_function("Math.abs(document.querySelector('#player video').currentTime - 2.0) < 0.1", timeout=10_000)

    # The object's lane is in its colour where its masklet is visible, and empty where it is not: first the real
    # masklet, then the same page given a masklet with gaps through the server's own timeline data.
    times = [float(t) for t in square.masklet.times_s]
    lane = f'#timeline .vc-tl-lane[data-object="{square.object_id}"]'
    for visible in ([bool(v) for v in square.masklet.visible], [i % 3 != 1 for i in range(len(times))]):
        payload = overlay_payload(session)
        payload["timeline"]["lanes"][0]["runs"] = visible_runs(times, visible, duration)
        page.evaluate("(data) => window.vidchat.setOverlay(data)", payload)
        runs = page.evaluate(ROW_GEOMETRY, lane)
        assert {run["color"] for run in runs} == {"rgb({}, {}, {})".format(*rgb(square.color))}
        for t, seen in zip(times, visible, strict=True):
            x = t / duration
            assert any(run["left"] - 1e-3 <= x <= run["right"] + 1e-3 for run in runs) == seen, (t, seen)
    page.evaluate("(data) => window.vidchat.setOverlay(data)", overlay_payload(session))

    # The heat strip: per temporal patch, the visual tokens the selection kept.
    selection = session.answers[-1].selection
    heat = selection.heatmap(session.tokens)
    cells = page.evaluate(ROW_GEOMETRY, "#timeline .vc-tl-heat")
    assert [int(cell["kept"]) for cell in cells] == heat.kept.reshape(len(heat.kept), -1).sum(axis=1).tolist()
    kept, total = len(selection.keep_indices), len(session.tokens.embeddings)
    assert f"kept {kept:,} of {total:,} visual tokens" in page.inner_text("#timeline .vc-tl-caption")

    # The playhead follows playback.
    page.evaluate("(() => { const v = document.querySelector('#player video'); v.muted = true;"
                  " v.currentTime = 0.2; return v.play(); })()")
    page.wait_for_function("document.querySelector('#player video').currentTime > 1.0", timeout=20_000)
    playhead = page.evaluate("""(() => {
      const v = document.querySelector('#player video'); v.pause();
      const head = document.querySelector('#timeline .vc-tl-marks .vc-tl-head').getBoundingClientRect();
      const t = document.querySelector('#timeline .vc-tl-marks .vc-tl-track');
      const left = t.getBoundingClientRect().left + t.clientLeft;
      return [v.currentTime, (head.left + head.width / 2 - left) / t.clientWidth];
    })()""")
    page.wait_for_timeout(100)
    assert playhead[1] == pytest.approx(playhead[0] / duration, abs=0.02)
    page.evaluate("document.querySelector('#player video').currentTime = 2.0")
    page.wait_for_function("Math.abs(document.querySelector('#player video').currentTime - 2.0) < 0.05", timeout=10_000)


def test_an_example_loads_with_its_question_and_an_avi_is_made_playable(served, page, tmp_path):
    page.click("#examples [data-testid=dataset-cell-0-1]")
    page.wait_for_function(
        "document.querySelector('#question textarea').value === 'Where is the blue circle at 00:01.0?'", timeout=30_000
    )
    # a new video starts a new conversation: the welcome message only
    page.wait_for_function("document.querySelectorAll('#chat .message-row').length === 1", timeout=60_000)
    assert "shapes.mp4 · 8 frames sampled" in page.inner_text("#notice")
    assert "shapes.mp4 is ready" in page.inner_text("#chat")

    # MJPEG in AVI: vidchat reads it, browsers cannot play it; the player gets an H.264 copy.
    avi = write_video(tmp_path / "shapes.avi", n_frames=20, fps=10.0, size=(320, 240), codec="mjpeg")
    page.click('#player button[aria-label="Clear"]')
    page.set_input_files("#player input[type=file]", avi.path)
    page.wait_for_function(
        "document.querySelector('#notice').innerText.includes('shapes.avi · 4 frames sampled')", timeout=60_000
    )
    page.wait_for_function(
        "(() => { const v = document.querySelector('#player video');"
        " return v && v.currentSrc.endsWith('.mp4') && v.readyState >= 2 && v.videoWidth === 320; })()",
        timeout=60_000,
    )


def test_a_full_server_says_so_in_the_page_and_keeps_no_copy_of_the_upload(served, page, tmp_path):
    from types import SimpleNamespace

    from vidchat.ui import ServerLimits

    app, url = served
    other = write_video(tmp_path / "crowded.mp4", n_frames=20, fps=10.0, size=(160, 120))
    context = page.context.browser.new_context(viewport={"width": 1440, "height": 1000})
    visitor = context.new_page()  # a new visitor
    visitor.goto(url)
    visitor.wait_for_selector("#status .vc-ok")
    app.workspaces.limits = ServerLimits(max_sessions=1)
    busy = app.workspaces.get(SimpleNamespace(session_hash="another visitor"))
    try:
        with busy.lock:  # the one session the server takes is in the middle of a call
            visitor.set_input_files("#player input[type=file]", other.path)
            visitor.wait_for_function(
                "document.querySelector('#notice').innerText.includes('The server is busy: 1 sessions are in use')",
                timeout=60_000,
            )
        visitor.wait_for_function("!document.querySelector('#player video')", timeout=30_000)  # emptied
        assert list(app.inputs.cache_dir.rglob("crowded.mp4")) == []  # the upload went at once
    finally:
        context.close()
        app.workspaces.limits = ServerLimits()
        app.workspaces.disconnected(SimpleNamespace(session_hash="another visitor"))


def test_a_chinese_answer_links_its_times_and_colours_its_object(tiny_model_dirs, clip, page, tmp_path):
    """Qwen answers in the question's language: times written inside Chinese text seek the player too."""
    answer = "红色方块在00:02.0到达中间，从0:01到0:03一直向右移动。"
    grounding = f'[{{"time": 2.0, "bbox_2d": {square_box_1000(clip, 2.0)}, "label": "红色方块"}}]'
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(build_visible_sam2(tmp_path / "sam2")),
        settings=SETTINGS,
        load=scripted_loader(Script(answer=answer, grounding=grounding)),
    )
    context = page.context.browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        visitor = context.new_page()
        visitor.goto(url)
        visitor.wait_for_selector("#status .vc-ok")
        visitor.set_input_files("#player input[type=file]", clip.path)
        visitor.wait_for_function(
            "document.querySelector('#notice').innerText.includes('frames sampled')", timeout=60_000
        )
        visitor.fill("#question textarea", "红色方块在做什么？")
        visitor.click("#ask-btn")
        visitor.wait_for_selector('#chat a[href="#t=1.0"]', timeout=60_000)
        links = visitor.eval_on_selector_all(
            '#chat a[href^="#t="]', "as => as.map(a => [a.innerText, a.getAttribute('href')])"
        )
        assert links == [["00:02.0", "#t=2.0"], ["0:01到0:03", "#t=1.0"]]
        visitor.wait_for_selector("#chat .vc-obj", timeout=60_000)
        assert visitor.inner_text("#chat .vc-obj") == "红色方块"
        visitor.wait_for_function(
            "document.querySelector('#player video') && document.querySelector('#player video').readyState >= 2"
        )
        visitor.click('#chat a[href="#t=1.0"]')
        visitor.wait_for_function(
            "Math.abs(document.querySelector('#player video').currentTime - 1.0) < 0.05", timeout=10_000
        )
        OUTPUT.mkdir(exist_ok=True)
        visitor.screenshot(path=str(OUTPUT / "browser-chinese-answer.png"))
    finally:
        context.close()
        app.close()
