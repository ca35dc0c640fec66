"""Shared fixtures: tiny random-weight checkpoints of the real model classes, saved and loaded offline."""

import os

# No test may reach the Hugging Face Hub (set before huggingface_hub is imported by any test module).
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

from tests.helpers import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from vidchat.testing.videos import write_video  # noqa: E402
from vidchat.testing.models import build_qwen2_5_vl, build_qwen3_vl  # noqa: E402

BUILDERS = {"qwen3_vl": build_qwen3_vl, "qwen2_5_vl": build_qwen2_5_vl}


@pytest.fixture(scope="session", autouse=True)
def gradio_cache(tmp_path_factory):
    """Gradio's cache (uploads, and vidchat's session folders inside it) in a folder of the test run, set before
    any app is built, so that the tests see everything the app leaves there."""
    folder = tmp_path_factory.mktemp("gradio-cache")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["GRADIO_TEMP_DIR"]
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict:
    """Folders holding a saved tiny checkpoint (weights, tokenizer, processor, template) per family."""
    root = tmp_path_factory.mktemp("models")
    return {family: build(root / family) for family, build in BUILDERS.items()}


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """4 s of moving shapes at 320×240, 10 fps (8 frames sampled at 2 fps): the page tests' video (a module may
    have its own)."""
    return write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", n_frames=40, fps=10.0, size=(320, 240))


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, driven by Playwright (its own browser download is blocked here), for the page tests."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
