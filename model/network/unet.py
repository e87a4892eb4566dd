"""The Hotshot-XL UNet: SDXL's UNet with a temporal layer after every down and up resnet.

It is built for inference: in eval mode `forward` runs without autograd, and the blocks write activations
in place and piece by piece (`pieces.py`) to keep the memory above the weights small. In train mode
(`unet.train()`) it runs each block's `train_forward` instead: the same arithmetic with whole tensors and
out-of-place ops, which autograd differentiates, keeping little for the backward pass (lean.py), with optional
gradient checkpointing per layer.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .blocks import DownBlock, FrameGroupNorm, MidBlock, UpBlock
from .lean import conv, norm_silu, recomputed
from .config import UNetConfig
from ..errors import InputError
from .pieces import pieces, resolve_budget


def set_gradient_checkpointing(unet, enabled: bool = True):
    """Train mode: recompute each spatial transformer's and temporal layer's activations in the backward pass
    instead of keeping them (less memory, more compute; see blocks.py)."""
    unet.gradient_checkpointing = bool(enabled)
    return unet


def _differentiable_in_train_mode(forward):
    """Eval mode: the inference forward below, without autograd. Train mode: `_train_forward`, the
    blocks' plain-op forwards on the same modules, which autograd can differentiate."""

    @functools.wraps(forward)
    def dispatch(self, *args, **kwargs):
        if self.training:
            return self._train_forward(*args, **kwargs)
        with torch.no_grad():
            return forward(self, *args, **kwargs)

    return dispatch


class HotshotXLUNet(nn.Module):
    """Noise prediction for a video latent.

    `forward(sample, timestep, encoder_hidden_states, text_embeds, time_ids)` takes
    sample (batch, 4, frames, h, w), the text states (batch, 77, 2048), the pooled text embedding
    (batch, 1280) and SDXL's six micro-conditioning numbers (batch, 6); it returns the predicted
    noise with the shape of `sample`. A single frame runs the image path: no temporal layers.
    Built in eval mode, where the forward pass runs under `torch.no_grad()`; after `unet.train()`
    it builds the autograd graph instead (`_train_forward`).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        temb_channels = channels[0] * 4

        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_proj = Timesteps(channels[0], config.flip_sin_to_cos, config.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.add_time_proj = Timesteps(config.addition_time_embed_dim, config.flip_sin_to_cos, config.freq_shift)
        self.add_embedding = TimestepEmbedding(config.projection_class_embeddings_input_dim, temb_channels)

        in_channels = channels[0]
        self.down_blocks = nn.ModuleList()
        for index in range(config.num_blocks):
            self.down_blocks.append(DownBlock(index, config, in_channels, temb_channels))
            in_channels = channels[index]
        self.mid_block = MidBlock(config, temb_channels)
        self.up_blocks = nn.ModuleList(UpBlock(index, config, temb_channels) for index in range(config.num_blocks))

        self.conv_norm_out = FrameGroupNorm(config.norm_num_groups, channels[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)
        self.piece_budget: int | str | None = "auto"
        self.train(False)  # inference unless a trainer asks: see _differentiable_in_train_mode

    def set_piece_budget(self, budget: int | str | None) -> "HotshotXLUNet":
        """Largest temporary (bytes) of a layer run piece by piece; None: whole tensors; "auto":
        by device (pieces on CPUs, whole tensors on GPUs). See pieces.py."""
        resolve_budget(budget, torch.device("cpu"))  # validates
        for module in self.modules():
            if hasattr(module, "piece_budget"):
                module.piece_budget = budget
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The dtype activations are computed in: a norm's, as norms are never stored in fp8 (memory/fp8.py)."""
        return self.conv_norm_out.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    def _embed_time(self, timestep, batch: int, text_embeds: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, device=self.device)
        # `batch` rows: one per video, or one per image with per-frame text (prompt travel)
        timestep = timestep.reshape(-1).expand(batch) if timestep.numel() == 1 else \
            timestep.reshape(-1).repeat_interleave(batch // timestep.numel())
        emb = self.time_embedding(self.time_proj(timestep).to(self.dtype))  # (batch, temb)
        time_embeds = self.add_time_proj(time_ids.flatten()).reshape(batch, -1)  # (batch, 6*256)
        added = torch.cat([text_embeds.to(time_embeds.dtype), time_embeds], dim=-1).to(self.dtype)
        return emb + self.add_embedding(added)

    @_differentiable_in_train_mode
    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                text_embeds: torch.Tensor, time_ids: torch.Tensor, temporal: bool | None = None,
                down_residuals: list[torch.Tensor] | None = None,
                mid_residual: torch.Tensor | None = None, motion_scale=None) -> torch.Tensor:
        """`down_residuals` (one per skip, conv_in's first) and `mid_residual`: a ControlNet's
        additions to the skips and to the mid block's output, each (batch*frames, c, h, w) in the
        folded layout below (see controlnet/apply.py). The text inputs may also hold one row per
        image, (batch*frames, ...), frame inner (prompt travel); `motion_scale` scales the temporal
        layers' update: a number (0 skips them, 1 or None is the plain path) or one per frame."""
        if sample.ndim != 5:
            raise InputError("sample", f"expected (batch, channels, frames, height, width), got {tuple(sample.shape)}")
        batch, _, frames, height, width = sample.shape
        temporal = frames > 1 if temporal is None else temporal
        if motion_scale is not None:
            from ..travel.motion import frames_as_images, unet_motion_scale

            on, motion_scale = unet_motion_scale(motion_scale, batch, frames, self.device, self.dtype)
            if not on and frames > 1:  # the SDXL image model frame by frame: each frame a video of its own
                images = frames_as_images(sample, timestep, encoder_hidden_states, text_embeds, time_ids)
                out = self.forward(*images, temporal=False, down_residuals=down_residuals, mid_residual=mid_residual)
                return out.view(batch, frames, -1, height, width).transpose(1, 2)
            temporal = temporal and on
        if temporal and frames > self.config.temporal_max_frames:
            raise InputError(
                "frames", f"{frames} frames in one UNet pass, but the temporal layers know "
                f"{self.config.temporal_max_frames} positions; use context windows for longer videos")

        dtype = self.dtype
        temb = self._embed_time(timestep, text_embeds.shape[0], text_embeds, time_ids)
        context = encoder_hidden_states.to(dtype)

        # (batch, c, frames, h, w) -> (batch*frames, c, h, w): frames folded into the batch.
        x = sample.to(dtype).transpose(1, 2).reshape(batch * frames, -1, height, width)
        x = self.conv_in(x)

        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, context, frames, temporal, motion_scale)
            skips.extend(block_skips)
        if down_residuals is not None:
            # The mid block must see the last skip as it was (it is x itself): add beside it there.
            skips = [s + r.to(dtype) if s is x else s.add_(r.to(dtype)) for s, r in zip(skips, down_residuals)]

        x = self.mid_block(x, temb, context, frames)
        if mid_residual is not None:
            x = x.add_(mid_residual.to(dtype))

        for block in self.up_blocks:
            block_skips = skips[-len(block.resnets):]  # the block pops (and so frees) them as it goes
            del skips[-len(block.resnets):]
            # Sizes not divisible by the total downsampling need the skip's exact size on the way up.
            upsample_size = skips[-1].shape[-2:] if skips and block.upsamplers is not None else None
            x = block(x, block_skips, temb, context, frames, temporal, upsample_size, motion_scale)

        x = self._out(x, frames)
        # (batch*frames, c, h, w) -> (batch, c, frames, h, w)
        return x.view(batch, frames, -1, height, width).transpose(1, 2)

    def _train_forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                       text_embeds: torch.Tensor, time_ids: torch.Tensor, temporal: bool | None = None) -> torch.Tensor:
        """`forward` in train mode: (batch, 4, frames, h, w) -> predicted noise, same shape, through each
        block's `train_forward`; with `gradient_checkpointing` each spatial transformer and temporal layer is
        recomputed in the backward pass."""
        if sample.ndim != 5:
            raise InputError("sample", f"expected (batch, channels, frames, height, width), got {tuple(sample.shape)}")
        batch, _, frames, height, width = sample.shape
        temporal = frames > 1 if temporal is None else temporal
        if temporal and frames > self.config.temporal_max_frames:
            raise InputError("frames", f"{frames} frames in one UNet pass, but the temporal layers know "
                             f"{self.config.temporal_max_frames} positions")

        checkpointing = getattr(self, "gradient_checkpointing", False)
        dtype = self.dtype
        temb = self._embed_time(timestep, batch, text_embeds, time_ids)
        context = encoder_hidden_states.to(dtype)
        # (batch, c, frames, h, w) -> (batch*frames, c, h, w)
        x = conv(self.conv_in, sample.to(dtype).transpose(1, 2).reshape(batch * frames, -1, height, width))

        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block.train_forward(x, temb, context, frames, temporal, checkpointing)
            skips.extend(block_skips)
        x = self.mid_block.train_forward(x, temb, context, frames, checkpointing)
        for block in self.up_blocks:
            count = len(block.resnets)
            block_skips, skips = tuple(skips[-count:]), skips[:-count]
            upsample_size = skips[-1].shape[-2:] if skips and block.upsamplers is not None else None
            x = block.train_forward(x, block_skips, temb, context, frames, temporal, upsample_size, checkpointing)

        x = conv(self.conv_out, recomputed(norm_silu, self.conv_norm_out, x, frames))
        # (batch*frames, c, h, w) -> (batch, c, frames, h, w)
        return x.view(batch, frames, -1, height, width).transpose(1, 2)

    def _out(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Norm, SiLU and conv_out, a few frames at a time: x is wide, the result has 4 channels."""
        images, channels, height, width = x.shape
        scale, shift = self.conv_norm_out.scale_shift([x], frames)
        out = x.new_empty(images, self.conv_out.out_channels, height, width)
        image_bytes = channels * height * width * x.element_size()
        for rows in pieces(images, image_bytes, resolve_budget(self.piece_budget, x.device)):
            out[rows] = self.conv_out(F.silu(self.conv_norm_out.apply(x[rows], scale[rows], shift[rows]), inplace=True))
        return out
