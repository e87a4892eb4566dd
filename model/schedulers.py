"""Sampler names users pick, mapped onto diffusers schedulers built from the model's config."""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from .errors import InputError

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
DEFAULT_SCHEDULER = "euler_a"


def make_scheduler(name: str, config: dict, **overrides):
    """A fresh scheduler (they hold per-run state) from the model folder's scheduler config."""
    if name not in SCHEDULERS:
        raise InputError("scheduler", f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    cls, defaults, _ = SCHEDULERS[name]
    return cls.from_config(config, **{**defaults, **overrides})
