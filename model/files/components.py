"""Loading the VAE, the text encoders and the scheduler config from folders or single files.

A diffusers folder (the release, or an SDXL fine-tune saved with diffusers) has one sub-folder per
component; an SDXL single-file checkpoint holds them all under original key names and is converted
by `single_file.py`. Configs for single files come from a config folder in diffusers layout when
given (non-standard sizes), else from the configs shipped with the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ModelFileError
from .sdxl_configs import shipped_config
from ..text.encoders import TextEncoders
from .weights import assign_state_dict, component_weight_files, read_safetensors, refuse_pickle


def _quiet_transformers():
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no per-tensor progress bars in our output
    return transformers


def component_config(name: str, config_folder: Path | None, filename: str = "config.json") -> dict:
    """`config_folder/name/filename` if a config folder is given, else the shipped config."""
    if config_folder is None:
        return shipped_config(name)
    path = Path(config_folder) / name / filename
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(path, f"config folder lacks the {name} config") from None
    except (OSError, ValueError) as error:
        raise ModelFileError(path, f"not a readable JSON config ({error})") from None


def _subfolder(folder: Path, name: str, what: str) -> Path:
    sub = folder / name
    if not (sub / "config.json").is_file():
        raise ModelFileError(folder, f"model folder lacks {name}/config.json ({what})")
    return sub


def load_vae(source: Path, dtype: torch.dtype, device: torch.device, config_folder: Path | None = None):
    """AutoencoderKL from a model folder (its vae/), a vae folder, or a single/standalone VAE file."""
    from diffusers import AutoencoderKL

    source = Path(source)
    refuse_pickle(source)
    if source.is_dir():
        # Same path as the UNet: meta-device build, weights read once in `dtype` and assigned.
        folder = source if (source / "config.json").is_file() and not (source / "vae").is_dir() else \
            _subfolder(source, "vae", "the VAE")
        config = component_config(folder.name, folder.parent)
        state = {}
        for file in component_weight_files(folder, prefer_half=dtype != torch.float32):
            state.update(read_safetensors(file, dtype))
    else:
        from .single_file import read_sdxl_vae

        config = component_config("vae", config_folder)
        state = read_sdxl_vae(source, config, dtype)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
    return assign_state_dict(vae, state, str(source)).to(device)


def _text_encoder_classes():
    transformers = _quiet_transformers()
    return transformers.CLIPTextModel, transformers.CLIPTextModelWithProjection, transformers.CLIPTextConfig


def load_text_encoders(source: Path, tokenizers, dtype: torch.dtype, device: torch.device,
                       config_folder: Path | None = None, force_zeros_for_empty_prompt: bool = True) -> TextEncoders:
    """Both CLIP text encoders from a model folder or an SDXL single file, with the given tokenizers."""
    clip, clip_projected, clip_config = _text_encoder_classes()
    source = Path(source)
    refuse_pickle(source)
    if source.is_dir():
        encoders = []
        for name, cls in (("text_encoder", clip), ("text_encoder_2", clip_projected)):
            folder = _subfolder(source, name, "a CLIP text encoder")
            try:
                encoders.append(cls.from_pretrained(folder, torch_dtype=dtype, local_files_only=True,
                                                    use_safetensors=True))
            except (OSError, ValueError, EnvironmentError) as error:
                raise ModelFileError(folder, f"could not load the text encoder ({error})") from None
    else:
        from .single_file import fit_text_encoder_keys, read_sdxl_text_encoders

        configs = [component_config(name, config_folder) for name in ("text_encoder", "text_encoder_2")]
        states = read_sdxl_text_encoders(source, configs[0], configs[1], dtype)  # strictly checked
        encoders = []
        for config, state, cls in zip(configs, states, (clip, clip_projected)):
            config = clip_config.from_dict({key: value for key, value in config.items() if key != "architectures"})
            # transformers' own loading from a state dict: it also builds the non-persistent
            # buffers (position ids) that a meta-device build would leave empty.
            with torch.device("meta"):
                names = cls(config)
            encoders.append(cls.from_pretrained(None, config=config, state_dict=fit_text_encoder_keys(state, names),
                                                torch_dtype=dtype))
    text_encoder, text_encoder_2 = (encoder.to(device).eval().requires_grad_(False) for encoder in encoders)
    return TextEncoders(tokenizers[0], tokenizers[1], text_encoder, text_encoder_2, force_zeros_for_empty_prompt)


def scheduler_config(model_folder: Path | None, config_folder: Path | None = None) -> dict:
    """The scheduler config of the model folder, else of the config folder, else the release's."""
    for folder in (model_folder, config_folder):
        if folder is not None and (Path(folder) / "scheduler" / "scheduler_config.json").is_file():
            return component_config("scheduler", folder, "scheduler_config.json")
    return shipped_config("scheduler")


def force_zeros_for_empty_prompt(model_folder: Path | None, config_folder: Path | None = None) -> bool:
    for folder in (model_folder, config_folder):
        index = None if folder is None else Path(folder) / "model_index.json"
        if index is not None and index.is_file():
            try:
                return bool(json.loads(index.read_text()).get("force_zeros_for_empty_prompt", True))
            except (OSError, ValueError) as error:
                raise ModelFileError(index, f"not a readable JSON file ({error})") from None
    return bool(shipped_config("model_index").get("force_zeros_for_empty_prompt", True))
