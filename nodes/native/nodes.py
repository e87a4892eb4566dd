"""The native-path nodes: Hotshot-XL's motion on a core MODEL, and a released folder as core
MODEL/CLIP/VAE. Everything ComfyUI-specific is imported when a node runs (patch.py, loader.py)."""

from __future__ import annotations

from pathlib import Path

from .. import host
from ..types import CATEGORY
from ...model.errors import InputError, ModelFileError

NATIVE_DTYPES = ["auto", "bf16", "fp16", "fp32"]
NO_LORA = "none"


def temporal_choices() -> list[str]:
    """Temporal-layer files and released model folders in models/animatediff_models, models/hotshot_xl."""
    files = host.list_weight_files(host.TEMPORAL_FOLDERS)
    return sorted(set(files) | set(host.list_model_folders(host.TEMPORAL_FOLDERS)), key=str.lower)


def _temporal_file(name: str) -> Path:
    """The safetensors file holding the temporal layers `name` stands for (a file, or a model folder's UNet)."""
    candidate = Path(name).expanduser()
    bases = [candidate] if candidate.is_absolute() else [b / name for f in host.TEMPORAL_FOLDERS
                                                         for b in host.model_bases(f)]
    if any(path.is_dir() for path in bases):
        folder = host.resolve(name, host.TEMPORAL_FOLDERS, "temporal_layers", want_folder=True)
        from ...model.files.weights import component_weight_files

        unet = folder / "unet" if (folder / "unet").is_dir() else folder
        try:
            files = component_weight_files(unet)
        except ModelFileError as error:
            raise InputError("temporal_layers", str(error)) from None
        if len(files) != 1:
            raise InputError("temporal_layers", f"{unet}: sharded UNet weights; give the temporal-layers file "
                             "(hsxl_temporal_layers.safetensors) instead")
        return files[0]
    return host.resolve(name, host.TEMPORAL_FOLDERS, "temporal_layers", want_folder=False)


class HotshotXLApplyTemporalLayers:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "An SDXL MODEL from any core loader (Load Checkpoint, Load Diffusion "
                                               "Model), after LoRAs or not."}),
                "temporal_layers": (temporal_choices(), {
                    "tooltip": "Hotshot-XL's temporal layers: hsxl_temporal_layers.safetensors (or its fp16 "
                               "variant), a released Hotshot-XL model folder, or the trainer's output, from "
                               "models/animatediff_models or models/hotshot_xl."}),
            },
            "optional": {
                "motion_lora": ([NO_LORA, *host.list_weight_files(("loras",))], {
                    "default": NO_LORA,
                    "tooltip": "A motion LoRA on the temporal layers (python -m model.train --lora-rank), from "
                               "models/loras. SDXL LoRAs go on the MODEL with the core LoRA loaders instead."}),
                "motion_lora_strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                                   "tooltip": "How strongly the motion LoRA changes the motion."}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The MODEL denoising a batch of latents as one video (per cond/uncond): connect it to "
                       "KSampler with an Empty Latent Image whose batch size is the frame count.",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Gives an SDXL MODEL Hotshot-XL's motion: the temporal layers after each resnet of the down and "
                   "up blocks and GroupNorm statistics over all frames, as the original. The batch is the video: "
                   "up to 24 frames per model call, more with Context Windows (Manual), dim 0. The input MODEL is "
                   "unchanged.")

    def apply(self, model, temporal_layers, motion_lora=NO_LORA, motion_lora_strength=1.0):
        from . import patch
        from ...model.files.temporal_layers import merge_motion_lora, read_temporal_layers

        patch.check_sdxl(model, "model")
        path = _temporal_file(temporal_layers)
        try:
            layers = read_temporal_layers(path)
        except ModelFileError as error:
            raise InputError("temporal_layers", str(error)) from None
        if motion_lora != NO_LORA:
            from ...model.lora.apply import check_strength
            from ...model.lora.formats import read_lora

            strength = check_strength(motion_lora_strength, "motion_lora_strength")
            lora_path = host.resolve(motion_lora, ("loras",), "motion_lora", want_folder=False)
            try:
                merge_motion_lora(layers, read_lora(lora_path), strength)  # into this call's own copy
            except ModelFileError as error:
                raise InputError("motion_lora", str(error)) from None
        return (patch.with_temporal_layers(model, layers, "temporal_layers", str(path)),)


class HotshotXLNativeLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (host.list_model_folders(), {
                    "tooltip": "A released Hotshot-XL (or SDXL diffusers) model folder from models/diffusers or "
                               "models/hotshot_xl."}),
                "dtype": (NATIVE_DTYPES, {"default": "auto", "tooltip": "Precision of the UNet; auto: ComfyUI's "
                                                                          "choice for the device."}),
            }
        }

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    RETURN_NAMES = ("model", "clip", "vae")
    OUTPUT_TOOLTIPS = ("The folder's UNet as a core SDXL MODEL, without temporal layers (add them with Hotshot-XL "
                       "Apply Temporal Layers).", "Both text encoders as a core CLIP.", "The VAE as a core VAE.")
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a diffusers-layout Hotshot-XL or SDXL folder into ComfyUI's own MODEL, CLIP and VAE, for "
                   "core nodes (KSampler, CLIP Text Encode, VAE Decode). Any size of SDXL-shaped UNet, including "
                   "ones ComfyUI's checkpoint loader does not recognise.")

    def load(self, model_name, dtype):
        import torch

        from . import loader

        folder = host.resolve(model_name, host.MODEL_FOLDERS, "model_name", want_folder=True)
        dtypes = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        try:
            vae = loader.load_vae(folder)  # first: the one part ComfyUI builds only at SDXL's shape
            return (loader.load_unet(folder, dtypes[dtype]), loader.load_clip(folder), vae)
        except ModelFileError as error:
            raise InputError("model_name", str(error)) from None
