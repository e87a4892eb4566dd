"""The input of video-to-video (a video) or image-to-video (one image), fitted to the video.

The output's size follows the input, rounded down to multiples of 8, unless width/height are
given (then the input is scaled to cover that size and centre-cropped, as control frames are);
its frame count follows the video unless given (the first frames are used).
"""

from __future__ import annotations

import torch

from ..controlnet.frames import fit_frames
from ..media.frames import read_frames
from ..errors import InputError
from .encode import MIN_SIZE


def load_init(path, name: str, width: int | None = None, height: int | None = None, frames: int | None = None,
              image: bool = False) -> torch.Tensor:
    """uint8 frames (n, height, width, 3): n = `frames` (or the video's length); one for an image."""
    pixels = read_frames(path, name)
    count, source_h, source_w, _ = pixels.shape
    if min(source_h, source_w) < MIN_SIZE:
        raise InputError(name, f"{path} is {source_w}x{source_h}: at least {MIN_SIZE} px on each side is needed")
    if image:
        if count != 1:
            raise InputError(name, f"{path} holds {count} frames; --init-image takes one image (use --init-video)")
    elif frames is not None:
        if count < frames:
            raise InputError(name, f"{path} holds {count} frames, fewer than the {frames} asked for")
        pixels = pixels[:frames]
    width = width or source_w // 8 * 8
    height = height or source_h // 8 * 8
    return fit_frames(pixels, width, height)
