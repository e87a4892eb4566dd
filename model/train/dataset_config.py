"""A dataset config file (`--dataset-config FILE`, TOML or JSON): several clip folders, each with its
own repeats, caption prefix (a trigger word) and caption dropout.

    # dataset.toml
    [[folder]]
    path = "clips/dog"          # relative to the config file
    repeats = 3                 # each clip counts 3 times per epoch
    prefix = "sks dog,"         # put before every caption of this folder (with a space)
    caption_dropout = 0.1       # this share of the folder's draws train with an empty caption
    size = [512, 512]           # width, height: this folder's one bucket (default: the trainer's)

    [[folder]]
    path = "clips/beach"

JSON: {"folder": [{"path": ..., ...}, ...]}. Without `size`, a folder's clips go to the trainer's
buckets (`--width/--height`, or the release's aspect buckets); batches never mix sizes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

FLAG = "--dataset-config"
KEYS = {"path", "repeats", "prefix", "caption_dropout", "size"}


@dataclass(frozen=True)
class Folder:
    path: str
    repeats: int = 1
    prefix: str = ""
    caption_dropout: float = 0.0
    size: tuple[int, int] | None = None  # (width, height)

    def caption(self, text: str) -> str:
        return f"{self.prefix} {text}".strip() if self.prefix else text


def read_dataset_config(file) -> list[Folder]:
    """The folders of a config file, every value checked; InputError naming the file and entry."""
    path = Path(file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(FLAG, f"cannot read {path} ({error.strerror or error})") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise InputError(FLAG, f"{path}: reading TOML needs Python 3.11 or later; write the config as "
                                 "JSON") from None
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise InputError(FLAG, f"{path}: expected a .toml or .json file")
    except ValueError as error:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise InputError(FLAG, f"{path} is not valid {path.suffix[1:].upper()} ({error})") from None
    entries = data.get("folder") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(FLAG, f"{path}: expected one or more [[folder]] entries (JSON: a \"folder\" list)")
    folders = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}, folder {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InputError(FLAG, f"{where}: needs path = \"FOLDER\"")
        unknown = sorted(set(entry) - KEYS)
        if unknown:
            raise InputError(FLAG, f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
        repeats = entry.get("repeats", 1)
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise InputError(FLAG, f"{where}: repeats must be a positive whole number, got {repeats!r}")
        prefix = entry.get("prefix", "")
        if not isinstance(prefix, str):
            raise InputError(FLAG, f"{where}: prefix must be text, got {prefix!r}")
        dropout = entry.get("caption_dropout", 0.0)
        if (not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not math.isfinite(dropout)
                or not 0 <= dropout <= 1):
            raise InputError(FLAG, f"{where}: caption_dropout must be between 0 and 1, got {dropout!r}")
        size = entry.get("size")
        if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 8 and v % 8 == 0 for v in size)):
            raise InputError(FLAG, f"{where}: size must be [width, height], positive multiples of 8, got {size!r}")
        folder = Path(entry["path"]).expanduser()
        folder = folder if folder.is_absolute() else path.parent / folder
        folders.append(Folder(str(folder), repeats, prefix.strip(), float(dropout), tuple(size) if size else None))
    return folders
