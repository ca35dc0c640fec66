"""The files the page takes, in a real browser (Debian's Chromium driven by Playwright): every kind of video vidchat
opens goes through the player's file input, also those the browser does not type as video (.ts, .mxf, .gif …), and
every other file, or one over the size limit, is refused in the app's own words in #notice, never in Gradio's
("Invalid file type") or not at all, picked or dropped, every time. `vidchat/ui/static/upload.js` does it with the
extensions of `vidchat.video.VIDEO_EXTENSIONS` and the words of `vidchat.video.file_refusal`.
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from tests import corpus
from tests.helpers import SETTINGS, start_app, visitor
from vidchat.testing.scripted import Script, scripted_loader
from vidchat.testing.videos import write_audio_only, write_text_file, write_video
from vidchat.video import VIDEO_EXTENSIONS, VideoLimits, file_refusal, sample

# The size limit of the app under test: over every file of the corpus, under the large file below.
MAX_BYTES = 4 * 1024**2

# A video of each extension vidchat opens: the encoder and what else write_video needs for it (H.264 where none is
# given); some are written under another name of the same container and renamed.
_WRITE_AS = {".qt": ".mov", ".divx": ".avi", ".rmvb": ".rm"}
_MPEG2 = {"codec": "mpeg2video", "pix_fmt": "yuv420p"}
_PAL = {"size": (720, 576), "fps": 25.0, "pix_fmt": "yuv420p"}  # what the MXF and DV muxers take
_ENCODING = {
    ".3gp": {"codec": "mpeg4"}, ".3g2": {"codec": "mpeg4"},
    ".webm": {"codec": "libvpx-vp9"}, ".avi": {"codec": "mjpeg"}, ".divx": {"codec": "mpeg4"},
    ".mpg": _MPEG2, ".mpeg": _MPEG2, ".vob": _MPEG2, ".m2v": _MPEG2,
    ".mxf": {"codec": "mpeg2video", **_PAL}, ".dv": {"codec": "dvvideo", **_PAL},
    ".flv": {"codec": "flv"}, ".wmv": {"codec": "wmv2"}, ".asf": {"codec": "wmv2"}, ".ogv": {"codec": "libvpx"},
    ".y4m": {"codec": "rawvideo"}, ".rm": {"codec": "rv20"}, ".rmvb": {"codec": "rv20"},
    ".ivf": {"codec": "libvpx-vp9"}, ".gif": {"codec": "gif", "pix_fmt": "rgb8"},
    ".apng": {"codec": "apng", "pix_fmt": "rgb24"},
}  # fmt: skip


@pytest.fixture(scope="module")
def extension_videos(tmp_path_factory) -> dict[str, str]:
    """A short video in the container (and a codec) of each extension, named for it: "ts.ts", "mxf.mxf" …"""
    folder = tmp_path_factory.mktemp("extensions")
    videos = {}
    for ext in VIDEO_EXTENSIONS:
        name = ext.lstrip(".")
        written = write_video(folder / f"{name}{_WRITE_AS.get(ext, ext)}", n_frames=12, **_ENCODING.get(ext, {}))
        videos[ext] = shutil.move(written.path, folder / f"{name}{ext}")
    return videos


def test_every_extension_vidchat_lists_is_a_video_it_opens(extension_videos):
    for ext, path in extension_videos.items():
        clip = sample(path)
        assert len(clip.times_s) >= 2, ext
        assert file_refusal(os.path.basename(path), os.path.getsize(path)) is None


def test_a_file_is_refused_by_its_name_and_size_with_what_vidchat_opens():
    opens = ", ".join(VIDEO_EXTENSIONS)
    assert file_refusal("song.flac", 1000) == (
        f"'song.flac' is a sound file, with no video track. Upload a video: vidchat opens {opens} files."
    )
    assert file_refusal("note.TXT", 10).startswith("'note.TXT' is not a video (a .txt file).")
    assert "is a picture" in file_refusal("photo.jpeg", 10)
    assert "animated WebP" in file_refusal("animation.webp", 10)
    assert "has no extension" in file_refusal("clip", 10)
    assert file_refusal("STREAM.TS", 10) is None
    assert file_refusal("big.mp4", 2001, VideoLimits(max_bytes=2000)) == (
        "'big.mp4' is 2,001 bytes; the limit is 2,000 bytes. Upload a shorter or more compressed version."
    )
    assert file_refusal("big.mp4", 2000, VideoLimits(max_bytes=2000)) is None


# ---- in the browser (the `browser` fixture skips these tests where Chromium is missing) ----------------------

# Every toast the page shows, kept in window.vcToasts (Gradio takes them away after a while).
TOAST_LOG = """() => {
  window.vcToasts = [];
  const seen = () => document.querySelectorAll('[data-testid=toast-text]').forEach((t) => {
    const text = t.innerText.trim();
    if (text && !window.vcToasts.includes(text)) window.vcToasts.push(text);
  });
  new MutationObserver(seen).observe(document.body, { childList: true, subtree: true, characterData: true });
}"""

# A file dropped on the empty player's upload area: its bytes (base64), or `size` zero bytes.
DROP = """([name, type, data, size]) => {
  const bytes = data === null ? new Uint8Array(size) : Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const files = new DataTransfer();
  files.items.add(new File([bytes], name, { type }));
  const area = document.querySelector('#player input[type=file]').parentElement;
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    area.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: files }));
  }
}"""

FILE_INPUT = "#player input[type=file]"
NOTICE = "document.querySelector('#notice').innerText"
PLACEHOLDER = "Upload a video or pick an example."


@pytest.fixture(scope="module")
def served(tiny_model_dirs):
    settings = replace(SETTINGS, limits=VideoLimits(max_bytes=MAX_BYTES))
    app, url = start_app(
        model=str(tiny_model_dirs["qwen3_vl"]), sam=None, settings=settings, load=scripted_loader(Script(answer="ok"))
    )
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def page(served, browser):
    with visitor(browser, served[1]) as page:
        _ready(page)
        yield page


def _ready(page) -> None:
    page.wait_for_selector("#status .vc-ok")
    page.wait_for_function("window.vidchat.upload.rules !== null")
    page.evaluate(TOAST_LOG)


def _toasts(page) -> list[str]:
    return page.evaluate("window.vcToasts")


def _empty_player(page) -> None:
    """Take the video out of the player, if it has one: its upload area comes back."""
    if page.query_selector('#player button[aria-label="Clear"]'):
        page.click('#player button[aria-label="Clear"]')
        page.wait_for_function(f"{NOTICE}.includes({PLACEHOLDER!r})", timeout=30_000)
    page.wait_for_selector(FILE_INPUT, state="attached", timeout=30_000)


def _opens(page, name: str, pick) -> None:
    """`pick()` hands the player a video named `name`: it opens (the notice shows its sampled frames), with no
    toast from Gradio's file filter or player."""
    _empty_player(page)
    before = len(_toasts(page))
    pick()
    _wait(page, f"{NOTICE}.includes('frames sampled')", name)  # the empty player said no such thing
    assert _toasts(page)[before:] == [], name


def _refused(page, pick, *fragments: str) -> None:
    """`pick()` hands the player a file it refuses: the app's reason is in #notice, and no toast."""
    before = len(_toasts(page))
    pick()
    _wait(page, " && ".join(f"{NOTICE}.includes({fragment!r})" for fragment in fragments), fragments[0])
    assert page.query_selector("#notice .vc-notice-error") is not None
    assert page.query_selector(FILE_INPUT) is not None  # nothing was uploaded
    assert _toasts(page)[before:] == []


def _wait(page, condition: str, what: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, timeout=60_000)
    except PlaywrightTimeout:
        pytest.fail(f"{what}: the notice says {page.inner_text('#notice')!r}; toasts: {_toasts(page)}")


def _corpus_opened(folder: Path) -> list[tuple[str, str]]:
    """(name as picked, path) of every corpus entry vidchat opens."""
    opened = []
    for case in corpus.build(folder):
        if not isinstance(case.expect, corpus.Accepted):
            continue
        path = case.path
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a Latin-1 name: a browser gives it as a person reads it
            path = shutil.copy(path, folder / os.path.basename(os.fsencode(path)).decode("latin-1"))
        assert os.path.getsize(path) < MAX_BYTES, case.name
        opened.append((os.path.basename(path), path))
    return opened


def test_every_video_vidchat_opens_opens_through_the_file_input(page, extension_videos, tmp_path):
    videos = [*_corpus_opened(tmp_path), *((os.path.basename(p), p) for p in extension_videos.values())]
    # A file the browser cannot play, under a name that Gradio changes when it takes the upload ("$", "!" go).
    renamed = shutil.copy(extension_videos[".ts"], tmp_path / "$ale! (2).ts")
    videos.append((os.path.basename(renamed), renamed))
    for count, (name, path) in enumerate(videos, 1):
        _opens(page, name, partial(page.set_input_files, FILE_INPUT, path))
        if count % 20 == 0:
            # Gradio's player keeps two copies of FFmpeg's WebAssembly (31 MB) in the tab for every video it shows,
            # for its trim button: after some 40 videos the tab has no memory left for them.
            page.reload()
            _ready(page)
    # And dropped: an MPEG-TS, which a browser types as no video.
    ts = extension_videos[".ts"]
    data = base64.b64encode(Path(ts).read_bytes()).decode()
    _opens(page, "dropped.ts", partial(page.evaluate, DROP, ["dropped.ts", "", data, 0]))


def test_other_files_are_refused_in_the_apps_words_every_time_and_a_video_opens_after(page, tmp_path):
    text = write_text_file(tmp_path / "note.txt")
    sound = write_audio_only(tmp_path / "song.flac")
    large = tmp_path / "large.mp4"
    large.write_bytes(b"\0" * (MAX_BYTES + 1024**2))
    good = write_video(tmp_path / "good.mp4", n_frames=12).path
    _empty_player(page)
    assert page.get_attribute(FILE_INPUT, "accept") == ",".join(VIDEO_EXTENSIONS)  # what the file chooser offers
    as_text = ("'note.txt' is not a video (a .txt file).", "vidchat opens .mp4")
    as_sound = ("'song.flac' is a sound file, with no video track.", "vidchat opens .mp4")
    as_large = ("'large.mp4' is 5.00 MiB; the limit is 4.00 MiB.",)
    for _ in range(2):  # every time, not only the first
        for path, fragments in ((text, as_text), (sound, as_sound), (large, as_large)):
            _refused(page, partial(page.set_input_files, FILE_INPUT, path), *fragments)
    for _ in range(2):
        for name, mime, fragments in (
            ("note.txt", "text/plain", as_text),
            ("song.flac", "audio/flac", as_sound),
            ("large.mp4", "video/mp4", as_large),
        ):
            data = None if name == "large.mp4" else base64.b64encode(Path(tmp_path / name).read_bytes()).decode()
            _refused(page, partial(page.evaluate, DROP, [name, mime, data, MAX_BYTES + 1024**2]), *fragments)
    _opens(page, "good.mp4", partial(page.set_input_files, FILE_INPUT, good))
