"""One step's context windows shared out among the ranks, blended exactly as one process would.

The single-process loop (context.windowed_predictor) adds each window's weighted prediction into
the blend in window order. Here rank r runs windows r, r + N, r + 2N, ... of N ranks; the weighted
predictions (not partial sums) are all-gathered, and every rank adds all of them in window order
with the same index_add_. Each element of the blend therefore sees the same float additions in
the same order as in one process: the blend, the scheduler step and so the latents are
bit-identical on every rank and to the single-process run (given that each window's UNet call
gives the same bits on every rank, as it does on identical devices). An all-reduce of partial sums
would move less data but add in a different order, so it would only be close.

Per step each rank sends ceil(W / N) window predictions of (batch, 4, length, h/8, w/8) float32
(zero padded so all ranks send the same shape) and receives N - 1 times that: 1.84 MB a window of
8 frames at 1280x720, about 18 MB a step for 19 windows on 2 ranks (README, "Several GPUs").
"""

from __future__ import annotations

import torch

from .group import RankGroup


class WindowShare:
    """Which windows this rank runs, and the exchange that gives every rank the whole blend.

    `sent_bytes` and `received_bytes` count what went through the collectives (for benchmarks).
    """

    def __init__(self, ranks: RankGroup):
        self.ranks = ranks
        self.sent_bytes = 0
        self.received_bytes = 0

    def windows_of_this_rank(self, count: int) -> range:
        """The numbers of the windows this rank runs, of `count`: round robin, so all ranks run
        the same number of windows, give or take one."""
        return range(self.ranks.rank, count, self.ranks.size)

    def blend(self, blended: torch.Tensor, windows, contributions: dict[int, torch.Tensor]) -> None:
        """Add every window's weighted prediction into `blended` (batch, channels, frames, h, w), in
        window order. `contributions` holds this rank's: window number -> (batch, channels, window, h, w)."""
        size, count = self.ranks.size, len(windows)
        per_rank = -(-count // size)
        batch, channels, _, height, width = blended.shape
        # (per_rank, batch, channels, window, h, w): this rank's predictions, zero padded so every
        # rank sends the same shape (all_gather needs it).
        sent = torch.zeros(per_rank, batch, channels, len(windows[0]), height, width, device=self.ranks.transport)
        for slot, number in enumerate(self.windows_of_this_rank(count)):
            sent[slot] = contributions[number]
        gathered = self.ranks.all_gather(sent)
        self.sent_bytes += sent.numel() * sent.element_size()
        self.received_bytes += sent.numel() * sent.element_size() * (size - 1)
        for number, window in enumerate(windows):
            contribution = gathered[number % size][number // size].to(blended.device)
            index = torch.tensor(window, device=blended.device)
            blended.index_add_(2, index, contribution)
