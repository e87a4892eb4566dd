"""A pipeline's work shared among ranks: what `HotshotXLPipeline.distributed` holds."""

from __future__ import annotations

from .frames import decode_shared
from .group import RankGroup
from .windows import WindowShare


class Distributed:
    """The windows of every step and the decoder's frame chunks, shared among `ranks`."""

    def __init__(self, ranks: RankGroup):
        self.ranks = ranks
        self.windows = WindowShare(ranks)

    def decode(self, vae, latents, frames_per_chunk=4, tiled=False, callback=None):
        return decode_shared(self.ranks, vae, latents, frames_per_chunk, tiled, callback)


def distribute(pipe, ranks: RankGroup | None):
    """Make `pipe` share its context windows and decoding among `ranks` (None: back to one process).

    Every rank must make the same calls with the same arguments; each then gets the same latents
    and frames, those of the single-process run. Returns `pipe`.
    """
    pipe.distributed = None if ranks is None or ranks.size == 1 else Distributed(ranks)
    return pipe
