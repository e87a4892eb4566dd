"""The training objective of the original fine_tune.py: predict the noise added by DDPM.

Latents (already scaled by the VAE's scaling factor) are noised with the model's own noise schedule
(its scheduler config read as a DDPMScheduler), at a uniformly drawn training timestep per clip; the
UNet predicts the noise (or the velocity, for v-prediction configs) and the loss is the mean squared
error. Options as in the original: an offset noise (a per-clip, per-channel constant added to the
noise, https://www.crosslabs.org/blog/diffusion-with-offset-noise) and Min-SNR loss weighting
(arXiv 2303.09556) with gamma `snr_gamma`. The original's `--snr_gamma` was a switch that
multiplied by True (gamma 1); here it is the number itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


class Objective:
    def __init__(self, scheduler_config: dict, noise_offset: float = 0.0, snr_gamma: float | None = None):
        from diffusers import DDPMScheduler

        keep = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
        self.scheduler = DDPMScheduler.from_config(keep)
        self.prediction_type = self.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise InputError("scheduler config", f"prediction_type {self.prediction_type!r} cannot be trained; "
                             "expected epsilon or v_prediction")
        self.timesteps = self.scheduler.config.num_train_timesteps
        self.noise_offset = noise_offset
        self.snr_gamma = snr_gamma
        alphas = self.scheduler.alphas_cumprod.double()
        self.snr = (alphas / (1 - alphas)).float()  # (timesteps,): signal-to-noise ratio of each timestep

    def add_noise(self, latents, noise, timesteps):
        return self.scheduler.add_noise(latents, noise, timesteps)

    def draw(self, latents: torch.Tensor, generators: list[torch.Generator]):
        """Noise and timesteps for each clip, each from its own generator (so a clip's draw does not
        depend on which rank or batch it is in). latents (batch, 4, frames, h, w)."""
        noise, timesteps = [], []
        for latent, generator in zip(latents, generators):
            n = torch.randn(latent.shape, generator=generator)
            if self.noise_offset:
                n = n + self.noise_offset * torch.randn((latent.shape[0], 1, 1, 1), generator=generator)
            noise.append(n)
            timesteps.append(torch.randint(0, self.timesteps, (1,), generator=generator))
        return torch.stack(noise).to(latents.device), torch.cat(timesteps).to(latents.device)

    def target(self, latents, noise, timesteps):
        if self.prediction_type == "epsilon":
            return noise
        return self.scheduler.get_velocity(latents, noise, timesteps)

    def loss(self, prediction, latents, noise, timesteps) -> torch.Tensor:
        """Mean over the batch of each clip's MSE (Min-SNR weighted with snr_gamma)."""
        target = self.target(latents, noise, timesteps)
        if self.snr_gamma is None:
            return F.mse_loss(prediction.float(), target.float())
        per_clip = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
        snr = self.snr.to(timesteps.device)[timesteps]
        weight = torch.clamp(snr, max=self.snr_gamma)
        weight = weight / snr if self.prediction_type == "epsilon" else weight / (snr + 1)
        return (per_clip * weight).mean()
