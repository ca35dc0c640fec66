"""Live streams on loopback only: HLS from a local http server fed by ffmpeg, and RTMP from `ffmpeg -listen 1`, each
frame at its presentation time (the synthetic video's frames carry their index as a code); a killed producer, a
server that never answers, and a playlist whose segments point at an address the guard refuses."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tests.helpers import free_port
from tests.test_fetch import Recorder
from vidchat.errors import StreamEndedError, UrlRefusedError, VidchatError
from vidchat.live import LiveSettings, is_stream_url, live_frames
from vidchat.livechat import LiveChat, LiveChatSettings
from vidchat.recording import RecordingSettings
from vidchat.session import SessionSettings
from vidchat.testing.models import build_qwen3_vl
from vidchat.testing.videos import read_frame_index, write_video
from vidchat.url_guard import UrlGuard
from vidchat.vlm import VideoLLM

FPS = 10
LOOPBACK = UrlGuard.allowing(["127.0.0.1/32"])
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """60 s of the synthetic video at 10 fps, each frame carrying its index."""
    return write_video(tmp_path_factory.mktemp("live") / "coded.mp4", n_frames=600, fps=FPS, size=(160, 120))


def producer(coded, *output: str) -> subprocess.Popen:
    """ffmpeg sending the coded video in real time (a keyframe a second) to `output`."""
    command = ["ffmpeg", "-loglevel", "error", "-re", "-i", coded.path, "-c:v", "libx264", "-g", str(FPS), *output]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


@pytest.fixture
def hls(coded, tmp_path):
    """(playlist URL, the ffmpeg producer) of a live HLS stream served on 127.0.0.1."""
    folder = tmp_path / "hls"
    folder.mkdir()
    live = producer(coded, "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments",
                    str(folder / "index.m3u8"))  # fmt: skip
    handler = functools.partial(QuietFiles, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + 20
    while not (folder / "index.m3u8").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{server.server_address[1]}/index.m3u8", live
    live.kill()
    live.wait()
    server.shutdown()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_times(frames) -> None:
    """Each frame is the one its code says, at its presentation time from the stream's first frame."""
    indices = [read_frame_index(frame.picture) for frame in frames]
    assert indices == list(range(indices[0], indices[0] + len(frames)))  # every frame, in order
    for frame, index in zip(frames, indices):
        assert frame.t_s == pytest.approx((index - indices[0]) / FPS, abs=1e-3)


def first(count: int, url: str, guard: UrlGuard = LOOPBACK, settings: LiveSettings = LiveSettings()) -> list:
    frames = []
    for frame in live_frames(url, guard, settings):
        frames.append(frame)
        if len(frames) == count:
            break
    return frames


def test_hls_opens_at_the_newest_segment_with_frames_at_their_presentation_times(hls):
    url, _ = hls
    frames = first(25, url)
    check_times(frames)
    assert frames[0].picture.shape == (120, 160, 3)


def test_rtmp_opens_with_frames_at_their_presentation_times(coded):
    url = f"rtmp://127.0.0.1:{free_port()}/live/s"
    live = producer(coded, "-f", "flv", "-listen", "1", url)
    try:
        time.sleep(0.5)
        check_times(first(20, url))
    finally:
        live.kill()
        live.wait()


def test_a_killed_producer_ends_the_stream_with_a_message_within_the_watchdogs_time(hls):
    url, live = hls
    settings = LiveSettings(stall_s=3.0)
    frames = live_frames(url, LOOPBACK, settings)
    next(frames)
    live.kill()
    killed = time.monotonic()
    with pytest.raises(StreamEndedError, match="No picture came from the stream for 3 s"):
        for _ in frames:
            pass
    # what was buffered (the segment under way, at most a second or two of frames) then the watchdog's 3 s
    assert time.monotonic() - killed < settings.stall_s + 4


def test_a_server_that_never_answers_times_out():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/live.m3u8"
        started = time.monotonic()
        with pytest.raises(VidchatError, match="did not answer within 1 s"):
            first(1, url, settings=LiveSettings(read_timeout_s=1.0))
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_a_playlist_whose_segments_point_elsewhere_is_refused_and_nothing_reaches_that_address(tmp_path):
    target = Recorder("127.0.0.1", {"/segment0.ts": (200, {}, b"\x47" * 188)})
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{target.url('/segment0.ts')}\n"
    )
    allowed = Recorder("127.0.0.2", {"/live.m3u8": (200, {"Content-Type": "application/vnd.apple.mpegurl"}, playlist.encode())})
    try:
        with pytest.raises(UrlRefusedError, match="leads to 127.0.0.1"):
            first(1, allowed.url("/live.m3u8"), UrlGuard.allowing(["127.0.0.2/32"]))
        # the playlist was read (the demuxer may ask again after the refusal); its segment's address never was
        assert set(allowed.requests) == {"/live.m3u8"} and target.requests == []
    finally:
        target.shutdown()
        allowed.shutdown()


def test_with_default_settings_loopback_streams_are_refused_before_any_connection():
    for url in ("rtmp://127.0.0.1:1935/live/s", "rtsp://localhost/cam", "http://[::1]/live.m3u8"):
        with pytest.raises(UrlRefusedError):
            first(1, url, UrlGuard())
    assert is_stream_url("https://cdn.example/live/index.m3u8") and not is_stream_url("https://cdn.example/video.mp4")
    with pytest.raises(UrlRefusedError, match="is not a stream"):
        first(1, "http://93.184.216.34/video.mp4", UrlGuard())


def test_a_live_chat_follows_a_stream_at_its_rate_answers_about_now_and_says_when_it_ends(hls, tmp_path):
    url, producer_process = hls
    llm = VideoLLM.from_pretrained(str(build_qwen3_vl(tmp_path / "model")))
    settings = LiveChatSettings(recording=RecordingSettings(fps=2.0, window_s=3.0), stream=LiveSettings(stall_s=3.0))
    live = LiveChat(llm, tmp_path / "live", settings, SessionSettings(max_new_tokens=2, ground_objects=False))
    live.follow(url, LOOPBACK)
    assert live.source == url
    deadline = time.monotonic() + 20
    while live.recording.duration_s < 4.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    window = list(live.recording.window)
    indices = [read_frame_index(frame.picture) for frame in window]
    for frame, index in zip(window, indices):  # kept at 2 fps from a 10 fps stream, each at its presentation time
        assert frame.t_s == pytest.approx((index - indices[0]) / FPS + window[0].t_s, abs=1e-3)
    assert np.allclose(np.diff([frame.t_s for frame in window]), 0.5, atol=0.1 + 1e-9)
    *_, answer = live.ask("What is happening now?")
    seen = [read_frame_index(frame) for frame in live.chat.clip.frames]
    assert seen[-1] >= indices[-1] and len(seen) >= 6  # the newest 3 s, as they were when asked
    assert answer.text
    producer_process.kill()
    deadline = time.monotonic() + 15
    while not live.ended and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.ended in ("The stream ended.", "No picture came from the stream for 3 s: it stopped, or the network did.")
    session = live.stop()  # what was recorded is a video
    assert session.clip.info.duration_s >= 4.0
    session.close()
