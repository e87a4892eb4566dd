"""The one attention function, and the projection module both attention kinds share.

Everything goes through PyTorch's `scaled_dot_product_attention`, which picks a fused kernel
(flash/memory-efficient on CUDA, a flash kernel on CPU) and never builds the score matrix when it
can avoid it. Where a caller asks for it, queries are processed in chunks so that even the math
fallback stays within a memory budget at large frame sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

    Self-attention when no context is given. Cross-attention context may be shared by several
    consecutive query batches (the frames of one video): `context_repeats` expands the projected
    keys and values instead of projecting the same text once per frame.
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

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, tokens, heads*head_dim) -> (batch, heads, tokens, head_dim)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, context_repeats: int = 1) -> torch.Tensor:
        source = x if context is None else context
        q = self._split_heads(self.to_q(x))
        k = self._split_heads(self.to_k(source))
        v = self._split_heads(self.to_v(source))
        if context is not None and context_repeats > 1:
            # (batch, heads, text, head_dim) -> (batch*repeats, heads, text, head_dim)
            k = k.repeat_interleave(context_repeats, dim=0)
            v = v.repeat_interleave(context_repeats, dim=0)
        dtype = q.dtype
        if self.upcast:
            q, k, v = q.float(), k.float(), v.float()
        out = attention(q, k, v, self.query_chunk).to(dtype)
        out = out.transpose(1, 2).flatten(-2)  # (batch, tokens, heads*head_dim)
        return self.to_out[1](self.to_out[0](out))
