"""Fetching a video file by its URL, end to end on loopback only: the guard refuses loopback with the default
settings and no request reaches the server; allowed addresses fetch within the limits, every redirect checked."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.helpers import start_app
from vidchat.errors import FetchError, UrlRefusedError, VideoTooLargeError
from vidchat.fetch import fetch_video
from vidchat.url_guard import UrlGuard
from vidchat.video import probe

BODY_LIMIT = 10_000_000


class Recorder(ThreadingHTTPServer):
    """An HTTP server on a loopback address that records every request and serves `routes` (path → handler)."""

    def __init__(self, host: str, routes: dict):
        self.requests: list[str] = []
        self.routes = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N805
                self.requests.append(handler.path)
                status, headers, body = self.routes.get(handler.path, (404, {}, b""))
                handler.send_response(status)
                for name, value in headers.items():
                    handler.send_header(name, value)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}{path}"


@pytest.fixture
def server(clip):
    body = open(clip.path, "rb").read()
    recorder = Recorder("127.0.0.1", {"/shapes.mp4": (200, {"Content-Type": "video/mp4"}, body)})
    yield recorder, body
    recorder.shutdown()


def test_with_default_settings_loopback_is_refused_in_every_form_and_nothing_reaches_it(server, tmp_path):
    recorder, _ = server
    port = recorder.server_address[1]
    for url in (f"http://127.0.0.1:{port}/shapes.mp4", f"http://localhost:{port}/shapes.mp4", f"http://[::1]:{port}/shapes.mp4"):
        with pytest.raises(UrlRefusedError, match="private, loopback or reserved address"):
            fetch_video(url, tmp_path, UrlGuard(), BODY_LIMIT)
    assert recorder.requests == [] and list(tmp_path.iterdir()) == []


def test_an_allowed_address_fetches_the_file_which_opens_as_a_video(server, tmp_path):
    recorder, body = server
    path = fetch_video(recorder.url("/shapes.mp4"), tmp_path, UrlGuard.allowing(["127.0.0.1/32"]), BODY_LIMIT)
    assert path.name == "shapes.mp4" and path.read_bytes() == body and recorder.requests == ["/shapes.mp4"]
    assert probe(path).frame_count == 40


def test_a_redirect_to_an_address_not_allowed_is_refused_before_any_request_reaches_it(server, tmp_path):
    recorder, _ = server
    other = Recorder("127.0.0.2", {"/shapes.mp4": (200, {}, b"secret")})
    try:
        recorder.routes["/moved"] = (302, {"Location": other.url("/shapes.mp4")}, b"")
        recorder.routes["/relative"] = (301, {"Location": "/shapes.mp4"}, b"")
        allowed = UrlGuard.allowing(["127.0.0.1/32"])
        with pytest.raises(UrlRefusedError, match="leads to 127.0.0.2"):
            fetch_video(recorder.url("/moved"), tmp_path, allowed, BODY_LIMIT)
        assert other.requests == [] and list(tmp_path.iterdir()) == []
        assert fetch_video(recorder.url("/relative"), tmp_path, allowed, BODY_LIMIT).name == "shapes.mp4"
        assert recorder.requests == ["/moved", "/relative", "/shapes.mp4"]
    finally:
        other.shutdown()


def test_a_file_over_the_limit_or_a_bad_answer_is_refused_and_nothing_is_left(server, tmp_path):
    recorder, body = server
    allowed = UrlGuard.allowing(["127.0.0.1/32"])
    with pytest.raises(VideoTooLargeError, match="over the upload limit of 1,000 bytes"):
        fetch_video(recorder.url("/shapes.mp4"), tmp_path, allowed, 1000)
    with pytest.raises(FetchError, match="answered HTTP 404"):
        fetch_video(recorder.url("/missing.mp4"), tmp_path, allowed, BODY_LIMIT)
    recorder.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(FetchError, match="redirects more than 5 times"):
        fetch_video(recorder.url("/loop"), tmp_path, allowed, BODY_LIMIT)
    with pytest.raises(UrlRefusedError, match="is a stream address"):
        fetch_video("rtmp://93.184.216.34/live/s", tmp_path, allowed, BODY_LIMIT)
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_never_answers_times_out(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections (the kernel does) and never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/video.mp4"
        with pytest.raises(FetchError, match="did not answer within 0.5 s"):
            fetch_video(url, tmp_path, UrlGuard.allowing(["127.0.0.1/32"]), BODY_LIMIT, timeout_s=0.5)
    finally:
        silent.close()


def test_open_url_fetches_the_file_and_answers_like_upload_and_refuses_loopback_by_default(server, tiny_model_dirs):
    recorder, _ = server
    url = recorder.url("/shapes.mp4")
    for guard, allowed in ((UrlGuard(), False), (UrlGuard.allowing(["127.0.0.1/32"]), True)):
        app, address = start_app(model=str(tiny_model_dirs["qwen3_vl"]), sam=None, url_guard=guard)
        try:
            client = Client(address, verbose=False)
            if not allowed:  # the default settings: refused with a message, and no request reached the server
                with pytest.raises(AppError, match="private, loopback or reserved address"):
                    client.predict(url, 2.0, 8, api_name="/open_url")
                assert recorder.requests == []
                continue
            opened = client.predict(url, 2.0, 8, api_name="/open_url")
            assert opened["name"] == "shapes.mp4" and opened["duration_s"] == pytest.approx(4.0)
            assert len(opened["sampled_times_s"]) == 8 and recorder.requests == ["/shapes.mp4"]
            answer = client.predict("What is there?", api_name="/ask")
            assert answer["done"] is True and answer["question"] == "What is there?"
            with pytest.raises(AppError, match="answered HTTP 404"):
                client.predict(recorder.url("/gone.mp4"), 2.0, 8, api_name="/open_url")
        finally:
            app.close()
