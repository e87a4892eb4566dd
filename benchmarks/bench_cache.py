"""Step caching (model/step_cache.py): sampling time with and without it, and how far its frames are
from the uncached ones.

    python benchmarks/bench_cache.py --config mid --frames 8 --size 256 --steps 6 --interval 3
    python benchmarks/bench_cache.py --config full --dtype bf16 --steps 9 --interval 3 --rounds 2

One process, one pipeline with random weights (bench.py's `build_pipeline`: `tiny` is the test
fixture, `mid`/`full` the released widths with seeded random weights). Each round samples the same
seed uncached, then cached at each `--interval`, alternating, so a shared machine's drifts hit both
alike; the speed-up is uncached/cached sampling time per round (wall, and our CPU seconds). The
difference is measured on the latents (relative L2) and on the decoded frames (mean and largest
absolute difference in 0..1, PSNR); `--other-seed` also samples another seed uncached, for scale.

The weights are random, so the frames are noise-like and the difference says only how far the
cached steps move the numbers: how caching changes what real weights draw is unmeasured here.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
from bench import build_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="mid", choices=["tiny", "mid", "full"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16", "fp8"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--interval", type=int, nargs="+", default=[3], help="cache intervals to measure")
    parser.add_argument("--context-length", type=int, default=None, help="sample in windows of this many frames")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-decode", action="store_true", help="compare latents only (skips the VAE)")
    parser.add_argument("--other-seed", action="store_true", help="also sample another seed, for scale")
    args = parser.parse_args()

    import torch

    from model.denoising.context import ContextOptions
    from model.pipeline import Settings
    from model.denoising.loop import guided_predictor

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch sees no CUDA GPU")
    # CUDA runs asynchronously: wait for the GPU before a timer stops.
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print("machine:", _common.describe(_common.machine()))
    print(f"config {args.config}, {args.dtype}, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.steps} steps, guidance {args.guidance}, device {args.device}")
    pipe = build_pipeline(args.config, args.dtype, device)
    conditions = pipe.encode("a corgi running on a beach, hd", "blurry")
    # The text encoders are not needed again: release their weights (1.6 GiB in bf16 at full size) for the
    # rest of the machine.
    pipe.text.text_encoder.to("meta")
    pipe.text.text_encoder_2.to("meta")
    context = None if args.context_length is None else ContextOptions(args.context_length,
                                                                         args.context_length // 2)
    settings = Settings(width=args.size, height=args.size, frames=args.frames, steps=args.steps,
                        guidance=args.guidance, context=context)

    def sample(interval: int, seed: int = settings.seed):
        predictor = guided_predictor(pipe.unet, conditions, args.guidance, cache_interval=interval)
        run = Settings(**{**vars(settings), "seed": seed})
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with _common.Timed() as timed:
            latents = pipe.sample(conditions, run, predictor=predictor)
            sync()
        if cuda:
            calls_memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        else:
            calls_memory = ""
        calls = "" if predictor.step_cache is None else \
            f" (whole UNet {predictor.step_cache.full_calls}x, outer blocks only {predictor.step_cache.shallow_calls}x)"
        print(f"  interval {interval}: {timed.seconds:.1f} s wall, {timed.cpu_seconds:.1f} CPU-s, other processes "
              f"{timed.others_cores:.2f} cores{calls}{calls_memory}", flush=True)
        return latents, timed

    # One untimed step first: the process's first UNet call pays one-time costs (oneDNN picks and caches
    # kernels, the allocator grows) that would otherwise land on whichever run came first.
    with _common.Timed() as warm:
        pipe.sample(conditions, Settings(**{**vars(settings), "steps": 1}))
        sync()
    print(f"warm-up (one uncached step, untimed in the table): {warm.seconds:.1f} s", flush=True)
    times = {interval: [] for interval in [1, *args.interval]}
    latents = {}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}")
        for interval in times:
            latents[interval], timed = sample(interval)
            times[interval].append((timed.seconds, timed.cpu_seconds))

    def frames_of(x):
        return pipe.decode(x) if not args.no_decode else None

    reference = latents[1]
    reference_frames = frames_of(reference)
    print("\n| interval | sampling s (median) | speed-up, wall (per round) | speed-up, CPU-s | latents rel. L2 "
          "| frames mean abs | frames max abs | PSNR dB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = times[1]
    for interval, runs in times.items():
        wall = [b[0] / r[0] for b, r in zip(base, runs)]
        cpu = [b[1] / r[1] for b, r in zip(base, runs)]
        rel = ((latents[interval] - reference).norm() / reference.norm()).item()
        cells = ["-", "-", "-"]
        if reference_frames is not None and interval != 1:
            diff = (frames_of(latents[interval]) - reference_frames).abs()
            mse = (diff ** 2).mean().item()
            cells = [f"{diff.mean().item():.4f}", f"{diff.max().item():.3f}",
                     f"{10 * math.log10(1 / mse):.1f}" if mse > 0 else "inf"]
        print(f"| {interval} | {statistics.median(r[0] for r in runs):.1f} | {statistics.median(wall):.2f}x "
              f"({', '.join(f'{w:.2f}' for w in wall)}) | {statistics.median(cpu):.2f}x | {rel:.4f} | "
              + " | ".join(cells) + " |")
    if args.other_seed:
        other, _ = sample(1, seed=settings.seed + 1)
        rel = ((other - reference).norm() / reference.norm()).item()
        line = f"for scale, another seed uncached: latents rel. L2 {rel:.4f}"
        if reference_frames is not None:
            line += f", frames mean abs {(frames_of(other) - reference_frames).abs().mean().item():.4f}"
        print(line)
    print("Random weights: these differences say how far cached steps move the numbers, not how the videos of "
          "real weights change; quality on real weights is unmeasured.")


if __name__ == "__main__":
    main()
