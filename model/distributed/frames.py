"""VAE decoding shared out among the ranks by frame chunks; every rank gets the whole video.

The chunks are those of the single-process decode (frames 0..c-1, c..2c-1, ...); chunk k is
decoded by rank k mod N with the same decode_latents call, so each frame's pixels are the
single-process ones, bit for bit. The chunks are exchanged a round (one chunk per rank) at a
time, so memory holds N chunks in flight besides the video.
"""

from __future__ import annotations

import torch

from ..media.decode import _pixels_per_latent, decode_latents
from ..errors import InputError
from .group import RankGroup


@torch.no_grad()
def decode_shared(ranks: RankGroup, vae, latents: torch.Tensor, frames_per_chunk: int = 4,
                  tiled: bool | str = False, callback=None) -> torch.Tensor:
    """decode_latents(vae, latents, ...) with the chunks shared out: (frames, 8h, 8w, 3) on every rank."""
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise InputError("latents", f"expected (1, channels, frames, height, width), got {tuple(latents.shape)}")
    if not isinstance(frames_per_chunk, int) or frames_per_chunk < 1:
        raise InputError("frames_per_chunk", f"must be at least 1, got {frames_per_chunk}")
    frames = latents.shape[2]
    scale = _pixels_per_latent(vae)
    height, width = latents.shape[3] * scale, latents.shape[4] * scale
    starts = list(range(0, frames, frames_per_chunk))
    video = torch.empty(frames, height, width, 3)
    for first in range(0, len(starts), ranks.size):  # one round: a chunk for each rank
        sent = torch.zeros(frames_per_chunk, height, width, 3)
        mine = first + ranks.rank
        if mine < len(starts):
            start = starts[mine]
            chunk = decode_latents(vae, latents[:, :, start:start + frames_per_chunk], frames_per_chunk, tiled)
            sent[:len(chunk)] = chunk
        for number, received in enumerate(ranks.all_gather(sent), start=first):
            if number < len(starts):
                start = starts[number]
                count = min(frames_per_chunk, frames - start)
                video[start:start + count] = received[:count].cpu()
        if callback is not None:
            callback(min((first + ranks.size) * frames_per_chunk, frames), frames)
    return video
