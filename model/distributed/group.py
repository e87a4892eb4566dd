"""The ranks working on one job: a torch.distributed process group, each rank's device, timeouts.

Under torchrun (`python -m torch.distributed.run`, one machine or many) the group is made from the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); inside a script
that already made a group, that group is used as it is. Rank r computes on cuda:LOCAL_RANK when
CUDA is there, else on the CPU (gloo).

Failure: every collective waits at most the group's timeout. A rank that dies closes its
connections, so the others fail at their next collective at once (gloo: "Connection closed by
peer"; NCCL: the watchdog aborts); a rank that hangs makes them fail when the timeout runs out.
torchrun then stops the remaining ranks and exits non-zero.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import InputError
from .launch import DEFAULT_TIMEOUT_S, check_timeout, torchrun_environment


class RanksLost(RuntimeError):
    """A collective failed: another rank died, or did not answer within the timeout."""


@dataclass(frozen=True)
class RankGroup:
    """This process's place among the ranks, and how tensors travel between them."""

    group: object | None  # a torch ProcessGroup; None: the default (world) group
    rank: int
    size: int
    device: torch.device  # where this rank computes
    transport: torch.device  # where tensors must be for the group's collectives (cuda for NCCL)
    timeout_s: float
    owned: bool = False  # join() made the group, so close() destroys it

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `tensor` (same shape and dtype on all ranks), in rank order, on `transport`."""
        sent = tensor.to(self.transport).contiguous()
        received = [torch.empty_like(sent) for _ in range(self.size)]
        with self._collective("exchanging results"):
            dist.all_gather(received, sent, group=self.group)
        return received

    def broadcast_object(self, value, source: int = 0):
        """`value` as rank `source` has it (any picklable object), on every rank."""
        box = [value]
        with self._collective(f"receiving rank {source}'s data"):
            dist.broadcast_object_list(box, src=dist.get_global_rank(self.group, source) if self.group else source,
                                       group=self.group, device=self.transport)
        return box[0]

    def barrier(self, timeout_s: float | None = None) -> None:
        """Wait for every rank; a rank missing after `timeout_s` (default: the group's) is an error.

        On gloo this is monitored_barrier, whose error names the ranks that did not arrive.
        """
        seconds = self.timeout_s if timeout_s is None else timeout_s
        with self._collective("waiting for the others to finish", seconds):
            if dist.get_backend(self.group) == "gloo":
                dist.monitored_barrier(self.group, timeout=timedelta(seconds=seconds), wait_all_ranks=True)
            else:
                dist.barrier(self.group)

    @contextmanager
    def _collective(self, what: str, timeout_s: float | None = None):
        """Say in one line what failed when a collective does (the backend's own message follows)."""
        try:
            yield
        except RuntimeError as error:  # gloo and NCCL raise DistBackendError, a RuntimeError
            seconds = self.timeout_s if timeout_s is None else timeout_s
            raise RanksLost(f"rank {self.rank} of {self.size}: the other ranks stopped answering while "
                            f"{what}: one died, or did not answer within {seconds:g} s (torchrun's report names "
                            f"it). {type(error).__name__}: {str(error).strip().splitlines()[0][:300]}") from error

    def close(self) -> None:
        """Destroy the group if join() made it (a group the caller gave stays theirs)."""
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def join(group=None, timeout: float = DEFAULT_TIMEOUT_S, backend: str | None = None,
         device: str | torch.device | None = None) -> RankGroup:
    """The ranks of `group`, or of the default group, made from torchrun's environment if need be.

    - `group`: a ProcessGroup the caller made (`dist.new_group(...)`); None: the default group,
      initialised here with `backend` (default NCCL with CUDA, else gloo) and `timeout` seconds
      when the script has not done so itself.
    - `device`: where this rank computes; default cuda:LOCAL_RANK with CUDA, else the CPU.
    Every rank of the group must call it. Raises InputError outside torchrun without a group.
    """
    timeout = check_timeout(timeout)
    owned = False
    if group is None and not dist.is_initialized():
        launched = torchrun_environment()
        if launched is None:
            raise InputError("group", "no process group: launch with torchrun (python -m torch.distributed.run "
                             "--nproc-per-node N ...), or create one and pass it as group=")
        if torch.cuda.is_available():
            torch.cuda.set_device(launched[2])  # NCCL and broadcast_object_list use the current device
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"),
                                timeout=timedelta(seconds=timeout))
        owned = True
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    if device is None:
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    transport = device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    return RankGroup(group, rank, size, device, transport, timeout, owned)
