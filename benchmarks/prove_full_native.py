"""The full-size layout by hand: a synthetic SDXL single file through core Load Checkpoint with the full-size
temporal layers, KSampler next to the pack's own sampler, inside a real ComfyUI on the CPU.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfyui-venv/bin/python \\
    /path/to/comfyui-venv/bin/python benchmarks/prove_full_native.py --workdir /somewhere/with/8GB

1. Writes (once; reused when present) into `--workdir`, random weights seeded by tensor name
   (`_common.random_tensor`), streamed to disk one tensor at a time:
   - `sdxl_full_synthetic.bf16.safetensors`: SDXL base in the original (ldm/sgm) single-file layout, bf16:
     the key names and shapes are those ComfyUI's own Save Checkpoint writes for the UNet, VAE and both
     text encoders it builds for SDXL (built on the meta device, nothing allocated);
   - `hsxl_temporal_layers.f16.safetensors`: the 420 temporal tensors of the released full-size UNet (the
     layout of the released fp16 variant).
2. Starts ComfyUI (tests/comfyui_host.py: --cpu, loopback, a throw-away base folder) with
   --bf16-unet --bf16-vae --bf16-text-enc, once per path, each in a fresh server:
   - native: CheckpointLoaderSimple -> Hotshot-XL Apply Temporal Layers -> KSampler (euler_ancestral,
     normal, cfg 5) on Empty Latent Image (8 latents at 256x256), CLIP Text Encode x2, Save Latent;
   - pack: Hotshot-XL Loader (SDXL checkpoint + temporal layers, bf16) -> Text Encode -> Sampler
     (euler_a, cfg 5, 8 frames at 256x256) -> Save Latent.
   Per path: a cold 1-step prompt (loads everything), then, with the loaders' outputs cached, `--rounds`
   pairs of a 1-step and a 2-step prompt with new seeds. s/step = median of 2-step minus 1-step prompt;
   load (and text encoding) = cold minus the median warm 1-step prompt. Peak memory: the server's VmHWM over its whole life (includes the
   mapped checkpoint's file pages) and the peak of its anonymous memory (RssAnon, sampled every 0.1 s).
Prints the machine first and the load on it (other processes' cores) during each prompt. Linux only.
`--delete` removes the written files at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from _comfy_graphs import core_graph, cpu_seconds, pack_graph as pack_video_graph, status_mib  # noqa: E402

CHECKPOINT = "sdxl_full_synthetic.bf16.safetensors"
TEMPORAL = "hsxl_temporal_layers.f16.safetensors"
_SAFETENSORS_DTYPES = {"torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32",
                       "torch.int64": "I64"}


# --- writing the synthetic files (child process, ComfyUI importable) -------------------------------

def stream_safetensors(path: Path, entries: dict, make) -> None:
    """Write a .safetensors file tensor by tensor: `entries` maps names to (shape, torch dtype), `make(name)`
    gives each tensor when its turn comes, so memory holds one tensor at a time. Written under a temporary
    name and renamed, so no half-written file is left behind."""
    header, offset = {}, 0
    for name in sorted(entries):
        shape, dtype = entries[name]
        size = dtype.itemsize
        for dim in shape:
            size *= dim
        header[name] = {"dtype": _SAFETENSORS_DTYPES[str(dtype)], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for name in sorted(entries):
            tensor = make(name).contiguous()
            shape, dtype = entries[name]
            assert tuple(tensor.shape) == tuple(shape) and tensor.dtype == dtype, name
            out.write(tensor.reshape(-1).view(__import__("torch").uint8).numpy().tobytes())
    partial.rename(path)


def sdxl_single_file_shapes(pack) -> dict:
    """name -> tensor (meta, or real for integer buffers) of ComfyUI's own SDXL checkpoint layout."""
    import importlib

    import torch

    import comfy.model_detection
    import comfy.sdxl_clip
    from comfy.ldm.models.autoencoder import AutoencoderKL

    native_loader = importlib.import_module(f"{pack.__name__}.nodes.native.loader")
    config_module = importlib.import_module(f"{pack.__name__}.model.network.config")
    config = config_module.UNetConfig.from_dict(_common.diffusers_config("full"))
    unet_config = native_loader.comfy_unet_config(config)
    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    if type(model_config).__name__ != "SDXL":
        raise SystemExit(f"ComfyUI detects the full-size config as {type(model_config).__name__}, not SDXL")
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        model = model_config.get_model({}, device="meta")
        clip = comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=torch.float32)
        vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    return model.state_dict_for_saving(clip.state_dict(), vae.state_dict())


def write_files(workdir: Path) -> None:
    import importlib

    import torch

    import bench_native

    bench_native.comfyui()
    pack = bench_native.import_pack()
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = workdir / CHECKPOINT
    if not checkpoint.is_file():
        tensors = sdxl_single_file_shapes(pack)
        entries = {name: (tuple(t.shape), torch.bfloat16 if t.is_floating_point() else t.dtype)
                   for name, t in tensors.items()}
        started = time.perf_counter()
        stream_safetensors(checkpoint, entries, lambda name: (
            _common.random_tensor(name, tensors[name].shape, torch.bfloat16) if tensors[name].is_floating_point()
            else tensors[name].to("cpu")))
        print(f"wrote {checkpoint}: {len(entries)} tensors, {checkpoint.stat().st_size / 2**30:.2f} GiB "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
    temporal = workdir / TEMPORAL
    if not temporal.is_file():
        unet_module = importlib.import_module(f"{pack.__name__}.model.network.unet")
        config_module = importlib.import_module(f"{pack.__name__}.model.network.config")
        loading = importlib.import_module(f"{pack.__name__}.model.files.loading")
        with torch.device("meta"):
            unet = unet_module.HotshotXLUNet(config_module.UNetConfig.from_dict(_common.diffusers_config("full")))
        shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items() if loading.is_temporal_key(k)}
        stream_safetensors(temporal, {k: (s, torch.float16) for k, s in shapes.items()},
                           lambda name: _common.random_tensor(name, shapes[name], torch.float16))
        print(f"wrote {temporal}: {len(shapes)} tensors, {temporal.stat().st_size / 2**20:.0f} MiB", flush=True)


# --- the graphs --------------------------------------------------------------------------------

def native_graph(steps: int, seed: int, size: int, frames: int, cfg: float) -> dict:
    motion = {"class_type": "HotshotXLApplyTemporalLayers", "inputs": {"model": ["1", 0], "temporal_layers": TEMPORAL}}
    return core_graph(CHECKPOINT, motion, steps, seed, size, frames, cfg, {
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"native_{steps}_{seed}"}}})


def pack_graph(steps: int, seed: int, size: int, frames: int, cfg: float) -> dict:
    return pack_video_graph(CHECKPOINT, TEMPORAL, "bf16", steps, seed, size, frames, cfg, {
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": f"pack_{steps}_{seed}"}}})


# --- measuring the server -------------------------------------------------------------------------

def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class AnonPeak:
    """Peak RssAnon of a process, sampled in a thread while the `with` block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while True:
            try:
                self.peak = max(self.peak, status_mib(self.pid, "RssAnon"))
            except OSError:
                return
            if self._stop.wait(0.1):
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_prompt(client, graph: dict, timeout: float) -> dict:
    pid = client.process.pid
    own, busy, started = cpu_seconds(pid), machine_busy_seconds(), time.perf_counter()
    with AnonPeak(pid) as anon:
        entry = client.wait(client.queue(graph), timeout=timeout)
    wall = time.perf_counter() - started
    status = entry.get("status", {}).get("status_str")
    if status != "success":
        raise SystemExit(f"prompt failed ({status}): {json.dumps(entry.get('status'))[:3000]}\n{client.log_tail()}")
    used = cpu_seconds(pid) - own
    return {"wall_s": wall, "cpu_s": used, "others_cores": max(machine_busy_seconds() - busy - used, 0.0) / wall,
            "anon_peak_mib": anon.peak, "hwm_mib": status_mib(pid, "VmHWM")}


def measure(name: str, graph, workdir: Path, args) -> dict:
    from tests.comfyui_host import running_comfyui

    models = {"checkpoints": [workdir / CHECKPOINT], "animatediff_models": [workdir / TEMPORAL]}
    extra = ["--bf16-unet", "--bf16-vae", "--bf16-text-enc"]
    results = {}
    with running_comfyui(REPO, models, extra_args=extra, startup_timeout=600) as client:
        idle = status_mib(client.process.pid, "VmRSS")
        plan = [("cold 1 step", 1)]
        for round_ in range(1, args.rounds + 1):
            plan += [(f"warm 1 step #{round_}", 1), (f"warm 2 steps #{round_}", 2)]
        for seed, (label, steps) in enumerate(plan, start=11):  # new seeds: the cache never answers a prompt
            results[label] = run_prompt(client, graph(steps, seed, args.size, args.frames, args.cfg), args.timeout)
            r = results[label]
            print(f"{name}, {label}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} CPU-s, others used "
                  f"{r['others_cores']:.2f} cores, server peak {r['hwm_mib']:,.0f} MiB (VmHWM), "
                  f"anonymous peak {r['anon_peak_mib']:,.0f} MiB", flush=True)
        results["idle_rss_mib"] = idle
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="where the synthetic files go (about 7.5 GB)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--paths", nargs="+", default=["native", "pack"], choices=["native", "pack"])
    parser.add_argument("--rounds", type=int, default=2, help="pairs of warm 1- and 2-step prompts")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per prompt")
    parser.add_argument("--delete", action="store_true", help="remove the written files at the end")
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_PATH"):
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its interpreter)")
    workdir = args.workdir.resolve()
    if args.write_only:
        write_files(workdir)
        return

    print("machine:", _common.describe(_common.machine()), flush=True)
    print(f"{args.frames} latents at {args.size}x{args.size}, cfg {args.cfg}, euler ancestral, bf16 "
          f"(--bf16-unet --bf16-vae --bf16-text-enc); ComfyUI {os.environ['COMFYUI_PATH']}", flush=True)
    # In a child process, so this one (and the servers) start without its memory.
    subprocess.run([sys.executable, __file__, "--workdir", str(workdir), "--write-only"], check=True)
    sys.path.insert(0, str(REPO))
    graphs = {"native": native_graph, "pack": pack_graph}
    found = {}
    try:
        for name in args.paths:
            found[name] = measure(name, graphs[name], workdir, args)
    finally:
        if args.delete:
            for file in (CHECKPOINT, TEMPORAL):
                (workdir / file).unlink(missing_ok=True)

    print("\n| bf16, CPU | s per step (2-step minus 1-step prompt, median) | load + text encoding (cold minus "
          "warm 1-step prompt) | cold 1-step prompt | server peak resident (VmHWM) | server peak anonymous |")
    print("| --- | --- | --- | --- | --- | --- |")
    steps = {}
    for name, r in found.items():
        steps[name] = step = statistics.median(r[f"warm 2 steps #{i}"]["wall_s"] - r[f"warm 1 step #{i}"]["wall_s"]
                                               for i in range(1, args.rounds + 1))
        load = r["cold 1 step"]["wall_s"] - statistics.median(r[f"warm 1 step #{i}"]["wall_s"]
                                                              for i in range(1, args.rounds + 1))
        hwm = max(p["hwm_mib"] for k, p in r.items() if isinstance(p, dict))
        anon = max(p["anon_peak_mib"] for k, p in r.items() if isinstance(p, dict))
        print(f"| {name} | {step:.1f} s | {load:.1f} s | {r['cold 1 step']['wall_s']:.1f} s | {hwm / 1024:.1f} GiB "
              f"| {anon / 1024:.1f} GiB |")
    if len(found) == 2:
        print(f"\nnative / pack, s per step: {steps['native'] / steps['pack']:.2f}x")


if __name__ == "__main__":
    main()
