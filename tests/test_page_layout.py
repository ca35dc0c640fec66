"""The page as people use it, in a real browser (Debian's Chromium driven by Playwright): on a 390×844 phone and on a
desktop. The timeline's names cover none of its marks (a time at 00:00.5 included); marks, lane bars and heat cells
are buttons named with their time that the keyboard reaches and that seek the player; axe-core finds no serious or
critical violation on the page after an answer; on a phone the player is as tall as its video, the question is
within a screen of it, the logo is square and nothing overflows sideways.

The model's words are scripted (`vidchat.testing.scripted`), so that the answer holds known times and an object;
SAM 2 is tiny and made to see its objects (`build_visible_sam2`). Screenshots go to test-output/.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.helpers import SETTINGS, build_visible_sam2, open_video, square_box_1000, start_app, visitor
from vidchat.grounding import format_timestamp
from vidchat.testing.scripted import Script, scripted_loader
from vidchat.testing.videos import write_text_file, write_video

from axe_playwright_python.sync_playwright import Axe

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
# Two times in one sentence, the first half a second in: two marks that only their time tells apart.
SENTENCE = "The red square starts at 00:00.5 and reaches the middle at 00:02.0."
ANSWER = f"{SENTENCE} It keeps moving right."
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1440, "height": 1000}}


@pytest.fixture(scope="module")
def url(tiny_model_dirs, clip, tmp_path_factory):
    grounding = f'[{{"time": 0.5, "bbox_2d": {square_box_1000(clip, 0.5)}, "label": "red square"}}]'
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]),
        sam=str(build_visible_sam2(tmp_path_factory.mktemp("sam2"))),
        settings=SETTINGS,
        load=scripted_loader(Script(answer=ANSWER, grounding=grounding)),
        examples=[(clip.path, "Where is the blue circle at 00:01.0?")],
    )
    yield url
    app.close()


@pytest.fixture
def open_page(browser, url):
    """A new visitor's page on the running app, in a browser context of the given options (a phone, a desktop)."""
    with ExitStack() as pages:
        yield lambda options: pages.enter_context(visitor(browser, url, **options))


def _ask(page) -> None:
    page.fill("#question textarea", "What does the red square do?")
    page.click("#ask-btn")
    page.wait_for_selector('#chat a[href="#t=0.5"]', timeout=60_000)
    page.wait_for_selector("#timeline .vc-tl-run", timeout=60_000)
    page.wait_for_selector("#timeline .vc-tl-cell", timeout=60_000)
    page.wait_for_function("!document.querySelector('#chat .vc-spin')", timeout=60_000)  # the answer is done
    page.mouse.move(0, 0)  # nothing hovered


# What is on top at a point of each timeline element: the element itself (or something inside it), never a name.
# `start`: the point 4 px into the element (a lane's run, whose start must show), else its centre.
ON_TOP = """([selector, start]) => Array.from(document.querySelectorAll(selector)).map((e) => {
  e.scrollIntoView({block: 'center'});
  const r = e.getBoundingClientRect();
  const x = start ? r.left + Math.min(4, r.width / 2) : r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  return {name: e.getAttribute('aria-label'), mine: !!hit && e.contains(hit),
          hit: hit ? hit.outerHTML.slice(0, 120) : null};
})"""


def _check_nothing_covers_the_marks(page) -> None:
    marks = page.evaluate(ON_TOP, ["#timeline .vc-tl-mark", False])
    assert [m["name"] for m in marks] == [f"00:00.5: {SENTENCE}", f"00:02.0: {SENTENCE}"]
    for element in (
        *marks,
        page.evaluate(ON_TOP, ["#timeline .vc-tl-heat .vc-tl-cell", False])[0],
        page.evaluate(ON_TOP, ["#timeline .vc-tl-lane .vc-tl-run", True])[0],
    ):
        assert element["mine"], f"{element['name']!r} is covered by {element['hit']}"


def _serious_violations(page) -> list[dict]:
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    if serious:
        print(results.generate_report())
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]]} for v in serious]


def test_on_a_phone_the_question_is_near_the_player_and_nothing_overflows(open_page, clip):
    page = open_page(PHONE)
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "phone-empty.png"), full_page=True)
    open_video(page, clip.path)
    _ask(page)
    page.wait_for_timeout(300)  # the overlay drawn
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(OUTPUT / "phone-layout.png"), full_page=True)

    box = page.evaluate("""(() => {
      const rect = (s) => {
        const r = document.querySelector(s).getBoundingClientRect();
        return {top: r.top + scrollY, bottom: r.bottom + scrollY, width: r.width, height: r.height};
      };
      const v = document.querySelector('#player video');
      return {video: rect('#player video'), player: rect('#player'), question: rect('#question textarea'),
              logo: rect('.vc-logo'), aspect: v.videoHeight / v.videoWidth,
              scroll_width: document.documentElement.scrollWidth, width: window.innerWidth};
    })()""")
    # The player is its video's shape: no black bars above and below the picture.
    assert box["video"]["height"] == pytest.approx(box["video"]["width"] * box["aspect"], abs=2)
    assert box["player"]["height"] <= box["video"]["height"] + 4
    # The question is within one screen below the player.
    assert box["question"]["top"] - box["player"]["bottom"] <= 844, box
    assert box["logo"]["width"] == box["logo"]["height"] == 40
    # Nothing is wider than the screen: the page does not scroll sideways, and no element sticks out of it.
    assert box["scroll_width"] <= box["width"]
    sticking_out = page.evaluate("""Array.from(document.querySelectorAll('body *')).filter((e) => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5)
             && getComputedStyle(e).visibility !== 'hidden';
    }).map((e) => e.outerHTML.slice(0, 100))""")
    assert sticking_out == []

    _check_nothing_covers_the_marks(page)
    page.evaluate("document.querySelector('#timeline').scrollIntoView({block: 'start'})")
    page.screenshot(path=str(OUTPUT / "phone-timeline.png"))
    assert _serious_violations(page) == []


def test_the_timeline_names_its_marks_with_their_time_and_the_keyboard_seeks_with_them(open_page, clip, tmp_path):
    page = open_page(DESKTOP)
    # An upload error appears in #notice, a live region that screen readers announce.
    page.set_input_files("#player input[type=file]", write_text_file(tmp_path / "notes.mp4"))
    page.wait_for_selector("#notice .vc-notice-error", timeout=30_000)
    live = page.eval_on_selector(
        "#notice .vc-notice-error",
        "e => { const r = e.closest('[aria-live]');"
        " return r && [r.id, r.getAttribute('aria-live'), r.getAttribute('role')]; }",
    )
    assert live == ["notice", "polite", "status"]
    page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")
    open_video(page, clip.path)
    _ask(page)

    # The page's time format is vidchat's.
    times = [0, 0.04, 0.05, 0.25, 0.35, 2.0, 12.449, 59.96, 61.25, 3599.95, 3723.5]
    assert page.evaluate("(ts) => ts.map(window.vidchat.formatTime)", times) == [format_timestamp(t) for t in times]

    _check_nothing_covers_the_marks(page)
    run = page.get_attribute("#timeline .vc-tl-lane .vc-tl-run", "aria-label")
    assert run.startswith("red square seen 00:00.0 to ")
    cells = page.eval_on_selector_all(
        "#timeline .vc-tl-heat .vc-tl-cell", "cs => cs.map(c => c.getAttribute('aria-label'))"
    )
    assert cells[0].startswith("Looked at 00:00.0 to 00:01.0: ") and cells[0].endswith("visual tokens kept")

    # Tab goes from the answers' marks to the object's lane, then to the heat strip: one stop per row.
    video_time = "document.querySelector('#player video').currentTime"
    page.focus("#timeline .vc-tl-marks [data-t][tabindex='0']")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == f"00:00.5: {SENTENCE}"
    page.keyboard.press("ArrowRight")  # the next mark
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == f"00:02.0: {SENTENCE}"
    page.keyboard.press("Enter")
    page.wait_for_function(f"Math.abs({video_time} - 2.0) < 0.05", timeout=10_000)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "vc-tl-run"
    page.evaluate(f"{video_time} = 3.0")
    page.keyboard.press("Enter")
    page.wait_for_function(f"{video_time} < 0.6", timeout=10_000)  # the object's first frame
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == cells[0]
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == cells[1]
    page.keyboard.press("Space")
    page.wait_for_function(f"Math.abs({video_time} - 1.0) < 0.05", timeout=10_000)
    page.keyboard.press("Home")
    page.keyboard.press("Enter")
    page.wait_for_function(f"{video_time} < 0.05", timeout=10_000)
    # The row keeps its one Tab stop where the focus was, and keeps the focus when it is drawn again.
    stops = page.eval_on_selector_all("#timeline .vc-tl-heat [tabindex='0']", "cs => cs.map(c => c.dataset.t)")
    assert stops == ["0"]
    page.keyboard.press("End")
    page.evaluate("window.vidchat.setOverlay(window.vidchat.overlay)")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == cells[-1]

    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "desktop-layout.png"))
    assert _serious_violations(page) == []


def test_a_tall_video_keeps_a_desktop_player_within_the_screen(open_page, tmp_path):
    page = open_page(DESKTOP)
    portrait = write_video(tmp_path / "portrait.mp4", n_frames=10, fps=10.0, size=(120, 240))
    open_video(page, portrait.path)
    height = page.evaluate("document.querySelector('#player video').getBoundingClientRect().height")
    assert 400 <= height <= 0.6 * 1000
