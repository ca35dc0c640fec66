"""Shared fixtures: tiny random-weight checkpoints of the real model classes, saved and loaded offline."""

import os

# No test may reach the Hugging Face Hub (set before huggingface_hub is imported by any test module).
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402

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
