"""Hotshot-XL's temporal layers: attention across the frames at each spatial position.

One `TransformerTemporal` follows each resnet (and its spatial transformer, where there is one) in
every down and up block. Attribute names mirror the released checkpoint
(`temporal_attentions.N.transformer_blocks.0.attention_blocks.M.to_q.weight`, ...), including the
sinusoidal position table, which the release stores as a buffer of 24 positions.

Everything after the input GroupNorm acts on each spatial position separately, so the layer runs
on a few rows of the image at a time (`pieces.py`): at 512 px the feed-forward's hidden layer of
a whole 8-frame video would be hundreds of MB.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import Attention, FeedForward
from .norms import FrameGroupNorm
from .lean import checkpointed
from .pieces import empty_like_layout, pieces, resolve_budget


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The 'Attention Is All You Need' table, (1, length, dim): sin on even, cos on odd channels."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_frames: int):
        super().__init__()
        self.register_buffer("positional_encoding", sinusoidal_table(max_frames, dim))


class TemporalAttention(Attention):
    """Self-attention over frames. Positions are added to the (already normed) input only."""

    def __init__(self, dim: int, heads: int, max_frames: int):
        super().__init__(dim, heads, dim // heads)
        self.pos_encoder = PositionalEncoding(dim, max_frames)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x (batch*frames, tokens, channels) -> (batch, frames, tokens, channels), a strided view."""
        batch_frames, tokens, channels = x.shape
        positions = self.pos_encoder.positional_encoding[0, :frames, None, :]  # (frames, 1, channels)
        x = x.view(-1, frames, tokens, channels) + positions  # (batch, frames, tokens, channels)
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)

        def over_frames(projected: torch.Tensor) -> torch.Tensor:
            # (frames, tokens, heads*head_dim) -> (tokens, heads, frames, head_dim): a view, the
            # fused attention kernels read it strided.
            return projected.unflatten(-1, (self.heads, -1)).permute(1, 2, 0, 3)

        # One video at a time: its frames and tokens cannot be merged into one batch axis by a view.
        out = torch.stack([self.attend(over_frames(q[i]), over_frames(k[i]), over_frames(v[i])).transpose(1, 2)
                           for i in range(x.shape[0])])  # (batch, tokens, frames, heads, head_dim)
        out = self.to_out[1](self.to_out[0](out.flatten(-2)))  # (batch, tokens, frames, channels)
        return out.transpose(1, 2)


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm temporal self-attentions, then a pre-norm GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, max_frames: int, depth: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, heads, max_frames) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x (batch*frames, tokens, channels), updated in place and returned."""
        videos = x.view(-1, frames, *x.shape[1:])  # (batch, frames, tokens, channels), same memory
        for attn, norm in zip(self.attention_blocks, self.norms):
            videos.add_(attn(norm(x), frames))
        return x.add_(self.ff(self.ff_norm(x)))

    def train_forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """`forward` with plain autograd ops (train mode). x (batch*frames, tokens, c); each attention
        returns (batch, frames, tokens, c)."""
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = x + attention(norm(x), frames).reshape(x.shape)
        return x + self.ff.train_forward(self.ff_norm(x))


class TransformerTemporal(nn.Module):
    """GroupNorm per frame, linear in, temporal blocks, linear out, residual."""

    def __init__(self, channels: int, heads: int, max_frames: int, groups: int = 32):
        super().__init__()
        self.norm = FrameGroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_frames)])
        self.proj_out = nn.Linear(channels, channels)
        self.piece_budget: int | str | None = "auto"

    def forward(self, x: torch.Tensor, frames: int, out: torch.Tensor | None = None,
                motion: float | torch.Tensor | None = None) -> torch.Tensor:
        """x (batch*frames, channels, h, w) -> x + temporal update; `out` may be x itself. `motion`
        (motion strength, travel/motion.py): the update times a number or per image (batch*frames, 1, 1, 1)."""
        batch_frames, channels, height, width = x.shape
        out = empty_like_layout(x, channels) if out is None else out
        scale, shift = self.norm.scale_shift([x], frames=1)  # statistics of each whole frame
        # Per row of the image: the tokens in and out, the block's norms, q/k/v and the
        # feed-forward's 8x-wide hidden layer.
        row_bytes = batch_frames * width * channels * x.element_size() * 12
        for rows in pieces(height, row_bytes, resolve_budget(self.piece_budget, x.device)):
            part = x[:, :, rows]  # (batch*frames, channels, rows, w)
            h = self.norm.apply(part, scale, shift)
            h = h.permute(0, 2, 3, 1).reshape(batch_frames, -1, channels)  # (batch*frames, rows*w, c)
            h = self.proj_in(h)
            for block in self.transformer_blocks:
                h = block(h, frames)
            h = self.proj_out(h).view(batch_frames, -1, width, channels).permute(0, 3, 1, 2)
            if motion is None:
                torch.add(part, h, out=out[:, :, rows])
            elif torch.is_tensor(motion):
                torch.addcmul(part, h, motion, out=out[:, :, rows])
            else:
                torch.add(part, h, alpha=motion, out=out[:, :, rows])
        return out

    def train_forward(self, x: torch.Tensor, frames: int, checkpointing: bool = False) -> torch.Tensor:
        """`forward` with plain autograd ops (train mode), out of place: pieces of rows, as `forward`, each
        recomputed in the backward pass when `checkpointing`. With or without checkpointing the arithmetic is
        the same, so the two give the same gradients; checkpointed pieces bound what the backward pass holds
        at once to one piece's activations (this layer trains: each of its Linears keeps its input)."""
        images, channels, height, width = x.shape
        scale, shift = self.norm.scale_shift([x], frames=1)  # statistics of each whole frame
        # Per row of the image, kept for the backward pass: tokens and norms around every Linear, q/k/v
        # and the attention outputs of both attentions, the feed-forward's projection (8x wide) and gating.
        row_bytes = images * width * channels * x.element_size() * 32
        parts = [checkpointed(checkpointing, self._train_rows, x[:, :, rows], scale, shift, frames)
                 for rows in pieces(height, row_bytes, resolve_budget(self.piece_budget, x.device))]
        return x + (parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))

    def _train_rows(self, part: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, frames: int) -> torch.Tensor:
        """The temporal update of rows `part` (batch*frames, c, rows, w) of the input, in autograd ops."""
        images, channels, rows, width = part.shape
        h = self.norm.apply(part, scale, shift)
        h = h.permute(0, 2, 3, 1).reshape(images, rows * width, channels)  # (batch*frames, rows*w, c)
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block.train_forward(h, frames)
        return self.proj_out(h).view(images, rows, width, channels).permute(0, 3, 1, 2)
