"""Progress and animated previews while the Hotshot-XL Sampler runs inside ComfyUI.

The sampler's predictor is observed (never changed): after each UNet call, one per window of a long
video and per step, progress moves on (a fraction of a step per window) and every frame of that
window is shown through ComfyUI's preview channel, one preview image per frame, in order, so the
node's preview plays the video as it forms. The frames shown are the call's estimate of the clean
latents (x0, from the predicted noise and the scheduler's alphas), decoded by ComfyUI's previewer:
TAESD-XL when `--preview-method taesd` and `models/vae_approx/` has it, else the latent-to-RGB
projection; none with previews off. ComfyUI scales each image to its `--preview-size`.
"""

from __future__ import annotations

import math

PREVIEW_FORMAT = "JPEG"  # what latent_preview sends


class SamplingPreview:
    """`wrap(predict)` gives the predictor to sample with; `step_done` is the per-step callback."""

    def __init__(self, handle, steps: int, frames: int, context, scheduler):
        import comfy.utils
        import latent_preview

        self.steps = steps
        self.frames = frames
        self.context = context  # model.denoising.context.ContextOptions, or None for one pass over all frames
        self.bar = comfy.utils.ProgressBar(steps)
        self.previewer = latent_preview.get_previewer(handle.load_device, handle.patcher.model.latent_format)
        self.alphas = scheduler.alphas_cumprod.float()
        self.prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
        self._step = None
        self._shown: set[int] = set()
        self._windows_done = 0

    def wrap(self, predict):
        from ..model.denoising.loop import call_predictor

        def predict_and_show(latents, timestep, frames=None, step=None):
            prediction = call_predictor(predict, latents, timestep, frames, step)
            self._window_done(latents, prediction, timestep, frames, step)
            return prediction

        predict_and_show.takes_position = True
        return predict_and_show

    def step_done(self, index: int, total: int, latents) -> None:
        self.bar.update_absolute(index + 1, total)  # also where Cancel stops the run

    # --------------------------------------------------------------------------------------------
    def _windows_per_step(self, timestep) -> int:
        if self.context is None:
            return 1
        from ..model.denoising.context import context_windows

        return max(1, len(context_windows(self.frames, self.context, timestep)))

    def _window_done(self, latents, prediction, timestep, frames, step) -> None:
        index, total = step if step is not None else (0, self.steps)
        if index != self._step:
            self._step, self._shown, self._windows_done = index, set(), 0
        self._windows_done += 1
        count = self._windows_per_step(timestep)
        done = index + min(self._windows_done, count) / count
        frames = list(frames) if frames is not None else list(range(latents.shape[2]))
        if self.previewer is None:
            self.bar.update_absolute(done, total)
            return
        clean = self._clean_estimate(latents, prediction, timestep)  # (batch, channels, window, h, w)
        new = [(position, frame) for position, frame in enumerate(frames) if frame not in self._shown]
        if not new:
            self.bar.update_absolute(done, total)
        for position, frame in new:
            image = self.previewer.decode_latent_to_preview_image(PREVIEW_FORMAT, clean[:1, :, position])
            self.bar.update_absolute(done, total, image)
            self._shown.add(frame)

    def _clean_estimate(self, latents, prediction, timestep):
        """x0 from the model input (x_t of a variance-preserving process: what every scheduler here
        feeds the UNet) and the predicted noise (or v)."""
        t = float(timestep.flatten()[0]) if hasattr(timestep, "flatten") else float(timestep)
        alpha = float(self.alphas[min(max(round(t), 0), len(self.alphas) - 1)])
        x_t, out = latents.float(), prediction.float()
        if self.prediction_type == "v_prediction":
            return math.sqrt(alpha) * x_t - math.sqrt(1 - alpha) * out
        return (x_t - math.sqrt(1 - alpha) * out) / math.sqrt(alpha)


def sampling_hooks(model, settings):
    """(predictor watcher, step callback) for `model.pipeline.sample(..., watch=)` inside ComfyUI;
    (None, None) outside, where the pipeline samples on its own."""
    from . import host

    if not host.in_comfyui():
        return None, None
    from ..model.denoising.context import context_for
    from ..model.denoising.schedulers import make_scheduler
    from ..model.travel.freeinit import freeinit_options

    pipeline = model.pipeline
    context = context_for(settings.frames, settings.context, pipeline.unet.config.temporal_max_frames)
    steps = settings.steps * freeinit_options(settings.freeinit).iterations  # FreeInit samples N times
    preview = SamplingPreview(model.unet, steps, settings.frames, context,
                              make_scheduler(settings.scheduler, pipeline.scheduler_config))
    return preview.wrap, preview.step_done
