"""Latents to frames with the SDXL VAE, a few frames at a time, and in tiles for large frames.

Memory: SDXL's VAE decoder needs about 3.6 KB per output pixel in float32 (measured on the CPU:
1.0 GB more at 512x512 than at 256x256), about 3.4 GB for one 1280x720 frame. Decoding
`frames_per_chunk` frames at a time bounds memory by the chunk, not the video; tiles of
`TILE_SIZE` pixels bound it by the tile, not the frame (about 1 GB per frame of the chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from ..choices import VAE_TILING
from ..errors import InputError

TILE_SIZE = 512  # pixels per tile side: ComfyUI's tiled-decode default; tiles overlap by a quarter
AUTO_TILING_PIXELS = 768 * 768  # "auto" tiles frames with more pixels than this (1280x720 has 921,600)


def wants_tiling(tiled: bool | str, height: int, width: int) -> bool:
    """Whether frames of this size are decoded in tiles: `tiled` is a bool or one of VAE_TILING."""
    if isinstance(tiled, bool):
        return tiled
    if tiled not in VAE_TILING:
        raise InputError("vae_tiling", f"must be one of {', '.join(VAE_TILING)}, got {tiled!r}")
    return tiled == "on" or (tiled == "auto" and height * width > AUTO_TILING_PIXELS)


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


def _pixels_per_latent(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)  # each decoder block but the last upsamples 2x


@contextmanager
def _tiling(vae, on: bool, tile_size: int):
    """diffusers' tiled decode with `tile_size`-pixel tiles, then the VAE's own settings back.

    diffusers sizes tiles from the config's `sample_size` (1024 px for SDXL's VAE, barely smaller
    than a 1280x720 frame; 64 px for the tiny test VAE, hundreds of tiles): we choose instead.
    """
    saved = vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size
    vae.use_tiling = on
    vae.tile_sample_min_size, vae.tile_latent_min_size = tile_size, tile_size // _pixels_per_latent(vae)
    try:
        yield
    finally:
        vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor, frames_per_chunk: int = 4, tiled: bool | str = False,
                   callback: Callable[[int, int], None] | None = None, tile_size: int = TILE_SIZE) -> torch.Tensor:
    """(1, 4, frames, h, w) latents -> (frames, 8h, 8w, 3) float frames in 0..1 on the CPU.

    Peak memory is bounded by `frames_per_chunk` frames; `tiled` (True/False, or "auto", "on",
    "off": see `wants_tiling`) also splits each frame into overlapping tiles of `tile_size` pixels
    (diffusers' tiled decode, blended at the seams). `callback(done, total)` reports progress and
    may raise to stop.
    """
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise InputError("latents", f"expected (1, channels, frames, height, width), got {tuple(latents.shape)}")
    if frames_per_chunk < 1:
        raise InputError("frames_per_chunk", f"must be at least 1, got {frames_per_chunk}")
    downscale = _pixels_per_latent(vae)
    if tile_size < 2 * downscale or tile_size % downscale:
        raise InputError("tile_size", f"must be a multiple of {downscale} pixels, at least {2 * downscale}, "
                         f"got {tile_size}")
    frames, height, width = latents.shape[2], latents.shape[3] * downscale, latents.shape[4] * downscale
    scaled = latents[0].transpose(0, 1) / vae.config.scaling_factor  # (frames, 4, h, w)
    # Filled chunk by chunk: concatenating the chunks at the end would hold the video twice.
    video = torch.empty(frames, height, width, 3)
    with _decoding_dtype(vae) as dtype, _tiling(vae, wants_tiling(tiled, height, width), tile_size):
        for start in range(0, frames, frames_per_chunk):
            chunk = scaled[start:start + frames_per_chunk].to(vae.device, dtype)
            images = vae.decode(chunk).sample  # (chunk, 3, H, W) in -1..1
            video[start:start + len(chunk)] = (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()
            if callback is not None:
                callback(min(start + frames_per_chunk, frames), frames)
    return video
