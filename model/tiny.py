"""`tiny-random`: a complete, tiny Hotshot-XL with random weights, built in memory.

It exercises every stage (tokenizers, both text encoders, the UNet with temporal layers, the VAE,
the video writer) in seconds with no files, to check an install. Its output is noise.
"""

from __future__ import annotations

import torch

from .network.config import UNetConfig
from .files.sdxl_configs import shipped_config
from .text.encoders import TextEncoders
from .network.unet import HotshotXLUNet

TEXT_WIDTH = 32  # each text encoder's hidden size; the UNet's context is both, concatenated
TIME_EMBED = 8

TINY_UNET = UNetConfig(
    block_out_channels=(32, 64, 64),
    transformer_layers_per_block=(1, 1, 2),
    attention_heads=(2, 4, 4),
    cross_attention_dim=2 * TEXT_WIDTH,
    addition_time_embed_dim=TIME_EMBED,
    projection_class_embeddings_input_dim=TEXT_WIDTH + 6 * TIME_EMBED,
    sample_size=8,
)
TINY_VAE = {
    "block_out_channels": [8, 16, 32, 32],  # four blocks: latents are 1/8 of the frame, as in SDXL
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "latent_channels": 4,
    "scaling_factor": 0.13025,
}
TINY_TEXT = {
    "hidden_size": TEXT_WIDTH, "intermediate_size": 37, "num_hidden_layers": 3, "num_attention_heads": 4,
    "projection_dim": TEXT_WIDTH, "vocab_size": 514, "max_position_embeddings": 77,
    "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 1,
}


def tiny_random_components(dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0) -> dict:
    """The keyword arguments of HotshotXLPipeline for tiny-random (pipeline.py builds it: this module
    never imports the pipeline, so the two do not import each other)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .text.tokenizers import byte_level_tokenizers

    torch.manual_seed(seed)
    unet = HotshotXLUNet(TINY_UNET)
    vae = AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT, hidden_act="quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_TEXT, hidden_act="gelu"))
    # nn.Module.to, not diffusers' override, which warns about fp32-only modules this VAE lacks.
    modules = [torch.nn.Module.to(m, device, dtype).eval().requires_grad_(False)
               for m in (unet, vae, text_encoder, text_encoder_2)]
    text = TextEncoders(*byte_level_tokenizers(), modules[2], modules[3], force_zeros_for_empty_prompt=True)
    return {"unet": modules[0], "vae": modules[1], "text": text, "scheduler_config": shipped_config("scheduler"),
            "name": "tiny-random"}


def fastest_dtype(device) -> torch.dtype:
    """The dtype `dtype="auto"` gives tiny-random: fp32 on CPUs, where its layers are too narrow for
    bf16 kernels to pay (256x256 steps measured 3-10x slower in bf16 than in fp32, even on a CPU
    with native bf16 instructions); the device's usual default elsewhere."""
    from .memory.precision import default_dtype

    return torch.float32 if torch.device(device).type == "cpu" else default_dtype(torch.device(device))
