"""Context windows over the frame axis: videos longer than the temporal layers' reach.

(Skeleton: the options are fixed here so the CLI, the pipeline and the ComfyUI nodes agree on
them; the window scheduling and blending are being implemented.)
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("uniform", "static")  # how windows are laid over the frames
WEIGHTINGS = ("pyramid", "flat")  # how overlapping windows' predictions are blended
NOISE_TYPES = ("independent", "freenoise")  # initial noise for videos longer than one window


@dataclass(frozen=True)
class ContextOptions:
    """How the UNet sees a long video: overlapping windows of `length` frames."""

    length: int = 8  # frames per window; at most the 24 positions the temporal layers know
    overlap: int = 4  # frames shared by neighbouring windows
    stride: int = 1  # largest spacing between a window's frames (1: contiguous windows only)
    schedule: str = "uniform"
    weighting: str = "pyramid"
    loop: bool = False  # wrap windows around the end, for seamless loops
