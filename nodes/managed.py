"""Weights that move between an offload device and a load device (imported on first use: needs torch).

Inside ComfyUI each component (UNet, text encoders, VAE) is wrapped in a ComfyUI ModelPatcher, so
ComfyUI's memory management loads it when a node needs it and offloads it when another model needs
the room. ModelPatcher records the current device by setting `.device` on the module it manages;
our modules (and diffusers') expose `device` as a read-only property, so a small holder module
carries that attribute, and the latent format that ComfyUI's latent previews ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class HostedModule(nn.Module):
    """The module ComfyUI manages: our component as its only child, plus ComfyUI's bookkeeping."""

    def __init__(self, inner: nn.Module, device: torch.device, latent_format=None):
        super().__init__()
        self.inner = inner
        self.device = device  # a plain attribute, which ModelPatcher updates as it moves the weights
        self.latent_format = latent_format  # read by latent_preview.prepare_callback


@dataclass
class Managed:
    module: nn.Module
    load_device: torch.device
    offload_device: torch.device
    patcher: object = None  # comfy.model_patcher.ModelPatcher inside ComfyUI

    @classmethod
    def wrap(cls, module: nn.Module, load_device, offload_device, latent_format=None, in_comfyui: bool = False):
        module.to(offload_device)
        patcher = None
        if in_comfyui:
            from comfy.model_patcher import ModelPatcher

            patcher = ModelPatcher(HostedModule(module, offload_device, latent_format), load_device, offload_device)
        return cls(module, torch.device(load_device), torch.device(offload_device), patcher)

    def size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())
