"""GroupNorm on frames folded into the batch, split into statistics and application.

The original's resnets apply GroupNorm to 5D (batch, channels, frames, h, w) tensors, so each
group's statistics span all frames of a video; `FrameGroupNorm(x, frames)` does that on the
folded (batch*frames, channels, h, w) layout, and with frames=1 it is the ordinary per-image
GroupNorm. Splitting it in two steps lets callers
- normalise a large input piece by piece (`pieces.py`) with statistics of the whole, and
- normalise an input given as channel parts (an up block's activation and its skip connection)
  that is never concatenated as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics span all frames of each video (the original's 5D GroupNorm)."""

    def scale_shift(self, parts: Sequence[torch.Tensor], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image (scale, shift), each (batch*frames, channels, 1, 1), with norm(x) = x * scale + shift.

        `parts` are the input's channel blocks in order (one tensor, or several that would be
        concatenated on the channel axis); groups may straddle the parts.
        """
        batch_frames = parts[0].shape[0]
        batch = batch_frames // frames
        means, variances = [], []
        for part in parts:
            mean, variance = channel_moments(part, batch, frames)
            means.append(mean)
            variances.append(variance)
        # Per-channel statistics (equal counts) combine exactly into per-group ones.
        mean = torch.cat(means, dim=1).unflatten(1, (self.num_groups, -1))  # (batch, groups, c/groups)
        variance = torch.cat(variances, dim=1).unflatten(1, (self.num_groups, -1))
        group_mean = mean.mean(-1, keepdim=True)
        group_variance = (variance + (mean - group_mean).square()).mean(-1, keepdim=True)
        rstd = torch.rsqrt(group_variance + self.eps)
        # Fold the normalisation and the affine into one per-channel scale and shift.
        scale = (self.weight.float().view(1, self.num_groups, -1) * rstd).flatten(1)  # (batch, channels)
        shift = self.bias.float() - group_mean.flatten(1).repeat_interleave(mean.shape[-1], 1) * scale
        dtype = parts[0].dtype
        scale = scale.to(dtype).repeat_interleave(frames, 0)[:, :, None, None]  # (batch*frames, channels, 1, 1)
        shift = shift.to(dtype).repeat_interleave(frames, 0)[:, :, None, None]
        return scale, shift

    @staticmethod
    def apply(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Normalise x (or a piece of it, with the matching rows of scale and shift)."""
        return torch.addcmul(shift, x, scale)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.apply(x, *self.scale_shift([x], frames))

    def train_forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """The same result with plain autograd ops (train mode): statistics over all `frames` of each video."""
        return frame_group_norm(x, frames, self.num_groups, self.weight, self.bias, self.eps)


def channel_moments(x: torch.Tensor, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each video's per-channel (mean, biased variance) over its frames and pixels, in float32:
    x (batch*frames, c, h, w) -> two (batch, c) tensors."""
    videos = x.unflatten(0, (batch, frames))
    if x.dtype in (torch.bfloat16, torch.float16) and x.device.type == "cpu":
        # ATen's CPU batch norm reads half-precision input and accumulates in float32, returning float32
        # statistics when its weight is float32. var_mean of a float32 copy, the other way to statistics
        # in float32, pays for the copy and for var_mean's per-element double-precision loop: about 15x
        # the time (README, "Where a step's time goes"). The normalised output it also writes is dropped.
        ones = torch.ones(x.shape[1], device=x.device)
        stats = [torch.native_batch_norm(video, ones, None, None, None, True, 0.0, 0.0)[1:] for video in videos]
        # eps 0: invstd = 1/sqrt(variance), except that ATen gives 0 for a constant channel (variance 0).
        invstd = torch.stack([invstd for _, invstd in stats])
        variance = torch.where(invstd > 0, invstd.pow(-2), 0.0)
        return torch.stack([mean for mean, _ in stats]), variance
    # float32 (and other devices): var_mean one video at a time, the upcast copy (if any) one video large.
    # (batch, frames, c, h*w); channels-last inputs give a strided view, not a copy.
    stats = [torch.var_mean(video.flatten(2).float(), dim=(0, 2), unbiased=False) for video in videos]
    return torch.stack([mean for _, mean in stats]), torch.stack([var for var, _ in stats])


def frame_group_norm(x: torch.Tensor, frames: int, num_groups: int, weight: torch.Tensor | None,
                     bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """GroupNorm of (videos*frames, c, h, w) with statistics over each video's frames, in plain ops
    and with any norm's weights (the trainer's graph; a host UNet's resnets on the native path)."""
    if frames == 1:
        return F.group_norm(x, num_groups, weight, bias, eps)
    # (batch*frames, c, h, w) -> (batch, c, frames, h, w): the original's 5D GroupNorm
    videos = x.unflatten(0, (-1, frames)).transpose(1, 2)
    out = F.group_norm(videos, num_groups, weight, bias, eps)
    return out.transpose(1, 2).flatten(0, 1)
