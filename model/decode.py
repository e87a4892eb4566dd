"""Latents to frames with the SDXL VAE, a few frames at a time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from .errors import InputError


@contextmanager
def _decoding_dtype(vae):
    """SDXL's VAE overflows in fp16 (its config says `force_upcast`): decode in fp32, then restore."""
    original = vae.dtype
    upcast = original == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae.dtype
    finally:
        if upcast:
            vae.to(original)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, frames_per_chunk: int = 4, tiled: bool = False,
                   callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(1, 4, frames, h, w) latents -> (frames, 8h, 8w, 3) float frames in 0..1 on the CPU.

    Peak memory is bounded by `frames_per_chunk` frames; `tiled` also splits each frame into
    overlapping tiles (diffusers' tiled decode) for large sizes. `callback(done, total)` reports
    progress and may raise to stop.
    """
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise InputError("latents", f"expected (1, channels, frames, height, width), got {tuple(latents.shape)}")
    if frames_per_chunk < 1:
        raise InputError("frames_per_chunk", f"must be at least 1, got {frames_per_chunk}")
    frames = latents.shape[2]
    scaled = latents[0].transpose(0, 1) / vae.config.scaling_factor  # (frames, 4, h, w)
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    pieces = []
    with _decoding_dtype(vae) as dtype:
        for start in range(0, frames, frames_per_chunk):
            chunk = scaled[start:start + frames_per_chunk].to(vae.device, dtype)
            images = vae.decode(chunk).sample  # (chunk, 3, H, W) in -1..1
            pieces.append((images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
            if callback is not None:
                callback(min(start + frames_per_chunk, frames), frames)
    return torch.cat(pieces)
