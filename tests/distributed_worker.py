"""Run by tests/test_distributed.py under torchrun, with 2 gloo ranks on the CPU:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_worker.py MODEL OUT ARGV

One launch (each costs seconds of imports per rank) goes through three phases:
1. a 24-frame video in windows of 8 through the Python API (`join`, `distribute`): every rank
   saves its frames, its UNet calls and the bytes it received to OUT/rank{r}.pt;
2. the CLI, inside the same process group, with the flags in ARGV (JSON: {"batch": [...],
   "video": [...]}): a prompt batch, each rank printing the lines it wrote; then the same video
   as 1., written by rank 0 alone;
3. the video again, shared over a group of the script's own (`join(group=...)`), with rank 1
   killing itself (SIGKILL) after the first step, as a crashed GPU process would: rank 0 must
   fail, not hang, and write nothing (OUT/killed_rank0.pt).
"""

import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: `model`

from model.denoising.context import ContextOptions  # noqa: E402
from model.distributed import distribute, join  # noqa: E402
from model.pipeline import load_pipeline  # noqa: E402
from model.sample import run  # noqa: E402

VIDEO = dict(frames=24, width=64, height=64, steps=2, seed=3, context=ContextOptions(length=8, overlap=4))
KILLED_RANK = 1


def main(model_dir: str, out: str, argv: str) -> None:
    out = Path(out)
    ranks = join(timeout=60)
    pipe = distribute(load_pipeline(model_dir, dtype="fp32", device=ranks.device), ranks)
    calls = []
    pipe.unet.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape[2]))

    frames = pipe("a cat", "blurry", **VIDEO)
    torch.save({"frames": frames, "unet_calls": calls, "received_bytes": pipe.distributed.windows.received_bytes},
               out / f"rank{ranks.rank}.pt")

    flags = json.loads(Path(argv).read_text())
    for name in ("batch", "video"):
        code = run(flags[name])
        if code:
            sys.exit(code)
    ranks.barrier()
    own = join(group=dist.new_group([0, 1], timeout=timedelta(seconds=30)))
    assert own.group is not None and not own.owned and own.size == 2
    distribute(pipe, own)
    print(f"rank {own.rank}: killing rank {KILLED_RANK} after the first step", flush=True)

    def kill_after_first_step(step, steps, latents):
        if own.rank == KILLED_RANK and step == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    frames = pipe("a cat", "blurry", callback=kill_after_first_step, **VIDEO)
    torch.save(frames, out / f"killed_rank{own.rank}.pt")  # never reached


if __name__ == "__main__":
    main(*sys.argv[1:])
