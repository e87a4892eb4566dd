"""Running layers on pieces of an activation, to bound the memory of their temporaries.

Most layers of the UNet treat parts of an activation independently: convolutions and spatial
attention each frame, temporal attention and feed-forwards each spatial position. Run on a few
frames (or rows) at a time, their temporaries (a GEGLU feed-forward's hidden layer is 8x its
input) are bounded by a byte budget instead of growing with the video, and each result is written
into one output tensor allocated up front. The arithmetic of every element is unchanged, so
results match a whole-tensor run to rounding.

The budget is a setting of the UNet (`HotshotXLUNet.set_piece_budget`); "auto" picks a size
per device.
"""

from __future__ import annotations

import math

import torch

MiB = 2**20
# Largest temporary of one piece, by device type. On CPUs pieces bound the activation memory, but
# each piece is a further round of kernel calls that streams the layer's whole weights again (a
# 1280-wide transformer block holds 139 MB in fp32) and meets the threads at a barrier again: with
# 32 MiB pieces the full-size UNet's layers at 256x256x8 took 1.1-2.4x the CPU time of whole tensors
# (1.65x for the 10-block transformers, 2.3x for the 320-wide temporal layers; benchmarks/
# layers_vs_comfy.py, README "Where a step's time goes"). 256 MiB leaves every layer whole at
# 256x256x8 and splits the larger sizes into a few pieces, still a small fraction of the weights
# (10 GiB in fp32, 5 GiB in bf16). GPUs run faster on whole tensors and have the memory for them at
# Hotshot-XL's sizes, so they are not split unless asked.
AUTO_BUDGETS = {"cpu": 256 * MiB}


def resolve_budget(budget: int | str | None, device: torch.device) -> int | None:
    """Bytes per piece for `device`, or None for whole tensors."""
    if budget == "auto":
        return AUTO_BUDGETS.get(device.type)
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise ValueError(f"piece budget must be a positive number of bytes, None or 'auto', got {budget!r}")
    return budget


def pieces(total: int, item_bytes: int, budget: int | None, align: int = 1) -> list[slice]:
    """Consecutive slices covering range(total), each of about `budget // item_bytes` items.

    With `align` (a video's frame count) a piece never straddles two groups of `align` items
    unless it holds whole groups: its size divides `align` or is a multiple of it.
    """
    if budget is None or total * item_bytes <= budget:
        return [slice(0, total)]
    size = max(1, budget // max(item_bytes, 1))
    if align > 1:
        size = (size // align) * align if size >= align else max(d for d in range(1, size + 1) if align % d == 0)
    count = math.ceil(total / size)
    if align == 1:
        size = math.ceil(total / count)  # even pieces: no small straggler
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def empty_like_layout(x: torch.Tensor, channels: int, height: int | None = None,
                      width: int | None = None) -> torch.Tensor:
    """An uninitialised (n, channels, h, w) tensor in x's memory layout (channels-last or not)."""
    shape = (x.shape[0], channels, height or x.shape[2], width or x.shape[3])
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
