"""What torchrun told this process, and the checks that need no torch (the CLI runs them first)."""

from __future__ import annotations

import math
import numbers
import os

from ..errors import InputError

DEFAULT_TIMEOUT_S = 600.0  # how long a collective waits for a missing rank before failing


def torchrun_environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) as torchrun sets them, or None without torchrun or with one rank.

    Reads the environment only (no process group), so it may run before anything heavy.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or "RANK" not in os.environ:
            return None
        return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise InputError("WORLD_SIZE", "torchrun's RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers, got "
                         f"{os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, "
                         f"{os.environ.get('LOCAL_RANK')!r}") from None


def check_timeout(timeout, name: str = "timeout") -> float:
    """`timeout` in seconds as a float; InputError naming `name` unless it is a positive finite number."""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise InputError(name, f"must be a positive number of seconds, got {timeout!r}")
    return float(timeout)
