"""Training checkpoints: written atomically, found again by `--resume`.

A checkpoint is a folder `step-NNNNNNNN/` in the checkpoint directory holding
- `trained.safetensors`: the trained tensors in float32 (the temporal layers, or the LoRA), with
  the run's settings in its metadata (provenance.py),
- `state.pt`: optimizer and learning-rate schedule states, the step, the RNG states,
- `run.json`: what run it belongs to (model, data, what is trained, batch and seed settings).
It is written into a hidden temporary folder and renamed into place only once complete (a rename
within one folder is atomic), so a run killed while saving leaves no folder that `--resume` takes.
The position in the data is the step itself: batches and noise are drawn from the seed and the
step (see trainer.py), so resuming at step N sees what an unbroken run sees at step N.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelFileError

NAME = re.compile(r"^step-(\d{8})$")
FILES = ("trained.safetensors", "state.pt", "run.json")


def save(folder: Path, step: int, trained: dict[str, torch.Tensor], state: dict, run: dict, keep: int,
         metadata: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    temporary = folder / f".step-{step:08d}.{uuid.uuid4().hex[:8]}.partial"
    temporary.mkdir()
    save_file({k: v.detach().float().cpu().contiguous() for k, v in trained.items()},
              temporary / "trained.safetensors", metadata=metadata)
    torch.save(state, temporary / "state.pt")
    (temporary / "run.json").write_text(json.dumps({**run, "step": step}, indent=1, sort_keys=True))
    for name in FILES:  # on disk before the rename makes the checkpoint visible
        with open(temporary / name, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():  # the same step saved by an earlier, interrupted attempt
        shutil.rmtree(final)
    os.replace(temporary, final)
    for old in complete(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and NAME.match(p.name) and all((p / f).is_file() for f in FILES)]
    return sorted(found, key=lambda p: int(NAME.match(p.name).group(1)))


def newest(folder: Path) -> Path | None:
    found = complete(folder)
    return found[-1] if found else None


def load(checkpoint: Path, run: dict) -> tuple[dict[str, torch.Tensor], dict, int]:
    """(trained tensors, state, step) of `checkpoint`, refusing one from another run or model."""
    try:
        saved = json.loads((checkpoint / "run.json").read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(checkpoint / "run.json", f"not a readable checkpoint description ({error})") from None
    # Settings the checkpoint records first: they say most about where it came from.
    differ = sorted((key for key in run if saved.get(key) != run[key]), key=lambda key: (key not in saved, key))
    if differ:
        detail = "; ".join(f"{key}: checkpoint has {saved.get(key)!r}, this run {run[key]!r}" for key in differ[:3])
        raise ModelFileError(checkpoint, f"is from another run or model ({detail}); resume with the settings it "
                             "was made with, or use another --checkpoint-dir")
    trained = load_file(checkpoint / "trained.safetensors")
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    return trained, state, int(saved["step"])
