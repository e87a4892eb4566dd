"""The configs of the released Hotshot-XL components, shipped with the package as plain JSON.

A user who has only an SDXL single-file checkpoint and the temporal-layers file has no model
folder, hence no `config.json` files. `model/files/configs/` holds them, taken from the release
(hotshotco/Hotshot-XL, which uses SDXL base 1.0's VAE and text encoders unchanged):

    unet            Hotshot-XL UNet3DConditionModel (SDXL block layout plus temporal layers)
    vae             SDXL AutoencoderKL (scaling_factor 0.13025, force_upcast)
    text_encoder    CLIP ViT-L/14 text tower, transformers CLIPTextModel
    text_encoder_2  OpenCLIP ViT-bigG/14 text tower, transformers CLIPTextModelWithProjection
    scheduler       EulerAncestralDiscreteScheduler, the release's sampler
    model_index     pipeline-level facts (`force_zeros_for_empty_prompt`: true)

This module itself needs only the standard library (and errors.py).
"""

from __future__ import annotations

import json
from importlib import resources

from ..errors import InputError

SHIPPED_CONFIGS = ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler", "model_index")


def shipped_config(name: str) -> dict:
    """A fresh copy of the shipped config `name` (one of SHIPPED_CONFIGS), safe to modify."""
    if name not in SHIPPED_CONFIGS:
        raise InputError("name", f"no shipped config {name!r}; expected one of {', '.join(SHIPPED_CONFIGS)}")
    # `__package__` rather than a fixed name: ComfyUI imports the pack under its folder's name.
    text = resources.files(__package__).joinpath("configs", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)
