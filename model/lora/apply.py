"""Merging LoRAs into the weights, and restoring the weights bit for bit.

Why merged: after the merge a step costs exactly what it cost before (no side path per layer), and
offload, compile and fp8 see ordinary weights. Each touched layer's original tensors are copied
once to `backup_device` (the CPU: the compute device holds only the merged weights) before its
first merge; every merge recomputes the layer from that copy, in float32, as
`W = W0 + sum(strength * alpha / rank * up @ down)` over the LoRAs active on it, and writes the
result in place (same tensor objects, so offload's resting copies, compiled graphs and ComfyUI's
model patcher keep pointing at the right storage). Restoring copies the backup back.

fp8 layers (model/memory/fp8.py) are dequantized exactly from the backup, merged in float32 and quantized
again (a new per-row scale); restoring puts back the original float8 weight and scale.

A strength of 0 leaves a LoRA out altogether, so the weights are untouched. Any failure during a
merge puts the layers it touched back as they were before it: nothing is left half-applied.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError, ModelFileError
from ..memory.fp8 import Float8Weight, quantize
from .formats import COMPONENTS, LayerLoRA, LoRAFile

log = logging.getLogger("hotshot_xl.lora")
COMPONENT_LABELS = {"unet": "UNet", "text_encoder": "text encoder 1", "text_encoder_2": "text encoder 2"}


def check_strength(value, name: str = "strength") -> float:
    """A finite number, as float; InputError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(name, f"must be a finite number, got {value!r}")
    return float(value)


@dataclass
class MatchReport:
    """How a LoRA file's tensors matched this model's layers."""

    lora: LoRAFile
    matched: dict[str, int] = field(default_factory=dict)  # component -> file tensors matched
    layers: dict[str, int] = field(default_factory=dict)  # component -> layers matched
    unknown: list[str] = field(default_factory=list)  # file tensors naming no layer of this model

    def lines(self) -> list[str]:
        parts = [f"{COMPONENT_LABELS[c]}: {self.matched[c]} tensors ({self.layers[c]} layers)"
                 for c in COMPONENTS if self.matched.get(c)]
        total = sum(self.matched.values())
        lines = [f"LoRA {self.lora.name} ({self.lora.layout}): {total} of {self.lora.tensor_count} tensors matched: "
                 + ", ".join(parts)]
        if self.unknown:
            more = f" ... ({len(self.unknown)} in all)" if len(self.unknown) > 8 else ""
            shown = ", ".join(self.unknown[:8]) + more
            lines.append(f"LoRA {self.lora.name}: {len(self.unknown)} tensors match no layer of this model and are "
                         f"ignored: {shown}")
        return lines

    def log(self) -> None:
        log.info(self.lines()[0])
        if self.unknown:
            log.warning(self.lines()[1])


def match(lora: LoRAFile, modules: dict[str, nn.Module],
          require: bool = True) -> tuple[dict[str, dict[nn.Module, LayerLoRA]], MatchReport]:
    """The layers of `modules` (component -> root module) that `lora` updates, and the report.
    Components missing from `modules` are left out (not counted as unknown).

    ModelFileError naming the file if an update does not fit its layer's shape (a LoRA for another
    base model: SD 1.5, SD 2, ...) or, when `require`, if nothing in the file matches a layer.
    """
    report = MatchReport(lora, unknown=list(lora.unknown))
    targets: dict[str, dict[nn.Module, LayerLoRA]] = {}
    for component, updates in lora.layers.items():
        if component not in modules:
            continue
        root = modules[component]
        found = {}
        for name, update in updates.items():
            layer = _layer(root, name)
            if layer is None:
                report.unknown.extend(update.keys)
                continue
            if tuple(layer.weight.shape) != update.weight_shape:
                raise ModelFileError(lora.path, f"made for another base model{lora.base_hint()}: {update.keys[0]} "
                                     f"updates a layer of shape {update.weight_shape}, but this model's {component} "
                                     f"layer {name} is {tuple(layer.weight.shape)}; Hotshot-XL takes SDXL LoRAs")
            found[layer] = update
        if found:
            targets[component] = found
            report.matched[component] = sum(len(u.keys) for u in found.values())
            report.layers[component] = len(found)
    report.unknown.sort()
    if not targets and require:
        raise ModelFileError(lora.path, f"none of its {lora.tensor_count} tensors match a layer of this model "
                             f"(e.g. {min(report.unknown, default='?')}){lora.base_hint()}: Hotshot-XL takes SDXL "
                             "LoRAs (UNet and both CLIP text encoders) and motion LoRAs for its temporal layers, not "
                             "LoRAs for SD 1.5, SD 2, SD 3 or FLUX")
    return targets, report


# transformers 5's CLIPTextModel holds its layers directly, not under `text_model.` as LoRA files name them.
_OPTIONAL_PREFIXES = ("text_model.",)


def _layer(root: nn.Module, name: str) -> nn.Module | None:
    names = [name] + [name[len(p):] for p in _OPTIONAL_PREFIXES if name.startswith(p)]
    layer = None
    for candidate in names:
        try:
            layer = root.get_submodule(candidate)
            break
        except AttributeError:
            continue
    weight = getattr(layer, "weight", None)
    return layer if isinstance(layer, (nn.Linear, nn.Conv2d)) and isinstance(weight, torch.Tensor) else None


def _own_tensors(layer: nn.Module) -> dict[str, torch.Tensor]:
    names = ("weight", "weight_scale") if isinstance(layer, Float8Weight) else ("weight",)
    return {name: getattr(layer, name) for name in names}


def _original_weight(layer: nn.Module, backup: dict[str, torch.Tensor], device) -> torch.Tensor:
    """The layer's weight before any LoRA, in float32 (exact for fp8: power-of-two scales)."""
    weight = backup["weight"].to(device, torch.float32, copy=True)  # the merge adds into it: never the backup itself
    if "weight_scale" in backup:
        weight.mul_(backup["weight_scale"].to(device, torch.float32).view(-1, *[1] * (weight.ndim - 1)))
    return weight


@torch.no_grad()
def _write(layer: nn.Module, merged: torch.Tensor) -> None:
    """Put the float32 `merged` weight into the layer's own tensors, in place, in their dtype."""
    if isinstance(layer, Float8Weight):
        weight, scale = quantize(merged)
        layer.weight.copy_(weight)
        layer.weight_scale.copy_(scale)
    else:
        layer.weight.copy_(merged)


class LoRAStack:
    """LoRAs merged into one model's layers, with the backups that undo them.

    `add` merges one LoRA with a strength per component; `restore` puts every touched layer back.
    """

    def __init__(self, backup_device: str | torch.device = "cpu"):
        self.backup_device = torch.device(backup_device)
        self._backups: dict[nn.Module, dict[str, torch.Tensor]] = {}
        self._updates: dict[nn.Module, list[tuple[LayerLoRA, float]]] = {}
        self.loaded: list[tuple[LoRAFile, dict[str, float], MatchReport]] = []

    def __bool__(self) -> bool:
        return bool(self._backups)

    def backup_bytes(self) -> int:
        """Bytes held by the backups of the touched layers."""
        return sum(t.numel() * t.element_size() for backup in self._backups.values() for t in backup.values())

    def add(self, lora: LoRAFile, modules: dict[str, nn.Module], strengths: dict[str, float],
            require: bool = True) -> MatchReport:
        """Merge `lora` into `modules` (component -> root), with `strengths` (component -> strength).
        `require`: a LoRA matching none of `modules` is an error (else it changes nothing)."""
        strengths = {c: check_strength(s, f"strength ({c})") for c, s in strengths.items()}
        targets, report = match(lora, modules, require)  # every check before any weight changes
        scaled = {layer: (update, strengths[c]) for c, layers in targets.items() if strengths.get(c, 0.0) != 0.0
                  for layer, update in layers.items()}
        before = {layer: list(self._updates.get(layer, [])) for layer in scaled}
        try:
            for layer, entry in scaled.items():
                self._updates.setdefault(layer, []).append(entry)
                self._merge(layer)
        except BaseException:
            for layer, previous in before.items():
                self._set(layer, previous)
            raise
        self.loaded.append((lora, strengths, report))
        return report

    def _merge(self, layer: nn.Module) -> None:
        tensors = _own_tensors(layer)
        if layer not in self._backups:
            self._backups[layer] = {n: t.detach().to(self.backup_device, copy=True) for n, t in tensors.items()}
        device = tensors["weight"].device
        merged = _original_weight(layer, self._backups[layer], device)
        rows = merged.view(merged.shape[0], -1)  # (out, in * kh * kw)
        for update, strength in self._updates[layer]:
            # rows += strength * scale * up @ down, in place: no second layer-sized temporary
            up = update.up.to(device, torch.float32).flatten(1)
            down = update.down.to(device, torch.float32).flatten(1)
            rows.addmm_(up, down, alpha=strength * update.scale)
        _write(layer, merged)

    @torch.no_grad()
    def _set(self, layer: nn.Module, updates: list) -> None:
        """Make `layer` carry exactly `updates` (none: its backup, copied back)."""
        if updates:
            self._updates[layer] = updates
            self._merge(layer)
            return
        self._updates.pop(layer, None)
        backup = self._backups.pop(layer, None)
        if backup is not None:
            for name, tensor in _own_tensors(layer).items():
                tensor.copy_(backup[name])

    def restore(self) -> None:
        """Every touched layer back to its original tensors, bit for bit."""
        for layer in list(self._backups):
            self._set(layer, [])
        self.loaded.clear()


@contextmanager
def merged(modules: dict[str, nn.Module], loras, component_strength):
    """Within the block, `loras` are merged into `modules`; afterwards the weights are restored.

    `loras`: (LoRAFile, strength_model, strength_clip) entries; `component_strength(component,
    strength_model, strength_clip)` picks the strength each component gets.
    """
    stack = LoRAStack()
    try:
        for lora, strength_model, strength_clip in loras:
            strengths = {c: component_strength(c, strength_model, strength_clip) for c in modules}
            if any(strengths.values()):
                stack.add(lora, modules, strengths, require=False)
        yield stack
    finally:
        stack.restore()


def strength_for(component: str, strength_model: float, strength_clip: float) -> float:
    """The UNet takes the model strength, the text encoders the clip strength (ComfyUI's split)."""
    return strength_model if component == "unet" else strength_clip
