"""The UNet's training forward: the same modules and weights, computed with plain autograd ops.

The inference forward (unet.py, blocks.py, temporal.py) writes activations in place, runs large
layers piece by piece into preallocated outputs and runs under `torch.no_grad()`: none of that can
be differentiated. In train mode (`unet.train()`) `HotshotXLUNet.forward` comes here instead:
whole tensors, out-of-place sums and concatenations, the same arithmetic. Gradient checkpointing
(`set_gradient_checkpointing`) recomputes each down, mid and up block in the backward pass
instead of keeping its activations.

Shapes as in the inference path: activations are (batch*frames, channels, height, width).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import InputError


def set_gradient_checkpointing(unet, enabled: bool = True):
    """Recompute each block's activations in the backward pass (less memory, ~1/3 more compute)."""
    unet.gradient_checkpointing = bool(enabled)
    return unet


def conv(module, x: torch.Tensor) -> torch.Tensor:
    """The convolution of an nn.Conv2d (also the pack's piecewise Conv2d), whole."""
    return module._conv_forward(x, module.weight, module.bias)


def group_norm(norm, x: torch.Tensor, frames: int) -> torch.Tensor:
    """FrameGroupNorm's result: statistics over all `frames` of each video (per image with 1)."""
    if frames == 1:
        return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    # (batch*frames, c, h, w) -> (batch, c, frames, h, w): the original's 5D GroupNorm
    videos = x.unflatten(0, (-1, frames)).transpose(1, 2)
    out = F.group_norm(videos, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return out.transpose(1, 2).flatten(0, 1)


def feed_forward(ff, x: torch.Tensor) -> torch.Tensor:
    hidden, gate = ff.net[0].proj(x).chunk(2, dim=-1)
    return ff.net[2](ff.net[1](hidden * F.gelu(gate)))


def resnet(block, x: torch.Tensor, temb: torch.Tensor, frames: int, skip: torch.Tensor | None = None):
    if skip is not None:
        x = torch.cat([x, skip], dim=1)
    # (batch, out) -> (batch*frames, out, 1, 1)
    t = block.time_emb_proj(F.silu(temb)).to(x.dtype).repeat_interleave(frames, dim=0)[:, :, None, None]
    h = conv(block.conv1, F.silu(group_norm(block.norm1, x, frames))) + t
    h = conv(block.conv2, block.dropout(F.silu(group_norm(block.norm2, h, frames))))
    shortcut = x if block.conv_shortcut is None else conv(block.conv_shortcut, x)
    out = shortcut + h
    return out if block.output_scale_factor == 1.0 else out / block.output_scale_factor


def transformer_block(block, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    x = x + block.attn1(block.norm1(x))
    x = x + block.attn2(block.norm2(x), context)
    return x + feed_forward(block.ff, block.norm3(x))


def spatial_transformer(module, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    images, channels, height, width = x.shape
    h = group_norm(module.norm, x, frames=1)
    if not module.linear_projection:
        h = conv(module.proj_in, h)
    h = h.permute(0, 2, 3, 1).reshape(images, height * width, channels)  # (images, h*w, c)
    if module.linear_projection:
        h = module.proj_in(h)
    for block in module.transformer_blocks:
        h = transformer_block(block, h, context)
    if module.linear_projection:
        h = module.proj_out(h)
    h = h.view(images, height, width, channels).permute(0, 3, 1, 2)
    if not module.linear_projection:
        h = conv(module.proj_out, h)
    return x + h


def temporal_block(block, x: torch.Tensor, frames: int) -> torch.Tensor:
    """x (batch*frames, tokens, c); each attention returns (batch, frames, tokens, c)."""
    for attention, norm in zip(block.attention_blocks, block.norms):
        x = x + attention(norm(x), frames).reshape(x.shape)
    return x + feed_forward(block.ff, block.ff_norm(x))


def temporal_layer(module, x: torch.Tensor, frames: int) -> torch.Tensor:
    images, channels, height, width = x.shape
    h = group_norm(module.norm, x, frames=1)  # statistics of each frame
    h = h.permute(0, 2, 3, 1).reshape(images, height * width, channels)  # (batch*frames, h*w, c)
    h = module.proj_in(h)
    for block in module.transformer_blocks:
        h = temporal_block(block, h, frames)
    h = module.proj_out(h).view(images, height, width, channels).permute(0, 3, 1, 2)
    return x + h


def _after_resnet(block, i: int, x, context, frames: int, temporal: bool):
    if block.attentions is not None:
        x = spatial_transformer(block.attentions[i], x, context)
    if temporal:
        x = temporal_layer(block.temporal_attentions[i], x, frames)
    return x


def down_block(block, x, temb, context, frames: int, temporal: bool):
    skips = []
    for i, res in enumerate(block.resnets):
        x = _after_resnet(block, i, resnet(res, x, temb, frames), context, frames, temporal)
        skips.append(x)
    if block.downsamplers is not None:
        x = conv(block.downsamplers[0].conv, x)
        skips.append(x)
    return x, tuple(skips)


def mid_block(block, x, temb, context, frames: int):
    x = resnet(block.resnets[0], x, temb, frames)
    x = spatial_transformer(block.attentions[0], x, context)
    return resnet(block.resnets[1], x, temb, frames)


def up_block(block, x, skips: tuple, temb, context, frames: int, temporal: bool, upsample_size=None):
    """`skips`: this block's skip connections in the order they were made; used last first."""
    for i, res in enumerate(block.resnets):
        x = resnet(res, x, temb, frames, skip=skips[-1 - i])
        x = _after_resnet(block, i, x, context, frames, temporal)
    if block.upsamplers is not None:
        size = tuple(upsample_size) if upsample_size is not None else (2 * x.shape[-2], 2 * x.shape[-1])
        x = conv(block.upsamplers[0].conv, F.interpolate(x, size=size, mode="nearest"))
    return x


def unet_forward(unet, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                 text_embeds: torch.Tensor, time_ids: torch.Tensor, temporal: bool | None = None) -> torch.Tensor:
    """HotshotXLUNet.forward in train mode: (batch, 4, frames, h, w) -> predicted noise, same shape."""
    if sample.ndim != 5:
        raise InputError("sample", f"expected (batch, channels, frames, height, width), got {tuple(sample.shape)}")
    batch, _, frames, height, width = sample.shape
    temporal = frames > 1 if temporal is None else temporal
    if temporal and frames > unet.config.temporal_max_frames:
        raise InputError("frames", f"{frames} frames in one UNet pass, but the temporal layers know "
                         f"{unet.config.temporal_max_frames} positions")

    def run(function, *args):
        if getattr(unet, "gradient_checkpointing", False) and torch.is_grad_enabled():
            return checkpoint(function, *args, use_reentrant=False)
        return function(*args)

    dtype = unet.dtype
    temb = unet._embed_time(timestep, batch, text_embeds, time_ids)
    context = encoder_hidden_states.to(dtype)
    # (batch, c, frames, h, w) -> (batch*frames, c, h, w)
    x = conv(unet.conv_in, sample.to(dtype).transpose(1, 2).reshape(batch * frames, -1, height, width))

    skips = [x]
    for block in unet.down_blocks:
        x, block_skips = run(partial(down_block, block), x, temb, context, frames, temporal)
        skips.extend(block_skips)
    x = run(partial(mid_block, unet.mid_block), x, temb, context, frames)
    for block in unet.up_blocks:
        count = len(block.resnets)
        block_skips, skips = tuple(skips[-count:]), skips[:-count]
        upsample_size = skips[-1].shape[-2:] if skips and block.upsamplers is not None else None
        x = run(partial(up_block, block), x, block_skips, temb, context, frames, temporal, upsample_size)

    x = conv(unet.conv_out, F.silu(group_norm(unet.conv_norm_out, x, frames)))
    # (batch*frames, c, h, w) -> (batch, c, frames, h, w)
    return x.view(batch, frames, -1, height, width).transpose(1, 2)
