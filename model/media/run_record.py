"""How a CLI video was made, stored in the file (see metadata.py) under the key `hotshot_xl`.

A JSON object: the command line, every setting the run used (prompt, seed, sizes, scheduler ...,
defaults included) and the SHA-256 of each model file it read (the files of a model folder, the
temporal layers, SDXL, LoRA and ControlNet files). It is not a ComfyUI graph: the editor does not
open it, but `python -m model.media.metadata FILE` and any EXIF/tag reader show it.

Hashing several GB takes seconds to tens of seconds, so `start_hashing` runs it in a background
thread while the model loads and samples; `--no-metadata` skips it all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import threading
from pathlib import Path

KEY = "hotshot_xl"
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_CHUNK = 16 * 1024 * 1024


def model_files(values) -> list[Path]:
    """Weight files named by `values` (paths given as flags): files as they are, folders searched
    for weight files (a diffusers model folder's unet/, vae/, text_encoder*/)."""
    found = []
    for value in _flattened(values):
        path = Path(value).expanduser()
        if not path.exists() and ":" in str(value):  # PATH:STRENGTH (--lora)
            path = Path(str(value).rsplit(":", 1)[0]).expanduser()
        if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES:
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES))
    return list(dict.fromkeys(p.resolve() for p in found))


def _flattened(values):
    """Path-like texts among flag values: lists are opened, objects give their `path` (a ControlNet group)."""
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flattened(value)
        elif isinstance(value, (str, os.PathLike)):
            yield value
        elif isinstance(getattr(value, "path", None), (str, os.PathLike)):
            yield value.path
        elif isinstance(value, dict):
            yield from _flattened(value.values())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


class Hashes:
    """SHA-256 of files, computed in a daemon thread (hashlib releases the GIL on large blocks)."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.result: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, name="model-hashes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for file in self.files:
            try:
                self.result[str(file)] = sha256(file)
            except OSError as error:
                self.result[str(file)] = f"unreadable: {error.strerror}"

    def get(self) -> dict[str, str]:
        self._thread.join()
        return dict(self.result)


def start_hashing(values) -> Hashes:
    return Hashes(model_files(values))


def settings_of(args, ignored=("out",)) -> dict:
    """The parsed flags as plain JSON values (paths and lists as text)."""
    settings = {}
    for name, value in sorted(vars(args).items()):
        if name in ignored:
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            settings[name] = value
        elif isinstance(value, (list, tuple)):
            settings[name] = [v if isinstance(v, (bool, int, float, str)) or v is None else str(v) for v in value]
        else:
            settings[name] = str(value)
    return settings


def cli_tags(prog: str, argv, args, hashes: Hashes | None) -> dict[str, str]:
    """The {`hotshot_xl`: JSON} tags of one CLI run."""
    record = {
        "command": " ".join([prog, *(shlex.quote(str(a)) for a in (argv or []))]),
        "settings": settings_of(args),
        "model_sha256": hashes.get() if hashes is not None else {},
    }
    return {KEY: json.dumps(record)}
