"""Hotshot-XL's temporal layers: attention across the frames at each spatial position.

One `TransformerTemporal` follows each resnet (and its spatial transformer, where there is one) in
every down and up block. Attribute names mirror the released checkpoint
(`temporal_attentions.N.transformer_blocks.0.attention_blocks.M.to_q.weight`, ...), including the
sinusoidal position table, which the release stores as a buffer of 24 positions.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from torch import nn

from .attention import Attention, attention


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
        batch_frames, tokens, channels = x.shape
        batch = batch_frames // frames
        positions = self.pos_encoder.positional_encoding[0, :frames, None, :]  # (frames, 1, channels)
        x = x.view(batch, frames, tokens, channels) + positions  # (batch, frames, tokens, channels)

        def heads_over_frames(projected: torch.Tensor) -> torch.Tensor:
            # (batch, frames, tokens, heads*head_dim) -> (batch*tokens, heads, frames, head_dim)
            projected = projected.unflatten(-1, (self.heads, -1)).permute(0, 2, 3, 1, 4)
            return projected.reshape(batch * tokens, self.heads, frames, -1)

        q, k, v = (heads_over_frames(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        out = attention(q, k, v)  # (batch*tokens, heads, frames, head_dim)
        # -> (batch*frames, tokens, heads*head_dim)
        out = out.view(batch, tokens, self.heads, frames, -1).permute(0, 3, 1, 2, 4).reshape(batch_frames, tokens, -1)
        return self.to_out[1](self.to_out[0](out))


class TemporalTransformerBlock(nn.Module):
    """Two pre-norm temporal self-attentions, then a pre-norm GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, max_frames: int, depth: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, heads, max_frames) for _ in range(depth))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = attn(norm(x), frames) + x
        return self.ff(self.ff_norm(x)) + x


class TransformerTemporal(nn.Module):
    """GroupNorm per frame, linear in, temporal blocks, linear out, residual."""

    def __init__(self, channels: int, heads: int, max_frames: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_frames)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)  # (b*f, h*w, c)
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, frames)
        h = self.proj_out(h)
        return h.view(batch_frames, height, width, channels).permute(0, 3, 1, 2) + x
