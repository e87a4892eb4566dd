"""`load_unet`: the Hotshot-XL UNet from the layouts users actually have.

A UNet needs spatial (SDXL) weights and temporal weights. Users give them as
- a released model folder (`unet/config.json` + `unet/diffusion_pytorch_model*.safetensors`), which
  holds both; or the `unet/` folder itself;
- a temporal-layers file (`hsxl_temporal_layers*.safetensors`) plus an SDXL UNet, either a diffusers
  folder (any SDXL fine-tune) or a single-file checkpoint (`model.diffusion_model.*` keys);
- a released model folder plus an SDXL UNet: the folder's temporal layers on the fine-tune.
Each path is classified from its contents, not its name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..network.config import UNetConfig
from ..errors import ModelFileError
from ..memory.fp8 import Convert, convert_state_dict, quantizer, use_float8
from ..memory.precision import resolve_device, resolve_precision
from ..network.unet import HotshotXLUNet
from .single_file import describe_checkpoint
from .weights import assign_state_dict, component_weight_files, read_safetensors, refuse_pickle

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
TEMPORAL_MARK = ".temporal_attentions."


def is_temporal_key(key: str) -> bool:
    return TEMPORAL_MARK in key


@dataclass(frozen=True)
class WeightSource:
    """One user-given path, classified.

    kind: "hotshot" (spatial + temporal, diffusers layout), "sdxl" (spatial only, diffusers layout),
    "sdxl_single_file" (spatial only, original SDXL keys), "temporal" (temporal layers only).
    """

    path: Path
    kind: str
    files: tuple[Path, ...]
    config: dict | None = None  # the folder's config.json, when there is one
    config_path: Path | None = None

    @property
    def has_spatial(self) -> bool:
        return self.kind != "temporal"

    @property
    def has_temporal(self) -> bool:
        return self.kind in ("hotshot", "temporal")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(path, f"not a readable JSON file ({error})") from None
    if not isinstance(value, dict):
        raise ModelFileError(path, "expected a JSON object")
    return value


def _unet_folder(path: Path) -> Path:
    if (path / "unet" / "config.json").is_file():
        return path / "unet"
    if (path / "config.json").is_file():
        return path
    raise ModelFileError(path, "not a model folder: expected unet/config.json and unet/diffusion_pytorch_model"
                         ".safetensors (a Hotshot-XL or SDXL diffusers folder), or a .safetensors file")


def classify(path: str | Path, prefer_half: bool = False) -> WeightSource:
    path = Path(path).expanduser()
    refuse_pickle(path)
    if not path.exists():
        raise ModelFileError(path, "not found")
    if path.is_dir():
        folder = _unet_folder(path)
        config = _read_json(folder / "config.json")
        files = tuple(component_weight_files(folder, prefer_half))
        blocks = list(config.get("down_block_types", [])) + list(config.get("up_block_types", []))
        kind = "hotshot" if any(name.endswith("3D") for name in blocks) else "sdxl"
        return WeightSource(path, kind, files, config, folder / "config.json")
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(path, "expected a model folder or a .safetensors file")
    info = describe_checkpoint(path)  # header only
    kind = {"hotshot_temporal": "temporal", "hotshot_unet": "hotshot", "diffusers_unet": "sdxl"}.get(info.kind)
    if info.is_sdxl:
        kind = "sdxl_single_file"
    if kind is None:
        raise ModelFileError(path, f"this is {info.summary}; expected Hotshot-XL temporal layers, an SDXL "
                             "checkpoint (single file or diffusers UNet), or a Hotshot-XL UNet")
    return WeightSource(path, kind, (path,))


def _pick_sources(sources: list[WeightSource]) -> tuple[WeightSource, WeightSource]:
    """(spatial source, temporal source). An SDXL UNet wins the spatial part over a Hotshot folder."""
    sdxl = [s for s in sources if s.kind in ("sdxl", "sdxl_single_file")]
    hotshot = [s for s in sources if s.kind == "hotshot"]
    temporal = [s for s in sources if s.kind == "temporal"]
    names = ", ".join(str(s.path) for s in sources)
    if len(sdxl) > 1 or len(temporal) > 1 or len(hotshot) > 1:
        raise ModelFileError(names, "give one SDXL UNet and one source of temporal layers, not several of a kind")
    spatial = sdxl[0] if sdxl else (hotshot[0] if hotshot else None)
    if spatial is None:
        raise ModelFileError(names, "temporal layers alone are not a model: also give an SDXL checkpoint "
                             "or diffusers folder")
    if temporal and hotshot:
        raise ModelFileError(names, "both a temporal-layers file and a Hotshot-XL model give temporal layers; "
                             "give only one of them")
    temporal_source = temporal[0] if temporal else (hotshot[0] if hotshot else None)
    if temporal_source is None:
        raise ModelFileError(spatial.path, "has no temporal layers: also give the Hotshot-XL temporal layers "
                             "(hsxl_temporal_layers.safetensors) or a Hotshot-XL model folder")
    return spatial, temporal_source


def resolve_config(config, spatial: WeightSource) -> UNetConfig:
    """Explicit config, else the spatial folder's config.json, else the shipped Hotshot-XL config."""
    if isinstance(config, UNetConfig):
        return config
    if isinstance(config, dict):
        return UNetConfig.from_dict(config)
    if config is not None:
        path = Path(config)
        if path.is_dir():
            path = _unet_folder(path) / "config.json"
        return UNetConfig.from_file(path)
    if spatial.config is not None:
        return UNetConfig.from_dict(spatial.config, source=spatial.config_path)
    return UNetConfig.from_file(SHIPPED_CONFIGS / "unet.json")


def _read_part(source: WeightSource, dtype: torch.dtype, config: UNetConfig, want_temporal: bool,
               convert: Convert | None = None):
    """The source's spatial or temporal tensors in `dtype`, or as `convert` makes them (fp8)."""
    if source.kind == "sdxl_single_file":
        from .single_file import read_sdxl_unet

        if convert is None:
            return read_sdxl_unet(source.path, config.to_diffusers_dict(), dtype)
        # diffusers' key converter needs the whole UNet at once, so fp8 quantizes after it, from
        # the file's own dtype (as from a folder: no second rounding). The read peaks at one copy
        # in that dtype (fp16 for most SDXL checkpoints), not at one fp8 copy.
        return convert_state_dict(read_sdxl_unet(source.path, config.to_diffusers_dict(), None), convert)
    state = {}
    for file in source.files:
        state.update(read_safetensors(file, dtype, keep=lambda key: is_temporal_key(key) == want_temporal,
                                      convert=convert))
    return state


def load_unet(path: str | Path | Sequence[str | Path], dtype: str | torch.dtype | None = None,
              device: str | torch.device | None = "cpu", config=None) -> HotshotXLUNet:
    """Build the UNet on the meta device and assign the weights read from `path`, in `dtype`.

    `path` is one path or several (see the module docstring). `config` (a UNetConfig, a config dict,
    a config.json or a folder holding one) overrides the one found with the weights; it is needed
    for non-standard sizes given as single files. `dtype` is bf16/fp16/fp32 or None for the
    device's best, or "fp8": Linear and Conv2d weights stored in float8 (quantized as they are
    read), computed in bf16 (see memory/fp8.py). `device` is where the weights end up.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise ModelFileError("<none>", "no model path given")
    device = resolve_device(device)
    dtype, fp8 = resolve_precision(dtype, device)
    sources = [classify(p, prefer_half=dtype != torch.float32) for p in paths]
    spatial, temporal = _pick_sources(sources)
    unet_config = resolve_config(config, spatial)

    with torch.device("meta"):
        unet = HotshotXLUNet(unet_config)
    convert = quantizer(use_float8(unet, dtype), dtype) if fp8 else None
    state = _read_part(spatial, dtype, unet_config, want_temporal=False, convert=convert)
    temporal_state = _read_part(temporal, dtype, unet_config, want_temporal=True, convert=convert)
    names = spatial.path if spatial is temporal else f"{spatial.path} + {temporal.path}"
    _check_temporal_part(unet, temporal_state, temporal.path)
    state.update(temporal_state)
    assign_state_dict(unet, state, str(names))
    return unet.to(device)


def store_fp8(unet: HotshotXLUNet) -> HotshotXLUNet:
    """`unet`, already loaded, with its Linear and Conv2d weights quantized to fp8 in place, computing
    in its current dtype (bf16 is what fp8 means elsewhere). `load_unet(..., dtype="fp8")` does this
    as it reads, without a whole copy in the wider dtype."""
    use_float8(unet, unet.dtype)
    return unet


def _check_temporal_part(unet: HotshotXLUNet, temporal_state: dict, source: Path) -> None:
    """Name the temporal file itself when its tensors do not fit, rather than the combination."""
    expected = {key: value.shape for key, value in unet.state_dict().items() if is_temporal_key(key)}
    bad = [key for key, value in temporal_state.items() if key in expected and value.shape != expected[key]]
    missing = expected.keys() - temporal_state.keys()
    unexpected = temporal_state.keys() - expected.keys()
    if bad:
        detail = f"{bad[0]} is {tuple(temporal_state[bad[0]].shape)}, expected {tuple(expected[bad[0]])}"
    elif missing:
        detail = f"{len(missing)} of {len(expected)} temporal tensors missing, e.g. {min(missing)}"
    elif unexpected:
        detail = f"{len(unexpected)} unexpected tensors, e.g. {min(unexpected)}"
    if bad or missing or unexpected:
        raise ModelFileError(source, "temporal layers do not fit this UNet (Hotshot-XL temporal layers are "
                             f"made for SDXL; an SD1.5 or other model's layers will not load): {detail}")
