"""Loader nodes: a released Hotshot-XL folder, or an SDXL checkpoint plus the temporal layers.

Both give one HOTSHOT_XL_MODEL holding the UNet, the VAE and both text encoders (with their
tokenizers): every other node of the pack takes that one link, so there is nothing to mismatch.
"""

from __future__ import annotations

from . import host
from .types import CATEGORY, MODEL
from ..model.choices import DTYPES as _DTYPES
from ..model.errors import InputError, ModelFileError

DTYPES = list(_DTYPES)
DEFAULT_CONFIGS = "default"

DTYPE_TOOLTIP = ("Precision the weights are held and run in. auto: what the device runs best (bf16 where the "
                 "GPU supports it, as Hotshot-XL was trained; fp16 on other GPUs; fp32 on CPUs). fp8: the UNet's "
                 "weights stored in float8, half the memory of bf16, computed in bf16 (close to bf16, not identical); "
                 "the VAE and text encoders in bf16.")


class HotshotXLModel:
    """What a HOTSHOT_XL_MODEL link carries: the pipeline, and its components as managed weights."""

    def __init__(self, pipeline, name: str):
        from torch import nn

        self.pipeline = pipeline
        self.name = name
        self.unet = host.managed(pipeline.unet, "unet", latent_format=_sdxl_latent_format())
        text = pipeline.text
        self.text = host.managed(nn.ModuleList([text.text_encoder, text.text_encoder_2]), "text")
        self.vae = host.managed(pipeline.vae, "vae")
        self.loras = ()  # (LoRAFile, strength_model, strength_clip) entries: see nodes/lora.py

    def with_lora(self, lora, strength_model: float, strength_clip: float) -> "HotshotXLModel":
        """A new model object on the same weights, carrying one more LoRA (this one is unchanged)."""
        import copy

        other = copy.copy(self)
        other.loras = (*self.loras, (lora, strength_model, strength_clip))
        return other

    @property
    def latent_scale(self) -> float:
        """SDXL's VAE scaling factor: sampling runs on latents times this, a ComfyUI LATENT holds them without."""
        return float(self.pipeline.vae.config.scaling_factor)

    def __repr__(self) -> str:
        loras = "".join(f" + {lora.name}" for lora, _, _ in self.loras)
        return f"HotshotXLModel({self.name!r}{loras})"


def _sdxl_latent_format():
    if not host.in_comfyui():
        return None
    import comfy.latent_formats

    return comfy.latent_formats.SDXL()


def _load(name: str, blame: dict, tokenizer_input: str | None = None, **paths_and_options) -> HotshotXLModel:
    """load_pipeline on the offload device; a file's errors are reported against the node input that chose it
    (`blame`: path -> input name)."""
    from ..model.pipeline import load_pipeline
    from ..model.text.tokenizers import VocabularyNotFound

    load_device, offload_device = host.devices("unet")
    dtype = paths_and_options.pop("dtype")
    dtype = host.default_dtype(load_device) if dtype == "auto" else dtype
    try:
        pipeline = load_pipeline(**paths_and_options, dtype=dtype, device=offload_device)
    except ModelFileError as error:
        blamed = next((input_name for path, input_name in blame.items() if str(path) in error.path), None)
        if blamed is None:
            raise
        raise InputError(blamed, str(error)) from None
    except VocabularyNotFound as error:
        if tokenizer_input is None:
            raise
        # No CLIP vocabulary found for a single file: name the input that can provide one.
        searched = error.searched
        raise InputError(tokenizer_input, "no CLIP tokenizer found for the single-file checkpoint (it holds none, "
                         "and nothing is downloaded): choose a diffusers-layout folder with tokenizer/ and "
                         "tokenizer_2/ (the released Hotshot-XL folder will do), or install open_clip_torch "
                         f"(inside ComfyUI its own tokenizer is used). Searched: {searched}") from None
    return HotshotXLModel(pipeline, name)


class HotshotXLModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (host.list_model_folders(), {
                    "tooltip": "A released Hotshot-XL model folder (hotshotco/Hotshot-XL: unet/, vae/, text_encoder/, "
                               "text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/), from models/diffusers or "
                               "models/hotshot_xl."}),
                "dtype": (DTYPES, {"default": "auto", "tooltip": DTYPE_TOOLTIP}),
            }
        }

    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("Hotshot-XL: the video UNet, the SDXL VAE and both text encoders.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads a released Hotshot-XL model folder: the SDXL UNet with its temporal layers, the VAE "
                   "and both CLIP text encoders. Weights wait on ComfyUI's offload device until a node needs them.")

    def load(self, model_name, dtype):
        path = host.resolve(model_name, host.MODEL_FOLDERS, "model_name", want_folder=True)
        from ..model.files.loading import classify

        try:
            kind = classify(path).kind
        except ModelFileError as error:
            raise InputError("model_name", str(error)) from None
        if kind != "hotshot":
            raise InputError("model_name", f"{path} is an SDXL model without temporal layers, not a Hotshot-XL "
                             "model folder; to animate an SDXL model use the Hotshot-XL Loader (SDXL checkpoint + "
                             "temporal layers) node")
        return (_load(model_name, {path: "model_name"}, model=path, dtype=dtype),)


class HotshotXLCheckpointLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ckpt_name": (host.list_weight_files(host.CHECKPOINT_FOLDERS), {
                    "tooltip": "An SDXL checkpoint (single .safetensors file, base model or fine-tune) from "
                               "models/checkpoints: its UNet, VAE and text encoders are used. Pickle files (.ckpt) "
                               "are not listed: loading them can run code."}),
                "temporal_layers": (host.list_weight_files(host.TEMPORAL_FOLDERS), {
                    "tooltip": "Hotshot-XL's temporal layers (hsxl_temporal_layers.safetensors or its .f16 variant "
                               "from hotshotco/Hotshot-XL), from models/animatediff_models or models/hotshot_xl."}),
                "dtype": (DTYPES, {"default": "auto", "tooltip": DTYPE_TOOLTIP}),
            },
            "optional": {
                "configs": ([DEFAULT_CONFIGS, *host.list_model_folders(host.CONFIG_FOLDERS)], {
                    "default": DEFAULT_CONFIGS,
                    "tooltip": "Where the component configs and CLIP tokenizers come from. default: SDXL base's "
                               "configs (shipped with the pack) and ComfyUI's own CLIP tokenizer, right for any "
                               "SDXL checkpoint. Or a diffusers-layout folder (models/diffusers) whose configs and "
                               "tokenizer/ folders describe a non-standard checkpoint."}),
            },
        }

    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("Hotshot-XL built from the checkpoint and the temporal layers.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Animates any SDXL checkpoint: loads its UNet, VAE and text encoders and adds Hotshot-XL's "
                   "temporal layers. With SDXL base this is the released model.")

    def load(self, ckpt_name, temporal_layers, dtype, configs=DEFAULT_CONFIGS):
        checkpoint = host.resolve(ckpt_name, host.CHECKPOINT_FOLDERS, "ckpt_name", want_folder=False)
        temporal = host.resolve(temporal_layers, host.TEMPORAL_FOLDERS, "temporal_layers", want_folder=False)
        config_folder = None
        if configs != DEFAULT_CONFIGS:
            config_folder = host.resolve(configs, host.CONFIG_FOLDERS, "configs", want_folder=True)
        from ..model.files.single_file import COMPONENTS, describe_checkpoint

        try:
            temporal_info = describe_checkpoint(temporal)
        except ModelFileError as error:
            raise InputError("temporal_layers", str(error)) from None
        if temporal_info.kind != "hotshot_temporal":
            raise InputError("temporal_layers", f"{temporal}: expected Hotshot-XL temporal layers "
                             f"(hsxl_temporal_layers.safetensors), but this is {temporal_info.summary}")
        try:
            info = describe_checkpoint(checkpoint)
        except ModelFileError as error:
            raise InputError("ckpt_name", str(error)) from None
        if not info.is_sdxl:
            raise InputError("ckpt_name", f"{checkpoint}: expected an SDXL checkpoint, but this is {info.summary}")
        missing = [name for name in COMPONENTS if name not in info.components]
        if missing:
            raise InputError("ckpt_name", f"{checkpoint}: this SDXL checkpoint lacks {', '.join(missing)}; the "
                             "node needs a complete checkpoint (UNet, VAE and both text encoders)")
        blame = {checkpoint: "ckpt_name", temporal: "temporal_layers"}
        if config_folder is not None:
            blame[config_folder] = "configs"
        model = _load(f"{ckpt_name} + {temporal_layers}", blame, tokenizer_input="configs", temporal_layers=temporal,
                      sdxl=checkpoint, tokenizer=config_folder, configs=config_folder, dtype=dtype)
        return (model,)
