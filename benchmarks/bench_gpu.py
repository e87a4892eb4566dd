"""GPU figures for the released model: UNet steps per second and peak VRAM at 512x512x8.

    python benchmarks/bench_gpu.py [--dtypes bf16 fp8] [--compile] [--channels-last] [--offload none model sequential]

Runs `bench.py`'s UNet worker on CUDA with the full Hotshot-XL config (random weights), one CFG
step (batch 2) per iteration, for each dtype, and prints it/s, peak device memory and the achieved
TFLOP/s (FLOPs counted by torch's FlopCounterMode) against the GPU's dense bf16 peak when given
with `--peak-tflops` (an H200 or H100 SXM: about 990). For scale: one step is about 30 TFLOP, so
even a perfect H200 needs about 30-40 ms. Then, for each `--offload` mode and dtype, a whole
text-to-video call (`bench.py pipeline`'s worker, `--pipeline-steps` steps) with its peak VRAM:
what offloading saves on small cards. Then (`--train`) one training step of the temporal layers
(bench_train.py's worker) per dtype, and (`--ade`, with $COMFYUI_PATH set) ours against
AnimateDiff-Evolved's motion module on ComfyUI's SDXL UNet in one process (bench_ade_inprocess.py),
one process per dtype. Each part runs in its own processes with its own `--part-timeout`, so one
failing or hanging part does not hide the others. Without a CUDA device it says so and exits;
`--device cpu` runs the same code paths on the CPU (a dry run: use `--config mid` and a small size).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp8"], choices=["bf16", "fp16", "fp8", "fp32"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--config", default="full", choices=["tiny", "mid", "full"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, for the fraction column")
    parser.add_argument("--offload", nargs="*", default=["none", "model", "sequential"],
                        choices=["none", "model", "sequential"], help="pipeline runs, one per mode (none: skip)")
    parser.add_argument("--pipeline-steps", type=int, default=2)
    parser.add_argument("--skip-unet", action="store_true", help="leave out the UNet step table")
    parser.add_argument("--train", nargs="*", choices=["fp32", "bf16"],
                        help="training step table in these dtypes (bench_train.py unet; none given: fp32 bf16)")
    parser.add_argument("--train-config", default=None, choices=["tiny", "mid", "full"],
                        help="training config (default: --config)")
    parser.add_argument("--train-size", type=int, default=None, help="training frame size (default: --size)")
    parser.add_argument("--ade", help="a ComfyUI-AnimateDiff-Evolved checkout: compare with it in-process "
                                      "($COMFYUI_PATH must name ComfyUI)")
    parser.add_argument("--ade-dtypes", nargs="+", default=["bf16", "fp16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--ade-size", type=int, default=None, help="ADE comparison frame size (default: --size)")
    parser.add_argument("--ade-steps", type=int, default=6)
    parser.add_argument("--ade-rounds", type=int, default=2)
    parser.add_argument("--part-timeout", type=float, default=600, help="seconds allowed to each subprocess")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: a dry run of the same code paths (figures mean nothing)")
    args = parser.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run this on a machine with an NVIDIA GPU, "
              "or with --device cpu for a dry run)")
        return
    sys.path.insert(0, str(HERE))
    import _common
    import bench

    print(f"machine: {_common.describe(_common.machine())}", flush=True)
    if not args.skip_unet:
        unet_table(args, bench)
    if args.offload:
        pipeline_table(args, bench)
    if args.train is not None:
        train_table(args)
    if args.ade:
        ade_table(args)


def run_part(name: str, command: list[str], timeout: float) -> None:
    """Run one benchmark script as a subprocess, its output passed through, within `timeout` seconds."""
    print(f"--- {name}: {' '.join(command[1:])}", flush=True)
    try:
        code = subprocess.run(command, timeout=timeout, env=os.environ.copy()).returncode
    except subprocess.TimeoutExpired:
        print(f"--- {name}: stopped after {timeout:.0f} s", flush=True)
        return
    print(f"--- {name}: " + ("done" if code == 0 else f"failed (exit status {code})"), flush=True)


def train_table(args) -> None:
    command = [sys.executable, str(HERE / "bench_train.py"), "unet", "--config", args.train_config or args.config,
               "--frames", str(args.frames), "--size", str(args.train_size or args.size), "--device", args.device,
               "--dtypes", *(args.train or ["fp32", "bf16"])]
    run_part("training step", command, args.part_timeout)


def ade_table(args) -> None:
    if not os.environ.get("COMFYUI_PATH"):
        print("--ade: set COMFYUI_PATH to a ComfyUI checkout; comparison skipped")
        return
    for dtype in args.ade_dtypes:
        command = [sys.executable, str(HERE / "bench_ade_inprocess.py"), "--ade", args.ade, "--config", args.config,
                   "--dtype", dtype, "--device", args.device, "--frames", str(args.frames),
                   "--size", str(args.ade_size or args.size), "--steps", str(args.ade_steps),
                   "--rounds", str(args.ade_rounds)]
        run_part(f"ours vs AnimateDiff-Evolved, {dtype}", command, args.part_timeout)


def unet_table(args, bench) -> None:
    print(f"UNet step with CFG (batch 2), {args.config} config, {args.frames} frames at {args.size}x{args.size}"
          + (", torch.compile" if args.compile else "") + (", channels-last" if args.channels_last else ""))
    print(f"{'dtype':8}{'ms/step':>10}{'it/s':>8}{'peak VRAM MiB':>15}{'weights MiB':>13}{'TFLOP/s':>9}"
          + (f"{'of peak':>9}" if args.peak_tflops else ""))
    for dtype in args.dtypes:
        command = [sys.executable, str(HERE / "bench.py"), "worker-unet", "--config", args.config,
                   "--frames", str(args.frames), "--size", str(args.size), "--dtype", dtype,
                   "--device", args.device, "--flops"]
        command += ["--compile"] if args.compile else []
        command += ["--channels-last"] if args.channels_last else []
        try:
            r = bench.measure_unets({dtype: bench.StepServer(command)}, rounds=10, min_clean=0, max_rounds=10)[dtype]
        except SystemExit as error:
            print(f"{dtype:8} failed: {str(error).strip().splitlines()[-1]}")
            continue
        seconds = r["median_s"]
        tflops = r["flops"] / 1e12 / seconds
        line = (f"{dtype:8}{seconds * 1000:10.1f}{1 / seconds:8.2f}{r.get('peak_device_mib', float('nan')):15.0f}"
                f"{r['weights_mib']:13.0f}{tflops:9.0f}")
        if args.peak_tflops:
            line += f"{tflops / args.peak_tflops:9.2f}"
        print(line, flush=True)


def pipeline_table(args, bench) -> None:
    print(f"text to video, {args.config} config, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.pipeline_steps} steps with CFG")
    print(f"{'dtype':8}{'offload':>12}{'s/step':>9}{'total s':>9}{'peak VRAM MiB':>15}{'host peak +MiB':>16}")
    for dtype in args.dtypes:
        for offload in args.offload:
            command = [sys.executable, str(HERE / "bench.py"), "worker-pipeline", "--config", args.config,
                       "--frames", str(args.frames), "--size", str(args.size), "--dtype", dtype,
                       "--device", args.device, "--steps", str(args.pipeline_steps), "--offload", offload]
            try:
                r = bench.run_worker(command)
            except SystemExit as error:
                print(f"{dtype:8}{offload:>12} failed: {str(error).strip().splitlines()[-1]}")
                continue
            stages = r["stages_s"]
            print(f"{dtype:8}{offload:>12}{stages['sampling'] / args.pipeline_steps:9.2f}{sum(stages.values()):9.1f}"
                  f"{r.get('peak_device_mib', float('nan')):15.0f}{r['peak_above_loaded_mib']:16.0f}", flush=True)


if __name__ == "__main__":
    main()
