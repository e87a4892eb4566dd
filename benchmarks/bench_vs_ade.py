"""Ours against AnimateDiff-Evolved inside one ComfyUI: seconds per step, first prompt, CPU seconds, peak memory.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfy-venv/bin/python \\
    python benchmarks/bench_vs_ade.py --ade /path/to/ComfyUI-AnimateDiff-Evolved \\
        --checkpoint sd_xl_base_1.0.safetensors --temporal-layers hsxl_temporal_layers.safetensors \\
        --size 256 --frames 8 --dtype fp32 --rounds 2

ComfyUI servers (tests/comfyui_host.py starts them: loopback only, each its own throw-away base folder)
with both packs in custom_nodes/ and the two files linked into models/checkpoints/ and
models/animatediff_models/. Each prompt is text to video with CFG, euler ancestral, 8 frames:
- ours: Hotshot-XL Loader (SDXL checkpoint + temporal layers) at `--dtype`, Text Encode, Sampler,
  Decode, Save;
- AnimateDiff-Evolved: CheckpointLoaderSimple, AnimateDiff Loader (Gen1) with the same temporal
  layers, CLIPTextEncode x2, EmptyLatentImage, KSampler (euler_ancestral), VAEDecode, PreviewImage.
  Its dtype is the server's: fp32 on the CPU by default, `--dtype bf16` starts it with --bf16-unet.
Each pack gets its own fresh server per round (the packs alternate: ours, ADE, ours, ...), so its peak
memory is its own. In it: a cold prompt of FEW steps ("first prompt": load, text, FEW steps, decode),
then, with the loaders' and text encoders' outputs cached by ComfyUI, a warm FEW-step and a warm
MORE-step prompt with new seeds: seconds per step are their difference over MORE - FEW (so load and
decode cancel), and "not steps" is the first prompt minus FEW steps. For each prompt: wall seconds,
the server's CPU seconds (/proc/<pid>/stat) and the others' load; per server: its peak resident memory
over its life (VmHWM; it includes the checkpoint's pages that ComfyUI maps). Linux only. Prints the
machine first.

The fraction of the matmul peak: one CFG step of the Hotshot-XL UNet at these sizes is counted in FLOPs
(torch's FlopCounterMode on the meta device: nothing allocated; both packs do this work, ADE a little more
for projecting the text per frame), divided by the s/step and by the best GFLOP/s of a 4096^2 `torch.mm`
in `--dtype`, measured by the server's interpreter ($COMFYUI_PYTHON) before the server starts.
`--steps 1 3` are the two prompt lengths (s/step is their difference over the step difference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _common  # noqa: E402
from _comfy_graphs import core_graph, cpu_seconds, pack_graph, status_mib  # noqa: E402
from tests.comfyui_host import running_comfyui  # noqa: E402



def ours(checkpoint: str, temporal: str, dtype: str, steps: int, seed: int, size: int, frames: int, cfg: float):
    return pack_graph(checkpoint, temporal, dtype, steps, seed, size, frames, cfg, {
        "4": {"class_type": "HotshotXLDecode",
              "inputs": {"model": ["1", 0], "samples": ["3", 0], "frames_per_chunk": 4, "tiling": "auto"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}})


def ade(checkpoint: str, temporal: str, steps: int, seed: int, size: int, frames: int, cfg: float):
    motion = {"class_type": "ADE_AnimateDiffLoaderGen1",
              "inputs": {"model": ["1", 0], "model_name": temporal, "beta_schedule": "autoselect"}}
    return core_graph(checkpoint, motion, steps, seed, size, frames, cfg, {
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}})


def matmul_peak(dtype: str) -> float:
    """GFLOP/s of a 4096^2 torch.mm in `dtype`, measured by the interpreter that runs the server."""
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    code = (f"import sys, torch; sys.path.insert(0, {str(HERE)!r}); import _common; "
            f"print(_common.matmul_peak_gflops(dtype=torch.{'float32' if dtype == 'fp32' else 'bfloat16'}))")
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def step_flops(size: int, frames: int) -> float:
    """FLOPs of one CFG step (cond + uncond) of the full-size Hotshot-XL UNet, counted on the meta device."""
    import torch

    from model.network.config import UNetConfig
    from model.network.unet import HotshotXLUNet

    config = _common.diffusers_config("full")
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config)).eval()
    inputs = {k: v.to("meta") for k, v in _common.unet_inputs(config, frames, size).items()}
    return _common.count_flops(lambda: unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"],
                                            inputs["text_embeds"], inputs["time_ids"]))


def run_prompt(client, graph: dict, timeout: float) -> dict:
    pid = client.process.pid
    cpu, busy, started = cpu_seconds(pid), machine_busy_seconds(), time.perf_counter()
    entry = client.wait(client.queue(graph), timeout=timeout)
    wall = time.perf_counter() - started
    own = cpu_seconds(pid) - cpu
    others = max(machine_busy_seconds() - busy - own, 0.0) / wall
    status = entry.get("status", {}).get("status_str")
    if status != "success":
        raise SystemExit(f"prompt failed ({status}): {entry.get('status')}\n{client.log_tail()}")
    return {"wall_s": wall, "cpu_s": own, "others_cores": others}


def machine_busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat), to tell the load of others."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ade", required=True, help="an AnimateDiff-Evolved checkout")
    parser.add_argument("--checkpoint", required=True, help="an SDXL single-file checkpoint (.safetensors)")
    parser.add_argument("--temporal-layers", required=True, help="hsxl_temporal_layers*.safetensors")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs=2, default=(1, 3), metavar=("FEW", "MORE"),
                        help="steps of the two prompts; the first is 'first prompt'")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per prompt")
    args = parser.parse_args()
    if not os.environ.get("COMFYUI_PATH"):
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its interpreter)")

    checkpoint, temporal = Path(args.checkpoint).resolve(), Path(args.temporal_layers).resolve()
    print("machine:", _common.describe(_common.machine()))
    print(f"{args.frames} frames at {args.size}x{args.size}, cfg {args.cfg}, euler ancestral, {args.dtype}; "
          f"ComfyUI {os.environ['COMFYUI_PATH']}, AnimateDiff-Evolved {args.ade}")
    few, more = args.steps
    if not 1 <= few < more:
        sys.exit(f"--steps: expected two step counts, the first at least 1 and smaller than the second, got {few} {more}")
    peak_gflops = matmul_peak(args.dtype)
    flops = step_flops(args.size, args.frames)
    print(f"{args.dtype} matmul peak (4096^2 torch.mm, server's torch): {peak_gflops:.0f} GFLOP/s; "
          f"one CFG UNet step: {flops / 1e12:.2f} TFLOP", flush=True)
    models = {"checkpoints": [checkpoint], "animatediff_models": [temporal]}
    extra = ["--bf16-unet"] if args.dtype == "bf16" else []
    graphs = {
        "ours": lambda steps, seed: ours(checkpoint.name, temporal.name, args.dtype, steps, seed, args.size,
                                         args.frames, args.cfg),
        "AnimateDiff-Evolved": lambda steps, seed: ade(checkpoint.name, temporal.name, steps, seed, args.size,
                                                       args.frames, args.cfg),
    }
    results = {name: {"first": [], "few": [], "more": [], "peak_mib": []} for name in graphs}
    seed = 1000
    for round_ in range(args.rounds):
        for name, graph in graphs.items():
            # A fresh server per pack and round: the peak is this pack's alone, the first prompt loads cold.
            with running_comfyui(REPO, models, extra_args=extra,
                                 other_packs={"ComfyUI-AnimateDiff-Evolved": args.ade}, startup_timeout=600) as client:
                for label, steps in (("first", few), ("few", few), ("more", more)):
                    seed += 1  # a new seed: ComfyUI's cache never answers a sampler unrun
                    result = run_prompt(client, graph(steps, seed), args.timeout)
                    results[name][label].append(result)
                    kind = "first (cold)" if label == "first" else "warm"
                    print(f"round {round_ + 1}, {name}, {kind}, {steps} step(s): {result['wall_s']:.1f} s wall, "
                          f"{result['cpu_s']:.1f} CPU-s, others used {result['others_cores']:.2f} cores", flush=True)
                peak = status_mib(client.process.pid, "VmHWM")
                results[name]["peak_mib"].append(peak)
                print(f"round {round_ + 1}, {name}: server's peak resident {peak:,.0f} MiB", flush=True)

    print(f"\n| {args.dtype} | s per step (wall) | CPU-s per step | first prompt (load + {few} step), wall "
          "| of it not steps (load, text, decode) | peak resident | of the matmul peak |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    per_step, first = {}, {}
    for name, by in results.items():
        wall = [(b["wall_s"] - a["wall_s"]) / (more - few) for a, b in zip(by["few"], by["more"])]
        cpu = [(b["cpu_s"] - a["cpu_s"]) / (more - few) for a, b in zip(by["few"], by["more"])]
        per_step[name] = statistics.median(wall)
        first[name] = statistics.median(r["wall_s"] for r in by["first"])
        peak = max(by["peak_mib"])
        fraction = flops / per_step[name] / (peak_gflops * 1e9) if per_step[name] > 0 else float("nan")
        print(f"| {name} | {per_step[name]:.1f} | {statistics.median(cpu):.1f} | {first[name]:.1f} s "
              f"| {first[name] - few * per_step[name]:.1f} s | {peak / 1024:.1f} GiB | {fraction:.2f} |")
    print(f"\nours / AnimateDiff-Evolved: s per step {per_step['ours'] / per_step['AnimateDiff-Evolved']:.2f}x, "
          f"first prompt {first['ours'] / first['AnimateDiff-Evolved']:.2f}x")


if __name__ == "__main__":
    main()
