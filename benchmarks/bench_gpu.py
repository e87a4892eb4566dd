"""GPU figures for the released model: UNet steps per second and peak VRAM at 512x512x8.

    python benchmarks/bench_gpu.py [--dtypes bf16 fp8] [--compile] [--channels-last] [--offload none model sequential]

Runs `bench.py`'s UNet worker on CUDA with the full Hotshot-XL config (random weights), one CFG
step (batch 2) per iteration, for each dtype, and prints it/s, peak device memory and the achieved
TFLOP/s (FLOPs counted by torch's FlopCounterMode) against the GPU's dense bf16 peak when given
with `--peak-tflops` (an H200 or H100 SXM: about 990). For scale: one step is about 30 TFLOP, so
even a perfect H200 needs about 30-40 ms. Then, for each `--offload` mode and dtype, a whole
text-to-video call (`bench.py pipeline`'s worker, `--pipeline-steps` steps) with its peak VRAM:
what offloading saves on small cards. Without a CUDA device it says so and exits.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run this on a machine with an NVIDIA GPU)")
        return
    sys.path.insert(0, str(HERE))
    import _common
    import bench

    print(f"machine: {_common.describe(_common.machine())}")
    print(f"UNet step with CFG (batch 2), {args.config} config, {args.frames} frames at {args.size}x{args.size}"
          + (", torch.compile" if args.compile else "") + (", channels-last" if args.channels_last else ""))
    print(f"{'dtype':8}{'ms/step':>10}{'it/s':>8}{'peak VRAM MiB':>15}{'weights MiB':>13}{'TFLOP/s':>9}"
          + (f"{'of peak':>9}" if args.peak_tflops else ""))
    for dtype in args.dtypes:
        command = [sys.executable, str(HERE / "bench.py"), "worker-unet", "--config", args.config,
                   "--frames", str(args.frames), "--size", str(args.size), "--dtype", dtype, "--device", "cuda",
                   "--flops"]
        command += ["--compile"] if args.compile else []
        command += ["--channels-last"] if args.channels_last else []
        try:
            r = bench.measure_unets({dtype: bench.StepServer(command)}, rounds=10, min_clean=0, max_rounds=10)[dtype]
        except SystemExit as error:
            print(f"{dtype:8} failed: {str(error).strip().splitlines()[-1]}")
            continue
        seconds = r["median_s"]
        tflops = r["flops"] / 1e12 / seconds
        line = (f"{dtype:8}{seconds * 1000:10.1f}{1 / seconds:8.2f}{r['peak_device_mib']:15.0f}"
                f"{r['weights_mib']:13.0f}{tflops:9.0f}")
        if args.peak_tflops:
            line += f"{tflops / args.peak_tflops:9.2f}"
        print(line)

    if args.offload:
        pipeline_table(args, bench)


def pipeline_table(args, bench) -> None:
    print(f"text to video, {args.config} config, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.pipeline_steps} steps with CFG")
    print(f"{'dtype':8}{'offload':>12}{'s/step':>9}{'total s':>9}{'peak VRAM MiB':>15}{'host peak +MiB':>16}")
    for dtype in args.dtypes:
        for offload in args.offload:
            command = [sys.executable, str(HERE / "bench.py"), "worker-pipeline", "--config", args.config,
                       "--frames", str(args.frames), "--size", str(args.size), "--dtype", dtype,
                       "--device", "cuda", "--steps", str(args.pipeline_steps), "--offload", offload]
            try:
                r = bench.run_worker(command)
            except SystemExit as error:
                print(f"{dtype:8}{offload:>12} failed: {str(error).strip().splitlines()[-1]}")
                continue
            stages = r["stages_s"]
            print(f"{dtype:8}{offload:>12}{stages['sampling'] / args.pipeline_steps:9.2f}{sum(stages.values()):9.1f}"
                  f"{r['peak_device_mib']:15.0f}{r['peak_above_loaded_mib']:16.0f}")


if __name__ == "__main__":
    main()
