"""Measurement helpers shared by our benchmark worker and the original implementation's worker.

Only the standard library and torch are imported here: the original's worker runs in another
virtual environment (its own diffusers) and must not import this repository's `model` package.
Linux only: host memory comes from /proc/self/status.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import zlib
from pathlib import Path

import torch

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent


def fixtures() -> Path:
    """The reference fixtures: $HOTSHOT_XL_FIXTURES, else the repository's tests/fixtures."""
    for candidate in (os.environ.get("HOTSHOT_XL_FIXTURES"), REPO / "tests" / "fixtures"):
        if candidate and (Path(candidate) / "hotshot-xl-tiny").is_dir():
            return Path(candidate)
    sys.exit("hotshot-xl-tiny not found: set HOTSHOT_XL_FIXTURES to the folder holding it")


# --- host memory ------------------------------------------------------------------------------

def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def state_mib(*modules: torch.nn.Module) -> float:
    """MiB of the modules' parameters and buffers as stored (fp8 weights count one byte each)."""
    return sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values()) / MiB


def settle() -> float:
    """Collect garbage and give freed heap back to the OS, then return the resident MiB.

    Without the trim, memory freed while building the weights would stay in glibc's heap and be
    reused by the forward pass unseen, hiding part of its peak.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return status_mib("VmRSS")


class PeakRss:
    """Peak resident MiB over a `with` block: VmHWM, cross-checked by sampling VmRSS in a thread."""

    def __init__(self, period: float = 0.002):
        self.period = period
        self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        self._hwm = reset_peak()
        self.peak = status_mib("VmRSS")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, status_mib("VmRSS"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_mib("VmRSS"), status_mib("VmHWM") if self._hwm else 0.0)


# --- CPU contention (the machine is shared) -----------------------------------------------------

def _cpu_snapshot():
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    return time.process_time(), busy, time.perf_counter()


class Timed:
    """Wall seconds of a `with` block, our CPU seconds, and how many cores other processes used."""

    def __enter__(self):
        self._start = _cpu_snapshot()
        return self

    def __exit__(self, *exc):
        end = _cpu_snapshot()
        own, busy, wall = (b - a for a, b in zip(self._start, end))
        self.seconds = wall
        self.cpu_seconds = own
        self.others_cores = max(busy - own, 0.0) / wall if wall > 0 else 0.0


def summarise(runs: list[dict], clean_threshold: float = 0.25) -> dict:
    """min/median of the timed runs, and the median of the 'clean' ones (others used < threshold cores)."""
    times = [r["seconds"] for r in runs]
    clean = [r["seconds"] for r in runs if r["others_cores"] < clean_threshold]
    return {"min_s": min(times), "median_s": statistics.median(times),
            "clean_median_s": statistics.median(clean) if clean else None, "clean_runs": len(clean),
            "median_cpu_s": statistics.median(r["cpu_seconds"] for r in runs)}


# --- the machine ----------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = [name for name in ("avx512f", "avx512_bf16", "amx_bf16", "avx2") if f" {name}" in flags]
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "isa": isa,
            "torch": torch.__version__, "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def describe(info: dict) -> str:
    text = (f"{info['cpu']} ({', '.join(info['isa']) or 'no AVX'}), {info['cores']} cores, "
            f"{info['torch_threads']} torch threads, {info['memory_gib']} GiB RAM, torch {info['torch']}")
    if info.get("gpu"):
        text += f", {info['gpu']} (CUDA {info['cuda']})"
    return text


def matmul_peak_gflops(n: int = 4096, repeats: int = 8, dtype=torch.float32, device="cpu") -> float:
    """Best-of-N GFLOP/s of one large square matmul: what this machine's BLAS can reach."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def count_flops(fn) -> float:
    """FLOPs of one call of `fn`, by torch's FlopCounterMode (CPU flash attention counted too)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = sdpa_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return float(counter.get_total_flops())


# --- configurations and random weights -----------------------------------------------------------

def diffusers_config(name: str) -> dict:
    """The UNet config of a named benchmark configuration, as a diffusers (3D block names) dict.

    tiny: the test fixture; full: the released Hotshot-XL; mid: full SDXL widths, one transformer
    layer per block (spatial cost like SD1.5-sized attention, same temporal layers).
    """
    if name == "tiny":
        config = json.loads((fixtures() / "hotshot-xl-tiny" / "unet" / "config.json").read_text())
    else:
        config = dict(json.loads((fixtures() / "hotshot_xl_unet_keys.json").read_text())["config"])
        if name == "mid":
            config["transformer_layers_per_block"] = [1, 1, 1]
        elif name != "full":
            raise ValueError(f"unknown configuration {name!r}: tiny, mid or full")
    return {key: value for key, value in config.items() if not key.startswith("_")}


def sinusoid(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


def random_tensor(key: str, shape, dtype=torch.float32) -> torch.Tensor:
    """A deterministic, well-scaled random tensor for state-dict entry `key`.

    Seeded by the key's name, so two processes (ours and the original's) build identical weights
    without sharing a file. Weights are N(0, 1/fan_in), norm scales near 1, biases small, and the
    temporal position tables the real sinusoids: activations stay finite through the whole UNet.
    """
    shape = tuple(shape)
    if key.endswith("positional_encoding"):
        return sinusoid(shape[1], shape[2]).to(dtype)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    values = torch.randn(shape, generator=generator)
    if len(shape) >= 2:
        values /= math.sqrt(math.prod(shape[1:]))
    elif "norm" in key and key.endswith("weight"):
        values = 1.0 + 0.1 * values
    else:
        values *= 0.02
    return values.to(dtype)


def fill_randomly(module: torch.nn.Module, dtype=torch.float32) -> None:
    """`module` (already allocated) cast to `dtype`, its floating-point parameters and buffers overwritten
    with `random_tensor`."""
    module.to(dtype)  # casts floating-point tensors only; copy_ alone would keep their old dtype
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if tensor.is_floating_point():  # integer buffers (CLIP's position_ids) keep their values
                tensor.copy_(random_tensor(key, tensor.shape, dtype))


def unet_inputs(config: dict, frames: int, size: int, batch: int = 2, seed: int = 0) -> dict:
    """A CFG-sized UNet call (batch 2) at `size` pixels: what one sampling step feeds the UNet."""
    generator = torch.Generator().manual_seed(seed)
    latent = size // 8
    text_dim = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    return {
        "sample": torch.randn(batch, config["in_channels"], frames, latent, latent, generator=generator),
        "timestep": torch.tensor(999.0),
        "encoder_hidden_states": torch.randn(batch, 77, config["cross_attention_dim"], generator=generator),
        "text_embeds": torch.randn(batch, text_dim, generator=generator),
        "time_ids": torch.tensor([[1920.0, 1080.0, 0.0, 0.0, size, size]] * batch),
    }


def serve_steps(step, info: dict, sync=None) -> None:
    """Serve timed calls of `step()` to the driver: one JSON line per "step" line read on stdin.

    The driver (bench.py) alternates steps between implementations, so slow drifts of a shared
    machine (other processes, clock changes) hit both sides alike. First line out: `info` plus the
    resident MiB once the weights are in place; then, per step, its seconds, CPU seconds, the cores
    other processes used meanwhile and the peak resident MiB during the step.
    """
    sync = sync or (lambda: None)
    print(json.dumps({**info, "rss_weights_mib": settle()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with PeakRss() as rss, Timed() as timed:
            step()
            sync()
        result = {"seconds": timed.seconds, "cpu_seconds": timed.cpu_seconds,
                  "others_cores": timed.others_cores, "peak_rss_mib": rss.peak}
        if cuda:
            result["peak_device_mib"] = torch.cuda.max_memory_allocated() / MiB
        print(json.dumps(result), flush=True)
