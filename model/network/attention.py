"""The one attention function, the projection module both attention kinds share, and the GEGLU
feed-forward of the transformer blocks.

Everything goes through PyTorch's `scaled_dot_product_attention`, which picks a fused kernel
(flash/memory-efficient on CUDA, a flash kernel on CPU) and never builds the score matrix when it
can avoid it. Those kernels take strided inputs, so heads are split by views, never by copies.
Where a caller asks for it, queries are processed in chunks so that even the math fallback stays
within a memory budget at large frame sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lean import recomputed


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, query_chunk: int | None = None) -> torch.Tensor:
    """Softmax attention over the second-to-last axis; q, k, v are (..., heads, tokens, head_dim)."""
    if query_chunk is None or q.shape[-2] <= query_chunk:
        return F.scaled_dot_product_attention(q, k, v)
    out = torch.empty_like(q)
    for start in range(0, q.shape[-2], query_chunk):
        stop = start + query_chunk
        out[..., start:stop, :] = F.scaled_dot_product_attention(q[..., start:stop, :], k, v)
    return out


class Attention(nn.Module):
    """Multi-head attention with the diffusers parameter names (`to_q`, `to_k`, `to_v`, `to_out.0`).

    Self-attention when no context is given. A cross-attention context may have fewer rows than
    the queries: then each context row serves consecutive query rows (the frames of one video),
    whose tokens are attended to as one long query sequence. The text's keys and values are
    projected once per video and never copied per frame.
    """

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 upcast: bool = False):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.upcast = upcast
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])
        self.query_chunk: int | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, tokens, heads*head_dim) -> (batch, heads, tokens, head_dim), a strided view
        return x.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention on (..., heads, tokens, head_dim), in the query dtype even when upcast."""
        dtype = q.dtype
        if self.upcast:
            q, k, v = q.float(), k.float(), v.float()
        return attention(q, k, v, self.query_chunk).to(dtype)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: (batch, tokens, query_dim); context: (batch / repeats, text, context_dim)
        batch, tokens, _ = x.shape
        if context is not None and context.shape[0] != batch:
            if batch % context.shape[0]:
                raise ValueError(f"{batch} query rows cannot share {context.shape[0]} context rows evenly")
            x = x.reshape(context.shape[0], -1, x.shape[-1])  # (videos, frames*tokens, query_dim)
        source = x if context is None else context
        q = self.split_heads(self.to_q(x))
        k = self.split_heads(self.to_k(source))
        v = self.split_heads(self.to_v(source))
        out = self.attend(q, k, v).transpose(1, 2).flatten(2)  # (batch, tokens, heads*head_dim)
        return self.to_out[1](self.to_out[0](out)).view(batch, tokens, -1)


class GEGLU(nn.Module):
    """Linear to twice the inner width; the first half gated by the GELU of the second."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)  # two (..., inner) views of one tensor
        # In the projection's own memory: no further (tokens, inner) tensors.
        return hidden.mul_(torch.ops.aten.gelu_(gate))


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4x wide, with the diffusers parameter names (`net.0.proj`, `net.2`)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x

    def train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same result with plain autograd ops (train mode). The gating is recomputed in the backward
        pass: it would keep the gate's GELU, half the projection's size, for nothing else."""
        return self.net[2](self.net[1](recomputed(_gated, self.net[0].proj(x))))


def _gated(projected: torch.Tensor) -> torch.Tensor:
    """GEGLU's gating of its projection (..., 2*inner) -> (..., inner), in autograd ops."""
    hidden, gate = projected.chunk(2, dim=-1)
    return hidden * F.gelu(gate)
