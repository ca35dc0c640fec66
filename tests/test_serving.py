"""The vLLM engine's side that needs no server: what a request carries, and what a missing server says.

tests/test_vllm.py runs the same engine against a real `vllm serve`.
"""

import base64
import io

import numpy as np
import pytest
import torch

from tests.test_vlm import make_clip
from vidchat.errors import EngineError
from vidchat.selector import SelectorSettings, select, whole_patches
from vidchat.serving import VllmLLM
from vidchat.vlm import VideoLLM, load_network


@pytest.fixture(scope="module", params=["qwen3_vl", "qwen2_5_vl"])
def remote(request, tiny_model_dirs) -> VllmLLM:
    """A vLLM engine for a server that is never called: the vision tower and the scoring layers, loaded here."""
    folder = str(tiny_model_dirs[request.param])
    network, processor, depth = load_network(folder, layers=lambda depth: 1)
    return VllmLLM(network, processor, folder, "http://127.0.0.1:9", depth)


def embeds_of(item: dict) -> torch.Tensor:
    return torch.load(io.BytesIO(base64.b64decode(item["video_embeds"]["video_embeds"])), weights_only=True)


def test_only_the_lower_layers_are_loaded_and_the_scores_are_the_full_models(remote, tiny_model_dirs):
    full = VideoLLM.from_pretrained(str(tiny_model_dirs[remote.family]))
    assert len(remote.model.model.language_model.layers) == 1 and remote.depth == full.depth == 2
    clip = make_clip(np.arange(8) * 0.5, size=(128, 96))
    tokens = remote.encode(clip)
    assert torch.equal(tokens.embeddings, full.encode(clip).embeddings)
    settings = SelectorSettings(min_fraction=0.3, max_fraction=0.3)
    mine, theirs = select(remote, tokens, [], "Where is the red square?", settings), select(full, tokens, [], "Where is the red square?", settings)
    assert torch.equal(mine.keep_indices, theirs.keep_indices) and torch.allclose(mine.scores, theirs.scores)


def test_a_request_carries_the_kept_patches_with_their_times(remote):
    clip = make_clip(np.array([0.0, 0.5, 1.0, 1.5, 2.4, 2.9, 4.0, 4.5]), size=(128, 96))  # uneven times
    tokens = remote.encode(clip)
    steps = tokens.token_grid[:, 0]
    per_step = int((steps == 0).sum())
    everything = remote.video_item(tokens)
    stacked = torch.cat([tokens.embeddings, *tokens.deepstack], dim=-1)
    assert torch.equal(embeds_of(everything), stacked)  # [N, D × (1 + DeepStack layers)]
    _, height, width = tokens.video_grid_thw[0].tolist()
    assert everything["video_embeds"]["video_grid_thw"] == [4, height, width]
    body = remote.request(tokens, [], "What moves?", 16)
    assert body["temperature"] == 0.0 and body["max_tokens"] == 16
    assert body["messages"][1]["content"][0] is not None and body["messages"][1]["content"][0]["type"] == "video_embeds"
    if remote.family == "qwen2_5_vl":
        assert remote.selection_unit == "none" and "timestamps" not in everything["video_embeds"]
        with pytest.raises(ValueError, match="whole clip"):
            remote.video_item(tokens, torch.arange(per_step))
        return
    assert remote.selection_unit == "patch"
    assert everything["video_embeds"]["timestamps"] == pytest.approx([0.25, 1.25, 2.65, 4.25])
    keep = torch.cat([torch.arange(per_step, 2 * per_step), torch.arange(3 * per_step, 4 * per_step)])  # patches 1, 3
    kept = remote.video_item(tokens, keep)
    assert kept["video_embeds"]["timestamps"] == pytest.approx([1.25, 4.25])  # their own times, not renumbered
    assert kept["video_embeds"]["video_grid_thw"] == [2, height, width]
    assert torch.equal(embeds_of(kept), stacked[keep])
    # the media identity: the same video and patches give the same uuid (prefix-cache hits), others another one
    assert kept["uuid"] == remote.video_item(tokens, keep)["uuid"] != everything["uuid"]
    with pytest.raises(ValueError, match="whole temporal patches"):
        remote.video_item(tokens, keep[1:])
    assert len(whole_patches(select(remote, tokens, [], "What moves?"), tokens).keep_indices) % per_step == 0


def test_a_missing_server_is_a_clear_error(remote):
    tokens = remote.encode(make_clip(np.arange(4) * 0.5, size=(64, 48)))
    with pytest.raises(EngineError, match=r"http://127\.0\.0\.1:9 is not answering.*conversation is kept"):
        list(remote.generate(tokens, [], "What moves?", 4))
    with pytest.raises(EngineError, match="not answering"):
        VllmLLM.connect("http://127.0.0.1:9", "Qwen/Qwen3-VL-2B-Instruct")
