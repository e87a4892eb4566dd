"""The denoising loop: classifier-free guidance around the UNet, stepped by a diffusers scheduler.

Latents stay in float32 whatever the UNet's dtype (the scheduler's arithmetic is cheap and loses
precision in half types); the UNet gets them cast to its own dtype. Randomness comes from one
CPU generator, so a seed gives the same video on any device.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..text.encoders import Conditioning


def micro_conditioning(original_size, target_size, crop_top_left=(0, 0)) -> torch.Tensor:
    """SDXL's time ids, (1, 6): original size, crop corner, target size, in the order given.

    The original pipeline concatenates the tuples as passed; its inference script passes sizes
    width first, which is what the released model saw.
    """
    return torch.tensor([[*original_size, *crop_top_left, *target_size]], dtype=torch.float32)


@dataclass
class Conditions:
    """Everything the UNet is conditioned on: both prompts and SDXL's size conditioning."""

    positive: Conditioning
    negative: Conditioning
    time_ids: torch.Tensor  # (1, 6)
    controls: tuple = ()  # ControlNets applied to these prompts (controlnet.Control), for the nodes

    def batch(self, device, dtype, cfg: bool):
        """(context, pooled, time_ids) for one UNet call; with CFG, negative first then positive."""
        parts = [self.negative, self.positive] if cfg else [self.positive]
        context = torch.cat([p.context for p in parts]).to(device, dtype)
        pooled = torch.cat([p.pooled for p in parts]).to(device, dtype)
        time_ids = self.time_ids.repeat(len(parts), 1).to(device)
        return context, pooled, time_ids


# A noise predictor: (latents (1, 4, frames, h, w) scaled for the model, timestep) -> noise.
# One that sets `takes_position = True` is also given, as keywords, `frames` (the video's frame
# indices along the latents' frame axis; None: all, in order) and `step` ((index, count) of the
# step); see call_predictor. Plain two-argument predictors keep working.
Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def call_predictor(predict: Predictor, latents: torch.Tensor, timestep, frames=None, step=None) -> torch.Tensor:
    """`predict(latents, timestep)`, with `frames` and `step` for predictors that take them."""
    if getattr(predict, "takes_position", False):
        return predict(latents, timestep, frames=frames, step=step)
    return predict(latents, timestep)


def guided_predictor(unet, conditions: Conditions, guidance: float, controls=(), motion=None,
                     cache_interval: int = 1) -> Predictor:
    """Classifier-free guidance (as the original: on when guidance > 1), both halves in one batch.

    `controls`: ControlNets (controlnet.Control) whose residuals go into both halves of every UNet
    call, each with the control frames of the call's own frames. A positive travel.PromptTravel
    gives each frame its own text (rows per image); `motion` (travel.MotionScale, None: 1) scales
    the temporal layers' update. `cache_interval` N > 1: the whole UNet runs every N steps, only its
    outermost blocks in between (step_cache.py; not with a motion scale, see Settings.check).
    """
    cfg = guidance > 1.0
    travel = not isinstance(conditions.positive, Conditioning)  # prompt travel: text per frame
    if travel:
        from ..travel.prompts import frame_batch

        conditions = Conditions(conditions.positive.to(unet.device), conditions.negative, conditions.time_ids)
    fixed = None if travel else conditions.batch(unet.device, unet.dtype, cfg)
    step_cache = None
    if cache_interval != 1:
        from .step_cache import StepCache

        step_cache = StepCache(unet, cache_interval)

    def predict(latents: torch.Tensor, timestep: torch.Tensor, frames=None, step=None) -> torch.Tensor:
        indices = range(latents.shape[2]) if frames is None else frames
        context, pooled, time_ids = fixed or frame_batch(conditions, indices, unet.device, unet.dtype, cfg)
        extra = {} if motion is None else {"motion_scale": motion.for_frames(indices)}
        model_input = latents.to(unet.device, unet.dtype)
        if cfg:
            model_input = torch.cat([model_input, model_input])
        residuals = {}
        if controls:
            from ..controlnet.apply import control_residuals

            residuals = control_residuals(controls, model_input, timestep, context, pooled, time_ids, frames, step)
        if step_cache is None:
            noise = unet(model_input, timestep, context, pooled, time_ids, **residuals, **extra).float()
        else:
            noise = step_cache(model_input, timestep, context, pooled, time_ids, frames, step, **residuals).float()
        if cfg:
            uncond, cond = noise.chunk(2)
            noise = uncond + guidance * (cond - uncond)
        return noise.to(latents.device)

    predict.takes_position = True
    predict.step_cache = step_cache  # for tests and benchmarks: its call counts
    return predict


# Called after each step with (step index, number of steps, current latents); may raise to stop.
StepCallback = Callable[[int, int, torch.Tensor], None]


@torch.no_grad()
def denoise(predict: Predictor, scheduler, noise: torch.Tensor, steps: int, generator: torch.Generator,
            callback: StepCallback | None = None, init: torch.Tensor | None = None,
            strength: float = 1.0) -> torch.Tensor:
    """Run `steps` scheduler steps from pure noise; returns the final latents (float32).

    With `init` latents (video-to-video), only the last steps run, from `init` noised to the step
    `strength` selects (see video2video/strength.py).
    """
    scheduler.set_timesteps(steps, device=noise.device)
    if init is None:
        latents = noise.float() * scheduler.init_noise_sigma
        timesteps = scheduler.timesteps
    else:
        from ..video2video.strength import start_from

        latents, timesteps = start_from(scheduler, init, noise, steps, strength)
    # Deterministic schedulers (UniPC, ...) take no generator; stochastic ones draw from ours.
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for index, timestep in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, timestep)
        noise_pred = call_predictor(predict, model_input, timestep, step=(index, len(timesteps)))
        latents = scheduler.step(noise_pred, timestep, latents, return_dict=False, **extra)[0]
        if callback is not None:
            callback(index, len(timesteps), latents)
    return latents


def initial_noise(seed: int, frames: int, height: int, width: int, channels: int = 4,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Generator]:
    """The original's draw: one CPU generator seeded once, noise (1, 4, frames, h/8, w/8) first.

    The same generator then feeds the ancestral samplers' per-step noise, as in the original.
    """
    generator = generator or torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((1, channels, frames, height // 8, width // 8), generator=generator, dtype=torch.float32)
    return noise, generator
