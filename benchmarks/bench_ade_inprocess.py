"""Ours against AnimateDiff-Evolved's motion module on ComfyUI's own SDXL UNet, in one process, no server:

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_ade_inprocess.py --ade /path/to/ComfyUI-AnimateDiff-Evolved \
        --config full --dtype bf16 --frames 8 --size 512 --steps 6 --rounds 2

Made for a GPU (bench_gpu.py runs it once per dtype, each in its own process) and for machines
where starting a ComfyUI server is not wanted. Random weights seeded by tensor name (bench.py's
configurations), written once as a released-layout folder plus the temporal layers file in a
temporary directory, and shared by three rows:
- ours: the pack's own UNet (the library's loader) on a cond+uncond batch, as the pack's sampler
  calls it, timed per call;
- native: the same SDXL weights as a core ComfyUI MODEL (the pack's native loader) with Hotshot-XL
  Apply Temporal Layers, sampled by ComfyUI's `comfy.sample.sample` (euler_ancestral, cfg 5);
- ade: the same core MODEL with AnimateDiff-Evolved's Gen1 loader and the same temporal layers
  file, sampled the same way (ADE injects its motion module inside the sampler).
Sampled rows are timed per step from the sampler's callback (synchronised), the first step left
out (it holds the load onto the device and ADE's injection), so they include ComfyUI's sampler and
CFG overhead, which ours does not: small next to a full-size step. Rounds alternate the three.
Peak memory: peak allocated device memory (CUDA) or resident memory (CPU) during the round, and the
same above what was allocated before it (for the sampled rows, after the first round, the MODEL is
already on the device). ComfyUI's unet dtype flag is set to `--dtype` (as `--bf16-unet` would), so
ADE's motion module is cast to it too. Prints the machine (GPU name included) first.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402

DTYPES = ("fp32", "bf16", "fp16")
TEMPORAL_FILE = "hsxl_temporal_layers_bench.safetensors"


def comfyui(dtype: str, device: str) -> None:
    """Import ComfyUI from $COMFYUI_PATH as a custom node sees it, its unet dtype set to `dtype`."""
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout")
    sys.path.insert(0, path)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = device == "cpu"
    args.bf16_unet = dtype == "bf16"
    args.fp16_unet = dtype == "fp16"
    args.fp32_unet = dtype == "fp32"
    args.disable_smart_memory = False
    import folder_paths  # noqa: F401
    import comfy.model_management  # noqa: F401


def import_ade(folder: Path):
    """AnimateDiff-Evolved imported as ComfyUI imports a custom node package (its __init__ run)."""
    init = folder / "__init__.py"
    if not init.is_file():
        sys.exit(f"--ade {folder}: no __init__.py there (expected a ComfyUI-AnimateDiff-Evolved checkout)")
    name = "comfyui_animatediff_evolved_bench"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_files(pack, config: dict, dtype, folder: Path) -> Path:
    """The released-layout folder (unet/ with config and weights) and the temporal layers file alone."""
    from safetensors.torch import save_file

    import bench_native

    loading = importlib.import_module(f"{pack.__name__}.model.files.loading")
    bench_native.write_folder(pack, config, dtype, folder)
    from safetensors import safe_open

    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        temporal = {k: f.get_tensor(k) for k in f.keys() if loading.is_temporal_key(k)}
    (folder / "animatediff_models").mkdir()
    path = folder / "animatediff_models" / TEMPORAL_FILE
    save_file(temporal, str(path))
    return path


class Memory:
    """Peak device memory (CUDA: allocated) or peak resident memory (CPU) over a `with` block, in MiB."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated() / _common.MiB
        else:
            self.before = _common.settle()
            self._rss = _common.PeakRss().__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / _common.MiB
        else:
            self._rss.__exit__(*exc)
            self.peak = self._rss.peak
        return False


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ade", required=True, help="a ComfyUI-AnimateDiff-Evolved checkout")
    parser.add_argument("--config", default="full", choices=("tiny", "mid", "full"))
    parser.add_argument("--dtype", default="bf16", choices=DTYPES)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=6, help="sampling steps per sampled round (first not timed)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps: at least 2 (the first step is not timed)")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run with --device cpu for a dry run)")
        return
    comfyui(args.dtype, args.device)
    import comfy.model_management as mm
    import comfy.sample
    import folder_paths

    import bench_native

    pack = bench_native.import_pack()
    loading = importlib.import_module(f"{pack.__name__}.model.files.loading")
    native_loader = importlib.import_module(f"{pack.__name__}.nodes.native.loader")
    native_nodes = importlib.import_module(f"{pack.__name__}.nodes.native.nodes")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = mm.get_torch_device()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = _common.diffusers_config(args.config)
    print(f"machine: {_common.describe(_common.machine())}; ComfyUI device: {device}", flush=True)
    print(f"{args.config} config, {args.frames} frames at {args.size}x{args.size}, {args.dtype}, cfg {args.cfg}, "
          f"cond+uncond batch; sampled rows: euler_ancestral, {args.steps} steps, first step not timed", flush=True)

    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name) / "hotshot-xl-bench"
    started = time.perf_counter()
    temporal = write_files(pack, config, dtype, folder)
    print(f"random weights written in {time.perf_counter() - started:.0f} s", flush=True)
    ade = import_ade(Path(args.ade))
    folder_paths.add_model_folder_path("animatediff_models", str(temporal.parent))

    started = time.perf_counter()
    ours = loading.load_unet(folder, dtype=dtype, device=device)
    base = native_loader.load_unet(folder, dtype)
    (native,) = native_nodes.HotshotXLApplyTemporalLayers().apply(base, str(folder / "unet"))
    gen1 = ade.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]()
    (ade_model,) = gen1.load_mm_and_inject_params(base, TEMPORAL_FILE, "autoselect")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)

    # Our UNet's inputs (as the pack's sampler feeds it) and the same conditioning for ComfyUI's sampler.
    inputs = {k: v.to(device) for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    latent = torch.zeros(args.frames, config["in_channels"], args.size // 8, args.size // 8)
    noise = comfy.sample.prepare_noise(latent, 0)

    def conditioning(index):
        return [[inputs["encoder_hidden_states"][index:index + 1].float().cpu(),
                 {"pooled_output": inputs["text_embeds"][index:index + 1].float().cpu(),
                  "width": 1920, "height": 1080, "crop_w": 0, "crop_h": 0,
                  "target_width": args.size, "target_height": args.size}]]

    positive, negative = conditioning(0), conditioning(1)

    @torch.no_grad()
    def step_ours():
        ours(inputs["sample"].to(dtype), inputs["timestep"], inputs["encoder_hidden_states"].to(dtype),
             inputs["text_embeds"].to(dtype), inputs["time_ids"])
        sync()

    def sampled(model):
        def run():
            stamps = []

            def callback(step, x0, x, total):
                sync()
                stamps.append(time.perf_counter())

            out = comfy.sample.sample(model, noise, args.steps, args.cfg, "euler_ancestral", "normal", positive,
                                      negative, latent, callback=callback, disable_pbar=True, seed=0)
            if not torch.isfinite(out).all():
                raise SystemExit("non-finite latents out of the sampler")
            return [b - a for a, b in zip(stamps, stamps[1:])]
        return run

    rows = {"ours": [], "native": [], "ade": []}
    peaks = {name: [] for name in rows}
    failed = {}
    runners = {"ours": None, "native": sampled(native), "ade": sampled(ade_model)}
    for round_index in range(args.rounds + 1):  # round 0 warms up (kernels, loads, autotuning)
        for name, run in runners.items():
            if name in failed:
                continue
            try:
                with Memory(device) as memory:
                    if name == "ours":
                        times = []
                        for _ in range(args.steps - 1):
                            started = time.perf_counter()
                            step_ours()
                            times.append(time.perf_counter() - started)
                    else:
                        times = run()
            except Exception as error:  # one side failing must not hide the other's figures
                failed[name] = f"{type(error).__name__}: {error}"
                print(f"{name} failed: {failed[name]}", flush=True)
                continue
            if round_index:
                rows[name].extend(times)
                peaks[name].append((memory.peak, memory.peak - memory.before))
            print(f"  round {round_index} {name}: " + " ".join(f"{t:.3f}" for t in times) + " s/step", flush=True)

    unit = "peak VRAM MiB" if device.type == "cuda" else "peak RSS MiB"
    print(f"{'':8}{'s/step (median)':>16}{'min':>8}{unit:>15}{'above start':>13}")
    result = {"machine": _common.machine(), "config": args.config, "dtype": args.dtype, "frames": args.frames,
              "size": args.size, "rows": {}}
    for name, times in rows.items():
        if not times:
            print(f"{name:8} {failed.get(name, 'no timed steps')}")
            continue
        peak, above = max(p for p, _ in peaks[name]), max(a for _, a in peaks[name])
        print(f"{name:8}{statistics.median(times):16.3f}{min(times):8.3f}{peak:15.0f}{above:13.0f}")
        result["rows"][name] = {"median_s": statistics.median(times), "min_s": min(times), "steps": len(times),
                                "peak_mib": peak, "peak_above_mib": above}
    found = result["rows"]
    if "ours" in found and "ade" in found:
        print(f"ours/ade time: {found['ours']['median_s'] / found['ade']['median_s']:.2f}"
              + (f"; native/ade time: {found['native']['median_s'] / found['ade']['median_s']:.2f}"
                 if "native" in found else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    del ours, native, ade_model, base
    mm.unload_all_models()
    tmp.cleanup()


if __name__ == "__main__":
    main()
