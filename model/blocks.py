"""The SDXL building blocks of the Hotshot-XL UNet, working on frames folded into the batch.

Inside the UNet every activation is (batch*frames, channels, height, width): 2D convolutions and
spatial transformers then run per frame without rearranging. Two things see the frames:
- the temporal layers (`temporal.py`), and
- the GroupNorms of the resnets (and the UNet's final norm), which in the original take their
  statistics over all frames of a video together; `FrameGroupNorm` does that on the folded layout.
Attribute names mirror the released checkpoint so its state dict loads without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .attention import Attention
from .config import UNetConfig
from .temporal import TransformerTemporal


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics span all frames of each video (the original's 5D GroupNorm)."""

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = x.shape
        batch, groups = batch_frames // frames, self.num_groups
        x = x.contiguous()  # broadcast adds upstream may hand us a channels-last result
        grouped = x.view(batch, frames, groups, -1)  # (batch, frames, groups, channels/groups*h*w)
        # Statistics in float32 even for half-precision activations, one video at a time so the
        # upcast copy stays small.
        var_mean = [torch.var_mean(video.float(), dim=(0, 2), unbiased=False) for video in grouped]
        var = torch.stack([v for v, _ in var_mean])  # (batch, groups)
        mean = torch.stack([m for _, m in var_mean])
        rstd = torch.rsqrt(var + self.eps)
        # Fold the normalisation and the affine into one per-channel scale and shift.
        scale = self.weight.float().view(1, groups, -1) * rstd[:, :, None]  # (batch, groups, channels/groups)
        shift = self.bias.float().view(1, groups, -1) - mean[:, :, None] * scale
        scale = scale.reshape(batch, 1, channels, 1).to(x.dtype)
        shift = shift.reshape(batch, 1, channels, 1).to(x.dtype)
        out = torch.addcmul(shift, x.view(batch, frames, channels, height * width), scale)
        return out.view(batch_frames, channels, height, width)


class ResnetBlock(nn.Module):
    """SDXL's resnet block, with frame-spanning GroupNorms."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 output_scale_factor: float = 1.0):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = FrameGroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.output_scale_factor = output_scale_factor

    def forward(self, x: torch.Tensor, temb: torch.Tensor, frames: int) -> torch.Tensor:
        # x: (batch*frames, in, h, w); temb: (batch, temb_channels)
        h = self.conv1(F.silu(self.norm1(x, frames)))
        t = self.time_emb_proj(F.silu(temb)).repeat_interleave(frames, dim=0)  # (batch*frames, out)
        h = h + t[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h, frames))))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        out = skip + h
        return out if self.output_scale_factor == 1.0 else out / self.output_scale_factor


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the text, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, context_dim: int, upcast: bool):
        super().__init__()
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, upcast=upcast)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim, upcast=upcast)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context, context_repeats=frames) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """SDXL's Transformer2DModel, run on every frame: norm, project in, blocks, project out, residual."""

    def __init__(self, channels: int, heads: int, depth: int, config: UNetConfig):
        super().__init__()
        self.norm = nn.GroupNorm(config.norm_num_groups, channels, eps=1e-6)
        self.linear_projection = config.use_linear_projection
        if self.linear_projection:
            self.proj_in = nn.Linear(channels, channels)
            self.proj_out = nn.Linear(channels, channels)
        else:
            self.proj_in = nn.Conv2d(channels, channels, 1)
            self.proj_out = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(channels, heads, config.cross_attention_dim, config.upcast_attention) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = x.shape
        h = self.norm(x)
        if not self.linear_projection:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)  # (b*f, h*w, c)
        if self.linear_projection:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, context, frames)
        if self.linear_projection:
            h = self.proj_out(h)
        h = h.view(batch_frames, height, width, channels).permute(0, 3, 1, 2)
        if not self.linear_projection:
            h = self.proj_out(h)
        return h + x


class DownBlock(nn.Module):
    """Resnets, each followed by a spatial transformer (if `cross_attention`) and a temporal layer."""

    def __init__(self, index: int, config: UNetConfig, in_channels: int, temb_channels: int):
        super().__init__()
        out_channels = config.block_out_channels[index]
        groups, eps = config.norm_num_groups, config.norm_eps
        layers = config.layers_per_block
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps)
            for i in range(layers)
        )
        if config.down_cross_attention[index]:
            self.attentions = nn.ModuleList(
                SpatialTransformer(out_channels, config.attention_heads[index],
                                   config.transformer_layers_per_block[index], config)
                for _ in range(layers)
            )
        else:
            self.attentions = None
        self.temporal_attentions = nn.ModuleList(
            TransformerTemporal(out_channels, config.temporal_heads, config.temporal_max_frames, groups)
            for _ in range(layers)
        )
        is_last = index == config.num_blocks - 1
        self.downsamplers = None if is_last else nn.ModuleList(
            [Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=1, name="op")]
        )

    def forward(self, x, temb, context, frames: int, temporal: bool):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb, frames)
            if self.attentions is not None:
                x = self.attentions[i](x, context, frames)
            if temporal:
                x = self.temporal_attentions[i](x, frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """Resnet, spatial transformer, resnet. No temporal layer here, as released."""

    def __init__(self, config: UNetConfig, temb_channels: int):
        super().__init__()
        channels = config.block_out_channels[-1]
        groups, eps = config.norm_num_groups, config.norm_eps
        scale = config.mid_block_scale_factor
        self.resnets = nn.ModuleList(
            ResnetBlock(channels, channels, temb_channels, groups, eps, output_scale_factor=scale) for _ in range(2)
        )
        self.attentions = nn.ModuleList(
            [SpatialTransformer(channels, config.attention_heads[-1], config.transformer_layers_per_block[-1], config)]
        )

    def forward(self, x, temb, context, frames: int):
        x = self.resnets[0](x, temb, frames)
        x = self.attentions[0](x, context, frames)
        return self.resnets[1](x, temb, frames)


class UpBlock(nn.Module):
    """Like DownBlock in reverse; each resnet first takes a skip connection from the way down."""

    def __init__(self, index: int, config: UNetConfig, temb_channels: int):
        super().__init__()
        reversed_channels = config.block_out_channels[::-1]
        block = config.num_blocks - 1 - index  # the down block this one mirrors
        out_channels = reversed_channels[index]
        prev_channels = reversed_channels[max(index - 1, 0)]
        skip_channels_last = reversed_channels[min(index + 1, config.num_blocks - 1)]
        groups, eps = config.norm_num_groups, config.norm_eps
        layers = config.layers_per_block + 1

        resnets = []
        for i in range(layers):
            skip_channels = skip_channels_last if i == layers - 1 else out_channels
            in_channels = prev_channels if i == 0 else out_channels
            resnets.append(ResnetBlock(in_channels + skip_channels, out_channels, temb_channels, groups, eps))
        self.resnets = nn.ModuleList(resnets)
        if config.up_cross_attention[index]:
            self.attentions = nn.ModuleList(
                SpatialTransformer(out_channels, config.attention_heads[block],
                                   config.transformer_layers_per_block[block], config)
                for _ in range(layers)
            )
        else:
            self.attentions = None
        self.temporal_attentions = nn.ModuleList(
            TransformerTemporal(out_channels, config.temporal_heads, config.temporal_max_frames, groups)
            for _ in range(layers)
        )
        is_last = index == config.num_blocks - 1
        self.upsamplers = None if is_last else nn.ModuleList(
            [Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]
        )

    def forward(self, x, skips: list, temb, context, frames: int, temporal: bool, upsample_size=None):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb, frames)
            if self.attentions is not None:
                x = self.attentions[i](x, context, frames)
            if temporal:
                x = self.temporal_attentions[i](x, frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x
