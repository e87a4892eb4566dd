"""Offloading: weights rest on the CPU and visit the compute device only while they run.

Two granularities (`OFFLOAD_MODES`, besides "none"):
- "model": each component (the text encoders, the UNet, the VAE) is on the compute device for its
  stage of the pipeline (encode, sample, decode) and leaves after it, so the device holds the
  largest component rather than all of them (`Offloader.manage` and `Offloader.running`).
- "sequential": the UNet also visits unit by unit during its forward pass (`unet_units`: every
  resnet, spatial transformer, temporal layer and down/up-sampler); each arrives in a forward
  pre-hook and leaves in a forward hook. The device then holds the largest unit (a spatial
  transformer of the full-size UNet's innermost blocks: 10 transformer blocks, 351 M parameters,
  0.7 GB in bf16, 0.35 GB in fp8) plus the UNet's top-level layers, which stay there: conv_in,
  conv_out, the embeddings and the final norm (7 M parameters). Every step copies the whole UNet
  to the device: it is slow, and for GPUs too small to hold the UNet otherwise.

Leaving costs nothing: arriving copies each tensor to the compute device, leaving points the
module back at the copy it keeps on the offload device (inference never changes a weight, so
nothing is copied back). When both devices are the CPU the copies still happen, which saves
nothing but lets the tests watch every unit arrive and leave.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..network.blocks import Downsample, ResnetBlock, SpatialTransformer, Upsample
from ..choices import OFFLOAD_MODES  # noqa: F401 (re-exported)
from ..network.temporal import TransformerTemporal

# The UNet's units for sequential offload. None holds another, and every tensor of the UNet is in
# one of them except the few top-level layers that stay on the compute device.
SEQUENTIAL_UNITS = (ResnetBlock, SpatialTransformer, TransformerTemporal, Downsample, Upsample)


def unet_units(unet: nn.Module) -> dict[str, nn.Module]:
    """The UNet's units for sequential offload, by name, in the order the forward pass runs them."""
    return {name: module for name, module in unet.named_modules() if isinstance(module, SEQUENTIAL_UNITS)}


def _own_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The module's own parameters and buffers, not its children's."""
    yield from module.named_parameters(recurse=False)
    yield from module.named_buffers(recurse=False)


def _place(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    current = getattr(module, name)
    if isinstance(current, nn.Parameter):
        current.data = tensor  # same Parameter object: anything holding it sees the move
    else:
        setattr(module, name, tensor)


class Offloader:
    """Brings modules to `device` while they run; between runs they rest on `offload_device`.

    `events`, when set to a list, records ("load" | "unload", name) in order: for the tests, and
    for counting transfers.
    """

    def __init__(self, device: str | torch.device, offload_device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.events: list[tuple[str, str]] | None = None
        self._homes: dict[nn.Module, dict[str, torch.Tensor]] = {}  # each module's own tensors at rest
        self._names: dict[nn.Module, str] = {}  # modules moved by `running`, and their names

    def _rest(self, module: nn.Module) -> None:
        """Put `module` on the offload device and remember its tensors there."""
        nn.Module.to(module, self.offload_device)  # not diffusers' override, which warns about dtypes
        for owner in module.modules():
            # detach(): the tensor itself, not the Parameter, whose data will point elsewhere.
            self._homes[owner] = {name: tensor.detach() for name, tensor in _own_tensors(owner)}

    def _move(self, module: nn.Module, name: str, arrive: bool) -> None:
        if self.events is not None:
            self.events.append(("load" if arrive else "unload", name))
        for owner in module.modules():
            for key, home in self._homes[owner].items():
                _place(owner, key, home.to(self.device, copy=True) if arrive else home)

    def manage(self, module: nn.Module, name: str) -> None:
        """Model offload: `module` rests on the offload device and is moved whole by `running`
        (managing a module twice keeps its first name)."""
        if module in self._names:
            return
        self._rest(module)
        self._names[module] = name

    @contextmanager
    def running(self, *modules: nn.Module):
        """`modules` on the compute device for the length of the block (those not `manage`d: as they are)."""
        managed = [module for module in modules if module in self._names]
        for module in managed:
            self._move(module, self._names[module], arrive=True)
        try:
            yield
        finally:
            for module in managed:
                self._move(module, self._names[module], arrive=False)

    def attach_sequential(self, root: nn.Module, units: dict[str, nn.Module], name: str = "") -> None:
        """Sequential offload: each of `units` (submodules of `root`, by name) arrives on the compute
        device as its forward starts and leaves when it ends; the rest of `root` moves there for good."""
        inside_units = set()
        for unit_name, unit in units.items():
            inside_units.update(unit.modules())
            self._rest(unit)
            label = f"{name}.{unit_name}" if name else unit_name
            # Defaults bind this unit and label now, not the loop's last ones.
            unit.register_forward_pre_hook(lambda module, args, label=label: self._move(module, label, True))
            unit.register_forward_hook(lambda module, args, output, label=label: self._move(module, label, False),
                                       always_call=True)  # also when the forward raises (an interrupted run)
        for owner in root.modules():
            if owner not in inside_units:
                for key, tensor in list(_own_tensors(owner)):
                    _place(owner, key, tensor.to(self.device))
