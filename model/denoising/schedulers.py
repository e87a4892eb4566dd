"""Sampler names users pick, mapped onto diffusers schedulers built from the model's config."""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from ..choices import DEFAULT_SCHEDULER, PREDICTION_TYPES, TIMESTEP_SPACINGS
from ..errors import InputError

# name -> (scheduler class, config overrides, one-line description)
SCHEDULERS = {
    "euler_a": (EulerAncestralDiscreteScheduler, {}, "Euler ancestral: the release's default"),
    "euler": (EulerDiscreteScheduler, {}, "Euler, deterministic"),
    "ddim": (DDIMScheduler, {}, "DDIM, deterministic"),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, "DPM++ 2M"),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        "DPM++ 2M with Karras sigmas",
    ),
    "unipc": (UniPCMultistepScheduler, {}, "UniPC multistep"),
    "lcm": (LCMScheduler, {}, "LCM: for LCM-distilled weights or LoRAs, 4-8 steps, guidance ~1-2"),
}
# Options every scheduler above takes (diffusers config keys): the values users may pick are
# choices.TIMESTEP_SPACINGS and choices.PREDICTION_TYPES.


@dataclass(frozen=True)
class SchedulerOptions:
    """A scheduler with options that override the model folder's scheduler config (None keeps it).

    - `name`: one of SCHEDULERS.
    - `timestep_spacing`: how the steps spread over the 1000 training timesteps: "leading" (the
      release's config), "trailing" (ends on pure noise: better with few steps and zero-SNR models)
      or "linspace".
    - `prediction_type`: what the UNet predicts: "epsilon" (the release and SDXL base) or
      "v_prediction" (for SDXL fine-tunes trained that way, with the temporal layers).
    - `zero_terminal_snr`: rescale the noise schedule so its last step is pure noise, as models
      trained with zero terminal SNR expect (goes with v_prediction and "trailing").
    Checked when made: a bad value raises InputError naming the field.
    """

    name: str = DEFAULT_SCHEDULER
    timestep_spacing: str | None = None
    prediction_type: str | None = None
    zero_terminal_snr: bool = False

    def __post_init__(self):
        if self.name not in SCHEDULERS:
            raise InputError("scheduler", f"unknown scheduler {self.name!r}; choose one of {', '.join(SCHEDULERS)}")
        for field, allowed in (("timestep_spacing", TIMESTEP_SPACINGS), ("prediction_type", PREDICTION_TYPES)):
            value = getattr(self, field)
            if value is not None and value not in allowed:
                raise InputError(field, f"must be one of {', '.join(allowed)} (or None: the model's), got {value!r}")
        if not isinstance(self.zero_terminal_snr, bool):
            raise InputError("zero_terminal_snr", f"must be True or False, got {self.zero_terminal_snr!r}")

    def overrides(self) -> dict:
        """The diffusers config entries these options set."""
        chosen = {"timestep_spacing": self.timestep_spacing, "prediction_type": self.prediction_type}
        overrides = {key: value for key, value in chosen.items() if value is not None}
        if self.zero_terminal_snr:
            overrides["rescale_betas_zero_snr"] = True
        return overrides


def scheduler_options(scheduler: str | SchedulerOptions) -> SchedulerOptions:
    """A scheduler name, or options already made, as SchedulerOptions (InputError if neither)."""
    if isinstance(scheduler, SchedulerOptions):
        return scheduler
    if isinstance(scheduler, str):
        return SchedulerOptions(scheduler)
    raise InputError("scheduler", f"must be a scheduler name or SchedulerOptions(...), got {scheduler!r}")


def make_scheduler(scheduler: str | SchedulerOptions, config: dict):
    """A fresh scheduler (they hold per-run state) from the model folder's scheduler config, with
    the options of `scheduler` (a name or SchedulerOptions) applied."""
    options = scheduler_options(scheduler)
    cls, defaults, _ = SCHEDULERS[options.name]
    return cls.from_config(config, **{**defaults, **options.overrides()})
