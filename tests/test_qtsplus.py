"""The QTSplus selector: a checkpoint in the public layout loads and reproduces a hand-computed selection."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.test_vlm import make_clip
from vidchat.errors import ModelError
from vidchat.qtsplus import QTSplusSelector
from vidchat.selector import SelectorSettings, question_embeddings, select
from vidchat.session import ChatSession, SessionSettings
from vidchat.testing.models import write_qtsplus_checkpoint
from vidchat.testing.videos import write_video
from vidchat.video import SamplingConfig
from vidchat.vlm import VideoLLM

HEADS, KV_HEADS = 4, 2
QTSPLUS = SelectorSettings(kind="qtsplus", min_fraction=0.0, max_fraction=1.0, max_tokens=10**6, duplicate_cosine=1.1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_qtsplus_checkpoint(tmp_path_factory.mktemp("qtsplus"), hidden_size=64, heads=HEADS, kv_heads=KV_HEADS)


@pytest.fixture(scope="module")
def llm(tiny_model_dirs):
    return VideoLLM.from_pretrained(str(tiny_model_dirs["qwen2_5_vl"]))  # hidden size 64, like the checkpoint


# ---- the computation, written out from the public description with the raw tensors ----

def rms(x, weight):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight


def attend(w, prefix, query, context):
    """Weights [H, L, M] and the block's output for queries over context, straight from the tensors."""
    hd = query.shape[1] // HEADS
    q = (rms(query, w[prefix + "q_norm.weight"]) @ w[prefix + "q_proj.weight"].T + w[prefix + "q_proj.bias"])
    kv = rms(context, w[prefix + "kv_norm.weight"])
    k = kv @ w[prefix + "k_proj.weight"].T + w[prefix + "k_proj.bias"]
    v = kv @ w[prefix + "v_proj.weight"].T + w[prefix + "v_proj.bias"]
    heads = []
    weights = []
    for h in range(HEADS):
        g = h // (HEADS // KV_HEADS)  # grouped kv heads
        a = torch.softmax(q[:, h * hd:(h + 1) * hd] @ k[:, g * hd:(g + 1) * hd].T / math.sqrt(hd), dim=-1)
        weights.append(a)
        heads.append(a @ v[:, g * hd:(g + 1) * hd])
    out = query + torch.cat(heads, dim=1) @ w[prefix + "o_proj.weight"].T
    hidden = F.gelu(rms(out, w[prefix + "ffn_norm.weight"]) @ w[prefix + "ffn.net.0.weight"].T + w[prefix + "ffn.net.0.bias"])
    out = out + hidden @ w[prefix + "ffn.net.2.weight"].T + w[prefix + "ffn.net.2.bias"]
    return torch.stack(weights), out


def by_hand(folder, visual, question):
    w = {k.removeprefix("model.qts_plus.selector."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    weights, _ = attend(w, "scoring_layers.0.", question, visual)
    r = weights.amax(dim=(0, 1))  # max over heads and question tokens
    p = r / (r.sum() + 1e-8)
    entropy = -(p * torch.log(p + 1e-8)).sum()
    x = torch.cat([question.mean(0), torch.tensor([math.log(len(visual)), r.max(), entropy])])
    logit = F.gelu(x @ w["budget.mlp.0.weight"].T + w["budget.mlp.0.bias"]) @ w["budget.mlp.2.weight"].T + w["budget.mlp.2.bias"]
    rho = 0.05 + (0.5 - 0.05) * torch.sigmoid(logit)
    n = min(max(math.ceil(float(rho) * len(visual)), 1), 2560)
    keep = torch.topk(r, n).indices.sort().values
    z = visual[keep]
    for j in range(2):
        _, z = attend(w, f"reencode_layers.{j}.core.", z, z)
    return r, float(rho), keep, z


def test_checkpoint_in_the_public_layout_loads(checkpoint):
    selector = QTSplusSelector.from_pretrained(str(checkpoint))
    assert len(selector.scoring_layers) == 1 and len(selector.reencode_layers) == 2
    assert (selector.rho_min, selector.rho_max, selector.nmax) == (0.05, 0.5, 2560)
    block = selector.scoring_layers[0]
    assert (block.heads, block.kv_heads, block.head_dim) == (HEADS, KV_HEADS, 16)


def test_selection_equals_the_hand_computation(checkpoint, llm):
    selector = QTSplusSelector.from_pretrained(str(checkpoint))
    tokens = llm.encode(make_clip(np.arange(12) * 0.5, size=(128, 96)))
    question = "Where is the red square?"
    selection = select(llm, tokens, [], question, QTSPLUS, qtsplus=selector)
    r, rho, keep, reencoded = by_hand(checkpoint, tokens.embeddings, question_embeddings(llm, question))
    torch.testing.assert_close(selection.scores, r, atol=1e-6, rtol=1e-5)
    assert selection.budget == len(keep) == math.ceil(rho * len(tokens.embeddings))
    assert torch.equal(selection.keep_indices, keep)
    torch.testing.assert_close(selection.reencoded, reencoded, atol=1e-4, rtol=1e-4)
    # the model gets the re-encoded tokens in place of the kept originals, the others untouched
    applied = selection.apply(tokens)[0].embeddings
    torch.testing.assert_close(applied[keep], reencoded, atol=1e-4, rtol=1e-4)
    dropped = torch.ones(len(tokens.embeddings), dtype=torch.bool)
    dropped[keep] = False
    assert torch.equal(applied[dropped], tokens.embeddings[dropped])
    # our bounds still apply on top of QTSplus' own budget
    capped = select(llm, tokens, [], question, SelectorSettings(kind="qtsplus", max_tokens=3, duplicate_cosine=1.1),
                    qtsplus=selector)
    assert len(capped.keep_indices) == 3 and set(capped.keep_indices.tolist()) <= set(keep.tolist())


def test_a_session_with_qtsplus_answers_from_the_reencoded_tokens(checkpoint, llm, tmp_path):
    selector = QTSplusSelector.from_pretrained(str(checkpoint))
    video = write_video(tmp_path / "shapes.mp4", n_frames=30, fps=10.0, size=(160, 120))
    settings = SessionSettings(sampling=SamplingConfig(fps=2.0), max_new_tokens=6, ground_objects=False, selector=QTSPLUS)
    session = ChatSession.open(video.path, llm, settings, qtsplus=selector)
    seen = []
    generate = llm.generate
    llm.generate = lambda tokens, *args, **kwargs: seen.append((tokens, args[3])) or generate(tokens, *args, **kwargs)  # keep_indices
    try:
        answer = list(session.ask("What moves?"))[-1]
    finally:
        del llm.generate
    tokens, keep = seen[0]
    assert torch.equal(keep, answer.selection.keep_indices)
    torch.testing.assert_close(tokens.embeddings[keep], answer.selection.reencoded)


def test_a_checkpoint_without_selector_weights_is_refused(tiny_model_dirs):
    with pytest.raises(ModelError, match="not a QTSplus checkpoint"):
        QTSplusSelector.from_pretrained(str(tiny_model_dirs["qwen2_5_vl"]))


def test_qtsplus_needs_its_weights_and_a_matching_model(checkpoint, llm, tmp_path):
    tokens = llm.encode(make_clip(np.arange(4) * 0.5))
    with pytest.raises(ModelError, match="none are loaded"):
        select(llm, tokens, [], "What?", QTSPLUS)
    wider = QTSplusSelector.from_pretrained(str(write_qtsplus_checkpoint(tmp_path / "wide", hidden_size=96, heads=4, kv_heads=2)))
    with pytest.raises(ModelError, match="hidden sizes differ"):
        select(llm, tokens, [], "What?", QTSPLUS, qtsplus=wider)
