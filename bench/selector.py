"""What the query-aware token selector saves, on a real-width architecture with random weights.

Qwen3-VL-2B widths (LLM 2048 wide, vision 1024 wide) with a quarter of each tower's layers (7/28 LLM,
6/24 vision), so that the proportions between vision encoding, scoring and prefill are those of the
released model. A 64-frame clip of a synthetic video. Measured side by side in one run, medians of runs:

- visual tokens before / after selection (default settings);
- prefill of the first question: full prompt vs selection (scoring pass + prefill of the kept tokens);
- time to first token of a follow-up question: vidchat (cached visual tokens + selection) vs the plain
  transformers path (processor + generate on the whole conversation, re-encoding the video every turn).

    python bench/selector.py [--runs 3] [--frames 64] [--text-layers 7] [--vision-layers 6] [--size 448x252]
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

from vidchat.selector import SelectorSettings, select  # noqa: E402
from vidchat.testing.models import QWEN3_VL_2B_TEXT, QWEN3_VL_2B_VISION, build_qwen3_vl  # noqa: E402
from vidchat.testing.videos import write_video  # noqa: E402
from vidchat.video import SamplingConfig, sample  # noqa: E402
from vidchat.vlm import Turn, VideoLLM  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "selector.json"
FIRST, FOLLOW_UP = "Where is the red square?", "What does it do next?"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def first_token(llm: VideoLLM, tokens, prompt) -> int:
    return next(llm._decode(tokens, prompt, 1))


def vanilla_first_token(llm: VideoLLM, clip, history, question) -> None:
    """The plain transformers path: processor on text + frames, then generate (vision encoder included)."""
    text = llm.processor.apply_chat_template(llm.messages(history, question), add_generation_prompt=True)
    inputs = llm.processor(
        text=[text], videos=[list(clip.frames)], video_metadata=[llm._video_metadata(clip.times_s, clip)],
        do_sample_frames=False, cap_pixels_per_frame=True, return_tensors="pt",
    )
    llm.model.generate(**inputs, max_new_tokens=1, do_sample=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--text-layers", type=int, default=7)
    parser.add_argument("--vision-layers", type=int, default=6)
    parser.add_argument("--size", default="448x252", help="video size WxH")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="vidchat-bench-"))
    width, height = (int(v) for v in args.size.split("x"))
    video = write_video(work / "shapes.mp4", n_frames=args.frames * 5, fps=10.0, size=(width, height))
    clip = sample(video.path, SamplingConfig(fps=2.0, max_frames=args.frames))
    deepstack = [i for i in (1, 3, 5) if i < args.vision_layers]
    folder = build_qwen3_vl(
        work / "model",
        text={**QWEN3_VL_2B_TEXT, "num_hidden_layers": args.text_layers},
        vision={**QWEN3_VL_2B_VISION, "depth": args.vision_layers, "deepstack_visual_indexes": deepstack},
    )
    llm = VideoLLM.from_pretrained(str(folder))
    settings = SelectorSettings()
    encode_s, tokens = timed(lambda: llm.encode(clip))
    history = [Turn(FIRST, "The red square moves from the left to the right between 00:01.0 and 00:04.5.")]

    samples = []
    for _ in range(args.runs):
        full_prompt = llm.prompt(tokens, [], FIRST)
        full_s, _ = timed(lambda: first_token(llm, tokens, full_prompt))
        select_s, selection = timed(lambda: select(llm, tokens, [], FIRST, settings))
        kept_s, _ = timed(lambda: first_token(llm, tokens, llm.prompt(tokens, [], FIRST).keep(selection.keep_indices)))

        def vidchat_follow_up():
            chosen = select(llm, tokens, history, FOLLOW_UP, settings)
            cached = llm.encode(clip)  # from the cache: no vision encoder
            return first_token(llm, cached, llm.prompt(cached, history, FOLLOW_UP).keep(chosen.keep_indices))

        ours_s, _ = timed(vidchat_follow_up)
        vanilla_s, _ = timed(lambda: vanilla_first_token(llm, clip, history, FOLLOW_UP))
        samples.append(dict(full_prefill_s=full_s, select_s=select_s, kept_prefill_s=kept_s,
                            follow_up_ttft_s=ours_s, vanilla_follow_up_ttft_s=vanilla_s, kept=len(selection.keep_indices)))

    med = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    n = len(tokens.embeddings)
    row = {
        "architecture": f"Qwen3-VL-2B width, {args.text_layers}/28 LLM layers, {args.vision_layers}/24 vision layers",
        "frames": len(clip.times_s),
        "frame_size": list(clip.frames.shape[1:3][::-1]),
        "visual_tokens": n,
        "kept_tokens": int(med["kept"]),
        "dropped_fraction": 1 - med["kept"] / n,
        "encode_s": encode_s,
        **med,
        "prefill_ratio": (med["select_s"] + med["kept_prefill_s"]) / med["full_prefill_s"],
        "follow_up_ttft_ratio": med["follow_up_ttft_s"] / med["vanilla_follow_up_ttft_s"],
        "runs": args.runs,
        "scoring_layer": args.text_layers // 4,
    }
    print(f"{row['architecture']}; {row['frames']} frames of {row['frame_size'][0]}x{row['frame_size'][1]}; "
          f"medians of {args.runs} runs; CPU, {torch.get_num_threads()} threads")
    print(f"{'visual tokens':<44} {n:>8} -> {row['kept_tokens']} kept ({row['dropped_fraction']:.1%} dropped)")
    print(f"{'vision encoding (once per video)':<44} {encode_s:>8.2f} s")
    print(f"{'first question, full prompt prefill':<44} {med['full_prefill_s']:>8.2f} s")
    print(f"{'first question, scoring + kept prefill':<44} {med['select_s'] + med['kept_prefill_s']:>8.2f} s"
          f"  ({med['select_s']:.2f} + {med['kept_prefill_s']:.2f}; ratio {row['prefill_ratio']:.2f})")
    print(f"{'follow-up TTFT, cache + selection':<44} {med['follow_up_ttft_s']:>8.2f} s")
    print(f"{'follow-up TTFT, processor + generate':<44} {med['vanilla_follow_up_ttft_s']:>8.2f} s"
          f"  (ratio {row['follow_up_ttft_ratio']:.3f})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"torch": torch.__version__, "device": "cpu", "row": row, "samples": samples}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
