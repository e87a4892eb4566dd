"""Hotshot-XL's temporal layers on their own, for hosts that bring their own SDXL UNet.

A host UNet (ComfyUI's, through the native nodes) runs the spatial layers; it needs from us the
temporal layers of a checkpoint, one `TransformerTemporal` per down/up resnet, read from the
released temporal-layers file, a released UNet (its temporal keys) or the trainer's output, with a
motion LoRA merged in if asked (and the frame-spanning GroupNorm: network/norms.frame_group_norm).

Nothing here knows the host: positions are named by the checkpoint's (kind, block, layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..network.temporal import TransformerTemporal
from .weights import read_safetensors, safetensors_keys

TEMPORAL_HEADS = 8  # fixed by the release (not stored in any file)
_KEY = re.compile(r"^(down|up)_blocks\.(\d+)\.temporal_attentions\.(\d+)\.(.+)$")
# AnimateDiff's motion modules (SD 1.5 v1/v2/v3, and SDXL's v1.0 beta): not Hotshot-XL.
_ANIMATEDIFF_MARK = "motion_modules."


@dataclass(frozen=True)
class Position:
    """Where a temporal layer sits: after resnet `layer` of down or up block `block`."""

    kind: str  # "down" or "up"
    block: int
    layer: int


def read_temporal_layers(path: str | Path, dtype: torch.dtype = torch.float32) -> dict[Position, TransformerTemporal]:
    """The temporal layers held in `path` (a .safetensors file), built at the sizes the file gives.

    ModelFileError (naming the file) for pickle, truncated or unreadable files, AnimateDiff motion
    modules, files without temporal layers and incomplete layers.
    """
    path = Path(path)
    keys = safetensors_keys(path)  # refuses pickle, missing and corrupt files with the file's name
    if any(_ANIMATEDIFF_MARK in key for key in keys):
        raise ModelFileError(path, "this is an AnimateDiff motion module (motion_modules.* keys, made for "
                             "SD 1.5 or AnimateDiff-SDXL), not Hotshot-XL's temporal layers "
                             "(hsxl_temporal_layers.safetensors)")
    temporal = [key for key in keys if _KEY.match(key)]
    if not temporal:
        raise ModelFileError(path, "holds no Hotshot-XL temporal layers (expected keys like "
                             "down_blocks.0.temporal_attentions.0.proj_in.weight)")
    state = read_safetensors(path, dtype, keep=lambda key: _KEY.match(key) is not None)
    grouped: dict[Position, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        kind, block, layer, rest = _KEY.match(key).groups()
        grouped.setdefault(Position(kind, int(block), int(layer)), {})[rest] = tensor
    layers = {}
    for position, tensors in sorted(grouped.items(), key=lambda item: (item[0].kind != "down", item[0].block,
                                                                        item[0].layer)):
        name = f"{position.kind}_blocks.{position.block}.temporal_attentions.{position.layer}"
        try:
            channels = tensors["proj_in.weight"].shape[0]
            max_frames = tensors["transformer_blocks.0.attention_blocks.0.pos_encoder.positional_encoding"].shape[1]
        except KeyError as missing:
            raise ModelFileError(path, f"{name} is incomplete: no {missing.args[0]}") from None
        module = TransformerTemporal(channels, TEMPORAL_HEADS, max_frames).to(dtype)
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
            raise ModelFileError(path, f"{name} does not fit a Hotshot-XL temporal layer: {detail}") from None
        layers[position] = module.requires_grad_(False).eval()
    return layers


def merge_motion_lora(layers: dict[Position, TransformerTemporal], lora, strength: float) -> int:
    """Add a motion LoRA (model.lora.formats.LoRAFile) at `strength` into `layers`, in place; returns
    the number of layers changed. ModelFileError for a LoRA that changes anything but temporal layers
    (an SDXL LoRA belongs on the MODEL: ComfyUI's LoRA loaders) or layers these do not have."""
    modules = lora.layers.get("unet", {})
    other = [name for name in modules if not _KEY.match(name)] + [c for c in lora.layers if c != "unet"]
    if other or not modules:
        raise ModelFileError(lora.path, "not a motion LoRA: it changes "
                             f"{other[0] if other else 'no UNet layer'}; an SDXL LoRA goes on the MODEL "
                             "(LoraLoader / LoraLoaderModelOnly)")
    for name, update in modules.items():
        kind, block, layer, rest = _KEY.match(name).groups()
        target = layers.get(Position(kind, int(block), int(layer)))
        module = target.get_submodule(rest) if target is not None else None
        weight = getattr(module, "weight", None)
        if weight is None or tuple(weight.shape) != update.weight_shape:
            raise ModelFileError(lora.path, f"{name} does not fit these temporal layers")
        with torch.no_grad():
            weight.add_(update.delta(weight.device).mul_(strength).to(weight.dtype))
    return len(modules)
