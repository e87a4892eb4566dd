"""`load_controlnet`: an SDXL ControlNet from the files users have, as diffusers' ControlNetModel.

Accepted:
- a diffusers folder (`config.json` + `diffusion_pytorch_model*.safetensors`);
- a bare `.safetensors` in diffusers layout (as kept in ComfyUI's `models/controlnet/`), its config
  from `config` (a file, a folder holding config.json, or a dict), else a `config.json` beside it,
  else recognised from the header for the full-size SDXL layouts (layouts.py);
- an original-layout single file (`control_model.*` keys), converted by diffusers' single-file
  converter (its config likewise given, beside it, or recognised from the converted names).
The network is diffusers' own ControlNetModel: the released checkpoints' module tree, so the
weights load without renaming. It is built on the meta device and the weights are assigned
(strictly), in the dtype given; "fp8" stores its Linear/Conv2d weights in float8 as the UNet's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ModelFileError
from ..memory.fp8 import quantizer, use_float8
from ..memory.precision import resolve_device, resolve_precision
from ..files.weights import assign_state_dict, component_weight_files, read_safetensors, refuse_pickle
from .layouts import ORIGINAL_PREFIX, config_from_header, describe_base, layout_name, read_header

# Layers kept in the compute dtype under fp8: the input and condition embeddings and the zero
# convolutions (small, and what every residual passes through).
KEEP_PRECISE = ("conv_in", "time_embedding", "add_embedding", "controlnet_cond_embedding",
                "controlnet_down_blocks", "controlnet_mid_block")


def _read_config(path: Path) -> dict:
    if path.is_dir():
        path = path / "config.json"
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(path, f"not a readable ControlNet config.json ({error})") from None
    if not isinstance(value, dict) or "block_out_channels" not in value:
        raise ModelFileError(path, "not a diffusers ControlNet config (no block_out_channels)")
    return value


def _original_to_diffusers(state: dict, layers_per_block: int) -> dict:
    """diffusers names for an original-layout state dict (diffusers' converter, plus SDXL's size
    embedding `label_emb`, which that converter leaves out)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(state, {"layers_per_block": layers_per_block})
    original = {key[len(ORIGINAL_PREFIX):]: value for key, value in state.items() if key.startswith(ORIGINAL_PREFIX)}
    for name, original_name in DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
        if original_name in original:
            converted[name] = original[original_name]
    return {key: value for key, value in converted.items() if value is not None}  # the converter's .get() misses


def _meta_state(shapes: dict) -> dict:
    return {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}


# Original-layout files do not say how many resnets a block has; every SDXL ControlNet has two.
SDXL_LAYERS_PER_BLOCK = 2


def describe(path: str | Path, config=None) -> tuple[dict, str]:
    """(diffusers config, layout) of a ControlNet path, from configs and headers only (cheap)."""
    path = Path(path).expanduser()
    refuse_pickle(path)
    if not path.exists():
        raise ModelFileError(path, "not found")
    if isinstance(config, dict):
        given = config
    elif config is not None:
        given = _read_config(Path(config).expanduser())
    else:
        given = None
    if path.is_dir():
        config = given or _read_config(path)
        return config, "diffusers folder"
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(path, "expected a ControlNet folder or a .safetensors file")
    shapes = read_header(path)
    original = any(key.startswith(ORIGINAL_PREFIX) for key in shapes)
    if original:
        shapes = {k: v.shape for k, v in _original_to_diffusers(
            _meta_state(shapes), SDXL_LAYERS_PER_BLOCK).items()}
    elif not any(key.startswith("controlnet_") for key in shapes):
        raise ModelFileError(path, "not a ControlNet: no controlnet_* tensors (is this a UNet or a LoRA?)")
    problem = describe_base(shapes)
    if problem:
        raise ModelFileError(path, problem)
    beside = path.parent / "config.json"
    if given is None and beside.is_file():
        given = _read_config(beside)
    config = given or config_from_header(shapes, path)
    kind = "original-layout single file" if original else "safetensors"
    return config, kind if given else f"{kind}, SDXL {layout_name(config)} layout"


def check_fits_unet(config: dict, unet_config, path) -> None:
    """Raise ModelFileError if this ControlNet's residuals cannot go into `unet_config`'s UNet."""
    ours = (tuple(unet_config.block_out_channels), unet_config.layers_per_block, unet_config.cross_attention_dim)
    theirs = (tuple(config["block_out_channels"]), config.get("layers_per_block", 2),
              config.get("cross_attention_dim"))
    if ours != theirs:
        raise ModelFileError(path, f"a ControlNet for another base (block widths {theirs[0]}, {theirs[1]} layers, "
                             f"text width {theirs[2]}); this Hotshot-XL UNet has {ours[0]}, {ours[1]} layers, text "
                             f"width {ours[2]}")
    if config.get("in_channels", 4) != unet_config.in_channels:
        raise ModelFileError(path, f"a ControlNet for {config.get('in_channels')}-channel latents; the UNet takes "
                             f"{unet_config.in_channels}")


def load_controlnet(path: str | Path, config=None, dtype=None, device=None, unet_config=None):
    """diffusers ControlNetModel from `path` (see the module docstring), in `dtype` on `device`.

    `unet_config` (our UNetConfig), when given, is checked against before the weights are read.
    """
    from diffusers import ControlNetModel

    path = Path(path).expanduser()
    device = resolve_device(device)
    dtype, fp8 = resolve_precision(dtype, device)
    config, _ = describe(path, config)
    if unet_config is not None:
        check_fits_unet(config, unet_config, path)
    channels = config.get("conditioning_channels", 3)
    if channels != 3:
        raise ModelFileError(path, f"a ControlNet taking {channels}-channel control images; only RGB (3) ones "
                             "are supported")
    settings = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            net = ControlNetModel.from_config(settings)
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"config does not build a ControlNet: {error}") from None
    convert = quantizer(use_float8(net, dtype, KEEP_PRECISE), dtype) if fp8 else None
    files = component_weight_files(path, dtype != torch.float32) if path.is_dir() else [path]
    state = {}
    for file in files:
        state.update(read_safetensors(file, dtype, convert=None if convert and _is_original(file) else convert))
    if any(key.startswith(ORIGINAL_PREFIX) for key in state):
        state = _original_to_diffusers(state, config.get("layers_per_block", 2))
        if convert is not None:
            from ..memory.fp8 import convert_state_dict

            state = convert_state_dict(state, convert)
    assign_state_dict(net, state, str(path))
    return net.to(device)


def _is_original(file: Path) -> bool:
    return any(key.startswith(ORIGINAL_PREFIX) for key in read_header(file))
