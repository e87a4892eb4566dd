"""Where video-to-video starts: diffusers' image-to-image convention.

Of `steps` steps, the last int(steps * strength) run (strength 1: all of them, from the input
noised to the first step's level; strength 0: none, the input comes back as it is). The input
latents get the noise of the first step that runs (`scheduler.add_noise`).
"""

from __future__ import annotations

import torch


def steps_run(steps: int, strength: float) -> int:
    return min(int(steps * strength), steps)


def start_from(scheduler, init: torch.Tensor, noise: torch.Tensor, steps: int, strength: float):
    """(noised latents (float32), the timesteps left to run); `scheduler.set_timesteps` done."""
    skipped = (steps - steps_run(steps, strength)) * scheduler.order
    timesteps = scheduler.timesteps[skipped:]
    if hasattr(scheduler, "set_begin_index"):  # so step() and add_noise() index from here
        scheduler.set_begin_index(skipped)
    init = init.float()
    if len(timesteps) == 0:
        return init.clone(), timesteps
    return scheduler.add_noise(init, noise.float().to(init.device), timesteps[:1]), timesteps
