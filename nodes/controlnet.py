"""ControlNet and video-to-video nodes: load a ControlNet, apply it to the conditioning with an IMAGE
batch of control frames (chainable), and encode an IMAGE batch into a LATENT for the sampler's
`latent` input (video-to-video, or image-to-video from one image)."""

from __future__ import annotations

import os
from pathlib import Path

from . import host
from .latents import to_comfy_latent
from .types import CATEGORY, CONDITIONING, CONTROLNET, MODEL
from ..model.choices import SETTINGS_DEFAULTS, VAE_TILING
from ..model.errors import InputError, ModelFileError

CONTROLNET_FOLDERS = ("controlnet",)  # ComfyUI's models/controlnet


def _controlnet_folders() -> list[str]:
    """Diffusers ControlNet folders (config.json with weights) under the controlnet model folders."""
    names = set()
    for base in host.model_bases(CONTROLNET_FOLDERS[0]):
        if not base.is_dir():
            continue
        for root, dirs, files in os.walk(base, followlinks=True):
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(here.relative_to(base).parts) < 2 else []
            if here != base and "config.json" in files and any(f.endswith(".safetensors") for f in files):
                names.add(here.relative_to(base).as_posix())
    return sorted(names, key=str.lower)


def controlnet_names() -> list[str]:
    return sorted({*host.list_weight_files(CONTROLNET_FOLDERS), *_controlnet_folders()}, key=str.lower)


class LoadedControlNet:
    """What a HOTSHOT_XL_CONTROLNET link carries: the network and its managed weights."""

    def __init__(self, net, name: str):
        self.net = net
        self.name = name
        self.handle = host.managed(net, "unet")

    def __repr__(self) -> str:
        return f"LoadedControlNet({self.name!r})"


class HotshotXLControlNetLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model the ControlNet will steer: the ControlNet is held "
                                             "in its dtype (fp8 too) and checked to fit its UNet."}),
                "controlnet_name": (controlnet_names(), {
                    "tooltip": "An SDXL ControlNet from models/controlnet: a .safetensors file (diffusers keys with "
                               "a config.json beside it, a full-size SDXL layout recognised from its tensors, or an "
                               "original-layout control_model.* file) or a diffusers folder."}),
            }
        }

    RETURN_TYPES = (CONTROLNET,)
    RETURN_NAMES = ("controlnet",)
    OUTPUT_TOOLTIPS = ("The ControlNet, for Hotshot-XL Apply ControlNet.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads an SDXL ControlNet (canny, depth, ...) for Hotshot-XL. SD 1.5 ControlNets and other "
                   "bases are refused with the reason.")

    def load(self, model, controlnet_name):
        from ..model.controlnet.loading import load_controlnet
        from ..model.memory.fp8 import Float8Weight

        candidates = [base / controlnet_name for base in host.model_bases(CONTROLNET_FOLDERS[0])]
        path = Path(controlnet_name).expanduser()
        if not path.is_absolute():
            path = next((p for p in candidates if p.exists()), None)
        if path is None or not path.exists():
            raise InputError("controlnet_name", f"{controlnet_name!r} not found in the controlnet model folders")
        unet = model.pipeline.unet
        fp8 = any(isinstance(m, Float8Weight) for m in unet.modules())
        try:
            net = load_controlnet(path, dtype="fp8" if fp8 else unet.dtype, device=host.devices("unet")[1],
                                  unet_config=unet.config)
        except ModelFileError as error:
            raise InputError("controlnet_name", str(error)) from None
        return (LoadedControlNet(net, controlnet_name),)


class HotshotXLApplyControlNet:
    @classmethod
    def INPUT_TYPES(cls):
        fraction = {"min": 0.0, "max": 1.0, "step": 0.01}
        return {
            "required": {
                "conditioning": (CONDITIONING, {"tooltip": "Prompts from Hotshot-XL Text Encode, or from another "
                                                           "Apply ControlNet (they add up)."}),
                "controlnet": (CONTROLNET, {"tooltip": "From Hotshot-XL ControlNet Loader."}),
                "image": ("IMAGE", {"tooltip": "The control frames, one per video frame (or one image for all): "
                                               "edges, depth, pose ... e.g. from Load Video and ComfyUI's Canny node. "
                                               "Scaled to cover the video and centre-cropped."}),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                                       "tooltip": "Scale of the ControlNet's residuals (the original's "
                                                  "controlnet_conditioning_scale; its default was 0.7)."}),
                "start_percent": ("FLOAT", {"default": 0.0, **fraction,
                                            "tooltip": "Fraction of the steps before the ControlNet starts."}),
                "end_percent": ("FLOAT", {"default": 1.0, **fraction,
                                          "tooltip": "Fraction of the steps after which the ControlNet stops."}),
            }
        }

    RETURN_TYPES = (CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("The prompts with this ControlNet attached, for the Hotshot-XL Sampler.",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Steers every frame with a ControlNet and its own control frame, as the original Hotshot-XL "
                   "ControlNet pipeline: its residuals go into the UNet's skips and mid block for both halves of "
                   "guidance; inside context windows each window gets its own frames' control.")

    def apply(self, conditioning, controlnet, image, strength, start_percent, end_percent):
        from dataclasses import replace

        import torch

        from ..model.controlnet.apply import Control
        from ..model.denoising.loop import Conditions

        if not isinstance(conditioning, Conditions):
            raise InputError("conditioning", f"expected Hotshot-XL conditioning, got {type(conditioning).__name__}")
        if not isinstance(controlnet, LoadedControlNet):
            raise InputError("controlnet", f"expected a Hotshot-XL ControlNet, got {type(controlnet).__name__}")
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] != 3 or image.shape[0] < 1:
            raise InputError("image", "expected an IMAGE batch (frames, height, width, 3)")
        frames = image.detach().float().cpu().permute(0, 3, 1, 2).contiguous()  # (frames, 3, h, w) in 0..1
        control = Control(controlnet.net, frames, strength, start_percent, end_percent, name="controlnet",
                          handle=controlnet.handle)
        control.check(inputs={"strength": "strength", "start": "start_percent", "end": "end_percent", "frames": "image"})
        return (replace(conditioning, controls=(*conditioning.controls, control)),)


def prepare_controls(conditioning, width: int, height: int, frames: int):
    """(controls fitted to the video, their memory handles); InputError naming `conditioning`."""
    controls = [control.fitted(width, height) for control in conditioning.controls]
    for control in controls:
        try:
            control.check(frames, height, width)
        except InputError as error:
            raise InputError("conditioning", f"a ControlNet's image batch: {error.problem}") from None
    return controls, [control.handle for control in controls if control.handle is not None]


class HotshotXLEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model whose SDXL VAE encodes the frames."}),
                "image": ("IMAGE", {"tooltip": "The input video as an IMAGE batch (e.g. from Load Video), or one "
                                               "image for image-to-video. Its size must be a multiple of 8, at least "
                                               "64 px."}),
                "frames_per_chunk": ("INT", {"default": SETTINGS_DEFAULTS["decode_chunk"], "min": 1, "max": 256,
                                             "tooltip": "Frames encoded at once: fewer need less memory."}),
                "tiling": (list(VAE_TILING), {"default": SETTINGS_DEFAULTS["vae_tiling"],
                                                   "tooltip": "Encode each frame in overlapping 512 px tiles to bound "
                                                              "memory; auto: frames over 768x768 pixels."}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The frames as SDXL latents, for the Hotshot-XL Sampler's latent input (with denoise below "
                       "1 for video-to-video).",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encodes video frames (or one image) with the model's SDXL VAE, a few frames at a time and in "
                   "tiles, for video-to-video and image-to-video.")

    def encode(self, model, image, frames_per_chunk, tiling):
        import torch

        from ..model.video2video.encode import MIN_SIZE

        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] != 3 or image.shape[0] < 1:
            raise InputError("image", "expected an IMAGE batch (frames, height, width, 3)")
        height, width = image.shape[1:3]
        if min(height, width) < MIN_SIZE or height % 8 or width % 8:
            raise InputError("image", f"is {width}x{height}: needs at least {MIN_SIZE} px on each side, in multiples "
                             "of 8 (scale or crop it first, e.g. with ImageScale)")
        if not torch.isfinite(image).all():
            raise InputError("image", "holds NaN or infinite values")
        host.load(model.vae)
        latents = model.pipeline.encode_video(image.float(), frames_per_chunk, tiling)
        return (to_comfy_latent(latents, model.latent_scale),)
