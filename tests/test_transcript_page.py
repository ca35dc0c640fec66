"""The video's words on the page, in a real browser (Debian's Chromium driven by Playwright), and through the API: the
caption on the player at a time is that time's line, on the player's own clock, and its toggle hides and shows it; a
transcript line's click seeks to that line's frame and the line being said is highlighted; search filters the lines
in any script; the timeline's speech lane has its marks where the lines are; another subtitle track can be chosen;
a question asked while the transcript is still being made says so, and the next one hears it; `/transcript` returns
the lines. Plus the pieces the page is made from (`vidchat.ui.transcript`), without a browser.

The clips carry two subtitle tracks (mov_text, muxed by FFmpeg) with lines at known times, on frame boundaries of
their 10 fps video: one line in Chinese, one with `&` and `<`. Speech recognition is off (`asr=None`): subtitles are
read without it. Which frame the player shows is read off its picture (`tests.test_player.shown_frame`). Screenshots
go to test-output/.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from tests.helpers import SETTINGS, free_port, open_video, start_app, visitor
from tests.test_player import frame_at, settled, shown_frame
from vidchat.session import ModelError
from vidchat.speech import Segment, SubtitleTrack, Transcript
from vidchat.testing.scripted import Script, scripted_loader
from vidchat.testing.speech import EchoRecognizer, write_speech_video
from vidchat.testing.videos import write_video
from vidchat.ui import NO_MASKS, VidchatApp
from vidchat.ui import transcript as words
from vidchat.ui.models import ModelRegistry
from vidchat.ui.views import status_html

from axe_playwright_python.sync_playwright import Axe

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
# (start, end, text) of the English track: the first two lines less than a second apart (one bar of the speech
# lane), every start on a frame boundary of the 10 fps clip.
LINES = [
    (0.5, 1.5, "Hello and welcome to the shapes"),
    (1.7, 2.5, "The red square moves right"),
    (4.0, 5.0, "红色方块在移动"),
    (6.2, 7.4, "Tom & Jerry say 1 < 2"),
]
FRENCH = [(1.0, 2.0, "Bonjour à tous")]
ANSWER = "The red square moves right at 00:01.7."
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
VIDEO = "document.querySelector('#player video')"
# The captions' track of the player (ours: Gradio adds an empty one of its own).
CAPTIONS = "document.querySelector('#player video track.vc-captions').track"
# What the captions show now: each active cue's text as it is drawn (character references read).
SHOWN_CAPTIONS = f"Array.from({CAPTIONS}.activeCues || []).map((c) => c.getCueAsHTML().textContent)"
# The search's matches painted in the lines (CSS Custom Highlight API ranges).
MATCHES = "Array.from(CSS.highlights.get('vc-search') || []).map((r) => r.toString())"


def _srt(lines) -> str:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"00:00:{ms // 1000:02d},{ms % 1000:03d}"

    return "".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(lines, 1))


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, tuple[str, np.ndarray]]:
    """8 s of coded frames at 10 fps with an English and a French subtitle track: one file that starts at 0, and a
    copy whose timestamps start at 3 s (the browser's clock is 3 s ahead of the app's)."""
    folder = tmp_path_factory.mktemp("subtitled")
    video = write_video(folder / "shapes.mp4", n_frames=80, fps=10.0, size=(320, 240))
    (folder / "eng.srt").write_text(_srt(LINES), encoding="utf-8")
    (folder / "fre.srt").write_text(_srt(FRENCH), encoding="utf-8")
    made = {}
    for kind, offset in (("starts at 0", "0"), ("timestamps from 3 s", "3")):
        path = folder / f"subtitled-{offset}.mp4"
        _ffmpeg(
            "-i", video.path, "-i", str(folder / "eng.srt"), "-i", str(folder / "fre.srt"),
            "-map", "0", "-map", "1", "-map", "2", "-c", "copy", "-c:s", "mov_text",
            "-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fre",
            "-output_ts_offset", offset, str(path),
        )  # fmt: skip
        made[kind] = (str(path), video.pts_s)
    return made


@pytest.fixture(scope="module")
def served(tiny_model_dirs):
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=NO_MASKS,
        settings=SETTINGS,
        load=scripted_loader(Script(answer=ANSWER)),
        asr=None,
    )
    yield app, url
    app.close()


@pytest.fixture
def page(browser, served):
    with visitor(browser, served[1], viewport={"width": 1280, "height": 900}) as page:
        yield page


def open_subtitled(page, path: str, lines: int = len(LINES)) -> None:
    open_video(page, path)
    page.wait_for_function(f"document.querySelectorAll('#transcript .vc-tr-line').length === {lines}", timeout=30_000)
    page.wait_for_function(f"!!document.querySelector('#player video track.vc-captions') && {CAPTIONS}.cues "
                           f"&& {CAPTIONS}.cues.length === {lines}", timeout=10_000)  # fmt: skip


def seek(page, t: float) -> None:
    page.evaluate(f"window.vidchat.seek({t})")
    settled(page)


def visible_lines(page) -> list[str]:
    return page.eval_on_selector_all(
        "#transcript .vc-tr-line:not([hidden]) .vc-tr-text", "rows => rows.map((r) => r.textContent)"
    )


# ---- the page ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["starts at 0", "timestamps from 3 s"])
def test_the_caption_on_screen_at_a_time_is_that_times_line_and_the_toggle_hides_it(kind, clips, page):
    path, _ = clips[kind]
    offset = 3.0 if kind == "timestamps from 3 s" else 0.0
    open_subtitled(page, path)
    track = page.evaluate(f"(() => {{ const t = {CAPTIONS}; return [t.kind, t.language, t.label, t.mode]; }})()")
    assert track == ["captions", "eng", "English", "showing"]
    # The cues are on the player's clock: the app's times, later by where the first frame is on it.
    cues = page.evaluate(f"Array.from({CAPTIONS}.cues).map((c) => [c.startTime, c.endTime])")
    assert cues == [[pytest.approx(a + offset, abs=1e-3), pytest.approx(b + offset, abs=1e-3)] for a, b, _ in LINES]

    for start, end, text in LINES:
        for t in (start, (start + end) / 2):  # its first frame, and the middle of the line
            seek(page, t)
            assert page.evaluate(SHOWN_CAPTIONS) == [text], (t, text)
    seek(page, 3.0)  # between lines: no caption
    assert page.evaluate(SHOWN_CAPTIONS) == []

    seek(page, 4.5)
    OUTPUT.mkdir(exist_ok=True)
    page.locator("#player").screenshot(path=str(OUTPUT / f"captions-chinese-{offset:.0f}s.png"))
    button = page.locator("#player .vc-cc")
    assert button.get_attribute("aria-pressed") == "true"
    button.click()
    assert button.get_attribute("aria-pressed") == "false"
    assert page.evaluate(f"{CAPTIONS}.mode") == "hidden"
    page.locator("#player").screenshot(path=str(OUTPUT / f"captions-off-{offset:.0f}s.png"))
    button.focus()
    page.keyboard.press("Enter")  # a button: the keyboard presses it too
    assert button.get_attribute("aria-pressed") == "true"
    assert page.evaluate(f"{CAPTIONS}.mode") == "showing"
    assert page.evaluate(SHOWN_CAPTIONS) == ["红色方块在移动"]
    page.locator("body").press("c")  # C, as in most players
    assert page.evaluate(f"{CAPTIONS}.mode") == "hidden"


@pytest.mark.parametrize("kind", ["starts at 0", "timestamps from 3 s"])
def test_a_lines_time_seeks_to_its_frame_and_the_line_being_said_is_highlighted(kind, clips, page):
    path, pts_s = clips[kind]
    open_subtitled(page, path)
    links = page.locator("#transcript .vc-tr-time")
    assert links.all_inner_texts() == ["00:00.5", "00:01.7", "00:04.0", "00:06.2"]
    for i, (start, _, text) in enumerate(LINES):
        page.evaluate(f"{VIDEO}.currentTime = 0")
        settled(page)
        links.nth(i).click()
        settled(page)
        assert shown_frame(page) == frame_at(pts_s, start), (kind, start)
        page.wait_for_function(
            f"document.querySelector('#transcript .vc-tr-now .vc-tr-text').textContent === {text!r}", timeout=5_000
        )
        assert page.get_attribute("#transcript .vc-tr-now", "aria-current") == "true"
    # A click on a line's words seeks too.
    page.locator("#transcript .vc-tr-text").nth(1).click()
    settled(page)
    assert shown_frame(page) == frame_at(pts_s, LINES[1][0])
    # Between lines, none is highlighted.
    seek(page, 3.0)
    page.wait_for_function("!document.querySelector('#transcript .vc-tr-now')", timeout=5_000)

    # The keyboard: the list is one Tab stop; arrows move between the lines, Enter seeks.
    assert page.eval_on_selector_all("#transcript .vc-tr-time[tabindex='0']", "ls => ls.length") == 1
    page.focus("#transcript .vc-tr-time[tabindex='0']")
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent") == "00:04.0"
    page.keyboard.press("Enter")
    settled(page)
    assert shown_frame(page) == frame_at(pts_s, 4.0)
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.textContent") == "00:06.2"


def test_search_filters_the_lines_in_any_script_and_the_panel_shows_chinese(clips, page):
    open_subtitled(page, clips["starts at 0"][0])
    assert page.inner_text("#transcript .vc-tr-meta") == "Subtitles · English · 4 lines · track 1 of 2"
    search = page.locator("#transcript .vc-tr-q")
    shows = "(texts) => JSON.stringify(Array.from(document.querySelectorAll("
    shows += "'#transcript .vc-tr-line:not([hidden]) .vc-tr-text')).map((r) => r.textContent)) === JSON.stringify(texts)"

    def find(query: str, texts: list[str]) -> None:
        search.fill(query)
        page.wait_for_function(shows, arg=texts, timeout=5_000)

    find("RED", ["The red square moves right"])  # case does not matter
    assert page.inner_text("#transcript .vc-tr-count") == "1 of 4 lines"
    assert page.evaluate(MATCHES) == ["red"]
    find("方块", ["红色方块在移动"])
    assert page.evaluate(MATCHES) == ["方块"]
    OUTPUT.mkdir(exist_ok=True)
    page.locator("#transcript").screenshot(path=str(OUTPUT / "transcript-search.png"))
    find("1 < 2", ["Tom & Jerry say 1 < 2"])  # the text as it reads, not as HTML
    find("the", ["Hello and welcome to the shapes", "The red square moves right"])
    assert page.evaluate(MATCHES) == ["the", "The"]
    assert page.inner_text("#transcript .vc-tr-count") == "2 of 4 lines"
    find("TO   the ", ["Hello and welcome to the shapes"])  # spaces as one, around the words as none
    find("nobody said this", [])
    assert page.inner_text("#transcript .vc-tr-count") == "No line has “nobody said this”"
    search.press("Escape")  # clears the search: every line again
    page.wait_for_function(shows, arg=[text for _, _, text in LINES], timeout=5_000)
    assert page.evaluate(MATCHES) == []

    page.locator("#transcript .vc-tr-time").nth(2).click()  # the Chinese line, highlighted
    page.wait_for_selector("#transcript .vc-tr-now")
    OUTPUT.mkdir(exist_ok=True)
    page.locator("#transcript").screenshot(path=str(OUTPUT / "transcript-panel.png"))
    page.screenshot(path=str(OUTPUT / "transcript-desktop.png"), full_page=True)
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], results.generate_report()

    page.reload()  # the tab gets its session back, and the video's words with it
    page.wait_for_function(f"document.querySelectorAll('#transcript .vc-tr-line').length === {len(LINES)}", timeout=30_000)
    assert page.inner_text("#transcript .vc-tr-meta") == "Subtitles · English · 4 lines · track 1 of 2"


def test_a_video_without_words_says_so_and_how_to_hear_one(clip, page):
    open_video(page, clip.path)
    page.wait_for_selector("#transcript .vc-tr-note.vc-tr-none", timeout=30_000)
    assert page.inner_text("#transcript .vc-tr-note") == words.empty_note(
        Transcript("none", None, (), note="The video has no subtitles, and speech recognition is off."),
        ModelRegistry("m", None, None, lambda kind, model_id: None, None).asr_slot,
    )
    assert page.is_hidden("#transcript .vc-tr-q") and page.is_hidden("#transcript .vc-tr-lines")
    assert page.locator("#timeline .vc-tl-speech").count() == 0
    assert page.is_hidden("#player .vc-cc")
    assert page.evaluate(f"{VIDEO}.querySelector('track.vc-captions')") is None


def test_the_speech_lane_has_a_mark_where_each_stretch_of_lines_starts(clips, page):
    path, pts_s = clips["starts at 0"]
    open_subtitled(page, path)
    page.wait_for_selector("#timeline .vc-tl-speech .vc-tl-said")
    marks = page.eval_on_selector_all(
        "#timeline .vc-tl-speech [data-t]", "ms => ms.map((m) => [parseFloat(m.dataset.t), m.getAttribute('aria-label')])"
    )
    # The first two lines, 0.2 s apart, are one stretch.
    assert marks == [
        [0.5, "Speech 00:00.5 to 00:02.5: Hello and welcome to the shapes (2 lines)"],
        [4.0, "Speech 00:04.0 to 00:05.0: 红色方块在移动"],
        [6.2, "Speech 00:06.2 to 00:07.4: Tom & Jerry say 1 < 2"],
    ]
    # One Tab stop; the arrow keys move along it; Enter seeks there.
    page.focus("#timeline .vc-tl-speech [data-t][tabindex='0']")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.t") == "4"
    page.keyboard.press("Enter")
    settled(page)
    assert shown_frame(page) == frame_at(pts_s, 4.0)


def test_another_subtitle_track_chosen_in_the_settings_is_read(clips, page):
    open_subtitled(page, clips["starts at 0"][0])
    page.click("#settings .label-wrap")
    choices = page.locator("#subtitle-track input")
    assert choices.input_value() == "eng (mov_text) · stream 1"
    choices.click()
    page.click("#subtitle-track [role=option][data-index='1']")
    page.wait_for_function("document.querySelectorAll('#transcript .vc-tr-line').length === 1", timeout=30_000)
    assert visible_lines(page) == ["Bonjour à tous"]
    assert page.inner_text("#transcript .vc-tr-meta") == "Subtitles · French · 1 line · track 2 of 2"
    page.wait_for_function(f"{CAPTIONS}.language === 'fre' && {CAPTIONS}.cues && {CAPTIONS}.cues.length === 1")
    seek(page, 1.5)
    assert page.evaluate(SHOWN_CAPTIONS) == ["Bonjour à tous"]
    assert page.eval_on_selector_all("#timeline .vc-tl-speech [data-t]", "ms => ms.map((m) => m.dataset.t)") == ["1"]


def test_on_a_phone_the_transcript_fits_the_screen(browser, served, clips):
    with visitor(browser, served[1], **PHONE) as page:
        open_subtitled(page, clips["starts at 0"][0])
        page.locator("#transcript .vc-tr-time").nth(2).tap()
        page.wait_for_selector("#transcript .vc-tr-now")
        sticking_out = page.evaluate("""Array.from(document.querySelectorAll('#transcript *, #player .vc-cc')).filter((e) => {
          const r = e.getBoundingClientRect();
          return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5);
        }).map((e) => e.outerHTML.slice(0, 100))""")
        assert sticking_out == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / "transcript-phone.png"), full_page=True)


# ---- the API -----------------------------------------------------------------------------------------------


def _transcript(client: Client) -> dict:
    """/transcript once the transcript is made."""
    for _ in range(600):
        result = client.predict(api_name="/transcript")
        if result["state"] != "pending":
            return result
        time.sleep(0.05)
    raise AssertionError(f"the transcript was not made: {result}")


def test_the_transcript_endpoint_returns_the_lines_and_answers_hear_them(served, clips):
    client = Client(served[1], verbose=False)
    client.predict(handle_file(clips["timestamps from 3 s"][0]), 2.0, 8, api_name="/upload")
    result = _transcript(client)
    assert result["state"] == "ready"
    assert result["progress"] == {"fraction": 1.0, "message": "Transcript ready"}
    assert (result["source"], result["language"], result["track"], result["note"]) == ("subtitles", "eng", 1, "")
    assert [(s["start_s"], s["end_s"], s["text"], s["words"]) for s in result["segments"]] == [
        (pytest.approx(a, abs=1e-3), pytest.approx(b, abs=1e-3), text, []) for a, b, text in LINES
    ]
    assert [(t["index"], t["codec"], t["language"]) for t in result["tracks"]] == [(1, "mov_text", "eng"), (2, "mov_text", "fre")]

    answer = client.submit("What is said?", api_name="/ask").result()
    assert (answer["transcript_lines"], answer["transcript_pending"]) == (len(LINES), False)

    files = [Path(path).name for path in client.predict(True, api_name="/export")]
    assert files == ["vidchat.mp4", "vidchat.json", "transcript.srt", "transcript.vtt"]


def test_the_transcript_endpoint_needs_a_video(served):
    client = Client(served[1], verbose=False)
    with pytest.raises(Exception, match="Upload a video first"):
        client.predict(api_name="/transcript")


# ---- while the speech recognizer loads ------------------------------------------------------------------


@pytest.fixture
def slow_app(tiny_model_dirs):
    """The app with a speech recognizer (`EchoRecognizer`, which says "window N") that loads only when `gate` is
    set: the models load one after the other, the recognizer last, and a real one takes a while."""
    gate = threading.Event()
    scripted = scripted_loader(Script(answer=ANSWER))

    def load(kind, model_id):
        if kind == "asr":
            gate.wait(120)
            return EchoRecognizer(name=model_id)
        return scripted(kind, model_id)

    app = VidchatApp(model=str(tiny_model_dirs["qwen3_vl"]), sam=NO_MASKS, settings=SETTINGS, load=load, asr="slow-whisper")
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    app.models.llm_slot.done.wait(120)
    try:
        yield app, f"http://127.0.0.1:{port}/", gate
    finally:
        gate.set()  # the model loader's lock is the process's: nothing else loads while this waits
        app.close()


def test_subtitles_need_no_recognizer_and_a_question_before_the_speech_is_heard_says_so(
    browser, slow_app, clips, tmp_path
):
    app, url, gate = slow_app
    desktop = {"viewport": {"width": 1280, "height": 900}}
    # Subtitles are read at once, while the recognizer is still loading.
    with visitor(browser, url, **desktop) as page:
        assert "Speech: loading slow-whisper…" in page.inner_text("#status")
        open_subtitled(page, clips["starts at 0"][0])
        assert "Speech: loading slow-whisper…" in page.inner_text("#status")

    spoken = write_speech_video(tmp_path / "talk.mp4", [(0.6, "hello there, this is a test")], duration_s=4.0)
    with visitor(browser, url, **desktop) as page:
        open_video(page, spoken.path)
        page.wait_for_selector("#transcript .vc-tr-progress:not([hidden])")
        assert page.inner_text("#transcript .vc-tr-msg") == "Waiting for the speech recognizer slow-whisper to load… (0 %)"
        assert page.inner_text("#timeline .vc-tl-speech .vc-tl-hint") == "Reading the video's words…"
        page.fill("#question textarea", "What is said?")
        page.click("#ask-btn")
        _wait_for_last_note(page, words.NOT_READY_NOTE)
        session = next(
            w.session for w in app.workspaces._items.values()
            if w.session is not None and Path(w.session.clip.info.path).name == "talk.mp4"
        )  # fmt: skip
        assert session.conversation[-1].transcript_pending

        gate.set()
        page.wait_for_selector("#transcript .vc-tr-line", timeout=60_000)
        page.wait_for_function("document.querySelector('#status').innerText.includes('Speech: slow-whisper')", timeout=20_000)
        assert page.is_hidden("#transcript .vc-tr-progress")
        assert page.inner_text("#transcript .vc-tr-meta").startswith("Recognized speech · English · ")
        heard = len(session.transcript.segments)
        assert heard >= 1 and page.locator("#transcript .vc-tr-line").count() == heard
        assert page.locator("#transcript .vc-tr-text").first.inner_text().startswith("window 1")
        page.fill("#question textarea", "And then?")
        page.click("#ask-btn")
        _wait_for_last_note(page, f"Heard {heard} line{'s' if heard > 1 else ''} of the transcript.")
        assert session.conversation[-1].transcript_lines == heard


def _wait_for_last_note(page, text: str) -> None:
    """Until the chat's last note (the answer's, once it is done) says `text`."""
    page.wait_for_function(
        "(text) => { const notes = document.querySelectorAll('#chat .vc-note');"
        " return notes.length && notes[notes.length - 1].innerText === text; }",
        arg=text,
        timeout=60_000,
    )


# ---- the pieces, without a browser -------------------------------------------------------------------------


def test_the_speech_lane_merges_close_lines_and_keeps_a_long_videos_bars_few():
    lines = [Segment(0.5, 1.5, "a"), Segment(1.7, 2.5, "b"), Segment(4.0, 5.0, "c " * 60), Segment(6.2, 7.4, "d")]
    runs = words.speech_runs(lines, 8.0)
    assert [(r["t_s"], r["start_s"], r["end_s"], r["lines"]) for r in runs] == [
        (0.5, 0.5, 2.5, 2), (4.0, 4.0, 5.0, 1), (6.2, 6.2, 7.4, 1)
    ]
    assert len(runs[1]["text"]) == 80 and runs[1]["text"].endswith("…")
    # An hour: ten stretches of talk, a line every 3 s for two minutes, then four silent minutes. Lines 1 s apart are
    # merged as on a short video, and so are the 9 s of 1/400 of an hour: ten bars, not 400 slivers.
    hour = [Segment(block * 360.0 + t, block * 360.0 + t + 2.0, "x") for block in range(10) for t in range(0, 120, 3)]
    runs = words.speech_runs(hour, 3600.0)
    assert [(r["start_s"], r["end_s"], r["lines"]) for r in runs] == [(b * 360.0, b * 360.0 + 119.0, 40) for b in range(10)]
    spaced = [Segment(t, t + 1.0, "x") for t in range(0, 3600, 12)]  # 11 s apart: over the 9 s, a bar each
    assert len(words.speech_runs(spaced, 3600.0)) == 300


def test_captions_are_on_the_players_clock_and_escape_their_text():
    lines = [Segment(0.5, 1.5, "Tom & Jerry say 1 < 2"), Segment(4.0, 5.0, "红色方块\n在移动")]
    assert words.captions_vtt(lines, 3.0) == (
        "WEBVTT\n\n00:00:03.500 --> 00:00:04.500\nTom &amp; Jerry say 1 &lt; 2\n\n"
        "00:00:07.000 --> 00:00:08.000\n红色方块\n在移动\n"
    )
    assert words.captions_vtt(lines, 0.0).startswith("WEBVTT\n\n00:00:00.500 --> 00:00:01.500\n")


def test_the_transcript_json_while_pending_ready_and_without_words():
    class Session:  # what the views read of a ChatSession
        transcript = None
        transcript_progress = (0.3, "Finding speech in the sound")

    session = Session()
    assert words.api_json(session, making=True) == {
        "state": "pending", "progress": {"fraction": 0.3, "message": "Finding speech in the sound"},
        "source": None, "language": None, "segments": [], "tracks": [], "track": None, "note": "",
    }  # fmt: skip
    session.transcript = Transcript("none", None, (), note="The video has no subtitles, and speech recognition is off.")
    result = words.api_json(session, making=False)
    assert (result["state"], result["segments"], result["note"]) == ("none", [], session.transcript.note)
    track = SubtitleTrack(3, "subrip", "zho", "简体中文")
    session.transcript = Transcript("subtitles", "zho", (Segment(1.0, 2.0, "你好"),), (track,), 3)
    result = words.api_json(session, making=False)
    assert (result["state"], result["segments"][0]["text"], result["track"]) == ("ready", "你好", 3)
    assert words.track_choices(session.transcript) == [("简体中文 (subrip) · stream 3", 3)]


def test_the_empty_panel_says_how_to_hear_a_video_without_subtitles():
    silent = Transcript("none", None, (), note="The video has no subtitles, and speech recognition is off.")
    off = ModelRegistry("m", None, None, lambda kind, model_id: None, None).asr_slot
    assert words.empty_note(silent, off) == (
        "The video has no subtitles, and speech recognition is off. To hear videos without subtitles, choose a speech "
        "recognizer (Whisper) in the settings, or start the app with --asr MODEL."
    )
    assert words.empty_note(Transcript("none", None, ()), None) == words.NO_WORDS


def test_the_status_line_says_how_the_speech_recognizer_is():
    def load(kind, model_id):
        if kind == "asr":
            raise ModelError(f"{model_id} is not downloaded: run `python -m vidchat download {model_id}`")
        return object()

    registry = ModelRegistry("m", None, None, load, "openai/whisper-base")
    assert "Speech: loading openai/whisper-base…" in status_html(registry)
    registry.start()
    deadline = time.monotonic() + 30
    while not registry.settled and time.monotonic() < deadline:
        time.sleep(0.01)
    status = status_html(registry)
    assert "Speech: openai/whisper-base not available" in status
    assert "<b>Speech:</b> openai/whisper-base is not downloaded: run <code>python -m vidchat download" in status
    assert "Speech: off" in status_html(ModelRegistry("m", None, None, load, None))
