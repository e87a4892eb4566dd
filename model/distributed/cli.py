"""The CLI's side of batches and torchrun: flags, and what this process does in a run.

`python -m model.sample --prompts FILE --out 'out/{index:04d}.mp4'` renders a batch in one
process; under `torchrun --nproc-per-node N -m model.sample ...` the lines are shared out among
the N ranks, or, without --prompts, the windows and decoding of the one video are, and rank 0
alone writes it. No torch import at module top: `--help` stays cheap.
"""

from __future__ import annotations

import signal
import sys

from ..errors import InputError
from .launch import DEFAULT_TIMEOUT_S, check_timeout, torchrun_environment


def add_distributed_arguments(parser) -> None:
    group = parser.add_argument_group(
        "batches and several processes",
        "Under torchrun (python -m torch.distributed.run --nproc-per-node N -m model.sample ...) rank r runs on "
        "cuda:LOCAL_RANK, or the CPU without CUDA: one video's context windows are shared out among the ranks "
        "(the same frames as one process) and rank 0 writes it; with --prompts the lines are shared out.")
    group.add_argument("--prompts", metavar="FILE",
                       help="render every line of FILE as its own video (one prompt a line, or a JSON object with "
                       "per-line settings: prompt, negative_prompt, seed, width, height, frames, steps, guidance, "
                       "scheduler, noise, decode_chunk, vae_tiling); line i uses --seed + i and writes --out with "
                       "{index} = i (out/{index:04d}.mp4, or out/{index:04d}/ for PNG frames); lines whose output "
                       "exists are skipped")
    group.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                       help="under torchrun: how long a rank waits for the others before the run fails (a rank "
                       "that died or hangs)")


def _exit_on_sigterm(signum, frame):
    # torchrun stops the other ranks with SIGTERM when one fails: exit through Python, so the
    # temporary files of a video being written are removed rather than left behind.
    raise SystemExit(128 + signum)


class Session:
    """This process in a CLI run: alone or one of torchrun's ranks; one video or a --prompts batch.

    Made before anything heavy (`plan_session`); `join()` then connects to the other ranks.
    """

    def __init__(self, args, lines, left: int = 0):
        self.args = args
        self.lines = lines  # the --prompts batch, or None for one video
        self.launched = torchrun_environment()  # (rank, world size, local rank) or None
        self.timeout = check_timeout(args.dist_timeout, "--dist-timeout")
        self.ranks = None
        # A batch whose outputs are all there: nothing to load or render.
        self.finished = lines is not None and not left

    @property
    def batch(self) -> bool:
        return self.lines is not None

    @property
    def writes_one_video(self) -> bool:
        """Whether this process writes the --out video (alone, or rank 0): False in a batch."""
        return not self.batch and (self.launched is None or self.launched[0] == 0)

    def join(self) -> None:
        """Connect to the other ranks under torchrun (no-op otherwise)."""
        if self.launched is None:
            return
        from .group import join

        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        # A batch exchanges only the list of lines to do and a final barrier: gloo does that on any machine.
        self.ranks = join(timeout=self.timeout, backend="gloo" if self.batch else None)

    def device(self, requested: str) -> str:
        """The --device this rank loads on: cuda:LOCAL_RANK (or the CPU) for auto and cuda under torchrun."""
        if self.ranks is not None and requested in ("auto", "cuda"):
            return str(self.ranks.device)
        return requested

    def share(self, pipe):
        """One video under torchrun: its windows and decoding shared among the ranks."""
        if self.ranks is not None and not self.batch:
            from .sharing import distribute

            distribute(pipe, self.ranks)
        return pipe

    def run_batch(self, pipe) -> int:
        from .batch import render_prompts

        rank = "" if self.ranks is None else f"rank {self.ranks.rank}: "

        def log(text: str) -> None:
            # One write per line: the ranks share a terminal or pipe, and print() writes the text and
            # its newline separately when stdout is unbuffered (PYTHONUNBUFFERED), so lines interleaved.
            sys.stdout.write(f"{rank}{text}\n")
            sys.stdout.flush()

        render_prompts(pipe, self.lines, self.ranks, self.args.fps, self.args.loop, self.args.overwrite, log=log)
        return 0


def plan_session(args, settings) -> Session:
    """Check --prompts (every line, every output) and --dist-timeout, before any weights are read."""
    lines, left = None, 0
    if args.prompts is not None:
        from .batch import check_outputs, lines_to_do, read_prompts

        negative = None if getattr(args, "zero_negative", False) else args.negative_prompt
        try:
            lines = read_prompts(args.prompts, settings, negative, args.out)
            check_outputs(lines, args.fps, args.loop)
        except InputError as error:
            raise InputError({"out": "--out"}.get(error.name, error.name), error.problem) from None
        left = len(lines_to_do(lines, args.overwrite))
        if torchrun_environment() is None or torchrun_environment()[0] == 0:
            print(f"--prompts {args.prompts}: {len(lines)} lines, {len(lines) - left} already written, {left} to "
                  "render", file=sys.stderr)
    return Session(args, lines, left)
