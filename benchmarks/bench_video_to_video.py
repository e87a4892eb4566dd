"""Peak host memory and time of video-to-video: long inputs run in bounded memory.

    python benchmarks/bench_video_to_video.py                    # tiny model, 1280x720, 8 and 80 frames
    python benchmarks/bench_video_to_video.py --frames 8 24 80 --strength 0.75 --steps 4

Each case runs in a fresh process on the tiny test model (`hotshot-xl-tiny`, float32, CPU): load,
encode the prompt, VAE-encode the input video (chunks of 4 frames, tiled above 768x768 pixels),
sample from it at `--strength` (past 24 frames in the default context windows), decode. The input
is a synthetic uint8 video held in memory (a moving gradient), as `load_init` returns a file's.
Reported, from /proc/self/status (VmRSS sampled every 5 ms, VmHWM):
- peak resident memory of the whole process;
- the peak above what the process held after loading (input video included) in each stage;
- the input (uint8) and output (float32, as the pipeline returns frames) sizes: these grow with the
  video by necessity; "working" is the largest stage peak less the output buffer, what the
  encode, sample and decode machinery itself needs.
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


def synthetic_video(frames: int, height: int, width: int):
    import torch

    y = torch.linspace(0, 1, height).view(1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, -1)
    t = torch.arange(frames, dtype=torch.float32).view(-1, 1, 1) / max(frames, 1)
    base = torch.zeros(1, height, width)
    channels = [(base + x + t) % 1, (base + y + 2 * t) % 1, (base + x * y + t) % 1]  # each (frames, h, w)
    return (torch.stack(channels, dim=-1) * 255).to(torch.uint8)  # (frames, height, width, 3)


def measure(args) -> dict:
    import torch

    from model.pipeline import Settings, load_pipeline

    pipe = load_pipeline(fixtures() / "hotshot-xl-tiny", dtype="fp32", device="cpu")
    (count,) = args.frames
    settings = Settings(width=args.width, height=args.height, frames=count, steps=args.steps, guidance=args.guidance,
                        seed=1, strength=args.strength)
    settings.check()
    conditions = pipe.encode("a corgi running on a beach", "blurry")
    with torch.no_grad():  # warm-up on two small frames: allocator and kernel caches not counted
        small = synthetic_video(2, 64, 64)
        pipe.sample(conditions, Settings(width=64, height=64, frames=2, steps=2, strength=0.5),
                    init=pipe.encode_video(small))
    video = synthetic_video(count, args.height, args.width)
    loaded = status_mib("VmRSS")

    started = time.perf_counter()
    with PeakRss() as encoding:
        init = pipe.encode_video(video, settings.decode_chunk, settings.vae_tiling, count)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    with PeakRss() as sampling:
        latents = pipe.sample(conditions, settings, init=init)
    sample_s = time.perf_counter() - started
    started = time.perf_counter()
    with PeakRss() as decoding:
        frames = pipe.decode(latents, settings.decode_chunk, settings.vae_tiling)
    decode_s = time.perf_counter() - started
    output = frames.numel() * frames.element_size() / MiB
    stages = [encoding.peak - loaded, sampling.peak - loaded, decoding.peak - loaded - output]
    return {"frames": count, "loaded_mib": loaded, "input_mib": video.numel() / MiB, "output_mib": output,
            "encode_mib": stages[0], "sample_mib": stages[1], "decode_mib": decoding.peak - loaded,
            "working_mib": max(stages), "peak_mib": max(encoding.peak, sampling.peak, decoding.peak,
                                                         status_mib("VmHWM")),
            "encode_s": encode_s, "sample_s": sample_s, "decode_s": decode_s}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 80])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    print(f"machine: {describe(machine())}")
    print(f"hotshot-xl-tiny, fp32, video to video {args.width}x{args.height}, {args.steps} steps at strength "
          f"{args.strength:g}, guidance {args.guidance:g}; each case in a fresh process")
    print(f"{'frames':>6} {'peak RSS':>9} {'input':>7} {'output':>7} {'encode':>7} {'sample':>7} {'decode':>7} "
          f"{'working':>8} {'encode':>7} {'sample':>7} {'decode':>7}")
    print(f"{'':>6} {'MiB':>9} {'MiB':>7} {'MiB':>7} {'+MiB':>7} {'+MiB':>7} {'+MiB':>7} {'MiB':>8} {'s':>7} "
          f"{'s':>7} {'s':>7}")
    results = []
    for frames in args.frames:
        command = [sys.executable, __file__, "--child", "--frames", str(frames), "--width", str(args.width),
                   "--height", str(args.height), "--steps", str(args.steps), "--strength", str(args.strength),
                   "--guidance", str(args.guidance)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode:
            sys.exit(f"the {frames}-frame case failed:\n{done.stderr}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['frames']:>6} {r['peak_mib']:>9.0f} {r['input_mib']:>7.0f} {r['output_mib']:>7.0f} "
              f"{r['encode_mib']:>7.0f} {r['sample_mib']:>7.0f} {r['decode_mib']:>7.0f} {r['working_mib']:>8.0f} "
              f"{r['encode_s']:>7.1f} {r['sample_s']:>7.1f} {r['decode_s']:>7.1f}", flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"{last['frames']} frames vs {first['frames']}: working memory "
              f"x{last['working_mib'] / max(first['working_mib'], 1):.2f}, peak RSS "
              f"x{last['peak_mib'] / first['peak_mib']:.2f} (input and output grow with the video)")


if __name__ == "__main__":
    main()
