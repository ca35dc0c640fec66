"""Where model weights come from: a folder under weights/, else the Hugging Face cache, else a download.

Both model loaders (`vlm.py`, `segment.py`) resolve through `resolve_model`, so a real checkpoint and a
tiny test checkpoint saved with `save_pretrained` take the same path.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import snapshot_download

from vidchat.errors import ModelNotFoundError

WEIGHTS_DIR = Path(os.environ.get("VIDCHAT_WEIGHTS", Path(__file__).resolve().parent.parent / "weights"))

# Only what from_pretrained reads: skips the repos' .bin duplicates, ONNX exports and sample media.
_WEIGHT_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py"]


def local_dir(model_id: str) -> Path:
    """The folder under weights/ that holds `model_id` ("Qwen/Qwen3-VL-2B-Instruct" → weights/Qwen--Qwen3-VL-2B-Instruct)."""
    return WEIGHTS_DIR / model_id.replace("/", "--")


def resolve_model(model: str) -> str:
    """A local folder holding `model` (a model id or a folder path), or ModelNotFoundError saying how to get it."""
    as_path = Path(model).expanduser()
    if as_path.is_dir():
        if not (as_path / "config.json").is_file():
            raise ModelNotFoundError(f"The folder {as_path} has no config.json, so it is not a saved model.")
        return str(as_path)
    if "/" not in model or model.count("/") > 1 or as_path.is_absolute():
        raise ModelNotFoundError(
            f"'{model}' is neither a model folder on this machine nor a Hugging Face model id like 'Qwen/Qwen3-VL-2B-Instruct'."
        )
    in_weights = local_dir(model)
    if (in_weights / "config.json").is_file():
        return str(in_weights)
    try:
        return snapshot_download(model, allow_patterns=_WEIGHT_FILES, local_files_only=True)
    except Exception:
        pass  # not in the Hugging Face cache: try the network below
    try:
        return snapshot_download(model, allow_patterns=_WEIGHT_FILES)
    except Exception as error:
        raise ModelNotFoundError(
            f"The model '{model}' is not on this machine (looked in {in_weights} and the Hugging Face cache) "
            f"and could not be downloaded ({type(error).__name__}). On a machine with internet access run "
            f"`python -m vidchat download {model}`, which saves it to {in_weights}; copy that folder here "
            f"if this machine is offline, or pass a local model folder instead."
        ) from None


def download(model_id: str) -> Path:
    """Download `model_id` into weights/ so that later runs need no network."""
    target = local_dir(model_id)
    try:
        snapshot_download(model_id, allow_patterns=_WEIGHT_FILES, local_dir=target)
    except Exception as error:
        raise ModelNotFoundError(
            f"Could not download '{model_id}' from the Hugging Face Hub: {error}. Check the model id and the "
            f"internet connection, or copy a downloaded copy of the model into {target}."
        ) from None
    return target
