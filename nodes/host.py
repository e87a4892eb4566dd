"""What the nodes need from their host, with or without ComfyUI.

Inside ComfyUI (its `folder_paths` module is loaded before custom nodes are), everything goes
through ComfyUI: model folders, output folder and save-path numbering (`folder_paths`), devices and
memory (`comfy.model_management`), progress, interruption and latent previews (`comfy.utils`,
`latent_preview`).

Without ComfyUI (tests, scripts) the nodes run the same code with plain fallbacks:

- model names: an absolute path to a file or folder is taken as it is; any other name is looked up
  under `$HOTSHOT_XL_MODELS/<folder>/`, a folder laid out like ComfyUI's `models/` (`diffusers/`,
  `hotshot_xl/`, `animatediff_models/`, `checkpoints/`); the loaders' option lists come from there;
- outputs go to `$HOTSHOT_XL_OUTPUT` (default: `./output`), numbered the way ComfyUI numbers them;
- weights stay on the best device (CUDA, MPS, else the CPU); there is no progress display and no
  interruption (a step callback that raises stops the run just the same).

Only names are resolved here; nothing is cached between calls.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..model.errors import InputError

ENV_MODELS = "HOTSHOT_XL_MODELS"
ENV_OUTPUT = "HOTSHOT_XL_OUTPUT"

# ComfyUI model folder names, in the order they are searched.
MODEL_FOLDERS = ("hotshot_xl", "diffusers")  # released Hotshot-XL model folders
TEMPORAL_FOLDERS = ("animatediff_models", "hotshot_xl")  # hsxl_temporal_layers*.safetensors
CHECKPOINT_FOLDERS = ("checkpoints",)  # SDXL single-file checkpoints
CONFIG_FOLDERS = ("diffusers", "hotshot_xl")  # diffusers-layout folders lending configs and tokenizers
PACK_FOLDERS = ("hotshot_xl", "animatediff_models")  # registered by the pack when ComfyUI lacks them

WEIGHT_SUFFIX = ".safetensors"
_FOLDER_DEPTH = 3  # how deep model folders are searched for below a models folder


def folder_paths():
    """ComfyUI's folder_paths module when the pack runs inside ComfyUI, else None."""
    return sys.modules.get("folder_paths")


def in_comfyui() -> bool:
    return folder_paths() is not None


def register_model_folders() -> None:
    """Make `models/hotshot_xl` and `models/animatediff_models` ComfyUI model folders (no-op outside)."""
    host = folder_paths()
    if host is None:
        return
    for name in PACK_FOLDERS:
        host.add_model_folder_path(name, os.path.join(host.models_dir, name))


# ------------------------------------------------------------------------------------ model names

def model_bases(folder: str) -> list[Path]:
    """The folders that ComfyUI's model folder `folder` (e.g. "controlnet") stands for, or, outside
    ComfyUI, `$HOTSHOT_XL_MODELS/<folder>`."""
    host = folder_paths()
    if host is not None:
        if folder not in host.folder_names_and_paths:
            return []
        return [Path(p) for p in host.get_folder_paths(folder)]
    root = os.environ.get(ENV_MODELS)
    return [Path(root).expanduser() / folder] if root else []


def _is_model_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file()


def _relative(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def list_model_folders(folders=MODEL_FOLDERS) -> list[str]:
    """Names (relative to their models folder) of diffusers-layout model folders found in `folders`."""
    names = set()
    for folder in folders:
        for base in model_bases(folder):
            if not base.is_dir():
                continue
            for root, dirs, _ in os.walk(base, followlinks=True):
                here = Path(root)
                depth = len(here.relative_to(base).parts)
                if here != base and _is_model_folder(here):
                    names.add(_relative(here, base))
                    dirs.clear()  # a model's own sub-folders are not models
                elif depth >= _FOLDER_DEPTH:
                    dirs.clear()
                else:
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(names, key=str.lower)


def list_weight_files(folders) -> list[str]:
    """Names of .safetensors files in `folders`, leaving out the component files of model folders
    (weights that sit next to a config.json, as unet/diffusion_pytorch_model.safetensors does)."""
    names = set()
    for folder in folders:
        for base in model_bases(folder):
            if not base.is_dir():
                continue
            for root, dirs, files in os.walk(base, followlinks=True):
                here = Path(root)
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                if (here / "config.json").is_file() or _is_model_folder(here):
                    continue
                names.update(_relative(here / f, base) for f in files
                             if f.lower().endswith(WEIGHT_SUFFIX) and not f.startswith("."))
    return sorted(names, key=str.lower)


def resolve(name: str, folders, input_name: str, want_folder: bool) -> Path:
    """The path a node's model-name input stands for; InputError naming the input if there is none."""
    kind = "folder" if want_folder else "file"
    if not isinstance(name, str) or not name.strip():
        raise InputError(input_name, f"no model {kind} chosen")
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        paths = [candidate]
    else:
        paths = [base / name for folder in folders for base in model_bases(folder)]
    for path in paths:
        if (path.is_dir() if want_folder else path.is_file()):
            return path
    where = ", ".join(str(p.parent) for p in paths) or (
        f"nowhere: no models folder (outside ComfyUI set ${ENV_MODELS} to a folder holding "
        f"{', '.join(f + '/' for f in folders)}, or give an absolute path)")
    if any(p.exists() for p in paths):
        expected = "a model folder" if want_folder else f"a {WEIGHT_SUFFIX} file"
        raise InputError(input_name, f"{name!r} is not {expected}")
    raise InputError(input_name, f"{kind} {name!r} not found; looked in {where}")


# ----------------------------------------------------------------------------- devices and memory

def devices(component: str):
    """(load device, offload device) for "unet", "text" or "vae"."""
    if in_comfyui():
        import comfy.model_management as mm

        load, offload = {
            "unet": (mm.get_torch_device, mm.unet_offload_device),
            "text": (mm.text_encoder_device, mm.text_encoder_offload_device),
            "vae": (mm.vae_device, mm.vae_offload_device),
        }[component]
        return load(), offload()
    from ..model.memory.precision import resolve_device

    device = resolve_device(None)
    return device, device


def default_dtype(device):
    """The dtype `device` runs best: ComfyUI's judgement inside ComfyUI, else the library's."""
    import torch

    if in_comfyui():
        import comfy.model_management as mm

        if mm.should_use_bf16(device):
            return torch.bfloat16
        if mm.should_use_fp16(device):
            return torch.float16
        return torch.float32
    from ..model.memory.precision import default_dtype as library_default

    return library_default(device)


def intermediate_device():
    """Where tensors passed between nodes live (the CPU unless ComfyUI says otherwise)."""
    if in_comfyui():
        import comfy.model_management as mm

        return mm.intermediate_device()
    import torch

    return torch.device("cpu")


def managed(module, component: str, latent_format=None):
    """A handle for `module` that `load()` puts on its load device (a ComfyUI ModelPatcher inside ComfyUI)."""
    from .managed import Managed

    load_device, offload_device = devices(component)
    return Managed.wrap(module, load_device, offload_device, latent_format, in_comfyui())


def load(*handles, memory_required: int = 0) -> None:
    """Put the weights of `handles` on their load device, through ComfyUI's memory management if there."""
    if in_comfyui():
        import comfy.model_management as mm

        # Full loads: our modules are plain torch modules, which ComfyUI cannot stream from the CPU.
        mm.load_models_gpu([h.patcher for h in handles], memory_required=memory_required, force_full_load=True)
    else:
        for handle in handles:
            handle.module.to(handle.load_device)


# ----------------------------------------------------------------------- progress and interruption

class _Progress:
    def __init__(self, total: int):
        self.bar = None
        if in_comfyui():
            import comfy.utils

            self.bar = comfy.utils.ProgressBar(total)

    def __call__(self, done: int, total: int, preview=None) -> None:
        # Inside ComfyUI every update also raises if the user pressed Cancel.
        if self.bar is not None:
            self.bar.update_absolute(done, total, preview)


def progress(total: int) -> _Progress:
    """`update(done, total)`: reports progress to ComfyUI and stops the run on Cancel (no-op outside)."""
    return _Progress(total)


def check_interrupted() -> None:
    """Raise ComfyUI's interruption if the user pressed Cancel (no-op outside ComfyUI)."""
    if in_comfyui():
        import comfy.model_management as mm

        mm.throw_exception_if_processing_interrupted()


# ---------------------------------------------------------------------------------------- outputs

def output_directory() -> Path:
    host = folder_paths()
    if host is not None:
        return Path(host.get_output_directory())
    return Path(os.environ.get(ENV_OUTPUT) or "output").expanduser().resolve()


_COUNTER = re.compile(r"_(\d+)_")


def save_path(filename_prefix: str, output_dir: Path, width: int, height: int) -> tuple[Path, str, int, str]:
    """(folder, file name stem, counter, subfolder) for `filename_prefix`, as ComfyUI's save nodes do:
    the prefix may hold sub-folders and %width%/%height%/date tokens, may not leave the output folder,
    and the counter follows the highest `<stem>_NNNNN_` file already there."""
    if not isinstance(filename_prefix, str) or not filename_prefix.strip():
        raise InputError("filename_prefix", "must not be empty")
    host = folder_paths()
    if host is not None:
        try:
            folder, stem, counter, subfolder, _ = host.get_save_image_path(filename_prefix, str(output_dir),
                                                                            width, height)
        except (ValueError, OSError) as error:
            raise InputError("filename_prefix", f"cannot save under {filename_prefix!r}: {error}") from None
        except Exception as error:  # ComfyUI raises a plain Exception for paths leaving the output folder
            raise InputError("filename_prefix", f"{filename_prefix!r} leaves the output folder "
                             f"{output_dir}: {str(error).splitlines()[0].strip('* ')}") from None
        return Path(folder), stem, counter, subfolder
    prefix = filename_prefix.replace("%width%", str(width)).replace("%height%", str(height))
    relative = Path(os.path.normpath(prefix))
    folder = (output_dir / relative.parent).resolve()
    if relative.is_absolute() or not folder.is_relative_to(output_dir.resolve()):
        raise InputError("filename_prefix", f"{filename_prefix!r} leaves the output folder {output_dir}")
    stem = relative.name
    folder.mkdir(parents=True, exist_ok=True)
    counters = [int(m.group(1)) for f in os.listdir(folder) if f.startswith(stem)
                for m in [_COUNTER.match(f[len(stem):])] if m]
    subfolder = "" if str(relative.parent) == "." else relative.parent.as_posix()
    return folder, stem, max(counters, default=0) + 1, subfolder


def metadata_disabled() -> bool:
    """ComfyUI's --disable-metadata: save nodes store no prompt or workflow (False outside ComfyUI)."""
    if not in_comfyui():
        return False
    from comfy.cli_args import args

    return bool(getattr(args, "disable_metadata", False))


def prefix_problem(filename_prefix, output_dir: Path) -> str | None:
    """Why `filename_prefix` cannot be saved under (it leaves the output folder, is empty or not text),
    or None; checks names only and creates nothing, so it can run when a prompt is validated."""
    if not isinstance(filename_prefix, str) or not filename_prefix.strip():
        return "must not be empty"
    if "\0" in filename_prefix:
        return "must not contain a NUL character"
    prefix = re.sub(r"%[a-z]+%", "x", filename_prefix)  # %width%, %date% tokens stand for plain text
    if Path(prefix).is_absolute() or os.path.isabs(prefix):
        return f"{filename_prefix!r} is an absolute path; give a name inside the output folder {output_dir}"
    folder = os.path.abspath(os.path.join(output_dir, os.path.dirname(os.path.normpath(prefix))))
    if os.path.commonpath((os.path.abspath(output_dir), folder)) != os.path.abspath(output_dir):
        return f"{filename_prefix!r} leaves the output folder {output_dir}"
    if not os.path.basename(os.path.normpath(prefix)) or os.path.normpath(prefix) in (".", ".."):
        return f"{filename_prefix!r} names a folder, not a file name"
    return None
