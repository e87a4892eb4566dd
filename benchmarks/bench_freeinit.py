"""FreeInit's cost: sampling time with FreeInit N against plain sampling (N = 1), in one run.

    python benchmarks/bench_freeinit.py                       # the tiny fixture model, CPU
    python benchmarks/bench_freeinit.py --model ./Hotshot-XL --device cuda --dtype bf16 --size 672x384 --steps 30

FreeInit samples the video N times, so its time should be N times plain sampling's; what it adds on
top is the noising and the 3-D FFT low-pass between iterations, timed apart at the video's latent
size. Prints the machine, then one line per N: median seconds, ratio to plain, the expected N,
and the overhead per iteration. The peer (AnimateDiff-Evolved / diffusers FreeInit) costs the
same N times by construction; this checks that ours adds nothing beyond it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _common  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hotshot-XL folder (default: the tiny fixture)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--size", default="64x64", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--iterations", default="1,2,3", help="FreeInit N values to time (1 = plain)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from model.pipeline import Settings, load_pipeline
    from model.travel.freeinit import FreeInitOptions, low_pass, mix_frequencies, noised

    width, height = (int(v) for v in args.size.split("x"))
    model = args.model or _common.fixtures() / "hotshot-xl-tiny"
    pipe = load_pipeline(model, dtype=args.dtype, device=args.device)
    conditions = pipe.encode("a corgi running on a beach, hd, high quality", "blurry")
    sync = torch.cuda.synchronize if pipe.device.type == "cuda" else (lambda: None)
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"model: {model}, {args.dtype} on {pipe.device}, {width}x{height}, {args.frames} frames, {args.steps} steps, "
          f"median of {args.rounds} rounds")

    counts = [int(n) for n in args.iterations.split(",")]
    times = {n: [] for n in counts}
    for _ in range(args.rounds):  # interleaved, so load on a shared machine hits every N alike
        for n in counts:
            settings = Settings(width=width, height=height, frames=args.frames, steps=args.steps,
                                freeinit=FreeInitOptions(n))
            sync()
            started = time.perf_counter()
            pipe.sample(conditions, settings)
            sync()
            times[n].append(time.perf_counter() - started)

    shape = (1, 4, args.frames, height // 8, width // 8)
    latents, noise, fresh = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    gains = low_pass(shape[-3:], FreeInitOptions(2))
    started = time.perf_counter()
    for _ in range(20):
        mix_frequencies(noised(latents, noise, 0.0047), fresh, gains)
    between = (time.perf_counter() - started) / 20

    plain = statistics.median(times[counts[0]]) if counts[0] == 1 else None
    print(f"{'FreeInit N':>10} {'seconds':>9} {'x plain':>8} {'expected':>8}")
    for n in counts:
        median = statistics.median(times[n])
        ratio = f"{median / plain:8.2f}" if plain else f"{'-':>8}"
        print(f"{n:>10} {median:9.2f} {ratio} {n:8.2f}")
    print(f"between iterations (noising + 3-D FFT low-pass, CPU): {between * 1000:.2f} ms")


if __name__ == "__main__":
    main()
