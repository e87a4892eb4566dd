"""Frames from the user's files, fitted to the video: control frames, and video-to-video inputs.

Files are read by media/frames.py's `read_frames` (a video file, an image folder or one image);
`fit_frames(frames, width, height)` scales each frame to
cover the video (aspect kept, Lanczos, as the original inference.py's `scale_aspect_fill`) and
crops the centre. `canny` is OpenCV's Canny edge detector, for frames that are not edges already.
"""

from __future__ import annotations


import numpy as np
import torch

from ..errors import InputError
from ..media.frames import read_frames

PREPROCESSORS = ("none", "canny")
CANNY_THRESHOLDS = (100, 200)  # low, high: the values of diffusers' SDXL canny ControlNet examples


def fit_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """uint8 (frames, h, w, 3) -> uint8 (frames, height, width, 3): cover the size, crop the centre.

    Frames already of the size are returned unchanged (no resampling).
    """
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    from PIL import Image

    source_h, source_w = frames.shape[1:3]
    scale_w, scale_h = width / source_w, height / source_h
    if scale_w > scale_h:
        size = (width, round(source_h * scale_w))
    else:
        size = (round(source_w * scale_h), height)
    left, top = (size[0] - width) / 2, (size[1] - height) / 2
    fitted = [np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS)
                         .crop((left, top, left + width, top + height))) for frame in frames.numpy()]
    return torch.from_numpy(np.stack(fitted))


def canny(frames: torch.Tensor, low: int = CANNY_THRESHOLDS[0], high: int = CANNY_THRESHOLDS[1]) -> torch.Tensor:
    """uint8 (frames, h, w, 3) -> uint8 edges (frames, h, w, 3), white on black (cv2.Canny)."""
    import cv2

    edges = [cv2.Canny(np.ascontiguousarray(frame), low, high) for frame in frames.numpy()]
    return torch.from_numpy(np.stack(edges))[..., None].expand(-1, -1, -1, 3).contiguous()


def to_control_images(frames: torch.Tensor) -> torch.Tensor:
    """(frames, h, w, 3) uint8 or float 0..1 -> (frames, 3, h, w) float32 in 0..1 (not normalised,
    as the original's control image processor leaves them)."""
    images = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
    return images.permute(0, 3, 1, 2).contiguous()


def control_frames(path, width: int, height: int, frames: int, preprocess: str = "none",
                   name: str = "control frames") -> torch.Tensor:
    """The control images of a video: (frames, 3, height, width) in 0..1 from `path`.

    The first `frames` frames are used; a single image serves every frame. Fewer frames than the
    video's is an error.
    """
    if preprocess not in PREPROCESSORS:
        raise InputError("control preprocess", f"must be one of {', '.join(PREPROCESSORS)}, got {preprocess!r}")
    pixels = read_frames(path, name)
    if pixels.shape[0] != 1:
        if pixels.shape[0] < frames:
            raise InputError(name, f"{path} holds {pixels.shape[0]} frames, the video has {frames}: give at least "
                             "one control frame per video frame (or a single image for all)")
        pixels = pixels[:frames]
    pixels = fit_frames(pixels, width, height)
    if preprocess == "canny":
        pixels = canny(pixels)
    return to_control_images(pixels)
