"""The LoRA node, and the scope in which the sampler and text-encode nodes run with a model's LoRAs.

ComfyUI caches node outputs and one loader may feed several branches, so the LoRA node never
touches the weights: it returns a new HOTSHOT_XL_MODEL on the same weights carrying one more
(LoRA, strength_model, strength_clip) entry. The nodes that run the weights merge the entries in
around their work (`applied`) and restore the weights bit for bit afterwards, the way ComfyUI's
ModelPatcher patches at run time.
"""

from __future__ import annotations

from contextlib import nullcontext

from . import host
from .types import CATEGORY, MODEL
from ..model.errors import InputError, ModelFileError

LORA_FOLDERS = ("loras",)
STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}


def applied(model, part: str):
    """A context in which `model`'s LoRAs are merged into its UNet (`part` "unet") or its text
    encoders ("text"); afterwards the weights are the loader's again."""
    if not model.loras:
        return nullcontext()
    from ..model.lora.apply import merged, strength_for

    modules = model.pipeline.lora_modules()
    wanted = ("unet",) if part == "unet" else ("text_encoder", "text_encoder_2")
    return merged({name: modules[name] for name in wanted}, model.loras, strength_for)


class HotshotXLLoRA:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model the LoRA is added to (it is not changed: other "
                                             "branches from the same loader keep the plain weights)."}),
                "lora_name": (host.list_weight_files(LORA_FOLDERS), {
                    "tooltip": "An SDXL LoRA from models/loras (.safetensors: kohya, diffusers or PEFT layout, "
                               "LyCORIS/LoCon), or a Hotshot-XL motion LoRA for the temporal layers. Pickle files "
                               "(.ckpt, .pt) are not listed: loading them can run code."}),
                "strength_model": ("FLOAT", {**STRENGTH, "tooltip": "How strongly the LoRA changes the UNet (0: not "
                                                                    "at all, 1: as trained, negative: the opposite)."}),
                "strength_clip": ("FLOAT", {**STRENGTH, "tooltip": "How strongly the LoRA changes both CLIP text "
                                                                   "encoders (used by Hotshot-XL Text Encode)."}),
            }
        }

    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The same Hotshot-XL model with this LoRA added: chain LoRA nodes to stack several.",)
    FUNCTION = "add_lora"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Adds an SDXL LoRA (or a Hotshot-XL motion LoRA) to the model, with separate strengths for the "
                   "UNet and the text encoders. The sampler and text-encode nodes merge it into the weights while "
                   "they run (no cost per step) and restore them afterwards. The console lists how many of the "
                   "file's tensors matched each part of the model, and any that matched nothing.")

    def add_lora(self, model, lora_name, strength_model, strength_clip):
        from ..model.lora.apply import check_strength, match
        from ..model.lora.formats import read_lora

        strength_model = check_strength(strength_model, "strength_model")
        strength_clip = check_strength(strength_clip, "strength_clip")
        path = host.resolve(lora_name, LORA_FOLDERS, "lora_name", want_folder=False)
        try:
            lora = read_lora(path, model.pipeline.unet.config.layers_per_block)
            _, report = match(lora, model.pipeline.lora_modules())  # shapes and names checked now, not mid-run
        except ModelFileError as error:
            raise InputError("lora_name", str(error)) from None
        report.log()
        return (model.with_lora(lora, strength_model, strength_clip),)
