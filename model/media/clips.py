"""A folder of clips and their captions, shared by the trainer and the captioner: videos with same-name
`.txt` captions, or the original fine_tune.py's sub-folders of frames with `prompt.txt`. Finding them, telling
which lack a caption, and reading one's frames (media/frames.py's read_clip).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .frames import natural_order, read_clip

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_CAPTION = "prompt.txt"


@dataclass(frozen=True)
class Source:
    """A video file or a frame folder, and where its caption is (or would be) written."""

    path: Path
    caption_file: Path
    is_folder: bool

    @property
    def caption(self) -> str | None:
        if not self.caption_file.is_file():
            return None
        return self.caption_file.read_text(encoding="utf-8", errors="replace").strip()


def find_sources(data: str | Path, flag: str = "--data") -> list[Source]:
    """Every video file and frame folder directly in `data` (sorted), or an InputError naming it."""
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise InputError(flag, f"{folder} is not a folder (expected videos with .txt captions, or folders "
                         "of frames with prompt.txt)")
    sources = []
    for path in sorted(folder.iterdir(), key=natural_order):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(Source(path, path.with_suffix(".txt"), False))
        elif path.is_dir() and any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir()):
            sources.append(Source(path, path / FOLDER_CAPTION, True))
    if not sources:
        raise InputError(flag, f"{folder} holds no clips: expected {', '.join(VIDEO_SUFFIXES)} files (each with a "
                         f"same-name .txt caption) or sub-folders of {'/'.join(FRAME_SUFFIXES)} frames with "
                         f"{FOLDER_CAPTION}")
    return sources


def missing_captions(sources: list[Source]) -> list[Source]:
    """Sources without a caption file. An empty (or whitespace-only) file is a caption the user
    wrote: the clip trains unconditionally, and no captioner replaces it."""
    return [s for s in sources if s.caption is None]


def empty_captions(sources: list[Source]) -> list[Source]:
    return [s for s in sources if s.caption == ""]


def plural(count: int, noun: str) -> str:
    """"1 clip", "2 clips"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def read_frames(source: Source) -> tuple[np.ndarray, float | None]:
    """(frames, height, width, 3) uint8 and the frame rate (None for frame folders)."""
    frames, rate = read_clip(source.path, str(source.path))
    return frames.numpy(), rate
