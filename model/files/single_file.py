"""SDXL single-file checkpoints: what a file is, and its components in diffusers layout.

ComfyUI users keep SDXL models as one `.safetensors` file with the original (SGM) key names:

    model.diffusion_model.*                 UNet (no temporal layers)
    first_stage_model.*                     VAE
    conditioner.embedders.0.transformer.*   CLIP ViT-L/14 text encoder (transformers layout inside)
    conditioner.embedders.1.model.*         OpenCLIP ViT-bigG/14 text encoder (open_clip layout)

Each `read_sdxl_*` function reads only the tensors of its component (views of the memory-mapped
file), renames them with diffusers' own single-file converters, checks the result against the
component built from its config on the meta device, so a file that is not an SDXL base model fails
here, naming the file and the reason, and converts each tensor to `dtype` (peak memory about one
copy of that component in `dtype`).

The returned state dicts use the released Hotshot-XL files' layout: the UNet's keys are those of
`unet/diffusion_pytorch_model.safetensors` without the temporal layers, the VAE's those of
`vae/diffusion_pytorch_model.safetensors`, the text encoders' those of `text_encoder*/model.safetensors`
(`text_model.` prefix; see `fit_text_encoder_keys` for transformers versions that dropped it).

Pickle files (.ckpt/.pt/.bin/.pth) are refused: unpickling can run arbitrary code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, ModelFileError
from .sdxl_configs import shipped_config
from .weights import check_state_dict, materialize, read_safetensors, read_views, safetensors_keys

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1.model."
# Other layouts, recognised only to say what a file is.
_REFINER_CLIP_G_PREFIX = "conditioner.embedders.0.model."
_SD1_CLIP_PREFIX = "cond_stage_model.transformer."
_SD2_CLIP_PREFIX = "cond_stage_model.model."

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")

_BLOCKS_2D = {
    "DownBlock3D": "DownBlock2D", "CrossAttnDownBlock3D": "CrossAttnDownBlock2D",
    "UpBlock3D": "UpBlock2D", "CrossAttnUpBlock3D": "CrossAttnUpBlock2D",
    "UNetMidBlock3DCrossAttn": "UNetMidBlock2DCrossAttn",
}


@dataclass(frozen=True)
class CheckpointInfo:
    """What a .safetensors file holds, judged from its header (tensor names) alone.

    kind: "sdxl" (SDXL base single file, possibly without some components), "sdxl_refiner", "sd1",
    "sd2", "sd_unet" (original-layout UNet without SDXL's size conditioning), "vae" (standalone VAE,
    original layout), "diffusers_vae", "diffusers_unet", "hotshot_unet" (diffusers UNet with temporal
    layers), "hotshot_temporal" (temporal layers only), "animatediff", "text_encoder" (transformers
    CLIP file), "empty" or "unknown".
    """

    path: Path
    kind: str
    summary: str  # one sentence saying what the file is, for messages
    components: frozenset  # which of COMPONENTS the file holds in SDXL single-file layout

    @property
    def is_sdxl(self) -> bool:
        return self.kind == "sdxl" and "unet" in self.components


def describe_checkpoint(path: str | Path) -> CheckpointInfo:
    """Classify a .safetensors file from its header; ModelFileError if it is missing, a pickle or corrupt."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ModelFileError(path, "is a folder; expected a single-file checkpoint (.safetensors)")
    keys = safetensors_keys(path)  # refuses pickles, reports missing/truncated/corrupt files
    return CheckpointInfo(path, *_classify(keys))


def is_sdxl_single_file(path: str | Path) -> bool:
    """True for a readable SDXL base single-file checkpoint (header only); never raises for bad files."""
    try:
        return describe_checkpoint(path).is_sdxl
    except ModelFileError:
        return False


def _classify(keys: list[str]) -> tuple[str, str, frozenset]:
    def has(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in keys)

    components = frozenset(name for name, prefix in (
        ("unet", UNET_PREFIX), ("vae", VAE_PREFIX), ("text_encoder", CLIP_L_PREFIX),
        ("text_encoder_2", CLIP_G_PREFIX)) if has(prefix))
    temporal = any(".temporal_attentions." in key for key in keys)
    if not keys:
        return "empty", "an empty safetensors file (no tensors)", frozenset()
    if has(_REFINER_CLIP_G_PREFIX) and not has(CLIP_G_PREFIX):
        return ("sdxl_refiner", "an SDXL refiner checkpoint (only an OpenCLIP text encoder, at "
                "conditioner.embedders.0.model.*); Hotshot-XL needs an SDXL base model", frozenset())
    if has(_SD1_CLIP_PREFIX):
        return ("sd1", "a Stable Diffusion 1.x checkpoint (text encoder at cond_stage_model.transformer.*, "
                "no conditioner.embedders.1); Hotshot-XL needs an SDXL base model", frozenset())
    if has(_SD2_CLIP_PREFIX):
        return ("sd2", "a Stable Diffusion 2.x checkpoint (OpenCLIP-H text encoder at cond_stage_model.model.*); "
                "Hotshot-XL needs an SDXL base model", frozenset())
    if "unet" in components and UNET_PREFIX + "label_emb.0.0.weight" not in keys and not (
            components & {"text_encoder", "text_encoder_2"}):
        return ("sd_unet", "an original-layout UNet without SDXL's size conditioning "
                "(no model.diffusion_model.label_emb.*), i.e. not SDXL", frozenset())
    if components & {"unet", "text_encoder_2"}:
        present = ", ".join(name for name in COMPONENTS if name in components)
        return "sdxl", f"an SDXL single-file checkpoint holding: {present}", components
    if any("motion_modules." in key for key in keys):
        return ("animatediff", "an AnimateDiff motion module, not an SDXL checkpoint nor Hotshot-XL "
                "temporal layers", frozenset())
    if temporal and all(".temporal_attentions." in key for key in keys):
        return ("hotshot_temporal", "a Hotshot-XL temporal-layers file (only *.temporal_attentions.* tensors); "
                "give it as the temporal layers, and an SDXL checkpoint as the base model", frozenset())
    if "conv_in.weight" in keys:
        if temporal:
            return ("hotshot_unet", "a Hotshot-XL UNet in diffusers layout (unet/diffusion_pytorch_model"
                    ".safetensors), not a single-file checkpoint", frozenset())
        return ("diffusers_unet", "a UNet in diffusers layout (unet/diffusion_pytorch_model.safetensors), "
                "not a single-file checkpoint", frozenset())
    if "encoder.conv_in.weight" in keys and "decoder.conv_in.weight" in keys:
        if any(key.startswith("encoder.down_blocks.") for key in keys):
            return "diffusers_vae", "a VAE in diffusers layout (vae/diffusion_pytorch_model.safetensors)", frozenset()
        return "vae", "a standalone VAE in the original layout (encoder.*/decoder.*)", frozenset()
    if any(key.startswith("text_model.") for key in keys):
        return ("text_encoder", "a CLIP text encoder in transformers layout (text_encoder*/model.safetensors), "
                "not a single-file checkpoint", frozenset())
    return ("unknown", "not a Stable Diffusion checkpoint: no model.diffusion_model.* (UNet) or "
            f"conditioner.* (text encoder) tensors; first tensor names: {', '.join(sorted(keys)[:3])}",
            frozenset())


def _require(info: CheckpointInfo, component: str, what: str) -> None:
    """Refuse non-SDXL files, and SDXL files lacking `component`, with the file's own description."""
    if info.kind != "sdxl":
        raise ModelFileError(info.path, f"expected an SDXL single-file checkpoint with {what}, but this is {info.summary}")
    if component not in info.components:
        raise ModelFileError(info.path, f"this SDXL checkpoint lacks {what}; it holds only "
                             f"{', '.join(name for name in COMPONENTS if name in info.components)}")


def _check_dtype(dtype) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputError("dtype", f"expected a floating-point torch.dtype or None, got {dtype!r}")


def _read_prefixed(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """A component's tensors as views of the file: renamed by the converters, then `materialize`d."""
    # `position_ids` buffers (in files saved by older transformers) are dropped: transformers >= 4.31
    # rebuilds them as non-persistent buffers, the released files lack them, and some merged
    # checkpoints carry them as damaged floats.
    return read_views(path, keep=lambda key: key.startswith(prefix) and not key.endswith("position_ids"))


def _checked(model: torch.nn.Module, state: dict, path: Path, what: str) -> dict:
    """`state` if it fits `model` exactly (keys and shapes), else a ModelFileError naming `path`."""
    missing = [key for key, value in state.items() if value is None]  # diffusers' converters use dict.get
    state = {key: value for key, value in state.items() if value is not None}
    try:
        check_state_dict(model, state, str(path))
    except ModelFileError as error:
        detail = error.problem.removeprefix("does not match the expected network: ")
        raise ModelFileError(path, f"its {what} does not match the config (is this an SDXL base model, and "
                             f"the config the right one?): {detail}") from None
    if missing:  # cannot happen when the check passed, kept as a guard for converter changes
        raise ModelFileError(path, f"its {what} lacks tensors: {', '.join(sorted(missing)[:5])}")
    return state


# ---------------------------------------------------------------------------------------- UNet

def unet_2d_config(unet_config: dict) -> dict:
    """A diffusers UNet2DConditionModel config from a Hotshot-XL (3D) or SDXL (2D) UNet config.

    The spatial layers of both have the same names, so the 2D model's keys are the Hotshot-XL UNet's
    keys without the temporal layers.
    """
    config = {key: value for key, value in unet_config.items() if not key.startswith("_")}
    for field in ("down_block_types", "up_block_types"):
        config[field] = [_BLOCKS_2D.get(name, name) for name in config.get(field, [])]
    mid_block = config.get("mid_block_type") or "UNetMidBlock2DCrossAttn"
    config["mid_block_type"] = _BLOCKS_2D.get(mid_block, mid_block)
    return config


def _meta_unet_2d(config_2d: dict):
    from diffusers import UNet2DConditionModel

    try:
        with torch.device("meta"):
            return UNet2DConditionModel.from_config(config_2d)
    except (TypeError, ValueError, KeyError) as error:
        raise InputError("unet_config", f"not a buildable SDXL UNet config ({error})") from None


def read_sdxl_unet(path: str | Path, unet_config: dict | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The spatial UNet of an SDXL single file as a diffusers-layout state dict, in `dtype`.

    `unet_config` is the Hotshot-XL UNet config (3D block names) or an SDXL UNet2DConditionModel
    config; None means the shipped release config. `dtype` None keeps the file's dtypes.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    _check_dtype(dtype)
    info = describe_checkpoint(path)
    _require(info, "unet", "a UNet (model.diffusion_model.* tensors)")
    config_2d = unet_2d_config(shipped_config("unet") if unet_config is None else unet_config)
    expected = _meta_unet_2d(config_2d)
    original = _read_prefixed(info.path, UNET_PREFIX)
    names = list(original)
    # One dict of views left (no other reference), so that converting lets the file's pages go.
    state = _checked(expected, convert_ldm_unet_checkpoint(original, config_2d), info.path, "UNet")
    del original
    return materialize(info.path, state, dtype, names)


# ----------------------------------------------------------------------------------------- VAE

def read_sdxl_vae(path: str | Path, vae_config: dict | None = None,
                  dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The VAE of an SDXL single file as an AutoencoderKL state dict, in `dtype`.

    Also accepts a standalone VAE file, in the original layout (e.g. `sdxl_vae.safetensors`) or in
    diffusers layout. `vae_config` None means the shipped SDXL VAE config.
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    _check_dtype(dtype)
    info = describe_checkpoint(path)
    config = shipped_config("vae") if vae_config is None else dict(vae_config)
    with torch.device("meta"):
        expected = AutoencoderKL.from_config(config)
    if info.kind == "diffusers_vae":
        return _checked(expected, read_safetensors(info.path, dtype), info.path, "VAE")
    if info.kind == "vae":
        original = read_views(info.path)  # the converter handles the missing prefix
    else:
        _require(info, "vae", "a VAE (first_stage_model.* tensors)")
        original = _read_prefixed(info.path, VAE_PREFIX)
    names = list(original)
    state = _checked(expected, convert_ldm_vae_checkpoint(original, config), info.path, "VAE")
    del original
    return materialize(info.path, state, dtype, names)


# ------------------------------------------------------------------------------- text encoders

def _meta_text_encoder(config: dict, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    text_config = CLIPTextConfig.from_dict({key: value for key, value in config.items() if key != "architectures"})
    with torch.device("meta"):
        return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(text_config)


def fit_text_encoder_keys(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`state_dict` (released-file layout, `text_model.*`) keyed the way `model` names its tensors.

    transformers >= 5.6 flattened CLIPTextModel (its keys lost the `text_model.` prefix that the
    released files and older versions use); CLIPTextModelWithProjection kept it.
    """
    if any(key.startswith("text_model.") for key in model.state_dict()):
        return dict(state_dict)
    return {key.removeprefix("text_model."): value for key, value in state_dict.items()}


def _checked_text_encoder(model, state: dict, path: Path, what: str) -> dict:
    _checked(model, fit_text_encoder_keys(state, model), path, what)  # checked as the model names them
    return state  # returned in the released files' layout


def read_sdxl_text_encoders(path: str | Path, config_1: dict | None = None, config_2: dict | None = None,
                            dtype: torch.dtype | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Both text encoders of an SDXL single file, in the released files' layout, in `dtype`.

    Returns (CLIPTextModel state dict, CLIPTextModelWithProjection state dict), keyed as
    `text_encoder/model.safetensors` and `text_encoder_2/model.safetensors` are (`text_model.*`,
    plus `text_projection.weight` for the second); no `position_ids`. Load them with
    `fit_text_encoder_keys`. Configs None mean the shipped SDXL ones.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    _check_dtype(dtype)
    info = describe_checkpoint(path)
    _require(info, "text_encoder", "the CLIP ViT-L text encoder (conditioner.embedders.0.transformer.* tensors)")
    _require(info, "text_encoder_2", "the OpenCLIP bigG text encoder (conditioner.embedders.1.model.* tensors)")
    model_1 = _meta_text_encoder(shipped_config("text_encoder") if config_1 is None else config_1, False)
    model_2 = _meta_text_encoder(shipped_config("text_encoder_2") if config_2 is None else config_2, True)

    # Renamed in the file's dtype (mmap views: no memory of their own) and converted afterwards:
    # the open_clip converter copies each split q/k/v projection, which costs half as much in the
    # file's 16 bits as in float32, and no converted tensor is ever copied again.
    original = _read_prefixed(info.path, CLIP_L_PREFIX)
    names = list(original)
    state_1 = convert_ldm_clip_checkpoint(original)  # strips the prefix; names are transformers' already
    del original
    state_1 = _checked_text_encoder(model_1, state_1, info.path, "CLIP ViT-L text encoder")
    state_1 = materialize(info.path, state_1, dtype, names)

    original = _read_prefixed(info.path, CLIP_G_PREFIX)
    names = list(original)
    # Splits open_clip's fused attention projections into q/k/v and transposes text_projection;
    # `model_2` is consulted only for the width when the file has no text_projection.
    state_2 = convert_open_clip_checkpoint(model_2, original, prefix=CLIP_G_PREFIX)
    del original
    state_2 = _checked_text_encoder(model_2, state_2, info.path, "OpenCLIP bigG text encoder")
    state_2 = materialize(info.path, state_2, dtype, names)
    return state_1, state_2
