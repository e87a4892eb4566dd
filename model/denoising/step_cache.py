"""Step caching (DeepCache, arXiv:2312.00858): reuse the UNet's deep features between steps.

From one denoising step to the next the deep, low-resolution part of the UNet changes little, so
its result can be kept and reused. Every `interval`-th step (0, N, 2N, ...) the whole UNet runs and
the input of its outermost up block is kept: the deep blocks' contribution, at the latents' full
resolution. The N-1 steps between run only the outermost pair of blocks on fresh input: conv_in,
the first down block's resnets, spatial and temporal layers (not its downsampler, which feeds only
the deep blocks), then the last up block on the kept features and the fresh skips, and conv_out.

- interval 1 is the plain UNet: no cache is made, results are today's bit for bit.
- Refresh steps run `unet(...)` itself, so their output is exactly the uncached one; only the
  steps in between differ (how much, on real weights, is unmeasured: see README).
- Context windows: one entry per window (its frames and shape). A window not seen at the last
  refresh step (the "uniform" schedule moves windows from step to step) is assembled frame by
  frame from the windows that held its frames then; a frame held by none runs the whole UNet.
- Classifier-free guidance: both halves are one batch and share one entry.
- ControlNet: its residuals still come every step; the shallow skips take theirs fresh, the deep
  ones were added when the features were computed.

Memory: the cache holds, per frame and guidance half, channels[1] x h/8 x w/8 values of the
UNet's dtype (640 x 64 x 64 x 2 bytes = 5 MiB per frame at 512x512 in bf16), for every window.
"""

from __future__ import annotations

import torch

from ..errors import InputError

MAX_INTERVAL = 1000


def check_interval(value, name: str = "cache_interval") -> int:
    """`value` as a whole number from 1 (off) up; InputError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTERVAL:
        raise InputError(name, f"must be a whole number from 1 (no caching) to {MAX_INTERVAL}: the whole UNet "
                         f"runs every that many steps, got {value!r}")
    return value


class StepCache:
    """Calls the UNet like `unet(sample, timestep, context, pooled, time_ids, **residuals)`,
    running only its outermost blocks on steps between refreshes (see the module docstring).

    `frames` (the video's frame indices of the call, None: all) and `step` ((index, count)) come
    from the sampling loop; without `step` every call runs the whole UNet. `full_calls` and
    `shallow_calls` count the two kinds of call.
    """

    def __init__(self, unet, interval: int):
        self.unet = unet
        self.interval = check_interval(interval)
        self.entries: dict[tuple, torch.Tensor] = {}  # (frames, shape) -> deep features (batch*frames, c, h, w)
        self.refreshed_at: int | None = None
        self.full_calls = 0
        self.shallow_calls = 0

    def __call__(self, sample: torch.Tensor, timestep, context, pooled, time_ids, frames=None, step=None,
                 **residuals) -> torch.Tensor:
        batch, _, count, height, width = sample.shape
        frames = tuple(range(count)) if frames is None else tuple(frames)
        shape = (batch, height, width)
        if step is None:
            return self.unet(sample, timestep, context, pooled, time_ids, **residuals)
        index = step[0]
        if index % self.interval == 0 and self.refreshed_at != index:
            self.entries.clear()  # a refresh step: every window computes its features afresh
            self.refreshed_at = index
        deep = None if index % self.interval == 0 else self._lookup(frames, shape)
        if deep is None:
            self.full_calls += 1
            out, deep = self._full(sample, timestep, context, pooled, time_ids, residuals)
            self.entries[(frames, shape)] = deep
            return out
        self.shallow_calls += 1
        return self._shallow(sample, timestep, context, pooled, time_ids, deep, residuals)

    def _lookup(self, frames: tuple, shape: tuple) -> torch.Tensor | None:
        """The kept features of these frames: the window's own, or gathered frame by frame."""
        if (frames, shape) in self.entries:
            return self.entries[(frames, shape)]
        where = {}  # video frame -> (features, position in its window)
        for (held, held_shape), deep in self.entries.items():
            if held_shape == shape:
                for position, frame in enumerate(held):
                    where.setdefault(frame, (deep, position, len(held)))
        if not all(frame in where for frame in frames):
            return None
        rows = []  # (batch*frames, ...) with frames inner, as the UNet folds them
        for b in range(shape[0]):
            for frame in frames:
                deep, position, length = where[frame]
                rows.append(deep[b * length + position])
        return torch.stack(rows)

    def _full(self, sample, timestep, context, pooled, time_ids, residuals):
        """The whole UNet, keeping the input of its last up block (a reference: the UNet does not
        write into it, and drops it after that block)."""
        kept = []
        handle = self.unet.up_blocks[-1].register_forward_pre_hook(lambda module, args: kept.append(args[0]))
        try:
            out = self.unet(sample, timestep, context, pooled, time_ids, **residuals)
        finally:
            handle.remove()
        return out, kept[0]

    @torch.no_grad()
    def _shallow(self, sample, timestep, context, pooled, time_ids, deep, residuals):
        """HotshotXLUNet.forward for the outermost blocks only, on `deep` for the rest."""
        unet = self.unet
        batch, _, frames, height, width = sample.shape
        temporal = frames > 1
        dtype = unet.dtype
        temb = unet._embed_time(timestep, pooled.shape[0], pooled, time_ids)  # rows per image with prompt travel
        context = context.to(dtype)
        x = sample.to(dtype).transpose(1, 2).reshape(batch * frames, -1, height, width)
        x = unet.conv_in(x)
        skips = [x]
        block = unet.down_blocks[0]
        for i, resnet in enumerate(block.resnets):  # DownBlock.forward without the downsampler
            x = resnet(x, temb, frames)
            if block.attentions is not None:
                x = block.attentions[i](x, context, frames, out=x)
            if temporal:
                x = block.temporal_attentions[i](x, frames, out=x)
            skips.append(x)
        down_residuals = residuals.get("down_residuals")
        if down_residuals is not None:  # the shallow skips come first in the ControlNet's list
            skips = [s.add_(r.to(dtype)) for s, r in zip(skips, down_residuals)]
        x = unet.up_blocks[-1](deep, skips, temb, context, frames, temporal, None)
        x = unet._out(x, frames)
        return x.view(batch, frames, -1, height, width).transpose(1, 2)
