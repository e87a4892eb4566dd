"""Train mode: keeping less for the backward pass, with the same arithmetic.

Autograd keeps every tensor an op may need for its backward pass. Where only the temporal layers
train, two kinds of that memory buy nothing:
- a convolution keeps its input for its weight's gradient even when the weight is frozen:
  `conv` keeps only the weight (a parameter: no memory) when no parameter of the conv trains;
- elementwise steps keep inputs and outputs several times the size of what they start from
  (GroupNorm then SiLU: its input, the normalised copy and, via the conv after it, the activation; the
  GEGLU gate: the gate's GELU beside the projection): `recomputed` keeps only their input and redoes
  them in the backward pass, which costs a few passes over memory and no matmul.

And `checkpointed`, the user-selected gradient checkpointing, per layer (see unet.py). All three give
the gradients autograd gives without them: the same kernels on the same values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class _FrozenConv2d(torch.autograd.Function):
    """conv2d whose backward gives the input's gradient only, so the input is not kept."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(weight)
        ctx.geometry = (x.shape, stride, padding, dilation, groups)
        ctx.channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        shape, stride, padding, dilation, groups = ctx.geometry
        # The kernel reads only the input's shape and layout: an uninitialised tensor (never touched,
        # so never resident) stands in for it.
        layout = torch.channels_last if ctx.channels_last else torch.contiguous_format
        stand_in = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=layout)
        grad_x = torch.ops.aten.convolution_backward(grad, stand_in, weight, None, stride, padding, dilation,
                                                     False, [0, 0], groups, (True, False, False))[0]
        return grad_x, None, None, None, None, None, None


def conv(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """module's convolution of x, whole (also for the piecewise Conv2d of blocks.py); when none of the
    module's parameters trains, without keeping x for the backward pass."""
    trains = module.weight.requires_grad or (module.bias is not None and module.bias.requires_grad)
    if trains or module.padding_mode != "zeros" or not torch.is_grad_enabled() or not x.requires_grad:
        return module._conv_forward(x, module.weight, module.bias)
    return _FrozenConv2d.apply(x, module.weight, module.bias, module.stride, module.padding, module.dilation,
                               module.groups)


def recomputed(function, *args):
    """function(*args), keeping only its inputs for the backward pass and running it again there: for
    cheap elementwise steps whose intermediates are large."""
    if not torch.is_grad_enabled():
        return function(*args)
    return checkpoint(function, *args, use_reentrant=False)


def checkpointed(enabled: bool, function, *args):
    """Gradient checkpointing of one layer when `enabled`: function(*args), its activations recomputed in the
    backward pass instead of kept."""
    return recomputed(function, *args) if enabled else function(*args)


def norm_silu(norm, x: torch.Tensor, frames: int) -> torch.Tensor:
    """SiLU of a FrameGroupNorm's output, in autograd ops (run `recomputed`)."""
    return F.silu(norm.train_forward(x, frames))
