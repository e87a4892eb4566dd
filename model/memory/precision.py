"""Choosing the device and the dtype the weights are held in."""

from __future__ import annotations

import torch

from ..errors import InputError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Not a compute dtype: Linear and Conv2d weights stored in float8, computed in bf16 (see fp8.py).
FP8 = "fp8"
_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError("device", f"{device!r} is not a torch device (try cpu, cuda, cuda:1, mps)") from None
    check_available(chosen)
    return chosen


def check_available(device: torch.device) -> None:
    """InputError naming `device` when this machine (or this torch build) cannot compute there."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "a CPU-only torch build" if torch.version.cuda is None else f"torch {torch.__version__}"
            raise InputError("device", f"{device} asked, but {build} sees no CUDA GPU here; use cpu or auto")
        if device.index is not None and device.index >= count:
            raise InputError("device", f"{device} asked, but there are only {count} CUDA GPUs (cuda:0 to "
                             f"cuda:{count - 1})")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError("device", f"{device} asked, but Apple's MPS is not available here (it needs a Mac "
                             "with Apple silicon and a torch build with MPS); use cpu or auto")


def bf16_is_fast(device: torch.device) -> bool:
    """Whether the device computes the UNet's bf16 layers at least as fast as fp32 ones.

    CUDA: GPUs with bf16 in hardware (compute capability 8.0 and later), not those where torch emulates it.
    CPUs: those with AMX. Measured with benchmarks/bench_cpu_dtypes.py on one AMX Xeon, oneDNN capped to each
    instruction set in turn (README, "dtype auto on CPUs"): bf16 matmuls, convolutions and feed-forward
    Linears ran 3.7-5.1x faster than fp32 with AMX, but 0.64-0.85x with AVX-512 BF16 alone and 0.17-0.32x
    with AVX-512 alone (bf16 converted in registers), although oneDNN supports bf16 on all three.
    """
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.3: no emulation to exclude
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_amx() and mkldnn_bf16_supported()
    return False


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (torch's own CPU probe; False where this torch cannot tell)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def mkldnn_bf16_supported() -> bool:
    """Whether this torch build's oneDNN computes bf16 on this CPU at all."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16, as Hotshot trained, where the device runs it fast (`bf16_is_fast`); else fp16 on GPUs, fp32 on CPUs."""
    if bf16_is_fast(device):
        return torch.bfloat16
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, name: str = "dtype") -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(name, f"{dtype} is not supported; use one of {', '.join(DTYPES)}")
        return dtype
    key = _ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if key not in DTYPES:
        raise InputError(name, f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} or auto")
    return DTYPES[key]


def training_dtype(dtype: str | torch.dtype | None, device: torch.device, name: str = "dtype") -> torch.dtype:
    """The trainer's compute dtype: bf16 (it keeps float32 masters of the trained weights) or fp32. "auto" is
    bf16 only on CUDA GPUs that run it natively, else fp32: unlike sampling, training does not take fp16 (its
    range needs loss scaling) nor the CPUs' bf16 (one training step's gradients are checked in fp32)."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and bf16_is_fast(device) else torch.float32
    chosen = resolve_dtype(dtype, device, name)
    if chosen not in (torch.bfloat16, torch.float32):
        raise InputError(name, f"training computes in bf16 or fp32, got {dtype!r}")
    return chosen


def resolve_precision(dtype: str | torch.dtype | None, device: torch.device,
                      name: str = "dtype") -> tuple[torch.dtype, bool]:
    """(compute dtype, whether Linear/Conv2d weights are stored in fp8) for a dtype option that may
    also be "fp8" (or torch.float8_e4m3fn): fp8 storage with bf16 compute."""
    if dtype == torch.float8_e4m3fn or (isinstance(dtype, str) and dtype.lower() in (FP8, "float8_e4m3fn")):
        return torch.bfloat16, True
    try:
        return resolve_dtype(dtype, device, name), False
    except InputError:
        raise InputError(name, f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}, {FP8} or auto") from None
