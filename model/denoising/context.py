"""Context windows over the frame axis: videos longer than the temporal layers' reach.

Hotshot-XL's temporal layers were trained on 8-frame clips and hold 24 positions, so a longer
video is denoised as overlapping windows of frames. At every step each window goes through the
UNet on its own, and each frame's noise prediction is the weighted mean of the predictions of the
windows that hold it. Memory is bounded by the window, not by the video.

- `ContextOptions`: the user's choices, shared by the CLI, the pipeline and the ComfyUI nodes.
- `context_windows(frames, options, timestep)`: the windows, as tuples of frame indices.
- `blend_weights(frames, windows, weighting)`: each window's share of each of its frames' predictions.
- `windowed_predictor(predict, options)`: a `Predictor` running `predict` window by window.
- `freenoise(noise, length, overlap, generator)`: FreeNoise's noise for long videos.
- `context_for(frames, context)`: the options a video of that length runs with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..choices import CONTEXT_DEFAULTS, MAX_LENGTH, NOISE_TYPES, SCHEDULES, WEIGHTINGS  # noqa: F401 (re-exported)
from ..errors import InputError
from .loop import call_predictor

if TYPE_CHECKING:
    from .loop import Predictor

Window = tuple[int, ...]  # frame indices, in the order the UNet sees them


@dataclass(frozen=True)
class ContextOptions:
    """How the UNet sees a long video: overlapping windows of `length` frames.

    - `length`: frames per window, 1 to 24 (the release was trained on 8). A video of at most
      `length` frames is one window: exactly the plain, single-pass result.
    - `overlap`: frames shared by neighbouring windows, 0 to length - 1. More overlap blends
      windows more smoothly and costs more UNet calls.
    - `stride`: the largest spacing between a window's frames, a power of two. 1: windows of
      consecutive frames only; 2, 4, ...: also windows of every 2nd, 4th, ... frame, which tie
      distant frames together (AnimateDiff's context stride).
    - `schedule`: "uniform" shifts the windows by a few frames from step to step (the offset comes
      from the timestep), so no window border stays on the same frames for the whole denoise;
      "static" uses the same windows at every step.
    - `weighting`: "pyramid" counts a frame more in the windows where it sits near the middle, so
      predictions fade from one window into the next; "flat" weighs all windows' frames equally.
    - `loop`: windows wrap around the end, so the last frames are denoised together with the
      first ones and the video loops without a jump.

    Invalid values raise InputError naming the field at construction.
    """

    length: int = CONTEXT_DEFAULTS["length"]
    overlap: int = CONTEXT_DEFAULTS["overlap"]
    stride: int = CONTEXT_DEFAULTS["stride"]
    schedule: str = CONTEXT_DEFAULTS["schedule"]
    weighting: str = CONTEXT_DEFAULTS["weighting"]
    loop: bool = CONTEXT_DEFAULTS["loop"]

    def __post_init__(self):
        for name in ("length", "overlap", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(name, f"must be a whole number, got {value!r}")
        if not 1 <= self.length <= MAX_LENGTH:
            raise InputError("length", f"must be 1 to {MAX_LENGTH} frames (the positions the temporal layers "
                             f"know; trained on 8), got {self.length}")
        if not 0 <= self.overlap < self.length:
            raise InputError("overlap", f"must be 0 to {self.length - 1} (less than the window length "
                             f"{self.length}), got {self.overlap}")
        if self.stride < 1 or self.stride & (self.stride - 1):
            raise InputError("stride", f"must be a power of two (1, 2, 4, ...), got {self.stride}")
        if self.schedule not in SCHEDULES:
            raise InputError("schedule", f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.weighting not in WEIGHTINGS:
            raise InputError("weighting", f"unknown weighting {self.weighting!r}; "
                             f"choose one of {', '.join(WEIGHTINGS)}")
        if not isinstance(self.loop, bool):
            raise InputError("loop", f"must be True or False, got {self.loop!r}")


def context_for(frames: int, context: ContextOptions | None,
                max_frames: int = MAX_LENGTH) -> ContextOptions | None:
    """The windows a video runs with: those asked for; default ones past the temporal layers'
    reach (`max_frames` in one pass), rather than failing; else None, one pass over all frames."""
    if context is None and frames > max_frames:
        return ContextOptions()
    return context


def _ordered_halving(value: int) -> float:
    """`value`'s 64 bits reversed, as a fraction in [0, 1): 0, 1/2, 1/4, 3/4, 1/8, ... for 0, 1, 2, 3, 4.

    Neighbouring integers land far apart, so consecutive timesteps get well-spread window offsets.
    """
    return int(f"{value:064b}"[::-1], 2) / 2**64


def _sequences(frames: int, spacing: int, loop: bool) -> list[list[int]]:
    """The frames `spacing` apart, as the sequences that windows of that spacing are laid along."""
    if not loop:
        return [list(range(first, frames, spacing)) for first in range(spacing)]
    # Round a loop, stepping by `spacing` comes back to the first frame after frames / gcd steps.
    cycles = math.gcd(frames, spacing)
    return [[(first + k * spacing) % frames for k in range(frames // cycles)] for first in range(cycles)]


def _starts(count: int, length: int, step: int, offset: int, loop: bool) -> list[int]:
    """Where windows begin along a sequence of `count` frames, `step` apart from `offset`.

    Consecutive starts are at most `step` = length - overlap apart, so neighbouring windows share
    at least `overlap` frames and together cover the sequence.
    """
    if loop:
        return [(offset + k * step) % count for k in range(-(-count // step))]
    last = count - length
    # The first and last windows stay pinned to the ends; the ones between follow the offset.
    return sorted({0, last, *range(offset or step, last, step)})


def context_windows(frames: int, options: ContextOptions, timestep=0) -> list[Window]:
    """The windows for one step: tuples of frame indices, each frame in at least one of them.

    A video of at most `options.length` frames is one window of all frames, in order. The
    "uniform" schedule shifts the windows with `timestep`; "static" ignores it.
    """
    length = options.length
    if frames <= length:
        return [tuple(range(frames))]
    step = length - options.overlap
    shift = _ordered_halving(int(round(float(timestep)))) if options.schedule == "uniform" else 0.0
    windows: dict[Window, None] = {}  # ordered and without repeats
    spacing = 1
    while spacing <= options.stride:
        for sequence in _sequences(frames, spacing, options.loop):
            count = len(sequence)
            if count < length:  # too few frames this far apart for a whole window
                continue
            for start in _starts(count, length, step, int(shift * step), options.loop):
                windows[tuple(sequence[(start + k) % count] for k in range(length))] = None
        spacing *= 2
    return list(windows)


def window_weights(length: int, weighting: str) -> torch.Tensor:
    """(length,) weights of a window's frames: flat ones, or a pyramid 1, 2, ..., 2, 1."""
    if weighting == "flat":
        return torch.ones(length)
    if weighting == "pyramid":
        position = torch.arange(length, dtype=torch.float32)
        return torch.minimum(position + 1, length - position)
    raise InputError("weighting", f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")


def blend_weights(frames: int, windows: list[Window], weighting: str) -> torch.Tensor:
    """(windows, window length) float32: each window's share of each of its frames' predictions
    (row i, column k: frame windows[i][k]); every frame's shares sum to one.

    Only the frames a window holds get a share, so this grows with the frames, never with their
    square (a dense (windows, frames) table was 10 GB at 100,000 frames).
    """
    shares = torch.stack([window_weights(len(window), weighting) for window in windows])
    index = torch.tensor(windows)  # (windows, length) frame numbers
    totals = torch.zeros(frames).index_add_(0, index.flatten(), shares.flatten())  # small integers: exact
    return shares / totals[index]


def windowed_predictor(predict: Predictor, options: ContextOptions, share=None) -> Predictor:
    """A predictor that runs `predict` window by window and blends the windows' predictions.

    `predict` sees (batch, channels, window, h, w) latents, so a classifier-free guidance pair
    stays batched inside each call. With one window holding the whole video this is `predict`
    itself, bit for bit. `share` (a model.distributed WindowShare) runs only this rank's windows
    and adds every rank's into the blend in the same window order, so the blend is the same.
    """

    def predict_in_windows(latents: torch.Tensor, timestep: torch.Tensor, frames=None, step=None) -> torch.Tensor:
        video_frames, frames = frames, latents.shape[2]  # `frames` given: the video's indices (see loop.py)
        windows = context_windows(frames, options, timestep)
        if len(windows) == 1:
            return call_predictor(predict, latents, timestep, video_frames, step)
        weights = blend_weights(frames, windows, options.weighting).to(latents.device)
        blended = torch.zeros_like(latents, dtype=torch.float32)  # (batch, channels, frames, h, w)
        mine = range(len(windows)) if share is None else share.windows_of_this_rank(len(windows))
        contributions = {}  # window number -> its weighted prediction, when shared among ranks
        for number in mine:
            window, weight = windows[number], weights[number]
            index = torch.tensor(window, device=latents.device)
            window = window if video_frames is None else tuple(video_frames[i] for i in window)
            # (batch, channels, window, h, w)
            noise = call_predictor(predict, latents.index_select(2, index), timestep, window, step)
            contribution = noise.float() * weight.view(1, 1, -1, 1, 1)
            if share is None:
                blended.index_add_(2, index, contribution)
            else:
                contributions[number] = contribution
        if share is not None:  # every rank's windows, added in window order as above
            share.blend(blended, windows, contributions)
        return blended.to(latents.dtype)

    predict_in_windows.takes_position = getattr(predict, "takes_position", False)
    return predict_in_windows


def freenoise(noise: torch.Tensor, length: int, overlap: int, generator: torch.Generator) -> torch.Tensor:
    """FreeNoise's noise rescheduling: (batch, channels, frames, h, w) -> the same shape.

    The first `length` frames keep their noise. Each later window, `length - overlap` frames on,
    gives its new frames the noise of the frames it left behind, shuffled; so every window starting
    at a multiple of `length - overlap` holds a permutation of the first window's noise, and the
    whole video shares one noise "content" while its order varies (arXiv:2310.15169). Windows
    starting elsewhere (the uniform schedule's shifted ones, a last window pinned to the end, a
    loop's wrapping one) may hold some noise twice: the static schedule lines up best. The
    shuffles are drawn from `generator`.
    """
    frames = noise.shape[2]
    step = length - overlap
    noise = noise.clone()
    # The window starting at `start - length + step` adds frames [start, start + step) and leaves
    # behind [start - length, start - length + step).
    for start in range(length, frames, step):
        count = min(step, frames - start)
        order = torch.randperm(step, generator=generator)[:count]
        noise[:, :, start:start + count] = noise[:, :, start - length + order]
    return noise
