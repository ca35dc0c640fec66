"""Fetch a visitor's video file by its URL, within the upload limits, past the URL guard at every step.

A file URL is how people bring a video that is not on their disk; once fetched it is treated like an upload. The
server fetches it, so every URL of the fetch (the first, and each redirect, followed by hand) must pass
`vidchat.url_guard`; proxies from the environment are not used (a proxy would fetch what the guard refused). The
body is written as it arrives and cut off past `max_bytes` (a declared length over it is refused before any byte);
a server that stops answering times out, and one that trickles bytes meets the overall deadline. Left open: the
host is resolved again when httpx connects, so a DNS name whose answer changes between the check and the connection
(DNS rebinding) is not caught.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from vidchat.errors import FetchError, UrlRefusedError, VideoTooLargeError
from vidchat.url_guard import UrlGuard, shown_url
from vidchat.video import bytes_text

MAX_REDIRECTS = 5


def fetch_video(
    url: str,
    folder: Path,
    guard: UrlGuard,
    max_bytes: int,
    timeout_s: float = 10.0,
    deadline_s: float = 600.0,
) -> Path:
    """The file at `url` (http or https), saved in `folder` under a name from its path; UrlRefusedError,
    VideoTooLargeError or FetchError saying what went wrong, and nothing left in `folder` then.

    timeout_s: to connect, and between two pieces of the body; deadline_s: for the whole fetch."""
    if urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        guard.check(url)  # says what is wrong with another scheme (a stream's is opened as a stream, not fetched)
        raise UrlRefusedError(f"'{shown_url(url)}' is a stream address: a video file is fetched over http or https.")
    ends = time.monotonic() + deadline_s
    with _guarded_get(url.strip(), guard, timeout_s) as (final, response):
        return _save(response, folder / _file_name(final), max_bytes, ends)


def fetch_bytes(url: str, guard: UrlGuard, max_bytes: int, timeout_s: float) -> bytes:
    """The body at `url` (a playlist, a segment of a stream), at most `max_bytes`, past the guard at every
    redirect; UrlRefusedError or FetchError otherwise."""
    with _guarded_get(url, guard, timeout_s) as (final, response):
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"'{shown_url(final)}' is over {bytes_text(max_bytes)}.")
        body = bytearray()
        for piece in response.iter_bytes():
            body += piece
            if len(body) > max_bytes:
                raise FetchError(f"'{shown_url(final)}' is over {bytes_text(max_bytes)}.")
        return bytes(body)


@contextmanager
def _guarded_get(url: str, guard: UrlGuard, timeout_s: float) -> Iterator[tuple[str, httpx.Response]]:
    """(the final URL, its 200 response, streaming), redirects followed by hand, every URL past the guard."""
    current = url
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(timeout_s), trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            guard.check(current)
            try:
                with client.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise FetchError(f"'{shown_url(current)}' answered HTTP {response.status_code}, not a video file.")
                    yield current, response
                    return
            except httpx.TimeoutException:
                raise FetchError(f"'{shown_url(current)}' did not answer within {timeout_s:g} s.") from None
            except httpx.HTTPError as error:
                raise FetchError(f"'{shown_url(current)}' could not be fetched ({type(error).__name__}: {error}).") from None
    raise FetchError(f"'{shown_url(url)}' redirects more than {MAX_REDIRECTS} times.")


def _save(response: httpx.Response, path: Path, max_bytes: int, ends: float) -> Path:
    """The body written to `path` while it is within `max_bytes` and the deadline `ends`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise VideoTooLargeError(_too_large(path.name, int(declared), max_bytes))
    size = 0
    try:
        with path.open("wb") as out:
            for piece in response.iter_bytes():
                size += len(piece)
                if size > max_bytes:
                    raise VideoTooLargeError(_too_large(path.name, size, max_bytes))
                if time.monotonic() > ends:
                    raise FetchError(f"Fetching '{path.name}' took too long; it stopped after {bytes_text(size)}.")
                out.write(piece)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _file_name(url: str) -> str:
    """A safe file name from the URL's last path segment ("video.mp4" when it has none)."""
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^\w.\-]+", "_", last).strip("._")[:100]
    return name or "video.mp4"


def _too_large(name: str, size: int, max_bytes: int) -> str:
    return f"'{name}' is over the upload limit of {bytes_text(max_bytes)} ({bytes_text(size)} at least)."
