"""Live sources on the page, in a real browser (Debian's Chromium driven by Playwright) whose camera is a file: the
webcam's frames reach the live source at the rate set; a question about now is answered from the newest frames; a
standing question fires once, as a message with its time; a clicked object's mask shows on the live view, drawn from
the tracker's mask of that frame, and follows the frames; Stop turns the live source into the tab's video (player,
conversation, follow-ups); on a phone the live section fits, its URL box and Watch button work from the keyboard, the
rate and window set apply to the next start, and a reload gets the live source back.
And the API: `/live_start` (a refused URL, the server's limit), `/live_frame`, `/live_watch`, `/ask`,
`/live_status`, `/live_stop` through gradio_client, and a closed tab's live source closed.

The camera plays the synthetic shapes video (`vidchat.testing.videos`) whose frames carry their index as a code
(`read_frame_index`): which camera frames the model saw is read off the pictures. The model's words are scripted
(`vidchat.testing.scripted`); SAM 2 is tiny and made to see an object everywhere (`build_visible_sam2`), so its masks
cannot follow a shape, but they change with every frame. Screenshots go to test-output/.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, SETTINGS, build_visible_sam2, start_app, visitor
from tests.test_page_layout import _serious_violations
from vidchat.livechat import Alert, LiveChat, LiveChatSettings, RecordingSettings
from vidchat.session import Answer, Click, format_timestamp
from vidchat.testing.scripted import Script, scripted_loader
from vidchat.testing.videos import read_frame_index, write_video
from vidchat.ui import POINT_QUESTION, ServerLimits, VidchatApp
from vidchat.ui.live import VIEW_QUALITY, WEBCAM, webcam_id

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
FPS = 2  # the page's default rate (RecordingSettings().fps)
WINDOW_S = 4  # the newest seconds a question sees: few frames to encode on a CPU
LIVE = LiveChatSettings(recording=RecordingSettings(fps=FPS, window_s=WINDOW_S), check_every_s=1.0, check_window_s=2.0)
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
ANSWER = "The red square moves right at 00:01.0."
CONDITION = "a person enters"
STATUS = "#live-status .vc-live-status"  # the status line (not Gradio's progress over it)


class Seen:
    """What the scripted model was shown: the visual tokens of each answer, and when a standing question's checks
    start saying yes (on the recording's clock; never until a test sets it)."""

    def __init__(self):
        self.answers: list = []
        self.yes_from_s = float("inf")

    def answer(self, tokens) -> str:
        self.answers.append(tokens)
        return ANSWER

    def check(self, tokens) -> str:
        return "yes" if tokens.span_s is not None and tokens.span_s[1] >= self.yes_from_s else "no"


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory) -> Path:
    """The fake camera: 45 s of the shapes video at 10 fps, 320×240, as the y4m Chromium plays (in a loop)."""
    folder = tmp_path_factory.mktemp("camera")
    video = write_video(folder / "shapes.mp4", n_frames=450, fps=10.0, size=(320, 240))
    y4m = folder / "camera.y4m"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", video.path, "-pix_fmt", "yuv420p", str(y4m)], check=True
    )
    return y4m


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory) -> Path:
    return build_visible_sam2(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def served(tiny_model_dirs, sam2_dir):
    seen = Seen()
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(sam2_dir),
        settings=SETTINGS,
        load=scripted_loader(Script(answer=seen.answer, check=seen.check)),
        live=LIVE,
    )
    yield app, url, seen
    app.close()


@pytest.fixture(scope="module")
def camera_browser(browser, camera_file):
    """A Chromium of its own whose camera plays `camera_file` (the fake camera is set when the browser starts)."""
    fake = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    camera = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *fake, f"--use-file-for-fake-video-capture={camera_file}"]
    )
    yield camera
    camera.close()


@pytest.fixture(scope="module")
def live_page(camera_browser, served):
    """A desktop visitor streaming the webcam (at the page's default 2 fps): the page and the tab's live source."""
    app, url, _ = served
    with visitor(camera_browser, url, viewport={"width": 1440, "height": 1000}) as page:
        page.get_by_label(WEBCAM, exact=True).check()
        webcam = page.locator(f"#{webcam_id(FPS)}")
        webcam.get_by_text("Click to Access Webcam").click()
        webcam.locator("[aria-label='capture photo']").click()
        live = _wait_for(lambda: _live(app), 60, "no live source started")
        _wait_for(lambda: live.recording.kept >= 2, 60, "no frames kept")
        page.wait_for_selector("#live-view img", timeout=30_000)
        yield page, live


def _live(app: VidchatApp) -> LiveChat | None:
    return next((w.live for w in list(app.workspaces._items.values()) if w.live is not None), None)


def _window(live: LiveChat) -> list:
    """The kept frames in memory, newest last: copied in one call (frames come in meanwhile)."""
    return list(live.recording.window)


def _wait_for(condition, timeout_s: float, message: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(message)


def _answered(page, count: int) -> None:
    """Wait until the chat holds `count` answers (assistant messages after the welcome) and none is being written."""
    page.wait_for_function(
        f"!document.querySelector('#chat .vc-spin') && document.querySelectorAll('#chat .bot-row').length >= {count + 1}",
        timeout=60_000,
    )


# ---- the webcam, live -----------------------------------------------------------------------------------------


def test_the_webcams_frames_reach_the_live_source_at_the_rate_set(live_page):
    page, live = live_page
    assert live.source == "webcam" and live.settings.recording.fps == FPS
    start, kept, received = time.monotonic(), live.recording.kept, live.recording.received
    page.wait_for_timeout(8000)
    seconds = time.monotonic() - start
    new_kept, new_received = live.recording.kept - kept, live.recording.received - received
    # The page sends a frame every 1/FPS s (its webcam component of that rate), and they are kept at the rate.
    assert 0.9 * FPS * seconds <= new_kept <= FPS * seconds + 1, (new_kept, new_received, seconds)
    assert new_received <= FPS * seconds + 1
    window = _window(live)
    times = np.array([frame.t_s for frame in window])
    assert np.median(np.diff(times)) == pytest.approx(1 / FPS, abs=0.1)
    # Every kept frame is a camera frame as it was shot (not mirrored: its code reads), newer than the one before.
    codes = [read_frame_index(frame.picture) for frame in window]
    assert all(0 < b - a <= 10 or b < a - 300 for a, b in zip(codes, codes[1:])), codes  # the camera file loops
    status = page.inner_text(STATUS)
    assert status.startswith("Live · ") and f"frames kept · {FPS} fps" in status


def test_a_question_about_now_is_answered_from_the_newest_frames(live_page, served):
    page, live = live_page
    seen = served[2]
    newest_before = live.recording.latest()
    page.fill("#question textarea", "What is happening now?")
    page.click("#ask-btn")
    _answered(page, 1)
    assert page.locator("#chat .message-row").last.inner_text().startswith("The red square moves right at")
    answer = next(event for event in live.conversation if isinstance(event, Answer))
    assert answer.text == ANSWER

    # The frames the model saw: the window of the newest WINDOW_S seconds when the question came, frame for frame the
    # camera's newest ones (their codes in order, the last at least as new as the newest before the question).
    clip = live.chat.clip
    tokens = seen.answers[-1]
    assert tokens.span_s == (clip.times_s[0], clip.times_s[-1])
    assert clip.times_s[-1] >= newest_before.t_s and clip.times_s[-1] - clip.times_s[0] <= WINDOW_S
    assert len(clip.times_s) >= FPS * WINDOW_S - 1
    assert clip.frame_indices[-1] >= newest_before.number
    assert list(clip.frame_indices) == list(range(clip.frame_indices[0], clip.frame_indices[-1] + 1))
    kept = {frame.number: frame.picture for frame in _window(live)}  # those still in memory
    assert all(np.array_equal(picture, kept[n]) for picture, n in zip(clip.frames, clip.frame_indices) if n in kept)
    codes = [read_frame_index(picture) for picture in clip.frames]  # the camera's frames, 1/FPS s apart
    assert all(0 < b - a <= 10 or b < a - 300 for a, b in zip(codes, codes[1:])), codes


def test_a_standing_question_fires_once_with_its_time(live_page, served):
    page, live = live_page
    seen = served[2]
    page.fill("#live-when input", f"Tell me when {CONDITION}.")
    page.press("#live-when input", "Enter")
    page.wait_for_function(f"document.querySelector({STATUS!r}).innerText.includes('watching for: {CONDITION}')")
    assert live.watching is not None and live.watching.condition == CONDITION
    seen.yes_from_s = live.recording.duration_s + 2  # from 2 s on, every check says yes
    alert_message = page.locator("#chat .bot-row", has_text=CONDITION)
    alert_message.wait_for(timeout=60_000)
    page.wait_for_timeout(4000)  # more checks, all of them yes
    alerts = [event for event in live.conversation if isinstance(event, Alert)]
    assert len(alerts) == 1 and alerts[0].condition == CONDITION and alerts[0].t_s >= seen.yes_from_s
    assert alert_message.count() == 1
    when = format_timestamp(alerts[0].t_s)
    assert alert_message.inner_text().startswith(f"🔔 {when} — {CONDITION}")
    assert alert_message.locator(f'a[href="#t={alerts[0].t_s:.1f}"]').inner_text() == when
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "live-webcam.png"))


def test_a_clicked_object_is_tracked_and_its_mask_drawn_on_the_live_view(live_page):
    page, live = live_page
    drawn, tracked = _record_the_live_view(live)
    view = page.locator("#live-view img")
    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6)
    page.wait_for_function(f"document.querySelector('#question textarea').value === {POINT_QUESTION!r}", timeout=60_000)
    click = next(event for event in live.conversation if isinstance(event, Click))
    clicked = next(obj for obj in live.objects.values() if obj.object_id == click.object_id)
    assert clicked.label == "clicked object 1"
    assert page.locator("#chat .bot-row", has_text="You pointed at clicked object 1").count() == 1
    assert "tracked live" in page.inner_text("#objects")

    # The live view shows the newest frame with the tracker's current mask (of that frame, or of the one before while
    # SAM 2 runs on it), one picture after the other.
    shown = []
    for _ in range(2):
        page.wait_for_timeout(1500)
        shown.append(_shown_picture(page, drawn))
    (t1, first), (t2, second) = shown
    assert t2 > t1
    masks_shown = []
    for picture, raw, before in (first, second):
        changed = (picture != raw).any(axis=2)  # the mask's fill, its outline and its label
        candidates = [tracked[_key(frame)][clicked.object_id] for frame in (raw, before) if _key(frame) in tracked]
        overlap = [(changed & mask).sum() / (changed | mask).sum() for mask in candidates]
        assert max(overlap) > 0.8, overlap
        mask = candidates[int(np.argmax(overlap))]
        assert mask.any() and not mask.all()
        masks_shown.append(mask)
    assert not np.array_equal(*masks_shown)  # the mask follows the frames
    page.screenshot(path=str(OUTPUT / "live-tracked.png"))


def _key(picture: np.ndarray) -> bytes:
    return hashlib.sha1(picture.tobytes()).digest()


def _turn(event) -> tuple:
    """What a turn of the conversation says (a live answer's selection is of its window, not of the recording)."""
    return (type(event).__name__, event.question, event.text) if isinstance(event, Answer) else (event,)


def _record_the_live_view(live: LiveChat) -> tuple[dict, dict]:
    """What the live view is made from: every picture `LiveChat.newest` draws, by frame time (the picture, the frame
    under it and the one before), and every mask the tracker makes, by frame (`_key`) and object."""
    drawn, tracked = {}, {}
    newest, step = live.newest, live.tracker.step

    def drawing():
        picture, t_s = newest()
        window = _window(live)
        at = next(i for i, frame in enumerate(window) if frame.t_s == t_s)
        drawn[t_s] = (picture, window[at].picture, window[max(at - 1, 0)].picture)
        return picture, t_s

    def tracking(picture):
        masks = step(picture)
        tracked[_key(picture)] = {i: mask.mask for i, mask in masks.items()}
        return masks

    live.newest, live.tracker.step = drawing, tracking
    return drawn, tracked


def _shown_picture(page, drawn: dict) -> tuple[float, tuple]:
    """The picture the live view shows (decoded by the browser) and which of the `drawn` ones it is (JPEG's few
    levels apart, every other one much further)."""
    png = page.wait_for_function("""() => {
      const img = document.querySelector('#live-view img');
      if (!img || !img.complete || !img.naturalWidth) return false;  // the next picture is loading
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      canvas.getContext('2d').drawImage(img, 0, 0);
      return canvas.toDataURL('image/png').split(',')[1];
    }""").json_value()
    shown = cv2.imdecode(np.frombuffer(base64.b64decode(png), np.uint8), cv2.IMREAD_COLOR).astype(int)  # BGR
    errors = {t: np.abs(shown - _as_jpeg(picture)).mean() for t, (picture, _, _) in list(drawn.items())}
    t_s = min(errors, key=errors.get)
    assert errors[t_s] < 1, errors
    return t_s, drawn[t_s]


def _as_jpeg(picture: np.ndarray) -> np.ndarray:
    """The picture ([h, w, 3] RGB) as the live view's JPEG decodes: BGR ints."""
    _, data = cv2.imencode(".jpg", np.ascontiguousarray(picture[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, VIEW_QUALITY])
    return cv2.imdecode(data, cv2.IMREAD_COLOR).astype(int)


def test_stop_turns_the_live_source_into_the_tabs_video(live_page, served):
    page, live = live_page
    app = served[0]
    events = list(live.conversation)
    page.click("#live-stop")
    page.wait_for_function("document.querySelector('#notice').innerText.includes('frames sampled')", timeout=90_000)
    page.wait_for_function(
        "document.querySelector('#player video') && document.querySelector('#player video').readyState >= 2",
        timeout=30_000,
    )
    workspace = next(w for w in app.workspaces._items.values() if w.session is not None)
    session = workspace.session
    assert workspace.live is None and app.workspaces.live_sources == 0
    assert Path(session.clip.info.path).name == "live.mp4"
    assert [_turn(event) for event in session.conversation] == [_turn(event) for event in events]
    assert "live.mp4" in page.inner_text("#notice")
    assert page.evaluate("document.querySelector('#live-source input:checked').value") == "Video file"
    assert page.evaluate("document.querySelector('#player video').duration") == pytest.approx(
        session.clip.info.duration_s, abs=0.6
    )
    # The conversation is kept: the answer, the alert and the click, their times now links that seek the recording.
    chat = page.inner_text("#chat")
    assert ANSWER in chat and CONDITION in chat and "You pointed at clicked object 1" in chat
    alert = next(event for event in events if isinstance(event, Alert))
    page.click(f'#chat a[href="#t={alert.t_s:.1f}"]')
    page.wait_for_function(
        f"Math.abs(document.querySelector('#player video').currentTime - {alert.t_s:.1f}) < 0.1", timeout=10_000
    )
    # A follow-up is about the recording, as about any video.
    page.fill("#question textarea", "And what happened before?")
    page.click("#ask-btn")
    _answered(page, len(events) + 1)
    assert len(session.answers) == 2 and session.answers[-1].question == "And what happened before?"
    page.screenshot(path=str(OUTPUT / "live-stopped.png"))


# ---- a phone, and the keyboard ----------------------------------------------------------------------------------


def test_on_a_phone_the_live_section_fits_and_the_keyboard_watches_a_url(camera_browser, served):
    app, url, _ = served
    with visitor(camera_browser, url, **PHONE) as page:
        page.get_by_label("Stream URL", exact=True).check()
        box = page.locator("#live-url input")
        box.wait_for()
        assert not page.locator("#player").is_visible()
        assert not page.locator("#live-stop").is_visible()  # nothing plays yet
        # Enter in the box watches it: a loopback address is refused, in the guard's words, before anything starts.
        box.focus()
        page.keyboard.type("http://127.0.0.1/live.m3u8")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#notice .vc-notice-error') && "
            "document.querySelector('#notice').innerText.includes('127.0.0.1, a private, loopback')",
            timeout=30_000,
        )
        # Tab reaches Watch; Enter presses it.
        box.fill("rtsp://10.1.2.3/camera")
        box.focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "live-url-btn"
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('#notice').innerText.includes('10.1.2.3')", timeout=30_000)
        assert _live(app) is None
        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / "live-phone-url.png"), full_page=True)

        # The webcam, live on a phone, at the rate and window set before it starts: everything of the live section on
        # the screen's width, big enough for a finger.
        page.get_by_label(WEBCAM, exact=True).check()
        page.locator(f"#{webcam_id(FPS)}").wait_for()
        page.locator("#live-fps input[type=range]").fill("1")  # the webcam that sends 1 frame a second
        page.locator("#live-window input[type=range]").fill("6")
        webcam = page.locator(f"#{webcam_id(1)}")
        webcam.wait_for()
        assert not page.locator(f"#{webcam_id(FPS)}").is_visible()
        webcam.get_by_text("Click to Access Webcam").click()
        webcam.locator("[aria-label='capture photo']").click()
        page.wait_for_selector("#live-view img", timeout=60_000)
        page.locator("#live-stop").wait_for()
        page.wait_for_function(f"(document.querySelector({STATUS!r}) || {{}}).innerText?.startsWith('Live · ')")
        live = _live(app)
        assert (live.settings.recording.fps, live.settings.recording.window_s) == (1, 6)
        assert page.inner_text(STATUS).endswith("· 1 fps")
        width = page.evaluate("window.innerWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for selector in (webcam_id(1), "live-view", "live-status", "live-when", "live-when-btn", "live-stop"):
            element = page.locator(f"#{selector}").bounding_box()
            assert element["x"] >= 0 and element["x"] + element["width"] <= width + 0.5, selector
        for button in ("live-when-btn", "live-when-clear", "live-stop"):
            assert page.locator(f"#{button}").bounding_box()["height"] >= 40, button
        page.screenshot(path=str(OUTPUT / "live-phone-webcam.png"), full_page=True)
        page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach((b) => b.click())")
        page.wait_for_selector(".toast-header", state="detached")  # Gradio's toasts nest buttons (the refusals')
        assert _serious_violations(page) == []

        # A reload of the tab gets its live source back: the webcam's part of the page, the live view, the chat.
        workspace = next(w for w in app.workspaces._items.values() if w.live is live)
        assert page.evaluate("sessionStorage.getItem('vidchat-tab')") == workspace.token
        page.reload()
        page.wait_for_function(f"(document.querySelector('#live-source input:checked') || {{}}).value === {WEBCAM!r}")
        page.wait_for_selector("#live-view img", timeout=30_000)
        page.wait_for_function(f"(document.querySelector({STATUS!r}) || {{}}).innerText?.startsWith('Live · ')")
        assert "Live from the webcam." in page.inner_text("#chat") and _live(app) is live


# ---- the API --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> list[str]:
    """8 s of the shapes video at 10 fps, 160×120, as PNG files (an API client's camera)."""
    folder = tmp_path_factory.mktemp("frames")
    video = write_video(folder / "shapes.mp4", n_frames=80, fps=10.0, size=(160, 120))
    paths = []
    container = av.open(video.path)
    for index, frame in enumerate(container.decode(video=0)):
        path = folder / f"{index:03d}.png"
        cv2.imwrite(str(path), frame.to_ndarray(format="bgr24"))
        paths.append(str(path))
    container.close()
    return paths


def test_the_api_starts_a_live_source_sends_frames_asks_and_stops(tiny_model_dirs, sam2_dir, frames):
    seen = Seen()
    seen.yes_from_s = 0.0  # every check says yes: one alert
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(sam2_dir),
        settings=SETTINGS,
        load=scripted_loader(Script(answer=seen.answer, check=seen.check)),
        live=LIVE,
        limits=ServerLimits(live_sources=1, disconnect_grace_s=0),
    )
    try:
        client, other = Client(url, verbose=False), Client(url, verbose=False)
        with pytest.raises(AppError, match="127.0.0.1, a private, loopback or reserved address"):
            client.predict("http://127.0.0.1/live.m3u8", FPS, WINDOW_S, api_name="/live_start")
        with pytest.raises(AppError, match="No live source is playing"):
            client.predict(handle_file(frames[0]), None, api_name="/live_frame")

        started = client.predict("", FPS, WINDOW_S, api_name="/live_start")
        assert started["live"] is True and started["source"] == "webcam"
        assert (started["fps"], started["window_s"], started["masks"]) == (FPS, WINDOW_S, True)
        with pytest.raises(AppError, match="1 live source is playing, the most it takes at once"):
            other.predict("", FPS, WINDOW_S, api_name="/live_start")
        assert client.predict("tell me when the circle is low", api_name="/live_watch") == {
            "watching": "the circle is low"
        }
        sent = [client.predict(handle_file(path), i / 10, api_name="/live_frame") for i, path in enumerate(frames)]
        kept_s = [reply["t_s"] for reply in sent if reply["kept"]]  # the frames' own times: 0.0, 0.4, 0.9 …
        assert len(kept_s) in (16, 17) and np.diff(kept_s) == pytest.approx(1 / FPS, abs=0.11)
        assert sent[-1]["frames_received"] == 80 and sent[-1]["frames_kept"] == len(kept_s)

        # /ask is about now: the model saw the newest WINDOW_S seconds, the frames after kept_s[-1] - WINDOW_S.
        *streamed, final = client.submit("What is happening now?", api_name="/ask")
        assert final["done"] is True and final["text"] == ANSWER and streamed
        window_s = [t for t in kept_s if t > kept_s[-1] - WINDOW_S]
        assert seen.answers[-1].span_s == pytest.approx((window_s[0], window_s[-1]))
        live = _live(app)
        seen_codes = [read_frame_index(picture) for picture in live.chat.clip.frames]
        assert seen_codes == [round(t * 10) for t in window_s]

        _wait_for(lambda: any(isinstance(e, Alert) for e in live.conversation), 30, "no alert")
        status = client.predict(api_name="/live_status")
        assert (status["frames_kept"], status["frames_received"]) == (len(kept_s), 80)
        assert status["duration_s"] == pytest.approx(kept_s[-1])
        assert status["ended"] == "" and status["watching"] == "the circle is low"
        assert [alert["condition"] for alert in status["alerts"]] == ["the circle is low"]
        assert status["alerts"][0]["kind"] == "alert"

        stopped = client.predict(api_name="/live_stop")
        assert stopped["name"] == "live.mp4" and (stopped["width"], stopped["height"]) == (160, 120)
        assert stopped["duration_s"] == pytest.approx(kept_s[-1], abs=0.6)
        assert [turn["kind"] for turn in stopped["turns"]] == [
            "alert" if isinstance(e, Alert) else "answer" for e in live.conversation
        ]
        assert app.workspaces.live_sources == 0
        *_, follow_up = client.submit("And before that?", api_name="/ask")
        assert follow_up["done"] is True and follow_up["question"] == "And before that?"
        with pytest.raises(AppError, match="No live source is playing"):
            client.predict(api_name="/live_status")

        # The other client's turn; a tab that closes takes its live source with it.
        other.predict("", FPS, WINDOW_S, api_name="/live_start")
        theirs = _live(app)
        other.predict(handle_file(frames[0]), 0.0, api_name="/live_frame")
        app.on_unload(SimpleNamespace(session_hash=other.session_hash))  # what demo.unload calls
        _wait_for(lambda: app.workspaces.live_sources == 0, 10, "the closed tab's live source plays on")
        assert theirs.add_frame(cv2.imread(frames[10])[..., ::-1].copy(), 1.0) is None  # it keeps nothing more
    finally:
        app.close()


def test_the_live_limits_come_from_app_py_flags(monkeypatch):
    import app as entry

    built = {}
    monkeypatch.setattr(entry, "example_clips", lambda: [])
    monkeypatch.setattr(
        entry, "VidchatApp", lambda **kwargs: built.update(kwargs) or SimpleNamespace(launch=lambda **kw: None)
    )
    entry.main([])
    assert built["limits"].live_sources == 2 and built["live"].recording.max_duration_s == 3600
    monkeypatch.setenv("VIDCHAT_LIVE_SOURCES", "0")
    entry.main(["--live-max-minutes", "2.5"])
    assert built["limits"].live_sources == 0 and built["live"].recording.max_duration_s == 150
    with pytest.raises(SystemExit):
        entry.main(["--live-sources", "-1"])
    with pytest.raises(SystemExit):
        entry.main(["--live-max-minutes", "0"])
