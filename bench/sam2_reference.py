"""SAM 2 in vidchat (transformers' Sam2VideoModel through `MaskDecoder`) against Meta's own implementation.

Both hold the same weights: random sam2.1-hiera-tiny weights are drawn once by Meta's `build_sam2_video_predictor`
(the object-score head set to "present", so that every frame is tracked), saved in Meta's checkpoint layout
(`{"model": state_dict}`), then converted with transformers' own key mapping (`replace_keys` of
`src/transformers/models/sam2/convert_sam2_to_hf.py`, which the installed wheel does not ship: give its path with
`--convert-script`) and saved with `save_pretrained`; vidchat loads that folder through `MaskDecoder.from_pretrained`
as it loads a downloaded checkpoint.

Both are prompted with the same box on the first frame of the same 30-frame clip and track it to the end. Meta's
predictor gets the very input tensors vidchat's processor makes (its init_state reads a JPEG folder of the frames;
the images and the image-feature cache are then replaced), so the comparison is of the models, not of two resizers.
vidchat's time includes its preprocessing; Meta's does not. Masks are compared per frame at the video's size
(IoU; 1 where both are empty). Side by side in one process, alternating, medians of `--runs` after a warm-up on a
short clip. Writes bench/results/sam2_reference.json.

Meta's code comes from PyPI in this bench only: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2`
(without its CUDA extension the predictor skips `fill_hole_area`, which transformers does not have either).

    python bench/sam2_reference.py --convert-script PATH [--runs 3] [--frames 30] [--sizes 512 1024]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import Sam2VideoModel  # noqa: E402

from vidchat.segment import FramePrompt, MaskDecoder, ObjectPrompt  # noqa: E402
from vidchat.testing.sam2 import build_sam2_video, hiera_tiny_config  # noqa: E402
from vidchat.testing.videos import RED_SQUARE, write_video  # noqa: E402
from vidchat.video import SamplingConfig, sample  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sam2_reference.json"
META_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def meta_predictor(size: int, checkpoint: Path | None):
    """Meta's SAM2VideoPredictor at `size`² input, random weights (checkpoint None) or the saved ones."""
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model.image_size={size}"]
    for attention in ("self_attention", "cross_attention"):  # the memory attention's RoPE grid is the 1/16 map
        overrides.append(f"++model.memory_attention.layer.{attention}.feat_sizes=[{size // 16},{size // 16}]")
    return build_sam2_video_predictor(
        META_CONFIG, str(checkpoint) if checkpoint else None, device="cpu", hydra_overrides_extra=overrides
    )


def shared_weights(work: Path, size: int, convert_script: Path) -> tuple[object, Path]:
    """Meta's predictor and a vidchat model folder holding the same random weights."""
    torch.manual_seed(0)
    predictor = meta_predictor(size, None)
    head = predictor.sam_mask_decoder.pred_obj_score_head.layers[-1]  # random weights may say "no object"
    head.weight.data.zero_()
    head.bias.data.fill_(10.0)
    checkpoint = work / f"meta-sam2.1-hiera-tiny-{size}.pt"
    torch.save({"model": predictor.state_dict()}, checkpoint)
    predictor = meta_predictor(size, checkpoint)  # loaded back as Meta's tools load a checkpoint

    spec = importlib.util.spec_from_file_location("convert_sam2_to_hf", convert_script)
    conversion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conversion)
    converted = conversion.replace_keys(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    converted = {_mask_downsampler_key(key): value for key, value in converted.items()}
    folder = build_sam2_video(work / f"hf-sam2.1-hiera-tiny-{size}", hiera_tiny_config(size))
    model = Sam2VideoModel.from_pretrained(folder)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    ignored = model._keys_to_ignore_on_load_unexpected or ()
    unexpected = [key for key in unexpected if not any(re.search(pattern, key) for pattern in ignored)]
    if missing or unexpected:
        raise SystemExit(f"conversion left missing keys {missing} and unexpected keys {unexpected}")
    model.save_pretrained(folder)
    return predictor, folder


def _mask_downsampler_key(key: str) -> str:
    """The memory encoder's mask downsampler under transformers' current names, which the conversion script in
    the public index predates: Meta's `encoder.{3i}` / `encoder.{3i+1}` (conv, LayerNorm2d of stage i) and
    `encoder.12` (the final 1×1 conv) are `layers.{i}.conv`, `layers.{i}.layer_norm` and `final_conv`."""
    found = re.match(r"(memory_encoder\.mask_downsampler\.)encoder\.(\d+)\.(.+)", key)
    if not found:
        return key
    prefix, index, rest = found.group(1), int(found.group(2)), found.group(3)
    if index == 12:
        return f"{prefix}final_conv.{rest}"
    return f"{prefix}layers.{index // 3}.{('conv', 'layer_norm')[index % 3]}.{rest}"


def vidchat_masks(decoder: MaskDecoder, clip, box) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    state = decoder.init_state(clip)
    prompt = ObjectPrompt(1, RED_SQUARE, (FramePrompt(float(clip.times_s[0]), box=box),))
    masklet = decoder.track(state, [prompt])[1]
    elapsed = time.perf_counter() - start
    state.close()
    return elapsed, masklet.masks()  # [T, H, W] bool, source pixels


def reference_masks(predictor, decoder: MaskDecoder, clip, box, frames_dir: Path) -> tuple[float, np.ndarray]:
    state = predictor.init_state(video_path=str(frames_dir))
    # The same input tensors as vidchat's (its processor on the clip's frames), at the source video's size.
    state["images"] = torch.stack([decoder.init_state(clip).frames[i] for i in range(len(clip.times_s))])
    state["video_height"], state["video_width"] = clip.info.height, clip.info.width
    state["cached_features"] = {}  # init_state encoded its own frame 0
    start = time.perf_counter()
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=np.array(box, np.float32))
    masks = np.zeros((len(clip.times_s), clip.info.height, clip.info.width), bool)
    for frame, _, logits in predictor.propagate_in_video(state):
        masks[frame] = (logits[0, 0] > 0).numpy()
    elapsed = time.perf_counter() - start
    predictor.reset_state(state)
    return elapsed, masks


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame IoU of [T, H, W] bool masks; 1 where both are empty."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def write_frames(clip, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def bench_size(work: Path, size: int, clip, warm_clip, box, runs: int, convert_script: Path) -> dict:
    predictor, folder = shared_weights(work, size, convert_script)
    decoder = MaskDecoder.from_pretrained(str(folder))
    frames_dir = write_frames(clip, work / f"frames-{size}")
    warm_dir = write_frames(warm_clip, work / f"warm-frames-{size}")
    vidchat_masks(decoder, warm_clip, box)  # warm-up: oneDNN kernels and the allocator, both sides
    reference_masks(predictor, decoder, warm_clip, box, warm_dir)
    ours, theirs, ious, areas = [], [], [], []
    for _ in range(runs):
        elapsed, mine = vidchat_masks(decoder, clip, box)
        ours.append(elapsed)
        elapsed, reference = reference_masks(predictor, decoder, clip, box, frames_dir)
        theirs.append(elapsed)
        ious.append(iou(mine, reference))
        areas.append(reference.reshape(len(reference), -1).mean(1))
    frames = len(clip.times_s)
    per_frame = np.min(ious, axis=0)  # the worst of the runs, frame by frame
    vidchat_fps = frames / statistics.median(ours)
    reference_fps = frames / statistics.median(theirs)
    return {
        "size": size,
        "frames": frames,
        "runs": runs,
        "mask_iou_min": float(per_frame.min()),
        "mask_iou_mean": float(per_frame.mean()),
        "vidchat_fps": vidchat_fps,
        "reference_fps": reference_fps,
        "fps_ratio": vidchat_fps / reference_fps,
        "per_frame_iou": per_frame.tolist(),
        "reference_mask_area_fraction_mean": float(np.mean(areas)),
        "vidchat_s": ours,
        "reference_s": theirs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convert-script", type=Path, required=True,
                        help="transformers' src/transformers/models/sam2/convert_sam2_to_hf.py")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()
    if not args.convert_script.is_file():
        raise SystemExit(f"No conversion script at {args.convert_script}: clone github.com/huggingface/transformers "
                         "and pass src/transformers/models/sam2/convert_sam2_to_hf.py.")  # fmt: skip
    torch.set_grad_enabled(False)
    work = Path(tempfile.mkdtemp(prefix="vidchat-bench-sam2-reference-"))
    video = write_video(work / "shapes.mp4", n_frames=args.frames, fps=10.0, size=(640, 360))
    clip = sample(video.path, SamplingConfig(fps=10.0, min_frames=1, max_frames=args.frames))
    warm_clip = sample(video.path, SamplingConfig(fps=10.0, min_frames=1, max_frames=3))
    box = tuple(float(v) for v in video.boxes[RED_SQUARE][int(clip.frame_indices[0])])
    rows = []
    for size in args.sizes:
        row = bench_size(work, size, clip, warm_clip, box, args.runs, args.convert_script)
        rows.append(row)
        print(
            f"{size:>5}²  {row['frames']} frames  mask IoU min {row['mask_iou_min']:.4f} mean "
            f"{row['mask_iou_mean']:.4f}  vidchat {row['vidchat_fps']:.3f} frames/s  reference "
            f"{row['reference_fps']:.3f} frames/s  ratio {row['fps_ratio']:.2f}  (reference mask covers "
            f"{row['reference_mask_area_fraction_mean']:.1%} of a frame)",
            flush=True,
        )
    document = {
        "what": "vidchat MaskDecoder vs Meta's SAM2VideoPredictor, same random sam2.1-hiera-tiny weights, CPU fp32",
        "torch": torch.__version__,
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
