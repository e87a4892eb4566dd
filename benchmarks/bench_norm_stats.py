"""A half-precision UNet step with FrameGroupNorm's statistics taken two ways, alternating in one process.

    python benchmarks/bench_norm_stats.py --config mid --frames 8 --size 256 --dtype bf16 --rounds 3

`batch norm`: the pack's way (model/network/norms.py `channel_moments`: ATen's CPU batch norm reads the
bf16 activations and accumulates in float32). `float32 copy`: the way before it, kept here as the
reference: `var_mean` of a float32 copy of each video. Same weights (bench.py's seeded random ones),
same inputs; the two alternate step by step, so a shared machine's load hits both alike. Prints the
machine, the load average, per round the seconds (wall and own CPU, and the cores other processes used
meanwhile), the median ratios (on a loaded machine the CPU seconds are the steadier), and how far the two
steps' outputs are apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402


def float32_copy_moments(x, batch: int, frames: int):
    """The statistics as the pack took them before: var_mean of a float32 copy, one video at a time."""
    import torch

    stats = [torch.var_mean(video.flatten(2).float(), dim=(0, 2), unbiased=False)
             for video in x.unflatten(0, (batch, frames))]
    return torch.stack([mean for _, mean in stats]), torch.stack([var for var, _ in stats])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="mid", choices=["tiny", "mid", "full"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, one step of each way per round")
    args = parser.parse_args()

    import torch

    from model.network import norms
    from model.network.config import UNetConfig
    from model.network.unet import HotshotXLUNet

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    print(f"machine: {_common.describe(_common.machine())}; load average {os.getloadavg()[0]:.1f} at start")
    config = _common.diffusers_config(args.config)
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(unet, dtype)
    inputs = {k: (v.to(dtype) if v.is_floating_point() and k != "timestep" else v)
              for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    ways = {"batch norm": norms.channel_moments, "float32 copy": float32_copy_moments}

    @torch.no_grad()
    def step(way: str):
        norms.channel_moments = ways[way]  # this benchmark's process only
        try:
            return unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"],
                        inputs["text_embeds"], inputs["time_ids"]).float()
        finally:
            norms.channel_moments = ways["batch norm"]

    print(f"{args.config} UNet, {args.dtype}, one CFG step (batch 2) of {args.frames} frames at {args.size}x{args.size}")
    outputs = {way: step(way) for way in ways}  # warm-up: oneDNN picks and caches its kernels
    difference = (outputs["batch norm"] - outputs["float32 copy"]).abs().max().item()
    print(f"outputs: max |difference| {difference:.3g} (largest output {outputs['float32 copy'].abs().max():.3g})")
    seconds = {way: [] for way in ways}
    cpu_seconds = {way: [] for way in ways}
    ratios, cpu_ratios = [], []
    for round_ in range(args.rounds):
        line = []
        for way in (ways if round_ % 2 == 0 else reversed(list(ways))):
            with _common.Timed() as timed:
                step(way)
            seconds[way].append(timed.seconds)
            cpu_seconds[way].append(timed.cpu_seconds)
            line.append(f"{way} {timed.seconds:.2f} s (CPU {timed.cpu_seconds:.2f} s, others "
                        f"{timed.others_cores:.2f} cores)")
        ratios.append(seconds["batch norm"][-1] / seconds["float32 copy"][-1])
        cpu_ratios.append(cpu_seconds["batch norm"][-1] / cpu_seconds["float32 copy"][-1])
        print(f"round {round_ + 1}: " + "; ".join(line) + f"; ratio {ratios[-1]:.3f} (CPU-s {cpu_ratios[-1]:.3f})")
    print(" | ".join(f"{way}: median {statistics.median(seconds[way]):.2f} s, {statistics.median(cpu_seconds[way]):.2f} "
                     "CPU-s" for way in ways)
          + f" | batch norm / float32 copy: median {statistics.median(ratios):.3f} wall, "
          f"{statistics.median(cpu_ratios):.3f} CPU-s"
          + f" | load average {os.getloadavg()[0]:.1f} at end, at {time.strftime('%H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
