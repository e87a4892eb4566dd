"""Applying ControlNets as the original HotshotXLControlNetPipeline does.

Each UNet call's latents (batch, 4, frames, h, w), the CFG pair (negative, positive) in the batch,
are folded to (batch*frames, 4, h, w), every image with its prompt's text and size conditioning,
and go through the ControlNet with that frame's control image (the same images for both halves
of CFG). Its residuals, times the strength, are added to the UNet's skips and mid block; several
ControlNets' residuals add up. A ControlNet runs at step i of n unless i/n < start or (i+1)/n > end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError


@dataclass
class Control:
    """A ControlNet (diffusers ControlNetModel) with its control frames and settings.

    `frames`: (frames, 3, height, width) float in 0..1, one per video frame (a single one is used for
    every frame), at the video's size (frames.py makes them so). `strength` scales the residuals;
    `start` and `end` are the fractions of the steps it is applied between.
    """

    net: torch.nn.Module
    frames: torch.Tensor
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    name: str = "controlnet"  # how errors name this control (a flag or node input)
    handle: object = None  # what a host keeps to manage the net's memory (the ComfyUI nodes' Managed)

    def check(self, frames: int | None = None, height: int | None = None, width: int | None = None,
              inputs: dict[str, str] | None = None) -> None:
        """InputError naming the bad setting, before any heavy work: `inputs` maps a field (strength, start, end,
        frames) to the caller's name for it (a node input); by default "<name> <field>"."""
        def named(field: str) -> str:
            return inputs[field] if inputs and field in inputs else f"{self.name} {field}"

        for field in ("strength", "start", "end"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(named(field), f"must be a finite number, got {value!r}")
        if self.strength < 0:
            raise InputError(named("strength"), f"must be zero or more, got {self.strength}")
        if not (0 <= self.start < self.end <= 1):
            raise InputError(named("start"), f"start and end must satisfy 0 <= start < end <= 1, got start "
                             f"{self.start}, end {self.end}")
        if self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise InputError(named("frames"),
                             f"expected (frames, 3, height, width), got {tuple(self.frames.shape)}")
        if not torch.isfinite(self.frames).all():
            raise InputError(named("frames"), "hold NaN or infinite values")
        count = self.frames.shape[0]
        if frames is not None and count != 1 and count < frames:
            raise InputError(named("frames"), f"{count} control frames for a {frames}-frame video: give at "
                             "least one per frame (or a single image for all)")
        if height is not None and tuple(self.frames.shape[-2:]) != (height, width):
            raise InputError(named("frames"), f"are {self.frames.shape[-1]}x{self.frames.shape[-2]}, the "
                             f"video {width}x{height}: resize them to the video (frames.resize_frames)")

    def fitted(self, width: int, height: int) -> "Control":
        """This control with its frames fitted to a width x height video (frames.fit_frames), as 8-bit
        pixels: unchanged when they already have that size."""
        if tuple(self.frames.shape[-2:]) == (height, width):
            return self
        from dataclasses import replace

        from .frames import fit_frames, to_control_images

        pixels = (self.frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        return replace(self, frames=to_control_images(fit_frames(pixels, width, height)))

    def active(self, step) -> bool:
        """Whether it applies at `step` = (index, count); always when the step is not known."""
        if step is None:
            return True
        index, count = step
        return not (index / count < self.start or (index + 1) / count > self.end)

    def images(self, frames: Sequence[int]) -> torch.Tensor:
        """(len(frames), 3, h, w): the control images of the video's `frames`."""
        if self.frames.shape[0] == 1:
            return self.frames.expand(len(frames), -1, -1, -1)
        return self.frames[list(frames)]


def check_controls(controls, frames: int, height: int, width: int) -> None:
    for control in controls:
        if not isinstance(control, Control):
            raise InputError("controls", f"expected Control(...) objects, got {type(control).__name__}")
        control.check(frames, height, width)


def _net_dtype(net) -> torch.dtype:
    return net.conv_in.weight.dtype  # kept in the compute dtype under fp8 (loading.KEEP_PRECISE)


def _net_device(net) -> torch.device:
    return net.conv_in.weight.device


def control_residuals(controls, model_input: torch.Tensor, timestep, context: torch.Tensor, pooled: torch.Tensor,
                      time_ids: torch.Tensor, frames=None, step=None) -> dict:
    """The UNet's `down_residuals` and `mid_residual` for one call (empty when no control applies).

    model_input (batch, 4, f, h, w); context (batch, tokens, dim), pooled (batch, dim) and time_ids
    (batch, 6) per batch entry; `frames`: the video's indices of the f frames (None: 0..f-1).
    """
    batch, channels, count, height, width = model_input.shape
    frames = range(count) if frames is None else frames
    down, mid = None, None
    for control in controls:
        if not control.active(step) or control.strength == 0:
            continue  # the original multiplies by zero: the same sums
        net = control.net
        dtype, device = _net_dtype(net), _net_device(net)
        # (batch, 4, f, h, w) -> (batch*f, 4, h, w), frames inner, as the UNet folds them
        sample = model_input.transpose(1, 2).reshape(batch * count, channels, height, width).to(device, dtype)
        images = control.images(frames).to(device, dtype).repeat(batch, 1, 1, 1)  # (batch*f, 3, H, W)
        repeats = batch * count // context.shape[0]  # 1 when the text is per image already (prompt travel)
        added = {"text_embeds": pooled.to(device, dtype).repeat_interleave(repeats, 0),
                 "time_ids": time_ids.to(device).repeat_interleave(repeats, 0)}
        with torch.no_grad():
            res_down, res_mid = net(sample, timestep, encoder_hidden_states=context.to(device, dtype).repeat_interleave(
                repeats, 0), controlnet_cond=images, conditioning_scale=float(control.strength),
                added_cond_kwargs=added, return_dict=False)
        if down is None:
            down, mid = list(res_down), res_mid
        else:
            down = [a.add_(b.to(a.dtype)) for a, b in zip(down, res_down)]
            mid = mid.add_(res_mid.to(mid.dtype))
    if down is None:
        return {}
    target = model_input.device
    return {"down_residuals": [r.to(target) for r in down], "mid_residual": mid.to(target)}
