"""The SDXL building blocks of the Hotshot-XL UNet, working on frames folded into the batch.

Inside the UNet every activation is (batch*frames, channels, height, width): 2D convolutions and
spatial transformers then run per frame without rearranging. Two things see the frames:
- the temporal layers (`temporal.py`), and
- the GroupNorms of the resnets (and the UNet's final norm), which in the original take their
  statistics over all frames of a video together (`norms.FrameGroupNorm`).
Attribute names mirror the released checkpoint so its state dict loads without renaming.

Memory: large activations are processed a few frames at a time (`pieces.py`) into outputs
allocated once; up blocks pass their skip connection alongside the activation instead of
concatenating the two whole; and the transformers write their residual sum into their input's
memory (`out=x`). In eval mode the UNet runs without autograd (see unet.py).

One forward per block, two paths: `forward` (inference, in place and piece by piece) and, beside it,
`train_forward` (train mode: the same arithmetic with whole tensors and out-of-place autograd ops), so a
change to a block is made to both in one place. In train mode frozen convolutions and the cheap elementwise
steps keep little for the backward pass (`lean.py`), and with gradient checkpointing (`checkpointing=True`)
each spatial transformer and temporal layer is recomputed in the backward pass instead of kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, FeedForward
from .config import UNetConfig
from .lean import checkpointed, conv, norm_silu, recomputed
from .norms import FrameGroupNorm
from .pieces import empty_like_layout, pieces, resolve_budget
from .temporal import TransformerTemporal

__all__ = ["Conv2d", "FrameGroupNorm", "ResnetBlock", "TransformerBlock", "SpatialTransformer", "Downsample",
           "Upsample", "DownBlock", "MidBlock", "UpBlock"]


class Conv2d(nn.Conv2d):
    """nn.Conv2d that convolves a few output channels at a time when its weight is large.

    CPU convolution kernels (oneDNN) copy the whole weight into a blocked layout on every call:
    for SDXL's widest convs that copy (118 MB in fp32) is the largest tensor of the step. Pieces of
    output channels bound it by the piece budget; each piece's weight is still copied only once.
    """

    piece_budget: int | str | None = "auto"

    def weight_rows(self, rows: slice) -> torch.Tensor:
        """The weight of output channels `rows`, as computed with (float8 storage upcasts here)."""
        return self.weight[rows]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel_bytes = self.weight[0].numel() * x.element_size()
        chunks = pieces(self.out_channels, channel_bytes, resolve_budget(self.piece_budget, x.device))
        bias = self.bias
        if len(chunks) == 1:
            return self._conv_forward(x, self.weight_rows(chunks[0]), bias)
        out = None
        for rows in chunks:
            piece = self._conv_forward(x, self.weight_rows(rows), None if bias is None else bias[rows])
            if out is None:  # (n, out_channels, h', w'), h' and w' known from the first piece
                out = empty_like_layout(piece, self.out_channels)
            out[:, rows] = piece
            del piece
        return out


def _train_after_resnet(block, i: int, x, context, frames: int, temporal: bool, checkpointing: bool):
    """Train mode: a down or up block's spatial transformer and temporal layer after its resnet `i`, each
    checkpointed on its own when `checkpointing`."""
    if block.attentions is not None:
        x = checkpointed(checkpointing, block.attentions[i].train_forward, x, context)
    if temporal:  # checkpointed piece by piece (temporal.py)
        x = block.temporal_attentions[i].train_forward(x, frames, checkpointing)
    return x


def _channel_cat(parts: list[torch.Tensor], rows: slice) -> torch.Tensor:
    """Rows `rows` of the channel-wise concatenation of `parts`; a view when there is one part."""
    return parts[0][rows] if len(parts) == 1 else torch.cat([part[rows] for part in parts], dim=1)


class ResnetBlock(nn.Module):
    """SDXL's resnet block, with frame-spanning GroupNorms."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 output_scale_factor: float = 1.0):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels, eps=eps)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = FrameGroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.output_scale_factor = output_scale_factor
        self.piece_budget: int | str | None = "auto"

    def forward(self, x: torch.Tensor, temb: torch.Tensor, frames: int, skip: torch.Tensor | None = None):
        """x (batch*frames, c, h, w); `skip` (batch*frames, c', h, w): extra input channels after x
        (an up block's skip connection), read piece by piece instead of concatenated whole."""
        parts = [x] if skip is None else [x, skip]
        images, _, height, width = x.shape
        out_channels = self.conv1.out_channels
        in_channels = sum(part.shape[1] for part in parts)
        # (batch, out) -> (batch*frames, out, 1, 1); per-image temb (prompt travel) is already that
        t = self.time_emb_proj(F.silu(temb)).to(x.dtype).repeat_interleave(images // temb.shape[0], dim=0)
        t = t[:, :, None, None]
        # Per image: the concatenated input, its normalised copy and a conv output.
        image_bytes = (2 * in_channels + out_channels) * height * width * x.element_size()
        chunks = pieces(images, image_bytes, resolve_budget(self.piece_budget, x.device))

        h = empty_like_layout(x, out_channels)
        scale, shift = self.norm1.scale_shift(parts, frames)
        for rows in chunks:
            a = F.silu(self.norm1.apply(_channel_cat(parts, rows), scale[rows], shift[rows]), inplace=True)
            torch.add(self.conv1(a), t[rows], out=h[rows])
            del a

        # norm2 needs statistics of the whole of h before any piece of it is normalised.
        scale, shift = self.norm2.scale_shift([h], frames)
        for rows in chunks:
            a = F.silu(self.norm2.apply(h[rows], scale[rows], shift[rows]), inplace=True)
            a = self.conv2(self.dropout(a))
            shortcut = _channel_cat(parts, rows)
            if self.conv_shortcut is not None:
                shortcut = self.conv_shortcut(shortcut)
            torch.add(shortcut, a, out=h[rows])  # this piece of h has been read: overwrite it
            del a, shortcut
        return h if self.output_scale_factor == 1.0 else h.div_(self.output_scale_factor)

    def train_forward(self, x: torch.Tensor, temb: torch.Tensor, frames: int, skip: torch.Tensor | None = None):
        """`forward` with plain autograd ops (train mode): whole tensors, out of place. Kept for the
        backward pass: x and the first conv's output (each norm+SiLU is recomputed, frozen convs keep
        nothing); with gradient checkpointing resnets are not recomputed: they are conv-heavy and keep little."""
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        # (batch, out) -> (batch*frames, out, 1, 1)
        t = self.time_emb_proj(F.silu(temb)).to(x.dtype).repeat_interleave(frames, dim=0)[:, :, None, None]
        h = conv(self.conv1, recomputed(norm_silu, self.norm1, x, frames)) + t
        h = conv(self.conv2, self.dropout(recomputed(norm_silu, self.norm2, h, frames)))
        shortcut = x if self.conv_shortcut is None else conv(self.conv_shortcut, x)
        out = shortcut + h
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
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (images, tokens, dim), updated in place and returned; context (videos, text, context_dim)."""
        x.add_(self.attn1(self.norm1(x)))
        x.add_(self.attn2(self.norm2(x), context))
        return x.add_(self.ff(self.norm3(x)))

    def train_forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """`forward` with plain autograd ops (train mode)."""
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff.train_forward(self.norm3(x))


class SpatialTransformer(nn.Module):
    """SDXL's Transformer2DModel, run on every frame: norm, project in, blocks, project out, residual."""

    def __init__(self, channels: int, heads: int, depth: int, config: UNetConfig):
        super().__init__()
        self.norm = FrameGroupNorm(config.norm_num_groups, channels, eps=1e-6)
        self.linear_projection = config.use_linear_projection
        if self.linear_projection:
            self.proj_in = nn.Linear(channels, channels)
            self.proj_out = nn.Linear(channels, channels)
        else:
            self.proj_in = Conv2d(channels, channels, 1)
            self.proj_out = Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(channels, heads, config.cross_attention_dim, config.upcast_attention) for _ in range(depth)
        )
        self.piece_budget: int | str | None = "auto"

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """x (batch*frames, c, h, w), context (batch, text, c') -> x + update; `out` may be x itself."""
        images, channels, height, width = x.shape
        out = empty_like_layout(x, channels) if out is None else out
        scale, shift = self.norm.scale_shift([x], frames=1)  # ordinary per-image GroupNorm
        # Per image: tokens, norms, q/k/v, attention output and the feed-forward's 8x hidden layer.
        image_bytes = height * width * channels * x.element_size() * 14
        # Pieces hold one video's frames or whole videos, so each shares one row of the context.
        for rows in pieces(images, image_bytes, resolve_budget(self.piece_budget, x.device), align=frames):
            videos = slice(rows.start // frames, -(-rows.stop // frames))
            h = self.norm.apply(x[rows], scale[rows], shift[rows])
            if not self.linear_projection:
                h = self.proj_in(h)
            h = h.permute(0, 2, 3, 1).reshape(-1, height * width, channels)  # (images, h*w, c)
            if self.linear_projection:
                h = self.proj_in(h)
            text = context[rows] if context.shape[0] == images else context[videos]  # per image: prompt travel
            for block in self.transformer_blocks:
                h = block(h, text)
            if self.linear_projection:
                h = self.proj_out(h)
            h = h.view(-1, height, width, channels).permute(0, 3, 1, 2)
            if not self.linear_projection:
                h = self.proj_out(h)
            torch.add(x[rows], h, out=out[rows])
        return out

    def train_forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """`forward` with plain autograd ops (train mode): whole tensors, out of place."""
        images, channels, height, width = x.shape
        h = self.norm.train_forward(x, frames=1)
        if not self.linear_projection:
            h = conv(self.proj_in, h)
        h = h.permute(0, 2, 3, 1).reshape(images, height * width, channels)  # (images, h*w, c)
        if self.linear_projection:
            h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block.train_forward(h, context)
        if self.linear_projection:
            h = self.proj_out(h)
        h = h.view(images, height, width, channels).permute(0, 3, 1, 2)
        if not self.linear_projection:
            h = conv(self.proj_out, h)
        return x + h


class Downsample(nn.Module):
    """A stride-2 3x3 convolution (diffusers' Downsample2D with a conv, as SDXL uses it)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling (2x, or to the skip's size) then a 3x3 convolution, by pieces."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)
        self.piece_budget: int | str | None = "auto"

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        images, channels, height, width = x.shape
        size = tuple(size) if size is not None else (2 * height, 2 * width)
        out = empty_like_layout(x, channels, *size)
        image_bytes = 2 * channels * size[0] * size[1] * x.element_size()  # upsampled copy, conv output
        for rows in pieces(images, image_bytes, resolve_budget(self.piece_budget, x.device)):
            out[rows] = self.conv(F.interpolate(x[rows], size=size, mode="nearest"))
        return out


def attention_layers(config: UNetConfig, block: int, channels: int, layers: int,
                     cross_attention: bool) -> tuple[nn.ModuleList | None, nn.ModuleList]:
    """The layers after each of a block's resnets: spatial transformers sized as down block `block`
    (None where the block has no cross-attention) and temporal layers (every down and up block)."""
    spatial = nn.ModuleList(
        SpatialTransformer(channels, config.attention_heads[block], config.transformer_layers_per_block[block], config)
        for _ in range(layers)
    ) if cross_attention else None
    temporal = nn.ModuleList(
        TransformerTemporal(channels, config.temporal_heads, config.temporal_max_frames, config.norm_num_groups)
        for _ in range(layers)
    )
    return spatial, temporal


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
        self.attentions, self.temporal_attentions = attention_layers(
            config, index, out_channels, layers, config.down_cross_attention[index])
        is_last = index == config.num_blocks - 1
        self.downsamplers = None if is_last else nn.ModuleList([Downsample(out_channels)])

    def forward(self, x, temb, context, frames: int, temporal: bool, motion_scale=None):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb, frames)
            # The resnet's output is ours alone: the layers after it add into it in place.
            if self.attentions is not None:
                x = self.attentions[i](x, context, frames, out=x)
            if temporal:
                x = self.temporal_attentions[i](x, frames, out=x, motion=motion_scale)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips

    def train_forward(self, x, temb, context, frames: int, temporal: bool, checkpointing: bool = False):
        """`forward` with plain autograd ops (train mode)."""
        skips = []
        for i, res in enumerate(self.resnets):
            x = res.train_forward(x, temb, frames)
            x = _train_after_resnet(self, i, x, context, frames, temporal, checkpointing)
            skips.append(x)
        if self.downsamplers is not None:
            x = conv(self.downsamplers[0].conv, x)
            skips.append(x)
        return x, tuple(skips)


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
        x = self.attentions[0](x, context, frames, out=x)
        return self.resnets[1](x, temb, frames)

    def train_forward(self, x, temb, context, frames: int, checkpointing: bool = False):
        """`forward` with plain autograd ops (train mode)."""
        x = self.resnets[0].train_forward(x, temb, frames)
        x = checkpointed(checkpointing, self.attentions[0].train_forward, x, context)
        return self.resnets[1].train_forward(x, temb, frames)


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
        self.attentions, self.temporal_attentions = attention_layers(
            config, block, out_channels, layers, config.up_cross_attention[index])
        is_last = index == config.num_blocks - 1
        self.upsamplers = None if is_last else nn.ModuleList([Upsample(out_channels)])

    def forward(self, x, skips: list, temb, context, frames: int, temporal: bool, upsample_size=None,
                motion_scale=None):
        """`skips` is consumed (popped from the end): each skip is freed as soon as it is used."""
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb, frames, skip=skips.pop())
            if self.attentions is not None:
                x = self.attentions[i](x, context, frames, out=x)
            if temporal:
                x = self.temporal_attentions[i](x, frames, out=x, motion=motion_scale)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x

    def train_forward(self, x, skips: tuple, temb, context, frames: int, temporal: bool, upsample_size=None,
                      checkpointing: bool = False):
        """`forward` with plain autograd ops (train mode). `skips`: this block's skip connections in the
        order they were made; used last first."""
        for i, res in enumerate(self.resnets):
            x = res.train_forward(x, temb, frames, skip=skips[-1 - i])
            x = _train_after_resnet(self, i, x, context, frames, temporal, checkpointing)
        if self.upsamplers is not None:
            size = tuple(upsample_size) if upsample_size is not None else (2 * x.shape[-2], 2 * x.shape[-1])
            x = conv(self.upsamplers[0].conv, F.interpolate(x, size=size, mode="nearest"))
        return x
