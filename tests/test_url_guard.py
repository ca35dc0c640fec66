"""The URL guard, as a unit: no connection is attempted (addresses in any spelling resolve without a query, and
names resolve through a stand-in resolver)."""

import ipaddress

import pytest

from vidchat.errors import UrlRefusedError
from vidchat.url_guard import UrlGuard, system_resolver

GUARD = UrlGuard()


def names(table: dict[str, list[str]]):
    """A resolver that knows only `table`'s names (and numeric addresses, as the system's does without a query)."""

    def resolve(host: str, port):
        return table[host] if host in table else system_resolver(host, port)

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/video.mp4",
        "http://172.16.0.1/",
        "https://192.168.1.1/clip.mp4",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://[fd00::1]/",  # unique-local
        "http://[::ffff:10.0.0.1]/",  # IPv4-mapped
        "http://127.0.0.1:7860/",
        "http://[::1]/",
        "rtmp://127.0.0.1/live/s",
        "rtsp://[fe80::1%25eth0]/cam",  # link-local with a zone
        # other spellings of loopback and private addresses
        "http://127.1/",
        "http://0x7f.0.0.1/",
        "http://2130706433/",
        "http://017700000001/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://[0:0:0:0:0:ffff:7f00:1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
        "http://224.0.0.1/",  # multicast
        "HTTP://LOCALHOST/",
    ],
)
def test_private_loopback_link_local_and_reserved_addresses_are_refused_in_every_spelling(url):
    guard = UrlGuard(resolve=names({"localhost": ["127.0.0.1", "::1"]}))
    with pytest.raises(UrlRefusedError, match="private, loopback or reserved address"):
        guard.check(url)


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/v.mp4", "data:video/mp4;base64,AAAA",
     "javascript:alert(1)", "/local/path.mp4", "example.com/video.mp4"],  # fmt: skip
)
def test_only_stream_and_file_schemes_are_allowed(url):
    with pytest.raises(UrlRefusedError, match="vidchat opens http, https, rtsp, rtsps, rtmp, rtmps URLs only"):
        GUARD.check(url)


def test_a_name_is_refused_when_any_of_its_addresses_is_private():
    guard = UrlGuard(resolve=names({"video.example": ["93.184.216.34", "10.0.0.5"], "cdn.example": ["93.184.216.34"]}))
    with pytest.raises(UrlRefusedError, match="leads to 10.0.0.5"):
        guard.check("https://video.example/clip.mp4")
    assert guard.check("https://cdn.example/clip.mp4") == [ipaddress.ip_address("93.184.216.34")]


def test_public_addresses_pass_and_bad_urls_say_why():
    assert GUARD.check("rtmp://93.184.216.34:1935/live/s") == [ipaddress.ip_address("93.184.216.34")]
    assert GUARD.check("https://[2606:2800:220:1:248:1893:25c8:1946]/v.mp4")[0].version == 6
    with pytest.raises(UrlRefusedError, match="not a valid URL"):
        GUARD.check("http://93.184.216.34:99999/")
    with pytest.raises(UrlRefusedError, match="has no host"):
        GUARD.check("http:///v.mp4")


def test_allowed_networks_open_chosen_private_addresses_only():
    guard = UrlGuard.allowing(["127.0.0.2/32", "fd00:1::/64"])
    assert guard.check("http://127.0.0.2:8000/index.m3u8") == [ipaddress.ip_address("127.0.0.2")]
    assert guard.check("http://[fd00:1::5]/")[0] == ipaddress.ip_address("fd00:1::5")
    for url in ("http://127.0.0.1:8000/", "http://[fd00:2::5]/", "http://169.254.169.254/"):
        with pytest.raises(UrlRefusedError):
            guard.check(url)
    with pytest.raises(ValueError):
        UrlGuard.allowing(["not a network"])
