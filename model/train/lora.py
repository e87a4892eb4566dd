"""Motion LoRA: low-rank updates on the temporal layers' Linear modules.

Each adapted Linear computes W x + b + (alpha / rank) * B (A x), with A (rank, in) and B (out, rank);
B starts at zero, so training starts from the model as it is. The adapters are forward hooks on the
UNet's own Linear modules (its state dict and module names are unchanged) and live in their own
module, which the trainer optimises and saves.

File (the contract with the LoRA loader): safetensors with, per adapted module,
`unet.<module path>.lora_A.weight` (rank, in), `unet.<module path>.lora_B.weight` (out, rank) and
`unet.<module path>.alpha` (a 0-d tensor), and metadata {"format": "hotshot-xl-motion-lora"}.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..files.loading import is_temporal_key

FORMAT = "hotshot-xl-motion-lora"
PREFIX = "unet."


class Adapter(nn.Module):
    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.lora_A = nn.Linear(linear.in_features, rank, bias=False, device=linear.weight.device)
        self.lora_B = nn.Linear(rank, linear.out_features, bias=False, device=linear.weight.device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.rank, self.alpha = rank, float(alpha)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def hook(self, module, inputs, output):
        return output + self.lora_B(self.lora_A(inputs[0].to(self.lora_A.weight.dtype))).to(output.dtype) * self.scale

    def delta(self) -> torch.Tensor:
        """The update of the Linear's weight, (out, in)."""
        return self.scale * (self.lora_B.weight.float() @ self.lora_A.weight.float())


class MotionLoRA(nn.Module):
    """Adapters on every Linear of the temporal layers, named by module path."""

    def __init__(self, unet: nn.Module, rank: int, alpha: float | None = None):
        super().__init__()
        self.names = [name for name, module in unet.named_modules()
                      if isinstance(module, nn.Linear) and is_temporal_key(name + ".")]
        modules = dict(unet.named_modules())
        self.adapters = nn.ModuleList(Adapter(modules[name], rank, rank if alpha is None else alpha)
                                      for name in self.names)
        self.handles = [modules[name].register_forward_hook(adapter.hook)
                        for name, adapter in zip(self.names, self.adapters)]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def file_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, adapter in zip(self.names, self.adapters):
            state[f"{PREFIX}{name}.lora_A.weight"] = adapter.lora_A.weight.detach().float().cpu().contiguous()
            state[f"{PREFIX}{name}.lora_B.weight"] = adapter.lora_B.weight.detach().float().cpu().contiguous()
            state[f"{PREFIX}{name}.alpha"] = torch.tensor(adapter.alpha)
        return state


def merged_weights(unet_state: dict[str, torch.Tensor], lora_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapted Linear weights W + (alpha / rank) B A, from a motion-LoRA file's tensors."""
    merged = {}
    for key in lora_state:
        if key.endswith(".lora_A.weight"):
            path = key[len(PREFIX):-len(".lora_A.weight")]
            down, up = lora_state[key].float(), lora_state[f"{PREFIX}{path}.lora_B.weight"].float()
            alpha = lora_state[f"{PREFIX}{path}.alpha"].item()
            merged[f"{path}.weight"] = unet_state[f"{path}.weight"].float() + alpha / down.shape[0] * (up @ down)
    return merged
