"""Reading a clip as frames, once for every user: ControlNet control frames, video-to-video inputs, the
trainer's and the captioner's clips. A clip is a video file (mp4, webm, gif, webp, ...: video.read_video), a
folder of images (read in natural name order: frame2 before frame10) or one image.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def natural_order(path: Path):
    """Sort key: numbers in names compare as numbers (frame2 < frame10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_image(file: Path, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return np.array(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(name, f"{file} is not a readable image ({error})") from None


def read_clip(path, name: str = "frames") -> tuple[torch.Tensor, float | None]:
    """(uint8 frames (frames, height, width, 3), frame rate or None for images) from a video file, an image
    folder or one image. Errors are InputErrors under `name` (the flag or node input the path came from)."""
    from .video import read_video

    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_order)
        if not files:
            raise InputError(name, f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        arrays = [_read_image(file, name) for file in files]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(name, f"images in {path} are not all the same size")
        return torch.from_numpy(np.stack(arrays)), None
    if not path.is_file():
        raise InputError(name, f"{path} not found (expected a video file, an image folder or an image)")
    if path.suffix.lower() in IMAGE_SUFFIXES and path.suffix.lower() != ".webp":
        return torch.from_numpy(_read_image(path, name)[None]), None
    try:
        frames, rate = read_video(path)
    except InputError as error:
        raise InputError(name, f"{path}: {error.problem}") from None
    except Exception as error:  # PyAV/FFmpeg errors for unreadable or truncated files
        raise InputError(name, f"{path} is not a readable video ({type(error).__name__}: {error})") from None
    return frames, None if rate is None else float(rate)


def read_frames(path, name: str = "frames") -> torch.Tensor:
    """uint8 frames (frames, height, width, 3) from a video file, an image folder or one image (read_clip)."""
    return read_clip(path, name)[0]
