"""Live sources: the frames of a stream URL (HLS, RTMP, RTSP) at the stream's own presentation times.

Every address is checked by the URL guard. RTMP and RTSP are opened by PyAV (FFmpeg) with open and read timeouts
and low-latency options, after their address passed. HLS is fetched here, not by FFmpeg: FFmpeg's HLS demuxer fetches
whatever a playlist lists, from any host and through any redirect; here the playlist and every segment go through
`vidchat.fetch.fetch_bytes` (redirects followed by hand, each URL checked) and their MPEG-TS bytes, one segment after
the other, are demuxed by PyAV from a pipe (`HlsPipe`). (PyAV's `io_open` callback sees FFmpeg's own fetches, but
serving the data from Python through it corrupts the heap when a segment closes, with PyAV 18.1.)

A reader thread decodes and hands frames over; a watchdog ends a stream that gives no frame for `stall_s` (a killed
HLS producer shows up only as a quiet end of file, about 12 s later) with a message. A video file at an http(s) URL
is not a stream: `vidchat.fetch.fetch_video` brings it as an upload.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import av
import numpy as np

from vidchat.errors import StreamEndedError, UrlRefusedError
from vidchat.fetch import fetch_bytes
from vidchat.url_guard import UrlGuard, shown_url

# FFmpeg's options for a short start and no buffering: probe little, show frames as they come.
_LOW_LATENCY = {"fflags": "nobuffer", "analyzeduration": "500000", "probesize": "32768"}
_END = object()


@dataclass(frozen=True)
class LiveSettings:
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    stall_s: float = 10.0  # the watchdog: no frame for this long ends the stream
    max_piece_bytes: int = 64 * 1024**2  # an HLS playlist or segment
    max_width: int = 1280  # frames are scaled down (aspect kept) to fit this box
    max_height: int = 720


@dataclass(frozen=True, eq=False)
class LiveFrame:
    picture: np.ndarray  # [h, w, 3] uint8 RGB
    t_s: float  # seconds after the stream's first frame, from its presentation times


def is_stream_url(url: str) -> bool:
    """Whether `url` names a live stream (RTMP, RTSP, or an HLS playlist over http) rather than a video file."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    return scheme in ("rtmp", "rtmps", "rtsp", "rtsps") or (
        scheme in ("http", "https") and parts.path.lower().endswith(".m3u8")
    )


def live_frames(url: str, guard: UrlGuard, settings: LiveSettings = LiveSettings()) -> Iterator[LiveFrame]:
    """The stream's frames as they arrive, until it ends or stalls (StreamEndedError saying which), or the caller
    stops iterating (the reader then stops too). UrlRefusedError for an address the guard refuses, FetchError or
    StreamEndedError when it cannot be opened."""
    url = url.strip()
    guard.check(url)
    if not is_stream_url(url):
        raise UrlRefusedError(
            f"'{shown_url(url)}' is not a stream (an HLS .m3u8 playlist, rtmp:// or rtsp://): open a video file as a file."
        )
    stop = threading.Event()
    handed: queue.Queue = queue.Queue(maxsize=256)

    def read() -> None:
        try:
            for frame in _decoded(url, guard, settings, stop):
                handed.put(frame)
            handed.put(_END)
        except Exception as error:  # handed to the consumer, which raises it in its own thread
            handed.put(error)

    threading.Thread(target=read, name="vidchat-live", daemon=True).start()
    try:
        while True:
            try:
                item = handed.get(timeout=settings.stall_s)
            except queue.Empty:
                raise StreamEndedError(
                    f"No picture came from the stream for {settings.stall_s:g} s: it stopped, or the network did."
                ) from None
            if item is _END:
                raise StreamEndedError("The stream ended.")
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()


def _decoded(url: str, guard: UrlGuard, settings: LiveSettings, stop: threading.Event) -> Iterator[LiveFrame]:
    """Decode the stream (in the reader thread) until it ends or `stop` is set."""
    timeout = (settings.open_timeout_s, settings.read_timeout_s)
    try:
        if urlsplit(url).scheme.lower() in ("http", "https"):
            container = av.open(HlsPipe(url, guard, settings, stop), format="mpegts", options=_LOW_LATENCY)
        else:
            container = av.open(url, options=_LOW_LATENCY, timeout=timeout, metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise StreamEndedError(f"The stream '{shown_url(url)}' could not be opened ({error.strerror}).") from None
    first_s = None
    with container:
        if not container.streams.video:
            raise StreamEndedError(f"The stream '{shown_url(url)}' has no video.")
        try:
            for frame in container.decode(container.streams.video[0]):
                if stop.is_set():
                    return
                if frame.time is None:
                    continue
                first_s = frame.time if first_s is None else first_s
                yield LiveFrame(_picture(frame, settings), float(frame.time - first_s))
        except av.error.FFmpegError as error:
            if stop.is_set():
                return
            raise StreamEndedError(f"The stream broke off ({error.strerror}).") from None


class HlsPipe(io.RawIOBase):
    """A live HLS stream's MPEG-TS segments, one after the other, as one byte stream: the playlist is read again for
    new segments (starting at the newest one, as a player joins a live stream), every URL fetched past the guard.
    Ends when the playlist ends (#EXT-X-ENDLIST) or `stop` is set."""

    def __init__(self, url: str, guard: UrlGuard, settings: LiveSettings, stop: threading.Event):
        self.playlist_url, self.guard, self.settings, self.stop = url, guard, settings, stop
        self.next_sequence: int | None = None
        self.pending = bytearray()
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending and not self.ended and not self.stop.is_set():
            self._fetch_new_segments()
        count = min(len(buffer), len(self.pending))
        buffer[:count] = self.pending[:count]
        del self.pending[:count]
        return count

    def _get(self, url: str) -> bytes:
        return fetch_bytes(url, self.guard, self.settings.max_piece_bytes, self.settings.read_timeout_s)

    def _fetch_new_segments(self) -> None:
        text = self._get(self.playlist_url).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines or lines[0] != "#EXTM3U":
            raise StreamEndedError(f"'{shown_url(self.playlist_url)}' is not an HLS playlist.")
        variants = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith("#EXT-X-STREAM-INF")]
        if variants:  # a master playlist: its first variant's playlist
            self.playlist_url = urljoin(self.playlist_url, variants[0])
            return
        sequence, wait_s = 0, 1.0
        segments = []
        for line in lines:
            if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
                sequence = int(line.split(":", 1)[1])
            elif line.startswith("#EXT-X-TARGETDURATION:"):
                wait_s = max(0.2, float(line.split(":", 1)[1]) / 2)
            elif line == "#EXT-X-ENDLIST":
                self.ended = True
            elif not line.startswith("#"):
                segments.append((sequence + len(segments), urljoin(self.playlist_url, line)))
        if self.next_sequence is None and segments:
            self.next_sequence = segments[-1][0]  # join at the newest segment
        new = [(number, url) for number, url in segments if number >= (self.next_sequence or 0)]
        for number, url in new:
            self.pending += self._get(url)
            self.next_sequence = number + 1
        if not new and not self.ended:
            self.stop.wait(wait_s)  # nothing new yet: ask again in half a segment


def _picture(frame: av.VideoFrame, settings: LiveSettings) -> np.ndarray:
    """[h, w, 3] uint8 RGB within the settings' box, aspect kept, never enlarged."""
    scale = min(1.0, settings.max_width / frame.width, settings.max_height / frame.height)
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    return frame.reformat(width, height, format="rgb24", interpolation="AREA").to_ndarray()
