"""Peak host memory and time of long videos: context windows keep memory bounded by the window.

    python benchmarks/bench_long_video.py                       # tiny model, 256x256, 8/24/80 frames
    python benchmarks/bench_long_video.py --frames 80 --width 1280 --height 720 --steps 1 --guidance 1

Each case runs in a fresh process on the tiny test model (`hotshot-xl-tiny` from the shared
fixtures, float32, CPU): load, encode the prompt, sample, decode. Frames past 24 are sampled in
context windows (defaults: 8 frames overlapping by 4), as the pipeline does by itself; the
decode is chunked (4 frames) and tiled as `--vae-tiling` says. Reported, from /proc/self/status:
- peak resident memory of the whole process (VmHWM, cross-checked by sampling VmRSS every 5 ms);
- the peak above what the process held after loading, during sampling and during decoding;
- the size of the decoded frames, which the pipeline returns as float32 (frames, H, W, 3).
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from _common import MiB, PeakRss, describe, fixtures, machine, status_mib  # noqa: E402


def measure(args) -> dict:
    """Runs in the child process: one whole generation (`args.frames` holds one count), memory in MiB."""
    import torch

    from model.denoising.context import context_for, context_windows
    from model.pipeline import Settings, load_pipeline

    pipe = load_pipeline(fixtures() / "hotshot-xl-tiny", dtype="fp32", device="cpu")
    (frame_count,) = args.frames
    settings = Settings(width=args.width, height=args.height, frames=frame_count, steps=args.steps,
                        guidance=args.guidance, seed=1, vae_tiling=args.vae_tiling)
    settings.check()
    conditions = pipe.encode("a corgi running on a beach", "blurry")
    with torch.no_grad():  # a warm-up pass on two frames, so allocator and kernel caches are not counted
        pipe.sample(conditions, Settings(width=args.width, height=args.height, frames=2, steps=1))
    loaded = status_mib("VmRSS")
    context = context_for(settings.frames, settings.context)
    windows = len(context_windows(settings.frames, context)) if context else 1

    started = time.perf_counter()
    with PeakRss() as sampling:
        latents = pipe.sample(conditions, settings)
    sample_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with PeakRss() as decoding:
        frames = pipe.decode(latents, settings.decode_chunk, settings.vae_tiling)
    decode_seconds = time.perf_counter() - started
    return {"frames": frame_count, "windows": windows, "loaded_mib": loaded,
            "sample_above_loaded_mib": sampling.peak - loaded, "decode_above_loaded_mib": decoding.peak - loaded,
            "peak_mib": max(sampling.peak, decoding.peak, status_mib("VmHWM")),
            "output_mib": frames.numel() * frames.element_size() / MiB,
            "sample_s": sample_seconds, "decode_s": decode_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 24, 80])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--vae-tiling", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    print(f"machine: {describe(machine())}")
    print(f"hotshot-xl-tiny, fp32, {args.width}x{args.height}, {args.steps} steps, guidance {args.guidance:g}, "
          f"VAE tiling {args.vae_tiling}; each case in a fresh process")
    print(f"{'frames':>6} {'windows':>7} {'peak RSS':>9} {'sampling':>9} {'decoding':>9} {'output':>8} "
          f"{'sample':>8} {'decode':>8}")
    print(f"{'':>6} {'a step':>7} {'MiB':>9} {'+MiB':>9} {'+MiB':>9} {'MiB':>8} {'s':>8} {'s':>8}")
    results = []
    for frames in args.frames:
        command = [sys.executable, __file__, "--child", "--frames", str(frames), "--width", str(args.width),
                   "--height", str(args.height), "--steps", str(args.steps), "--guidance", str(args.guidance),
                   "--vae-tiling", args.vae_tiling]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode:
            sys.exit(f"the {frames}-frame case failed:\n{done.stderr}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['frames']:>6} {r['windows']:>7} {r['peak_mib']:>9.0f} {r['sample_above_loaded_mib']:>9.0f} "
              f"{r['decode_above_loaded_mib']:>9.0f} {r['output_mib']:>8.0f} {r['sample_s']:>8.1f} "
              f"{r['decode_s']:>8.1f}", flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"{last['frames']} frames vs {first['frames']}: peak RSS x{last['peak_mib'] / first['peak_mib']:.2f}, "
              f"sampling memory x{last['sample_above_loaded_mib'] / max(first['sample_above_loaded_mib'], 1):.2f}")


if __name__ == "__main__":
    main()
