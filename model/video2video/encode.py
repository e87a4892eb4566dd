"""Frames to latents with the VAE, bounded in memory like decoding (media/decode.py).

Frames go through the encoder `frames_per_chunk` at a time, converted to the VAE's range chunk by
chunk (the whole video stays in its own dtype, uint8 for files); large frames are encoded in
overlapping tiles (diffusers' tiled encode). The latent is the encoder's mean, not a sample, so
the same input always gives the same latents.
"""

from __future__ import annotations

import torch

from ..media.decode import _decoding_dtype, _pixels_per_latent, _tiling, wants_tiling, TILE_SIZE
from ..errors import InputError

MIN_SIZE = 64  # pixels: smaller inputs have too few latents for the UNet's three levels


def check_init_frames(frames: torch.Tensor, count: int, height: int, width: int, name: str = "init frames") -> None:
    """InputError unless `frames` (n, height, width, 3) uint8 or float 0..1 fit a `count`-frame video."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(name, f"expected (frames, height, width, 3), got {shape}")
    if frames.shape[0] == 0:
        raise InputError(name, "holds no frames")
    if frames.shape[0] not in (1, count):
        raise InputError(name, f"{frames.shape[0]} frames for a {count}-frame video: give one per frame, or one image")
    if tuple(frames.shape[1:3]) != (height, width):
        raise InputError(name, f"are {frames.shape[2]}x{frames.shape[1]}, the video {width}x{height}")
    if frames.is_floating_point() and not torch.isfinite(frames).all():
        raise InputError(name, "hold NaN or infinite values")


@torch.no_grad()
def encode_frames(vae, frames: torch.Tensor, frames_per_chunk: int = 4, tiled: bool | str = "auto",
                  tile_size: int = TILE_SIZE) -> torch.Tensor:
    """(frames, H, W, 3) uint8 or float 0..1 -> latents (1, 4, frames, H/8, W/8), float32, on the VAE's device."""
    if frames_per_chunk < 1:
        raise InputError("frames_per_chunk", f"must be at least 1, got {frames_per_chunk}")
    count, height, width, _ = frames.shape
    scale = 1 / 255 if frames.dtype == torch.uint8 else 1.0
    downscale = _pixels_per_latent(vae)
    latents = torch.empty(1, vae.config.latent_channels, count, height // downscale, width // downscale,
                          device=vae.device)
    with _decoding_dtype(vae) as dtype, _tiling(vae, wants_tiling(tiled, height, width), tile_size):
        for start in range(0, count, frames_per_chunk):
            chunk = frames[start:start + frames_per_chunk].to(vae.device)
            images = (chunk.float() * scale * 2 - 1).permute(0, 3, 1, 2).to(dtype)  # (chunk, 3, H, W) in -1..1
            mean = vae.encode(images).latent_dist.mean  # (chunk, 4, h, w)
            latents[0, :, start:start + len(chunk)] = mean.float().transpose(0, 1) * vae.config.scaling_factor
    return latents
