"""FreeInit (Wu et al., arXiv:2312.07537): better temporal consistency for N times the sampling.

The first iteration is plain sampling. Each later one noises the previous result back to the
last training timestep (with the first iteration's noise, as the forward process would) and keeps
only its low space-time frequencies: a low-pass filter over the 3-D FFT of (frames, height,
width). Fresh noise gives the high frequencies, and sampling starts again from the mix. The video's
layout and motion, which live in the low frequencies, so carry over from one iteration to the next.

With video-to-video, sampling starts from the input video noised to the level its strength picks
(video2video/strength.py), not from pure noise. There each later iteration re-noises a video to
that same level: the previous result's low frequencies with the first iteration's noise, the input
video's high frequencies with fresh noise. (Noising is linear, so that is the input's level of
noise on one mixed video, `mix(previous, input)`, with one mixed noise, `mix(first, fresh)`.) So the
layout and motion carry over from the previous result as for text-to-video, at the strength's
level rather than the last training timestep's, and the details come from the input every time.
At strength 1 this is text-to-video's FreeInit with the input's high frequencies in the start.

The filtering runs on the CPU in float32, like the initial noise, so a seed gives the same video
on any device.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import InputError
from .choices import FREEINIT_CUTOFF, FREEINIT_FILTERS

FILTERS = FREEINIT_FILTERS
# Input names of the fields, for errors (the CLI says them as --freeinit, --freeinit-filter, ...).
NAMES = {"iterations": "freeinit", "filter": "freeinit_filter", "cutoff": "freeinit_cutoff",
         "order": "freeinit_order"}


@dataclass(frozen=True)
class FreeInitOptions:
    """`iterations`: times the video is sampled (1: plain sampling); `filter`: the low-pass's shape;
    `cutoff`: its stop frequency, a fraction of the highest (Nyquist) frequency along each axis,
    in (0, 1]; `order`: the Butterworth filter's steepness. Defaults are the paper's."""

    iterations: int = 1
    filter: str = "butterworth"
    cutoff: float = FREEINIT_CUTOFF
    order: int = 4

    def __post_init__(self):
        for field in ("iterations", "order"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                hint = " (1: plain sampling)" if field == "iterations" else ""
                raise InputError(NAMES[field], f"must be a whole number of at least 1{hint}, got {value!r}")
        if self.filter not in FILTERS:
            raise InputError(NAMES["filter"], f"must be one of {', '.join(FILTERS)}, got {self.filter!r}")
        cutoff = self.cutoff
        if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real) or not math.isfinite(cutoff) \
                or not 0 < cutoff <= 1:
            raise InputError(NAMES["cutoff"], f"must be a number in (0, 1] (a fraction of the highest frequency), "
                             f"got {cutoff!r}")


def freeinit_options(value) -> FreeInitOptions:
    """FreeInitOptions from options or an iteration count; InputError naming `freeinit` if bad."""
    if isinstance(value, FreeInitOptions):
        return value
    return FreeInitOptions(iterations=value)


def cost_line(options: FreeInitOptions, steps: int) -> str:
    return (f"FreeInit: {options.iterations} iterations, so the video is sampled {options.iterations} times "
            f"({options.iterations * steps} steps instead of {steps}; about {options.iterations}x the time)")


def low_pass(shape: tuple[int, int, int], options: FreeInitOptions) -> torch.Tensor:
    """(frames, height, width) gains in torch.fft.fftn's layout (zero frequency first): 1 at zero
    frequency, falling off with the distance from it, measured in units of each axis's Nyquist
    frequency (so the cutoff means the same along frames, rows and columns)."""
    axes = [2 * torch.fft.fftfreq(n, dtype=torch.float64) for n in shape]  # -1 .. 1 (Nyquist)
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    distance = (t ** 2 + h ** 2 + w ** 2) / options.cutoff ** 2  # squared, in cutoffs
    if options.filter == "gaussian":
        gains = torch.exp(-distance / 2)
    else:
        gains = 1 / (1 + distance ** options.order)
    return gains.float()


def mix_frequencies(low: torch.Tensor, high: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """`low`'s low frequencies and `high`'s high ones over (frames, height, width), the last three axes."""
    dims = (-3, -2, -1)
    mixed = torch.fft.fftn(low, dim=dims) * gains + torch.fft.fftn(high, dim=dims) * (1 - gains)
    return torch.fft.ifftn(mixed, dim=dims).real.to(low.dtype)


def noised(latents: torch.Tensor, noise: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """The forward process at ᾱ: sqrt(ᾱ) x0 + sqrt(1 - ᾱ) noise, in unit-variance (noise) terms."""
    return latents * math.sqrt(alpha_bar) + noise * math.sqrt(1 - alpha_bar)


def sample_with_freeinit(sample: Callable, noise: torch.Tensor, options: FreeInitOptions, alpha_bar: float,
                         fresh_noise: Callable[[], torch.Tensor], callback=None,
                         init: torch.Tensor | None = None) -> torch.Tensor:
    """`sample(noise, callback)` run `options.iterations` times (see the module's docstring).

    `noise`: the first iteration's (CPU, float32); `alpha_bar`: ᾱ at the last training timestep;
    `fresh_noise()`: a new draw for each later iteration's high frequencies. `callback(step, total,
    latents)` counts the steps of all iterations together.

    `init` (CPU, float32): video-to-video's input latents; then `sample(noise, callback, init)` is
    called, noising its `init` with its `noise` to the strength's level: the first time the input
    and `noise`, later the mixes the module's docstring describes.
    """
    iterations = options.iterations
    gains = low_pass(tuple(noise.shape[-3:]), options) if iterations > 1 else None
    start, video, latents = noise, init, None
    for iteration in range(iterations):
        def step(index, total, current, _done=iteration):
            if callback is not None:
                callback(_done * total + index, iterations * total, current)

        if iteration and init is None:
            previous = noised(latents.float().cpu(), noise, alpha_bar)
            start = mix_frequencies(previous, fresh_noise(), gains)
        elif iteration:
            start = mix_frequencies(noise, fresh_noise(), gains)
            video = mix_frequencies(latents.float().cpu(), init, gains)
        callback_ = step if callback is not None else None
        latents = sample(start, callback_) if init is None else sample(start, callback_, video)
    return latents
