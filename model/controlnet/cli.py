"""Command-line flags for ControlNets; nothing heavy is imported until the flags are used.

`--controlnet PATH` starts a group; the --control-* flags after it set that ControlNet's frames
and settings, so the group repeats for several ControlNets:
    --controlnet canny.safetensors --control-frames edges/ --control-strength 0.7 \\
    --controlnet depth/ --control-frames depth.mp4 --control-end 0.5
"""

from __future__ import annotations

import argparse
import math

# flag -> (field, type, default)
GROUP_FLAGS = {
    "--control-frames": ("frames", str, None),
    "--control-strength": ("strength", float, 1.0),
    "--control-start": ("start", float, 0.0),
    "--control-end": ("end", float, 1.0),
    "--control-preprocess": ("preprocess", str, "none"),
    "--control-config": ("config", str, None),
}


class _NewControlNet(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        groups = list(getattr(namespace, "controlnets", None) or [])
        groups.append({"path": value, **{field: default for field, _, default in GROUP_FLAGS.values()}})
        namespace.controlnets = groups


class _GroupSetting(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        groups = getattr(namespace, "controlnets", None)
        if not groups:
            parser.error(f"{option_string} must follow the --controlnet it belongs to")
        groups[-1][GROUP_FLAGS[option_string][0]] = value


def add_controlnet_arguments(parser: argparse.ArgumentParser) -> None:
    from_frames = "ControlNets steer every frame; each --controlnet starts a group of the --control-* flags after it."
    group = parser.add_argument_group("controlnet", from_frames)
    unset = argparse.SUPPRESS  # no "(default: None)" in --help; the group's defaults are in GROUP_FLAGS
    group.add_argument("--controlnet", action=_NewControlNet, dest="controlnets", default=unset, metavar="PATH",
                       help="SDXL ControlNet: diffusers folder, .safetensors (config.json beside it, --control-config, "
                       "or a full-size SDXL layout), or an original-layout single file; repeatable")
    group.add_argument("--control-frames", action=_GroupSetting, default=unset, metavar="PATH",
                       help="its control frames: a video (mp4, webm, gif, webp), a folder of images, or one image "
                       "for every frame; scaled to cover the video and centre-cropped")
    group.add_argument("--control-strength", action=_GroupSetting, default=unset, type=float, metavar="S",
                       help="scale of its residuals (default 1.0)")
    group.add_argument("--control-start", action=_GroupSetting, default=unset, type=float, metavar="F",
                       help="fraction of the steps before it starts (default 0.0)")
    group.add_argument("--control-end", action=_GroupSetting, default=unset, type=float, metavar="F",
                       help="fraction of the steps after which it stops (default 1.0)")
    group.add_argument("--control-preprocess", action=_GroupSetting, default=unset, choices=["none", "canny"],
                       help="none: the frames are already edges/depth/...; canny: OpenCV canny edges of them "
                       "(default none)")
    group.add_argument("--control-config", action=_GroupSetting, default=unset, metavar="PATH",
                       help="config.json for a bare .safetensors ControlNet of a non-standard size")


def check_controlnet_args(args, width: int, height: int, frames: int) -> list[dict]:
    """Every group checked and its control frames read (cheap: headers and images), before any
    weights are loaded; InputError/ModelFileError name the flag or file."""
    from ..errors import InputError
    from .frames import control_frames
    from .loading import describe

    checked = []
    for group in getattr(args, "controlnets", None) or []:
        for flag in ("--control-strength", "--control-start", "--control-end"):
            value = group[GROUP_FLAGS[flag][0]]
            if not math.isfinite(value):
                raise InputError(flag, f"must be a finite number, got {value}")
        if group["strength"] < 0:
            raise InputError("--control-strength", f"must be zero or more, got {group['strength']}")
        if not 0 <= group["start"] < group["end"] <= 1:
            raise InputError("--control-start", f"--control-start must be below --control-end, both in 0..1; got "
                             f"{group['start']} and {group['end']}")
        if group["frames"] is None:
            raise InputError("--control-frames", f"--controlnet {group['path']} has no --control-frames")
        describe(group["path"], group["config"])
        images = control_frames(group["frames"], width, height, frames, group["preprocess"], "--control-frames")
        checked.append({**group, "images": images})
    return checked


def controls_from_args(checked: list[dict], pipe) -> list:
    """The Control objects of the checked groups, their ControlNets loaded like the UNet."""
    from .apply import Control
    from .loading import load_controlnet

    controls = []
    from ..memory.fp8 import Float8Weight

    # As the UNet is held: fp8 storage if it has fp8 layers, else its dtype; on its device.
    fp8 = any(isinstance(module, Float8Weight) for module in pipe.unet.modules())
    load_dtype = "fp8" if fp8 else pipe.unet.dtype
    device = pipe.unet.device
    for group in checked:
        net = load_controlnet(group["path"], group["config"], load_dtype, device, pipe.unet.config)
        controls.append(Control(net, group["images"], group["strength"], group["start"], group["end"],
                                name="--controlnet"))
    return controls
