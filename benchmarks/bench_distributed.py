"""1 rank against N: one long video's context windows, and a prompt batch, shared out by torch.distributed.

    python benchmarks/bench_distributed.py                                  # CPU: 1 vs 2 ranks, 1 thread each
    python benchmarks/bench_distributed.py --device cuda --config full --dtype bf16 --size 512 \\
        --frames 80 --steps 4 --lines 8 --ranks 1 2 4 8                     # N GPUs of one machine

Each rank count runs in fresh processes: 1 rank is the plain single process, N ranks a torchrun
launch (`--standalone --nproc-per-node N`, gloo on CPUs, NCCL on GPUs, rank r on cuda:r). Every
rank builds the same weights (the tiny fixture, or random weights of the named config: see
bench.py's build_pipeline), samples once to warm up, then measures, after a barrier:
- video: `--frames` frames in windows of 8 overlapping by 4, `--steps` steps with CFG: seconds per
  step (from the step callback), the decode, and the bytes each rank received per step;
- batch: `--lines` prompts of 8 frames each through render_prompts (mp4 files in a temporary
  folder), lines shared out round robin.
Reported: seconds, and the 1-rank time over the N-rank time (the speed-up). The video's frames
of every N are checked to be bit-identical to the 1-rank frames. Linux; CPU threads per rank
are `--threads` (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))


def child(args) -> None:
    """One rank (or the single process): build, warm up, measure; rank 0 prints the result as JSON."""
    import torch

    import bench
    from _common import Timed, describe, machine
    from model.denoising.context import ContextOptions, context_windows
    from model.distributed import distribute, join
    from model.distributed.batch import read_prompts, render_prompts
    from model.distributed.launch import torchrun_environment
    from model.pipeline import Settings

    torch.set_num_threads(args.threads)
    ranks = join() if torchrun_environment() is not None else None
    device = ranks.device if ranks is not None else torch.device(args.device)
    pipe = distribute(bench.build_pipeline(args.config, args.dtype, device), ranks)
    context = ContextOptions(length=8, overlap=4)
    video = Settings(width=args.size, height=args.size, frames=args.frames, steps=args.steps, seed=1,
                     context=context)
    conditions = pipe.encode("a corgi running on a beach, hd", "blurry")
    pipe.sample(conditions, Settings(width=args.size, height=args.size, frames=args.frames, steps=1,
                                     context=context))  # warm-up: kernels, allocator, first collectives

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if ranks is not None:
            ranks.barrier()

    synchronize()
    received = pipe.distributed.windows.received_bytes if pipe.distributed else 0
    marks = [time.perf_counter()]
    with Timed() as timed:
        latents = pipe.sample(conditions, video, callback=lambda *_: marks.append(time.perf_counter()))
        synchronize()
    count = 1 if ranks is None else ranks.size
    # Cores busy with other programs: all busy cores but the ranks' own (each taken to use what rank 0 did).
    others = max(timed.others_cores - (count - 1) * timed.cpu_seconds / timed.seconds, 0.0)
    sampled = time.perf_counter()
    frames = pipe.decode(latents, video.decode_chunk, video.vae_tiling)
    synchronize()
    decoded = time.perf_counter()
    received = (pipe.distributed.windows.received_bytes - received) if pipe.distributed else 0
    step_seconds = [b - a for a, b in zip(marks, marks[1:])]

    prompts = Path(args.work) / "prompts.txt"
    if ranks is None or ranks.rank == 0:
        prompts.write_text("".join(f"a corgi running on a beach, take {i}\n" for i in range(args.lines)))
    synchronize()
    lines = read_prompts(prompts, Settings(width=args.size, height=args.size, frames=8, steps=args.steps),
                         "blurry", f"{args.work}/{{index:03d}}.mp4")
    started = time.perf_counter()
    render_prompts(pipe, lines, ranks)
    synchronize()
    batch_seconds = time.perf_counter() - started

    if ranks is None or ranks.rank == 0:
        torch.save(frames, Path(args.work) / "frames.pt")
        print(json.dumps({
            "ranks": 1 if ranks is None else ranks.size, "machine": describe(machine()),
            "windows_per_step": len(context_windows(args.frames, context, 999)),
            "step_s": sorted(step_seconds)[len(step_seconds) // 2], "sample_s": sampled - marks[0],
            "decode_s": decoded - sampled, "received_bytes_per_step": received / args.steps,
            "batch_s": batch_seconds, "other_cores": others}))


def launch(args, ranks: int, work: str) -> dict:
    flags = ["--child", "--work", work, "--config", args.config, "--dtype", args.dtype, "--device", args.device,
             "--size", str(args.size), "--frames", str(args.frames), "--steps", str(args.steps),
             "--lines", str(args.lines), "--threads", str(args.threads)]
    if ranks == 1:
        command = [sys.executable, __file__, *flags]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                   __file__, *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode:
        sys.exit(f"{ranks} ranks failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--config", default="tiny", choices=["tiny", "mid", "full"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16", "fp8"])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (rank r on cuda:r)")
    parser.add_argument("--size", type=int, default=128, help="width and height in pixels")
    parser.add_argument("--frames", type=int, default=40, help="frames of the windowed video")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--lines", type=int, default=4, help="prompts in the batch (8 frames each)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    parser.add_argument("--repeats", type=int, default=1, help="launches per rank count; the fastest is kept")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    print(f"{args.config} config, {args.dtype}, {args.device}, {args.size}x{args.size}; video: {args.frames} frames "
          f"in windows of 8 overlapping by 4, {args.steps} steps with CFG; batch: {args.lines} lines of 8 frames; "
          f"{args.threads} thread(s) per rank")
    results, reference = {}, None
    for ranks in args.ranks:
        best = None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as work:
                r = launch(args, ranks, work)
                frames = torch.load(Path(work) / "frames.pt")
            if reference is None:
                reference = frames
            r["identical"] = torch.equal(frames, reference)
            best = r if best is None or r["sample_s"] + r["batch_s"] < best["sample_s"] + best["batch_s"] else best
        results[ranks] = best
        if len(results) == 1:
            print(f"machine: {best['machine']}; {best['windows_per_step']} windows a step")
            print(f"{'ranks':>5} {'s/step':>8} {'speed-up':>8} {'decode s':>9} {'MB in/step':>10} "
                  f"{'batch s':>8} {'speed-up':>8} {'others':>6}  frames = 1 rank's")
        one = results[args.ranks[0]]
        print(f"{ranks:>5} {best['step_s']:>8.2f} {one['step_s'] / best['step_s']:>7.2f}x {best['decode_s']:>9.2f} "
              f"{best['received_bytes_per_step'] / 1e6:>10.2f} {best['batch_s']:>8.2f} "
              f"{one['batch_s'] / best['batch_s']:>7.2f}x {best['other_cores']:>6.1f}  "
              f"{'yes' if best['identical'] else 'NO'}", flush=True)
    print("others: cores busy with other programs while the video sampled (from /proc/stat)")


if __name__ == "__main__":
    main()
