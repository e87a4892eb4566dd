"""Reading safetensors weights and putting them into a module built on the meta device.

Weights are read from the memory-mapped file and converted to the target dtype one tensor at a
time, then assigned (not copied) into a module whose parameters were never allocated: peak host
memory is about one copy of the model in the target dtype. Pickle formats are refused, never
unpickled.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ..errors import ModelFileError
from .suffixes import PICKLE_SUFFIXES  # noqa: F401 (re-exported)


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            path, f"'{path.suffix}' is a pickle format, which can run arbitrary code when loaded; "
            "only .safetensors weights are accepted (convert the file to safetensors first)")


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names of a safetensors file, from its header alone."""
    path = Path(path)
    refuse_pickle(path)
    if not path.is_file():
        raise ModelFileError(path, "file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            return list(reader.keys())
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise ModelFileError(path, f"not a readable .safetensors file (truncated or corrupt?): {error}") from None


# Told the bytes of each tensor as it is read, inside `reading_progress` (a loading progress bar).
_ON_TENSOR: ContextVar[tuple[Callable[[int], None], ...]] = ContextVar("on_tensor", default=())


@contextmanager
def reading_progress(callback: Callable[[int], None]):
    """Within this context, read_safetensors calls `callback(nbytes)` after each tensor it reads
    (and the callbacks of enclosing contexts too)."""
    token = _ON_TENSOR.set((*_ON_TENSOR.get(), callback))
    try:
        yield
    finally:
        _ON_TENSOR.reset(token)


def _materialized(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """`tensor`, told to the `reading_progress` callbacks (its bytes in the file), in `dtype` if it is
    floating point (the same tensor when it is already)."""
    for callback in _ON_TENSOR.get():
        callback(tensor.numel() * tensor.element_size())
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        return tensor.to(dtype)
    return tensor


def read_views(path: Path, keep: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of one file whose name passes `keep`, as views of the memory-mapped file (no memory of
    their own, nothing read yet), keyed by their names in the file. Pass them through `materialize`."""
    path = Path(path)
    safetensors_keys(path)  # uniform errors for missing, pickle and corrupt files
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            return {key: reader.get_tensor(key) for key in reader.keys() if keep is None or keep(key)}
    except Exception as error:
        raise ModelFileError(path, f"could not read tensors (truncated or corrupt?): {error}") from None


def materialize(path: Path, tensors: dict[str, torch.Tensor], dtype: torch.dtype | None,
                file_names: Iterable[str]) -> dict[str, torch.Tensor]:
    """`tensors` (views of `path`, possibly renamed, or copies a converter made of them) with the
    floating-point ones converted to `dtype`, one at a time in place, each told to `reading_progress`
    as it is done; then the file's pages of `file_names` (the tensors' names in the file) may go, if
    anything was converted (release_page_cache)."""
    converted = False
    for name, tensor in tensors.items():
        tensors[name] = _materialized(tensor, dtype)
        converted |= tensors[name] is not tensor
    tensor = None  # the last view: while any lives, the file stays mapped and its pages cannot go
    if converted:
        release_page_cache(path, file_names)
    return tensors


def read_safetensors(path: Path, dtype: torch.dtype | None = None,
                     keep: Callable[[str], bool] | None = None,
                     rename: Callable[[str], str] | None = None,
                     convert: Callable[[str, torch.Tensor], dict[str, torch.Tensor]] | None = None,
                     ) -> dict[str, torch.Tensor]:
    """Tensors of one file whose name passes `keep`, converted to `dtype` one by one as they are read
    (no tensor as read outlives its conversion), then released as `materialize` does.

    `convert(name, tensor)`, when given, replaces the dtype conversion: it returns the tensors to
    keep for each one read (fp8.quantizer: a float8 weight and its scale).
    """
    path = Path(path)
    safetensors_keys(path)  # uniform errors for missing, pickle and corrupt files
    tensors, file_names, converted = {}, [], False
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            for key in reader.keys():
                if keep is not None and not keep(key):
                    continue
                file_names.append(key)
                tensor = reader.get_tensor(key)
                name = rename(key) if rename else key
                if convert is not None:
                    tensors.update(convert(name, _materialized(tensor, None)))
                    converted = True
                    continue
                tensors[name] = _materialized(tensor, dtype)
                converted |= tensors[name] is not tensor
    except ModelFileError:
        raise
    except Exception as error:
        raise ModelFileError(path, f"could not read tensors (truncated or corrupt?): {error}") from None
    tensor = None  # as in materialize
    if converted:
        release_page_cache(path, file_names)
    return tensors


def _free_memory_bytes() -> int | None:
    """MemFree of /proc/meminfo (memory not even used as cache), or None where there is none."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemFree:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _tensor_spans(path: Path) -> dict[str, tuple[int, int]]:
    """Each tensor's byte range in a safetensors file (an 8-byte header length, a JSON header, the data)."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    start = 8 + length
    return {name: (start + entry["data_offsets"][0], start + entry["data_offsets"][1])
            for name, entry in header.items() if name != "__metadata__"}


def release_page_cache(path: Path, names: Iterable[str]) -> None:
    """Let the kernel drop the cached file pages of tensors `names` now, if free memory is short.

    Called once tensors read from `path` have been converted into memory of their own: this load
    needs their bytes in the file no more. When free memory is smaller than the file, the kernel
    has to evict cached pages to make room for the rest of the load anyway, and doing that page
    fault by page fault costs far more than dropping the pages at once (a fp32 load of a bf16 SDXL
    file on a 24 GiB machine: the text encoders loaded after the UNet in 7.5 s instead of 3 s).
    With memory to spare nothing is dropped, so a later load still finds the file cached. Pages
    still mapped (tensors used as they are in the file) are never dropped. Linux only.
    """
    path = Path(path)
    free = _free_memory_bytes()
    if free is None or not hasattr(os, "posix_fadvise"):
        return
    try:
        if free >= path.stat().st_size:
            return
        spans = _tensor_spans(path)
        descriptor = os.open(path, os.O_RDONLY)
    except (OSError, ValueError, struct.error):
        return  # advice only: a file we just read cannot fail here in practice
    try:
        for name in names:
            if name in spans:
                start, end = spans[name]
                os.posix_fadvise(descriptor, start, end - start, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


# Weight file names of a diffusers component folder, best first for each precision.
_FULL = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")
_HALF = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors.index.fp16.json")


def component_weight_files(folder: Path, prefer_half: bool = False) -> list[Path]:
    """The safetensors files holding a diffusers component (one file, or the shards of an index).

    Full-precision files are preferred unless `prefer_half`: they convert losslessly to any dtype.
    """
    folder = Path(folder)
    for name in (_HALF + _FULL) if prefer_half else (_FULL + _HALF):
        candidate = folder / name
        if not candidate.is_file():
            continue
        if name.endswith(".json"):
            return _shards_of_index(candidate)
        return [candidate]
    pickles = sorted(p.name for p in folder.glob("diffusion_pytorch_model*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelFileError(folder, f"only pickle weights found ({', '.join(pickles)}); "
                             "only .safetensors weights are accepted")
    raise ModelFileError(folder, "no weights found: expected diffusion_pytorch_model.safetensors "
                         "(or its .fp16 variant, or a sharded .safetensors.index.json)")


def _shards_of_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelFileError(index, f"not a valid sharded-weights index ({error})") from None
    shards = []
    for name in dict.fromkeys(weight_map.values()):  # unique, in order
        shard = index.parent / name
        if not shard.is_file():
            raise ModelFileError(index, f"lists shard {name}, which is missing")
        shards.append(shard)
    return shards


def _preview(names: Iterable[str], limit: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Raise a ModelFileError listing missing, unexpected and mis-shaped tensors, if any."""
    expected = model.state_dict()
    problems = []
    missing = expected.keys() - state_dict.keys()
    unexpected = state_dict.keys() - expected.keys()
    if missing:
        problems.append(f"missing {len(missing)} tensors: {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors: {_preview(unexpected)}")
    mismatched = [
        f"{key} is {tuple(state_dict[key].shape)}, expected {tuple(expected[key].shape)}"
        for key in sorted(expected.keys() & state_dict.keys())
        if expected[key].shape != state_dict[key].shape
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {'; '.join(mismatched[:3])}"
                        + (" ..." if len(mismatched) > 3 else ""))
    if problems:
        raise ModelFileError(source, "does not match the expected network: " + "; ".join(problems))


def assign_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Strictly load into a meta-device model by assignment (no second copy of the weights)."""
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True, assign=True)
    # Non-persistent buffers are not in any checkpoint: they must not be left on the meta device.
    loaded_real_weights = not any(tensor.is_meta for tensor in state_dict.values())
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    leftover = [name for name, tensor in tensors if tensor.is_meta and loaded_real_weights]
    if leftover:  # a bug in our module, not a user error
        raise RuntimeError(f"tensors left unloaded on the meta device: {_preview(leftover)}")
    return model.requires_grad_(False).eval()
