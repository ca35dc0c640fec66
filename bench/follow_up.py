"""What a follow-up costs: vidchat's video-prefix KV cache and selection against re-encoding, at full depth.

Qwen3-VL-2B widths with all 28 LLM layers and all 24 vision layers (random weights), a synthetic clip of
`--frames` frames (fewer than a real video: on the 2-core development CPU one full prefill of a few thousand
tokens takes minutes). Side by side in one run, medians of `--runs`:

| row | what |
|---|---|
| vanilla | processor + `generate`, re-encoding the video every turn (first question and follow-up) |
| vanilla with prefix reuse | what a serving engine's prefix cache gives a follow-up: encoder output and the KV of the whole video cached, only the new tokens prefilled |
| vidchat, first question | vision encoding, the video prefix at the scoring layers, attention selection, prefill of the kept tokens |
| vidchat, follow-up | selection from the cached prefix (new tokens only), prefill of the kept tokens (the exact path) |
| vidchat, follow-up, kept_tokens="cached" | the approximate path: the kept tokens' KV read from a full-depth prefix, new tokens only |

TTFT is the time to the first generated token. Writes bench/results/follow_up.json.

    python bench/follow_up.py [--runs 3] [--frames 8] [--size 448x252]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.selector import vanilla_first_token  # noqa: E402
from vidchat.selector import SelectorSettings, select  # noqa: E402
from vidchat.testing.models import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, build_qwen3_vl  # noqa: E402
from vidchat.testing.videos import write_video  # noqa: E402
from vidchat.video import SamplingConfig, sample  # noqa: E402
from vidchat.vlm import Turn, VideoLLM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "follow_up.json"
FIRST, FOLLOW_UP = "Where is the red square?", "What does it do next?"
ANSWER = "The red square moves from the left to the right between 00:01.0 and 00:04.5."


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="448x252", help="video size WxH")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="vidchat-bench-"))
    width, height = (int(v) for v in args.size.split("x"))
    video = write_video(work / "shapes.mp4", n_frames=args.frames * 5, fps=10.0, size=(width, height))
    clip = sample(video.path, SamplingConfig(fps=2.0, max_frames=args.frames))
    folder = build_qwen3_vl(work / "model", text=QWEN3_VL_2B_TEXT, vision=QWEN3_VL_2B_VISION)
    llm = VideoLLM.from_pretrained(str(folder))
    config = llm.model.config.text_config
    settings = SelectorSettings()
    layer = settings.scoring_layer_of(llm)
    history = [Turn(FIRST, ANSWER)]
    tokens = llm._encode(clip, None)
    full_prefix = llm.video_prefix(tokens)  # a serving engine's prefix cache, and vidchat's approximate path

    def vidchat_first():
        fresh = llm._encode(clip, None)  # the vision encoder runs on a new video
        prefix = llm.video_prefix(fresh, layers=layer + 1)
        chosen = select(llm, fresh, [], FIRST, settings, prefix=prefix)
        prompt = llm.prompt(fresh, [], FIRST).keep(chosen.keep_indices)
        next(llm._decode(fresh, prompt, 1))
        return prefix, chosen

    samples = []
    for _ in range(args.runs):
        vanilla_first_s, _ = timed(lambda: vanilla_first_token(llm, clip, [], FIRST))
        vanilla_follow_s, _ = timed(lambda: vanilla_first_token(llm, clip, history, FOLLOW_UP))
        full = llm.prompt(tokens, history, FOLLOW_UP)
        reuse_s, _ = timed(lambda: next(llm._decode(tokens, full, 1, full_prefix.cache(config))))
        first_s, (prefix, _) = timed(vidchat_first)

        def vidchat_follow_up():
            chosen = select(llm, tokens, history, FOLLOW_UP, settings, prefix=prefix)
            next(llm._decode(tokens, full.keep(chosen.keep_indices), 1))
            return chosen

        follow_s, chosen = timed(vidchat_follow_up)

        def cached_follow_up():
            keep = select(llm, tokens, history, FOLLOW_UP, settings, prefix=full_prefix).keep_indices
            cache = full_prefix.cache(config, keep=full.kept(keep)[: full.prefix_length])
            next(llm._decode(tokens, full.keep(keep), 1, cache))

        cached_s, _ = timed(cached_follow_up)
        samples.append(dict(
            vanilla_first_ttft_s=vanilla_first_s, vanilla_follow_up_ttft_s=vanilla_follow_s,
            prefix_reuse_follow_up_ttft_s=reuse_s, first_ttft_s=first_s, follow_up_ttft_s=follow_s,
            cached_kept_follow_up_ttft_s=cached_s, kept_tokens=len(chosen.keep_indices),
        ))  # fmt: skip
        print(json.dumps(samples[-1]), flush=True)

    med = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    n = len(tokens.embeddings)
    row = {
        "architecture": "Qwen3-VL-2B widths, 28/28 LLM layers, 24/24 vision layers, random weights",
        "layers": config.num_hidden_layers,
        "vision_layers": llm.model.config.vision_config.depth,
        "frames": len(clip.times_s),
        "frame_size": list(clip.frames.shape[1:3][::-1]),
        "visual_tokens": n,
        "kept_tokens": int(med["kept_tokens"]),
        "dropped_fraction": 1 - med["kept_tokens"] / n,
        "prefix_tokens": full_prefix.length,
        "scoring_layer": layer,
        **{k: v for k, v in med.items() if k != "kept_tokens"},
        "follow_up_ttft_ratio": med["follow_up_ttft_s"] / med["vanilla_follow_up_ttft_s"],
        "first_ttft_ratio": med["first_ttft_s"] / med["vanilla_first_ttft_s"],
        "cached_kept_follow_up_ttft_ratio": med["cached_kept_follow_up_ttft_s"] / med["vanilla_follow_up_ttft_s"],
        "follow_up_vs_prefix_reuse": med["follow_up_ttft_s"] / med["prefix_reuse_follow_up_ttft_s"],
        "runs": args.runs,
    }
    print(f"{row['architecture']}; {row['frames']} frames of {row['frame_size'][0]}x{row['frame_size'][1]}, "
          f"{n} visual tokens, {row['kept_tokens']} kept ({row['dropped_fraction']:.0%} dropped); medians of "
          f"{args.runs} runs; CPU, {torch.get_num_threads()} threads")
    for label, key in [
        ("vanilla, first question", "vanilla_first_ttft_s"),
        ("vanilla, follow-up (re-encodes)", "vanilla_follow_up_ttft_s"),
        ("vanilla with prefix reuse, follow-up", "prefix_reuse_follow_up_ttft_s"),
        ("vidchat, first question", "first_ttft_s"),
        ("vidchat, follow-up (exact)", "follow_up_ttft_s"),
        ("vidchat, follow-up (kept_tokens=cached)", "cached_kept_follow_up_ttft_s"),
    ]:
        print(f"{label:<44} {med[key]:>8.2f} s")
    print(f"follow_up_ttft_ratio {row['follow_up_ttft_ratio']:.3f}, first_ttft_ratio {row['first_ttft_ratio']:.3f}, "
          f"cached path {row['cached_kept_follow_up_ttft_ratio']:.3f}, "
          f"follow-up / prefix reuse {row['follow_up_vs_prefix_reuse']:.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    document = {"torch": torch.__version__, "device": "cpu", "row": row, "samples": samples}
    RESULTS.write_text(json.dumps(document, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
