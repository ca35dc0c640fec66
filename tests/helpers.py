"""Helpers of the app tests (tests/test_ui.py, tests/test_browser.py, tests/test_zoom_page.py,
tests/test_reliability.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
from transformers import Sam2VideoModel

from vidchat.session import SamplingConfig, SessionSettings, load_model
from vidchat.testing.models import TINY_TEXT, build_qwen3_vl
from vidchat.testing.needle import Needle, needle_patches, rig_attention
from vidchat.testing.sam2 import build_sam2_video
from vidchat.testing.videos import RED_SQUARE
from vidchat.ui import VidchatApp
from vidchat.video import sample

SETTINGS = SessionSettings(sampling=SamplingConfig(fps=2.0, max_frames=8), max_new_tokens=8, max_grounding_tokens=8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_visible_sam2(folder: Path) -> Path:
    """The tiny random SAM 2, its object-score head made to say "an object is there" on every frame, so that
    clicked and grounded objects get visible masks that the tests can find on the page."""
    build_sam2_video(folder)
    model = Sam2VideoModel.from_pretrained(folder)
    head = model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(10.0)
    model.save_pretrained(folder)
    return folder


def build_needle_model(folder: Path, needle: Needle, sampling: SamplingConfig) -> Path:
    """The tiny Qwen3-VL rigged (`rig_attention`) to the needle of `needle`'s video sampled with `sampling`, saved:
    a model loaded from `folder` looks closer at the needle when asked NEEDLE_QUESTION about that video (zoom)."""
    build_qwen3_vl(folder, text=TINY_TEXT | {"attention_bias": True})  # the rig's biases are kept when saved
    llm = load_model("llm", str(folder))
    coarse = sample(needle.path, sampling)
    tokens = llm.encode(coarse)
    rig_attention(llm, tokens, needle_patches(coarse.times_s, tokens.steps, needle), layer=0)
    llm.model.save_pretrained(folder)
    return folder


def start_app(**kwargs) -> tuple[VidchatApp, str]:
    """Build and serve the app on a free port; wait until its models have loaded (or failed)."""
    app = VidchatApp(**kwargs)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    deadline = time.monotonic() + 120
    while not app.models.settled and time.monotonic() < deadline:
        time.sleep(0.05)
    return app, f"http://127.0.0.1:{port}/"


def square_box_1000(video, t_s: float) -> list[int]:
    """The red square's box at `t_s` in Qwen3-VL's 0–1000 coordinates of the synthetic video."""
    frame = int(np.argmin(np.abs(video.pts_s - t_s)))
    x1, y1, x2, y2 = video.boxes[RED_SQUARE][frame]
    return [
        round(x1 * 1000 / video.width),
        round(y1 * 1000 / video.height),
        round(x2 * 1000 / video.width),
        round(y2 * 1000 / video.height),
    ]


# ---- the page in Chromium (the `browser` fixture is in conftest.py) ---------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def visitor(browser, url: str, **options) -> Iterator:
    """A new visitor's page on the running app at `url`, in a browser context of its own (`options`: a viewport, a
    phone, permissions); at the end, the page's script must not have failed."""
    context = browser.new_context(**options)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_selector("#status .vc-ok")
        yield page
    finally:
        context.close()
    assert errors == [], f"the page's script failed: {errors}"


def open_video(page, path: str) -> None:
    """Upload `path` through the player and wait until the app has opened it and the player shows it."""
    page.set_input_files("#player input[type=file]", path)
    page.wait_for_function("document.querySelector('#notice').innerText.includes('frames sampled')", timeout=60_000)
    page.wait_for_function(
        "document.querySelector('#player video') && document.querySelector('#player video').readyState >= 2",
        timeout=60_000,
    )


# The overlay canvas's pixel over a point of the video, given as a fraction of the picture (the page's own arithmetic
# for where the picture sits inside the <video> box is checked here, not reused): its RGBA and where it is on the page.
CANVAS_PIXEL = """([fx, fy]) => {
  const v = document.querySelector('#player video'), c = document.querySelector('#vc-overlay');
  const s = Math.min(v.clientWidth / v.videoWidth, v.clientHeight / v.videoHeight);
  const w = v.videoWidth * s, h = v.videoHeight * s;
  const x = (v.clientWidth - w) / 2 + fx * w, y = (v.clientHeight - h) / 2 + fy * h;
  const dpr = window.devicePixelRatio || 1;
  const r = c.getBoundingClientRect();
  const d = c.getContext('2d').getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data;
  return {rgba: Array.from(d), page: [r.left + x, r.top + y]};
}"""


def interior_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from its edge: robust to the PNG being scaled to the player."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def rgb(color: str) -> tuple[int, int, int]:
    """An object's "#rrggbb" colour as (r, g, b)."""
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
