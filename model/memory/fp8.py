"""fp8 weight storage: Linear and Conv2d weights held in float8 (e4m3), computed in bf16.

Why: weights are most of a run's memory (the UNet's 2.6 B parameters are 5.1 GB in bf16). Held
in float8_e4m3fn they take half that. Each layer upcasts its weight to bf16 just before it runs,
so one layer's bf16 weight exists at a time; blocks.Conv2d, which convolves a few output channels
at a time, upcasts only those rows (`weight_rows`). The arithmetic stays bf16: this saves memory,
not time.

Scaling: e4m3 holds magnitudes up to 448 with 3 mantissa bits and loses precision below 2^-6.
Each output channel (a row of the weight) gets its own scale, which brings its largest magnitude
just under 448: rows of one SDXL weight differ in size by orders of magnitude, and one scale for
the tensor would push the small rows into e4m3's coarse subnormal range. The scales are powers of
two, so upcasting is exact: the bf16 weight is exactly the stored float8 value times 2^k (bf16's
8 exponent bits hold every e4m3 value shifted by any such k). The scale is held in the compute
dtype, and a layer computes in its scale's dtype.

Which layers: every nn.Linear and nn.Conv2d except those under `KEEP_PRECISE` (the timestep and
size-conditioning MLPs, which condition every resnet, and conv_in/conv_out, which touch the
latent itself: together 0.3% of the full-size UNet's weights). Norms, biases and the temporal
layers' position tables stay in the compute dtype too.

State dict: `<layer>.weight` keeps its name and shape, now float8, and `<layer>.weight_scale`
(out_channels,) is added, so an fp8 model's state dict loads strictly into another fp8 model, and
a normal model's keys are unchanged. `quantizer` converts each tensor as it is read, so a load
peaks at about the fp8 model plus one tensor being converted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..network.blocks import Conv2d

FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max  # 448
COMPUTE_DTYPE = torch.bfloat16
# Top-level modules of the UNet whose layers keep the compute dtype (see the module docstring).
KEEP_PRECISE = ("conv_in", "conv_out", "time_embedding", "add_embedding")


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(float8 weight, float32 scale (out,)) with weight ~= float8 * scale, one power of two per row."""
    rows = weight.float().flatten(1)  # (out, in * kernel): float32 copy of this one tensor
    # frexp splits amax / 448 into m * 2^e with m in [0.5, 1): amax / 2^e = 448 m < 448, so no row
    # overflows e4m3 (whose conversion would give NaN: it has no infinity). All-zero rows get 2^0.
    _, exponent = torch.frexp(rows.abs().amax(dim=1) / FLOAT8_MAX)
    scale = torch.ldexp(torch.ones_like(exponent, dtype=torch.float32), exponent)
    return (rows / scale[:, None]).to(FLOAT8).view(weight.shape), scale


class Float8Weight:
    """A layer's `weight` held in float8 with `weight_scale` (out,) in the compute dtype."""

    weight: nn.Parameter
    weight_scale: torch.Tensor

    def _hold_float8(self, compute_dtype: torch.dtype) -> None:
        # Built on the meta device and filled by assignment (use_float8, or a strict load of what
        # `quantizer` read): only the dtypes and shapes matter here.
        self.weight = nn.Parameter(torch.empty_like(self.weight, dtype=FLOAT8), requires_grad=False)
        self.register_buffer("weight_scale", torch.empty(self.weight.shape[0], device="meta", dtype=compute_dtype))

    def weight_rows(self, rows: slice = slice(None)) -> torch.Tensor:
        """The weight of output channels `rows` in the compute dtype (exact: see the module docstring)."""
        scale = self.weight_scale[rows]
        weight = self.weight[rows].to(scale.dtype)
        return weight.mul_(scale.view(-1, *[1] * (weight.ndim - 1)))


class Float8Linear(Float8Weight, nn.Linear):
    """nn.Linear reading its weight from float8."""

    def __init__(self, like: nn.Linear, compute_dtype: torch.dtype = COMPUTE_DTYPE):
        super().__init__(like.in_features, like.out_features, bias=like.bias is not None, device="meta",
                         dtype=compute_dtype)
        self._hold_float8(compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_rows(), self.bias)


class Float8Conv2d(Float8Weight, Conv2d):
    """blocks.Conv2d (convolution by pieces of output channels) reading its weight from float8."""

    def __init__(self, like: nn.Conv2d, compute_dtype: torch.dtype = COMPUTE_DTYPE):
        super().__init__(like.in_channels, like.out_channels, like.kernel_size, stride=like.stride,
                         padding=like.padding, dilation=like.dilation, groups=like.groups,
                         bias=like.bias is not None, padding_mode=like.padding_mode, device="meta",
                         dtype=compute_dtype)
        self.piece_budget = getattr(like, "piece_budget", Conv2d.piece_budget)
        self._hold_float8(compute_dtype)


def use_float8(model: nn.Module, compute_dtype: torch.dtype = COMPUTE_DTYPE,
               keep: tuple[str, ...] = KEEP_PRECISE) -> set[str]:
    """Swap the Linear and Conv2d layers of `model` for float8 ones (except under the top-level
    modules `keep`); returns the swapped layers' names.

    On a model built on the meta device only the layers change: the weights come later, by
    assignment of what `quantizer` read. The layers of a loaded model are quantized here.
    """
    swapped = set()
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full_name = f"{parent_name}.{name}" if parent_name else name
            if full_name.split(".")[0] in keep or isinstance(child, Float8Weight):
                continue
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                replacement = (Float8Linear if isinstance(child, nn.Linear) else Float8Conv2d)(child, compute_dtype)
                if not child.weight.is_meta:
                    weight, scale = quantize(child.weight)
                    state = {"weight": weight, "weight_scale": scale.to(compute_dtype)}
                    if child.bias is not None:
                        state["bias"] = child.bias.to(compute_dtype)
                    replacement.load_state_dict(state, assign=True)
                setattr(parent, name, replacement.requires_grad_(False))
                swapped.add(full_name)
    return swapped


# (tensor name, tensor as read) -> the tensors to keep under their names.
Convert = Callable[[str, torch.Tensor], dict[str, torch.Tensor]]


def quantizer(float8_layers: set[str], compute_dtype: torch.dtype = COMPUTE_DTYPE) -> Convert:
    """Conversion of each tensor as it is read: the weights of `float8_layers` to float8 plus their
    scale, every other floating-point tensor to `compute_dtype`."""

    def convert(key: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        layer, _, leaf = key.rpartition(".")
        if leaf == "weight" and layer in float8_layers and tensor.ndim >= 2:
            weight, scale = quantize(tensor)
            return {key: weight, f"{layer}.weight_scale": scale.to(compute_dtype)}
        return {key: tensor.to(compute_dtype) if tensor.is_floating_point() else tensor}

    return convert


def convert_state_dict(state: dict[str, torch.Tensor], convert: Convert) -> dict[str, torch.Tensor]:
    """`convert` applied to every tensor of `state`, each original released as soon as it is converted."""
    converted = {}
    for key in list(state):
        converted.update(convert(key, state.pop(key)))
    return converted
