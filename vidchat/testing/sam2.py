"""SAM 2 video checkpoints with random weights, built offline: a tiny one for tests, the real hiera-tiny for benches.

`build_sam2_video` writes a folder that `Sam2VideoModel.from_pretrained` and `Sam2VideoProcessor.from_pretrained`
load exactly like a downloaded checkpoint, so tests go through `MaskDecoder.from_pretrained` as real weights do.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    Sam2HieraDetConfig,
    Sam2ImageProcessor,
    Sam2VideoConfig,
    Sam2VideoMaskDecoderConfig,
    Sam2VideoModel,
    Sam2VideoProcessor,
    Sam2VideoPromptEncoderConfig,
    Sam2VideoVideoProcessor,
    Sam2VisionConfig,
)


def hiera_tiny_config(image_size: int = 1024) -> Sam2VideoConfig:
    """The sam2.1-hiera-tiny architecture (`Sam2VideoConfig()` defaults) at another input size if asked.

    Feature maps are 1/4, 1/8 and 1/16 of the input; the memory attention's rotary table follows the last.
    """
    if image_size == 1024:
        return Sam2VideoConfig()
    return Sam2VideoConfig(
        vision_config=Sam2VisionConfig(
            backbone_config=Sam2HieraDetConfig(image_size=[image_size, image_size]),
            backbone_feature_sizes=[[image_size // s] * 2 for s in (4, 8, 16)],
        ),
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(image_size=image_size),
        image_size=image_size,
        memory_attention_rope_feat_sizes=[image_size // 16] * 2,
    )


def tiny_sam2_video_config(image_size: int = 128) -> Sam2VideoConfig:
    """A few-layer SAM 2 video model (1.2 M parameters) with every part of the real one.

    Constraints of transformers' implementation kept here: the memory encoder's output is 64 channels (the
    memory attention's key/value width is fixed at 64) and the hidden size is a multiple of it above it (object
    pointers are split into memory-width tokens); no global-attention block may open a Hiera stage.
    """
    backbone = Sam2HieraDetConfig(
        hidden_size=12,
        image_size=[image_size, image_size],
        blocks_per_stage=[1, 2, 2, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[4],
        window_positional_embedding_background_size=[2, 2],
    )
    hidden = 128
    return Sam2VideoConfig(
        vision_config=Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=[96, 48, 24, 12],
            backbone_feature_sizes=[[image_size // s] * 2 for s in (4, 8, 16)],
            fpn_hidden_size=hidden,
        ),
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(
            hidden_size=hidden, image_size=image_size, patch_size=16, mask_input_channels=8
        ),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=hidden, mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32
        ),
        image_size=image_size,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[image_size // 16] * 2,
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64,
    )


def build_sam2_video(folder: str | Path, config: Sam2VideoConfig | None = None, seed: int = 0) -> Path:
    """Save a random-weight SAM 2 video model (default: the tiny test config) and its processor to `folder`."""
    folder = Path(folder)
    config = config or tiny_sam2_video_config()
    torch.manual_seed(seed)
    Sam2VideoModel(config).eval().save_pretrained(folder)
    size = {"height": config.image_size, "width": config.image_size}
    Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=size), video_processor=Sam2VideoVideoProcessor(size=size)
    ).save_pretrained(folder)
    return folder
