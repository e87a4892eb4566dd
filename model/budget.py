"""How much memory and time a generation will take, estimated before anything heavy runs.

`estimate_run` works from the UNet's config (built on the meta device: shapes, no weights), the
sizes, frames, windows, dtype and device; `check_budget` refuses a run that cannot fit in the memory
the device has (InputError naming the settings that make it so, with the estimate) and warns on
stderr when a CPU would take very long. The figures are estimates, meant to be right within a
factor of about two: enough to tell a run that fits from one that needs ten times the memory.

What grows with the frames is kept proportional to them: the latents and the scheduler's copies
(16 bytes a latent pixel each), the decoded frames (float32, 12 bytes a pixel) and the 8-bit copy
written out (3 bytes a pixel). Everything else is per window or per decoded chunk.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from dataclasses import dataclass
from functools import lru_cache

GIB = 1024**3
# Latent-sized float32 tensors alive per frame while sampling: the latents, the noise, the
# prediction, the scheduler's step temporaries and, with windows, the blend's sum and weights.
LATENT_COPIES = 8
FRAME_BYTES_PER_PIXEL = 12 + 3  # decoded float32 RGB, plus the uint8 copy the writer encodes
# Working activations of one UNet pass, in units of the largest (tokens x channels) tensor of a
# level with attention or ResNets: the GEGLU's doubled 4x projection alone is 8 of them.
WORKING_COPIES = 12
VAE_WORKING_COPIES = 6  # of the decoder's top-level (pixels x channels) tensor, per decoded frame
CONV_EFFICIENCY = 0.5  # of a matmul's rate that convolutions and attention reach on a CPU
LONG_SECONDS = 15 * 60  # warn past this on a CPU


@dataclass(frozen=True)
class Estimate:
    """A run's estimated peak memory on its device, in parts (bytes), and its arithmetic (FLOPs)."""

    weights: int
    activations: int  # one UNet pass over one window (or the whole video), or one decoded chunk
    per_frame: int  # the state kept for the whole video: latents, frames, the written copy
    flops: float

    @property
    def peak(self) -> int:
        return self.weights + self.activations + self.per_frame

    def describe(self) -> str:
        return (f"about {_gb(self.peak)} (weights {_gb(self.weights)}, one UNet pass or decoded chunk "
                f"{_gb(self.activations)}, frames and latents {_gb(self.per_frame)})")


def _gb(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GB" if nbytes >= GIB / 10 else f"{nbytes / 2**20:.0f} MB"


@lru_cache(maxsize=8)
def _unet_profile(config) -> tuple:
    """Per UNet level: (weight parameters, channels, spatial self-attention inner width summed over
    blocks), plus the parameter count of every Linear/Conv2d (what fp8 stores in one byte)."""
    import torch

    from .network.attention import Attention
    from .network.unet import HotshotXLUNet

    with torch.device("meta"):
        unet = HotshotXLUNet(config)
    levels = len(config.block_out_channels)
    params, attention_width = [0] * levels, [0] * levels
    for name, parameter in unet.named_parameters():
        params[_level(name, levels)] += parameter.numel()
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.endswith("attn1") and "temporal" not in name:
            attention_width[_level(name, levels)] += module.to_q.out_features
    quantizable = sum(m.weight.numel() for m in unet.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    return tuple(params), tuple(config.block_out_channels), tuple(attention_width), quantizable


def _level(name: str, levels: int) -> int:
    """The resolution level (0: the latent's) a parameter or module of the UNet computes at."""
    match = re.match(r"(down|up)_blocks\.(\d+)\.", name)
    if match:
        index = int(match.group(2))
        return index if match.group(1) == "down" else levels - 1 - index
    return levels - 1 if name.startswith("mid_block") else 0


def estimate_run(config, *, width: int, height: int, frames: int, steps: int, window: int | None = None,
                 windows_per_step: int = 1, guidance: float = 5.0, dtype_bytes: int = 4, fp8: bool = False,
                 weights: int | None = None, vae_top_channels: int = 128, decode_chunk: int = 4,
                 tiled: bool = False, init_video: bool = False) -> Estimate:
    """The memory and arithmetic of one text-to-video call (see the module's docstring).

    `window`: frames per UNet pass (None: all of them); `windows_per_step`: how many passes a step
    makes; `weights`: bytes of weights on the device (None: the UNet's from `config` at the dtype,
    plus a third for the VAE and text encoders, as in SDXL).
    """
    params, channels, attention_width, quantizable = _unet_profile(config)
    tokens = [(height // 8 >> level) * (width // 8 >> level) for level in range(len(channels))]
    batch = (2 if guidance > 1 else 1) * (window or frames)
    if weights is None:
        total = sum(params)
        unet = (total - quantizable) * dtype_bytes + quantizable * (1 if fp8 else dtype_bytes)
        weights = unet + int(total * 0.35) * dtype_bytes  # SDXL's VAE and text encoders: 35% of its UNet
    # One pass: the skip connections the up blocks wait for, plus the working set of the widest level.
    skips = sum((config.layers_per_block + 1) * c * n for c, n in zip(channels, tokens))
    working = WORKING_COPIES * max(c * n for c, n in zip(channels, tokens))
    unet_pass = batch * (skips + working) * dtype_bytes
    tile = 512 if tiled else None
    pixels = min(height, tile or height) * min(width, tile or width)
    decode = min(decode_chunk, frames) * VAE_WORKING_COPIES * vae_top_channels * pixels * dtype_bytes
    per_frame = frames * (LATENT_COPIES * 16 * tokens[0] + FRAME_BYTES_PER_PIXEL * width * height)
    if init_video:
        per_frame += frames * 15 * width * height  # the input video read (uint8) and as floats
    # Arithmetic: every weight is a multiply-add per token of its level; self-attention adds its
    # score and value products, quadratic in a frame's tokens.
    per_frame_pass = sum(2 * p * n + 4 * n * n * a for p, n, a in zip(params, tokens, attention_width))
    flops = steps * windows_per_step * batch * per_frame_pass
    return Estimate(int(weights), int(max(unet_pass, decode)), int(per_frame), float(flops))


def windows_per_step(frames: int, context) -> int:
    """UNet passes per step with `context` windows (None: one pass over all frames)."""
    if context is None:
        return 1
    advance = max(context.length - context.overlap, 1)
    per_stride = math.ceil(max(frames - context.overlap, 1) / advance)
    return per_stride * max(context.stride, 1).bit_length()


def device_memory(device) -> int:
    """Bytes of memory the device has: a GPU's total, or the machine's physical memory."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory()) if hasattr(torch.mps, "recommended_max_memory") else \
            os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # a platform without sysconf: never refuse on a guess
        return sys.maxsize


@lru_cache(maxsize=1)
def cpu_flops_per_second() -> float:
    """This CPU's float32 matmul rate, measured (a few hundredths of a second)."""
    import torch

    a = torch.randn(512, 512)
    a @ a  # warm up the kernels
    started, runs = time.perf_counter(), 0
    while time.perf_counter() - started < 0.05:
        a @ a
        runs += 1
    return 2 * 512**3 * runs / (time.perf_counter() - started)


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


def check_budget(estimate: Estimate, device, causes: dict[str, object], steps: int | None = None, warn=None) -> None:
    """Raise InputError when `estimate` cannot fit in the device's memory; on a CPU, warn (through
    `warn`, default stderr) when it will take very long. `causes`: the settings that size the run,
    by parameter name (the first names the error; the CLI says each as its flag)."""
    from .errors import InputError

    memory = device_memory(device)
    said = " ".join(f"`{name}={value}`" for name, value in causes.items())
    if estimate.peak > memory:
        raise InputError(next(iter(causes)), f"{said} needs {estimate.describe()}, more than the "
                         f"{_gb(memory)} the {device.type} has; ask for fewer frames or pixels (estimated before "
                         "any sampling)")
    if device.type == "cpu":
        seconds = estimate.flops / (cpu_flops_per_second() * CONV_EFFICIENCY)
        if seconds > LONG_SECONDS:
            timed = said if steps is None else f"{said} `steps={steps}`"
            message = (f"warning: {timed} will take about {_duration(seconds)} on this CPU (estimated from "
                       f"{estimate.flops:.2g} FLOPs; peak memory {estimate.describe()})")
            (warn or (lambda text: print(text, file=sys.stderr)))(message)


def check_settings(config, settings, dtype, device, *, fp8: bool = False, weights: int | None = None,
                   vae_top_channels: int = 128, init_video: bool = False, warn=None) -> Estimate:
    """`check_budget` for a pipeline `Settings` (already checked) on a UNet of `config`; returns the estimate."""
    import torch

    from .denoising.context import context_for
    from .media.decode import wants_tiling

    context = context_for(settings.frames, settings.context, config.temporal_max_frames)
    estimate = estimate_run(
        config, width=settings.width, height=settings.height, frames=settings.frames, steps=settings.steps,
        window=None if context is None else min(context.length, settings.frames),
        windows_per_step=windows_per_step(settings.frames, context), guidance=settings.guidance,
        dtype_bytes=torch.empty((), dtype=dtype).element_size(), fp8=fp8, weights=weights,
        vae_top_channels=vae_top_channels, decode_chunk=settings.decode_chunk,
        tiled=wants_tiling(settings.vae_tiling, settings.height, settings.width), init_video=init_video)
    size = {"width": settings.width, "height": settings.height}
    frames = {"frames": settings.frames}
    causes = {**frames, **size} if estimate.per_frame >= estimate.activations else {**size, **frames}
    check_budget(estimate, device, causes, steps=settings.steps, warn=warn)
    return estimate


def sources_profile(model=None, sdxl=None, configs=None) -> tuple:
    """(UNet config, the VAE decoder's top-level channels) of the model the sources name, from their
    config files alone (nothing is loaded): tiny-random's, a folder's unet/ and vae/ configs, else the
    full-size release's. A file that cannot be read is the loader's to report: here it counts as full size."""
    import json
    from pathlib import Path

    from .choices import TINY_RANDOM
    from .network.config import UNetConfig

    if str(model) == TINY_RANDOM:
        from .tiny import TINY_UNET, TINY_VAE

        return TINY_UNET, TINY_VAE["block_out_channels"][0]
    config, vae_channels = UNetConfig(), 128
    folders = [Path(p).expanduser() for p in (configs, model, sdxl) if p is not None]
    for folder in folders:
        try:
            config = UNetConfig.from_file(folder / "unet" / "config.json")
            break
        except Exception:  # noqa: BLE001 (missing or malformed: the loader names it later)
            continue
    for folder in folders:
        try:
            vae_channels = int(json.loads((folder / "vae" / "config.json").read_text())["block_out_channels"][0])
            break
        except Exception:  # noqa: BLE001
            continue
    return config, vae_channels


def check_before_loading(settings, *, model=None, sdxl=None, configs=None, dtype=None, device=None,
                         offload: str = "none", init_video: bool = False, warn=None) -> Estimate:
    """`check_settings` for the pipeline that `load_pipeline(model, sdxl=..., configs=..., dtype=...,
    device=..., offload=...)` would load, from config files alone: called before any weights are read."""
    import torch

    from .choices import TINY_RANDOM
    from .memory.precision import resolve_device, resolve_precision

    device = resolve_device(device)
    if str(model) == TINY_RANDOM and dtype in (None, "auto"):
        from .tiny import fastest_dtype

        dtype = fastest_dtype(device)
    dtype, fp8 = resolve_precision(dtype, device)
    config, vae_channels = sources_profile(model, sdxl, configs)
    weights = 0 if offload != "none" else None  # offloaded weights rest on the CPU, not on `device`
    if str(model) == TINY_RANDOM:
        weights = 0 if offload != "none" else 32 * 2**20  # tiny-random holds a few MB
    return check_settings(config, settings, dtype, torch.device(device), fp8=fp8, weights=weights,
                          vae_top_channels=vae_channels, init_video=init_video, warn=warn)


def check_pipeline(pipe, settings, init_video: bool = False, warn=None) -> Estimate:
    """`check_settings` for a loaded pipeline: its weights on its device are counted, not estimated."""
    modules = (pipe.unet, pipe.vae, pipe.text.text_encoder, pipe.text.text_encoder_2)
    device = pipe.device
    weights = sum(p.numel() * p.element_size() for m in modules for p in m.parameters() if p.device == device)
    channels = pipe.vae.config.block_out_channels[0] if hasattr(pipe.vae, "config") else 128
    return check_settings(pipe.unet.config, settings, pipe.unet.dtype, device, weights=weights,
                          vae_top_channels=channels, init_video=init_video, warn=warn)
