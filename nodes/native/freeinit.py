"""FreeInit on the native path: a SAMPLER_SAMPLE wrapper on the cloned MODEL that runs core sampling
N times (model/travel/freeinit.py says what FreeInit is).

The wrapper sits around the sampler's own call, inside KSampler / SamplerCustomAdvanced: the model is
loaded, the conds are processed, core context windows act inside each pass. After a pass its result
is noised back to the first sigma with the first pass's noise (x0 + sigma * noise, the forward
process in ComfyUI's sigma terms), the low space-time frequencies of that (over frames, height and
width; the frames are the batch) are kept and fresh noise, as the sampler would start from it, gives
the high ones. No ComfyUI import: it only calls what the sampler hands it.
"""

from __future__ import annotations

import logging

import torch

from ...model.travel.freeinit import FreeInitOptions, cost_line, low_pass, mix_frequencies

WRAPPER_KEY = "hotshot_xl_freeinit"


def _over_frames(latents: torch.Tensor) -> torch.Tensor:
    """(frames, channels, h, w) -> (channels, frames, h, w): frames, height, width as the last axes."""
    return latents.movedim(0, 1)


def freeinit_start(previous: torch.Tensor, first_noise: torch.Tensor, fresh_noise: torch.Tensor,
                   latent_image: torch.Tensor, sigma: float, scale: torch.Tensor,
                   options: FreeInitOptions) -> torch.Tensor:
    """The noise to hand the sampler for the next pass, all (frames, channels, h, w): the sampler starts
    from latent_image + scale * noise, and that start is to hold the low frequencies of the previous
    result noised back (previous + sigma * first_noise) and the high ones of the fresh noise's start."""
    gains = low_pass(tuple(previous.shape[i] for i in (0, 2, 3)), options)
    noised = _over_frames(previous.float().cpu() + sigma * first_noise.float().cpu())
    fresh = _over_frames(latent_image.float().cpu() + scale.float().cpu() * fresh_noise.float().cpu())
    start = mix_frequencies(noised, fresh, gains).movedim(1, 0)
    return (start - latent_image.float().cpu()) / scale.float().cpu()


def sample_with_freeinit(executor, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask=None,
                         disable_pbar=False, *args, options: FreeInitOptions, **kwargs):
    """SAMPLER_SAMPLE wrapper: the sampler's call `options.iterations` times (see the module's docstring)."""
    samples = executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar,
                       *args, **kwargs)
    if options.iterations == 1:
        return samples
    logging.getLogger(__name__).info(cost_line(options, len(sigmas) - 1))
    model_sampling = guider.inner_model.model_sampling
    max_denoise = executor.class_obj.max_denoise(guider, sigmas)
    scale = model_sampling.noise_scaling(sigmas[0], torch.ones_like(noise[:1]), torch.zeros_like(noise[:1]),
                                         max_denoise)  # the sampler's start: latent_image + scale * noise
    latent = latent_image if latent_image is not None else torch.zeros_like(noise)
    seed = int(extra_args.get("seed") or 0)
    for iteration in range(1, options.iterations):
        generator = torch.Generator().manual_seed(seed + iteration)  # on the CPU: a seed is the same on any device
        fresh = torch.randn(noise.shape, generator=generator, dtype=torch.float32)
        start = freeinit_start(samples, noise, fresh, latent, float(sigmas[0]), scale, options)
        samples = executor(guider, sigmas, extra_args, callback, start.to(noise), latent_image, denoise_mask,
                           disable_pbar, *args, **kwargs)
    return samples
