"""Reading LoRA files into one layout: component -> this model's module name -> (down, up, alpha).

Layouts read (safetensors only; pickles are refused, never unpickled):
- kohya / ComfyUI (`lora_unet_*`, `lora_te1_*`, `lora_te2_*`, `lora_te_*` with `.lora_down.weight`,
  `.lora_up.weight`, `.alpha`), with SDXL's SGM block names (`input_blocks_4_1_...`) or diffusers
  ones, LyCORIS/LoCon layers on the resnets' convolutions included. diffusers' own converters do
  the renaming (`_maybe_map_sgm_blocks_to_diffusers`, `_convert_non_diffusers_lora_to_diffusers`),
  as the original's `load_lora_weights` did.
- diffusers: the older attention-processor keys (`unet.*.processor.to_q_lora.down.weight`,
  `text_encoder.*.to_q_lora.down.weight`, `*.lora_linear_layer.*`, `*.lora.down.weight`), renamed to
  PEFT's by diffusers' `convert_unet_state_dict_to_peft` / `convert_state_dict_to_peft`;
- PEFT (`unet.*.lora_A.weight`, `*.lora_B.weight`, `text_encoder.*`, `text_encoder_2.*`), with the
  alpha from `<module>.alpha` tensors, else diffusers' `lora_adapter_metadata`, else alpha = rank
  (PEFT's scale 1);
- this pack's motion LoRAs on the temporal layers (metadata {"format": "hotshot-xl-motion-lora"}):
  PEFT keys `unet.<temporal module>.lora_A.weight` / `.lora_B.weight` / `.alpha` (0-d).

A layer's update is `alpha / rank * up @ down`: down (rank, in) or (rank, in, kh, kw) for a LoCon
convolution, up (out, rank) or (out, rank, 1, 1). Tensors the layouts do not explain (LoHa, LoKr,
DoRA scales, bias diffs, ...) are kept by name in `unknown`, for the caller to warn about.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ..errors import ModelFileError
from ..files.suffixes import PICKLE_SUFFIXES

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
MOTION_FORMAT = "hotshot-xl-motion-lora"
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
# Top-level UNet modules: a file without component prefixes holding these is a bare UNet LoRA.
_UNET_ROOTS = ("down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "conv_out.", "time_embedding.",
               "add_embedding.")
_PEFT_PREFIX = "base_model.model."  # what peft's get_peft_model_state_dict puts in front
_WEIGHT = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")  # optional adapter name
_ALPHA = re.compile(r"^(?P<module>.+?)(?:\.lora_A(?:\.weight)?)?\.alpha$")


@dataclass
class LayerLoRA:
    """One layer's low-rank update: `alpha / rank * up @ down`."""

    down: "torch.Tensor"  # (rank, in) or (rank, in, kh, kw)
    up: "torch.Tensor"  # (out, rank) or (out, rank, 1, 1)
    alpha: float
    keys: tuple[str, ...]  # the file's tensors it came from

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """The shape of the weight this update fits: (out, in) or (out, in, kh, kw)."""
        return (self.up.shape[0], *self.down.shape[1:])

    def delta(self, device=None):
        """The update in float32, shaped like the layer's weight."""
        import torch

        up = self.up.to(device, torch.float32).flatten(1)  # (out, rank)
        down = self.down.to(device, torch.float32).flatten(1)  # (rank, in * kh * kw)
        return (up @ down).mul_(self.scale).view(self.weight_shape)


@dataclass
class LoRAFile:
    """A LoRA file read into the canonical layout."""

    path: Path
    layers: dict[str, dict[str, LayerLoRA]]  # component -> module name -> update
    unknown: list[str]  # tensors of the file that no supported layout explains
    tensor_count: int
    layout: str  # "kohya", "diffusers", "peft" or "motion"
    metadata: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    def base_hint(self) -> str:
        """What the file says it was trained on, for error messages ("" when it does not say)."""
        base = self.metadata.get("ss_base_model_version") or self.metadata.get("modelspec.architecture")
        return f" (its metadata says it was trained on {base})" if base else ""


def read_lora(path: str | Path, layers_per_block: int = 2) -> LoRAFile:
    """Read a LoRA file. `layers_per_block` (the UNet config's; 2 for SDXL) maps SGM block numbers.

    Raises ModelFileError naming the file if it is not a readable safetensors file, holds non-finite
    values or inconsistent shapes, or holds no LoRA layer of any known layout.
    """
    path = Path(path).expanduser()
    tensors, metadata = _read(path)
    kohya = {key: tensor for key, tensor in tensors.items() if key.startswith(KOHYA_PREFIXES)}
    rest = {key: tensor for key, tensor in tensors.items() if key not in kohya}
    layers: dict[str, dict[str, LayerLoRA]] = {}
    unknown: list[str] = []
    if kohya:
        _merge_into(layers, *_read_kohya(path, kohya, layers_per_block), unknown)
    if rest:
        _merge_into(layers, *_read_peft(path, rest, metadata), unknown)
    if not any(layers.values()):
        if any(".hada_" in key or ".lokr_" in key for key in tensors):
            raise ModelFileError(path, "holds LyCORIS LoHa/LoKr layers, which are not supported: only low-rank "
                                 "(LoRA, LoCon) updates are")
        raise ModelFileError(path, f"holds no LoRA layers that this pack can read ({len(tensors)} tensors, e.g. "
                             f"{min(tensors, default='none')}): expected kohya (lora_unet_*.lora_down.weight), "
                             "diffusers or PEFT (unet.*.lora_A.weight) LoRA keys")
    for component in layers.values():
        for module, layer in component.items():
            _check_layer(path, module, layer)
    if metadata.get("format") == MOTION_FORMAT:
        layout = "motion"
    elif kohya:
        layout = "kohya"
    else:
        layout = "diffusers" if any("_lora." in k or ".lora." in k or "lora_linear_layer" in k for k in rest) \
            else "peft"
    return LoRAFile(path, {c: layers[c] for c in COMPONENTS if layers.get(c)}, sorted(unknown), len(tensors),
                    layout, metadata)


def _merge_into(layers, found: dict[str, dict[str, LayerLoRA]], unknown_here: list[str], unknown: list[str]):
    for component, modules in found.items():
        layers.setdefault(component, {}).update(modules)
    unknown.extend(unknown_here)


def _read(path: Path):
    """All tensors of a safetensors file, and its metadata; ModelFileError for anything else."""
    from safetensors import safe_open

    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(path, f"'{path.suffix}' is a pickle format, which can run arbitrary code when loaded; "
                             "only .safetensors LoRAs are accepted (convert the file to safetensors first)")
    if not path.is_file():
        raise ModelFileError(path, "LoRA file not found")
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(path, "expected a .safetensors LoRA file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            metadata = dict(reader.metadata() or {})
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    except Exception as error:  # safetensors raises its own error types for bad headers and short files
        raise ModelFileError(path, f"not a readable .safetensors file (truncated or corrupt?): {error}") from None
    if not tensors:
        raise ModelFileError(path, "holds no tensors")
    return tensors, metadata


def _read_kohya(path: Path, tensors: dict, layers_per_block: int):
    """kohya keys -> (component -> module -> update, unexplained keys), renamed by diffusers."""
    from diffusers.loaders.lora_conversion_utils import (_convert_non_diffusers_lora_to_diffusers,
                                                         _maybe_map_sgm_blocks_to_diffusers)

    by_name: dict[str, dict[str, str]] = {}  # lora_unet_..._to_q -> {"lora_down.weight": key, ...}
    for key in tensors:
        name, _, leaf = key.partition(".")
        by_name.setdefault(name, {})[leaf] = key
    pairs, unknown, alpha_of = {}, [], {}
    for name, leaves in by_name.items():
        if "lora_down.weight" in leaves and "lora_up.weight" in leaves:
            for leaf in ("lora_down.weight", "lora_up.weight"):
                pairs[leaves[leaf]] = tensors[leaves[leaf]]
            alpha_of[name] = leaves.get("alpha")
            unknown += [key for leaf, key in leaves.items() if leaf not in ("lora_down.weight", "lora_up.weight",
                                                                          "alpha")]
        else:
            unknown += leaves.values()
    # diffusers' converters move the tensor objects to new keys: their identity tells where each came from.
    origin = {id(tensor): key for key, tensor in pairs.items()}
    try:
        renamed = _maybe_map_sgm_blocks_to_diffusers(dict(pairs), SimpleNamespace(layers_per_block=layers_per_block))
        renamed, _ = _convert_non_diffusers_lora_to_diffusers(renamed)
    except (ValueError, IndexError, KeyError) as error:
        raise ModelFileError(path, f"kohya LoRA keys that diffusers' converter cannot map: {error}") from None
    layers, unexplained = _group(path, _to_peft_names(renamed), origin)
    unknown += unexplained
    for component in layers.values():
        for layer in component.values():
            name = layer.keys[0].partition(".")[0]
            alpha_key = alpha_of.get(name)
            if alpha_key is not None:
                layer.alpha = _scalar(path, alpha_key, tensors[alpha_key])
                layer.keys += (alpha_key,)
    return layers, unknown


def _read_peft(path: Path, tensors: dict, metadata: dict):
    """diffusers / PEFT keys -> (component -> module -> update, unexplained keys)."""
    origin = {id(tensor): key for key, tensor in tensors.items()}
    prefixed, unknown = {}, []
    for key, tensor in tensors.items():
        name = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        component = name.partition(".")[0]
        if component not in COMPONENTS:
            # No component prefix: a bare UNet or (first) text encoder LoRA.
            component = "unet" if name.startswith(_UNET_ROOTS) else "text_encoder" if name.startswith("text_model.") \
                else None
            if component is None:
                unknown.append(key)
                continue
            name = f"{component}.{name}"
        name = name.replace(".lora_down.weight", ".lora_A.weight").replace(".lora_up.weight", ".lora_B.weight")
        prefixed[name] = tensor
    layers, unexplained = _group(path, _to_peft_names(prefixed), origin, alphas=True)
    unknown += unexplained
    for component, modules in layers.items():
        for module, layer in modules.items():
            if layer.alpha is None:
                layer.alpha = _metadata_alpha(path, metadata, component, module, layer.rank)
    return layers, unknown


def _to_peft_names(state: dict) -> dict:
    """Keys `<component>.<diffusers name>` -> `<component>.<module>.lora_A/B.weight` (PEFT's), by
    diffusers' own mappings: the UNet's attention-processor keys, the text encoders' older keys."""
    from diffusers.utils.state_dict_utils import (StateDictType, convert_state_dict_to_peft,
                                                  convert_unet_state_dict_to_peft)

    out = {}
    for component in COMPONENTS:
        part = {key.partition(".")[2]: value for key, value in state.items() if key.partition(".")[0] == component}
        if not part:
            continue
        if component == "unet":
            part = convert_unet_state_dict_to_peft(part)
        else:
            part = convert_state_dict_to_peft(part, StateDictType.DIFFUSERS_OLD)
        out.update({f"{component}.{key}": value for key, value in part.items()})
    return out


def _group(path: Path, state: dict, origin: dict, alphas: bool = False):
    """PEFT-named tensors -> (component -> module -> LayerLoRA, keys left over), by original key names."""
    halves: dict[tuple[str, str], dict] = {}
    unknown = []
    for key, tensor in state.items():
        component, _, name = key.partition(".")
        original = origin.get(id(tensor), key)
        weight = _WEIGHT.match(name)
        alpha = _ALPHA.match(name)
        if weight:
            halves.setdefault((component, weight["module"]), {})[weight["which"]] = (tensor, original)
        elif alpha and alphas:
            halves.setdefault((component, alpha["module"]), {})["alpha"] = (tensor, original)
        else:
            unknown.append(original)
    layers: dict[str, dict[str, LayerLoRA]] = {}
    for (component, module), parts in halves.items():
        if "A" not in parts or "B" not in parts:
            unknown += [original for _, original in parts.values()]
            continue
        (down, down_key), (up, up_key) = parts["A"], parts["B"]
        keys = (down_key, up_key)
        alpha = None
        if "alpha" in parts:
            alpha_tensor, alpha_key = parts["alpha"]
            alpha, keys = _scalar(path, alpha_key, alpha_tensor), keys + (alpha_key,)
        layers.setdefault(component, {})[module] = LayerLoRA(down, up, alpha, keys)
    return layers, unknown


def _scalar(path, key: str, tensor) -> float:
    if tensor.numel() != 1:
        raise ModelFileError(path, f"{key} should be one number (the LoRA's alpha), has shape {tuple(tensor.shape)}")
    value = float(tensor.float().reshape(()))
    if value != value or value in (float("inf"), float("-inf")):
        raise ModelFileError(path, f"{key} is {value}: the alpha must be a finite number")
    return value


def _metadata_alpha(path: Path, metadata: dict, component: str, module: str, rank: int) -> float:
    """diffusers' `lora_adapter_metadata` (`<component>.lora_alpha`, `.alpha_pattern`), else rank."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return float(rank)
    try:
        config = json.loads(raw)
    except ValueError:
        raise ModelFileError(path, "its lora_adapter_metadata is not valid JSON") from None
    for pattern, alpha in (config.get(f"{component}.alpha_pattern") or {}).items():
        if module == pattern or module.endswith("." + pattern) or re.fullmatch(pattern, module):
            return float(alpha)
    alpha = config.get(f"{component}.lora_alpha")
    return float(rank) if alpha is None else float(alpha)


def _check_layer(path: Path, module: str, layer: LayerLoRA) -> None:
    import torch

    down, up = layer.down, layer.up
    shapes_fit = (down.ndim == up.ndim and down.ndim in (2, 4) and up.shape[1] == down.shape[0]
                  and (down.ndim == 2 or tuple(up.shape[2:]) == (1, 1)))
    if not shapes_fit:
        raise ModelFileError(path, f"{layer.keys[0]} {tuple(down.shape)} and {layer.keys[1]} {tuple(up.shape)} do "
                             "not form a low-rank update (expected down (rank, in[, kh, kw]) and up (out, rank[, 1, "
                             "1]))")
    for key, tensor in ((layer.keys[0], down), (layer.keys[1], up)):
        if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(path, f"{key} holds non-finite or non-float values")
