"""The LATENT conversion both ways: a ComfyUI LATENT holds raw SDXL VAE latents as a batch of frames,
(frames, 4, height/8, width/8); Hotshot-XL samples (1, 4, frames, height/8, width/8) latents times the VAE's
scaling factor."""

from __future__ import annotations

from . import host
from ..model.errors import InputError

LATENT_CHANNELS = 4


def to_comfy_latent(latents, scale: float) -> dict:
    """(1, 4, frames, h, w) sampling latents -> a ComfyUI LATENT of raw latents (frames, 4, h, w)."""
    samples = (latents[0].transpose(0, 1).float() / scale).contiguous()
    return {"samples": samples.to(host.intermediate_device())}


def from_comfy_latent(latent, scale: float, input_name: str = "samples"):
    """A ComfyUI LATENT (frames, 4, h, w), or (1, 4, frames, h, w) -> (1, 4, frames, h, w) sampling latents."""
    import torch

    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise InputError(input_name, f"expected a LATENT (a dict holding a 'samples' tensor), got {type(latent).__name__}")
    if samples.ndim == 4:
        video = samples.transpose(0, 1).unsqueeze(0)  # (frames, c, h, w) -> (1, c, frames, h, w)
    elif samples.ndim == 5 and samples.shape[0] == 1:
        video = samples
    else:
        raise InputError(input_name, "expected video latents as a batch of frames (frames, 4, height/8, width/8), "
                         f"got shape {tuple(samples.shape)}")
    if video.shape[1] != LATENT_CHANNELS:
        raise InputError(input_name, f"expected SDXL latents with {LATENT_CHANNELS} channels, got {video.shape[1]} "
                         "(latents of another model family cannot be decoded by the SDXL VAE)")
    if video.shape[2] < 1 or not video.is_floating_point():
        raise InputError(input_name, f"expected float latents with at least one frame, got {tuple(samples.shape)} "
                         f"{samples.dtype}")
    return video.float() * scale
