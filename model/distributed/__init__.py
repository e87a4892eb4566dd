"""Several processes on one video or one batch of prompts, over torch.distributed (torchrun).

- `group.py`: `join(...)` -> `RankGroup`: the process group (torchrun's environment or one the
  caller made), each rank's device (cuda:LOCAL_RANK, else the CPU) and the failure timeout.
- `windows.py`: `WindowShare`: one step's context windows shared out among the ranks; every rank
  adds all windows' predictions in the single-process order, so the latents are bit-identical.
- `frames.py`: `decode_shared`: VAE decoding shared out by frame chunks.
- `batch.py`: prompt files (`read_prompts`), output patterns with `{index}`, and `render_prompts`,
  which shares the lines out among the ranks and skips lines already written.
- `sharing.py`: `distribute(pipe, ranks)`: a pipeline's windows and decoding shared among ranks.
- `launch.py`: torchrun's environment (rank, world size, local rank) and timeout checks, no torch.
- `cli.py`: the `--prompts`/`--dist-timeout` flags and the CLI's session (imports no torch at
  module top, so `--help` stays cheap).

Names are imported on first use, so importing `model.distributed.cli` pulls in no torch.
"""

from importlib import import_module

_LAZY = {
    "DEFAULT_TIMEOUT_S": ".launch",
    "RankGroup": ".group",
    "RanksLost": ".group",
    "join": ".group",
    "WindowShare": ".windows",
    "Distributed": ".sharing",
    "distribute": ".sharing",
    "decode_shared": ".frames",
    "PromptLine": ".batch",
    "read_prompts": ".batch",
    "render_prompts": ".batch",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
