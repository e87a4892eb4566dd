"""Directing nodes: Prompt Travel (keyframed prompts) and FreeInit options, for the pack's sampler.

The sampler's own `motion_scale` and `freeinit` inputs take the rest (nodes/sampling.py). The
native path's counterparts (per-frame core CONDITIONING, motion scale and FreeInit on a core
MODEL) are in nodes/native/travel.py.
"""

from __future__ import annotations

from . import host
from .types import CATEGORY, CONDITIONING, FREEINIT, MODEL
from .lora import applied
from ..model.errors import InputError
from ..model.travel.choices import FREEINIT_CUTOFF, FREEINIT_FILTERS, INTERPOLATIONS  # plain data, no torch

DEFAULT_KEYFRAMES = ("0: a tree in a meadow in spring, blossoms, hd, high quality\n"
                     "16: the same tree in autumn, orange leaves, hd, high quality\n"
                     "31: the same tree in winter, snow, hd, high quality")


def freeinit_inputs(iterations_subject: str) -> dict:
    """The FreeInit inputs the pack's FreeInit node and the native path's share (iterations, filter,
    cutoff); `iterations_subject` starts the iterations tooltip ("Times the video is sampled", ...)."""
    return {
        "iterations": ("INT", {"default": 3, "min": 1, "max": 10,
                               "tooltip": f"{iterations_subject}, each from the previous result's low frequencies: "
                                          "N times the sampling time. 1 is plain sampling."}),
        "filter": (list(FREEINIT_FILTERS), {"default": "butterworth",
                                            "tooltip": "The low-pass filter over frames, height and width: "
                                                       "butterworth (sharper, the paper's) or gaussian."}),
        "cutoff": ("FLOAT", {"default": FREEINIT_CUTOFF, "min": 0.01, "max": 1.0, "step": 0.01,
                             "tooltip": "Stop frequency as a fraction of the highest: lower keeps only the "
                                        "coarsest layout and motion of the previous result."}),
    }


def freeinit_options(iterations, filter, cutoff):
    """FreeInitOptions from the FreeInit inputs; a bad value's error names the node input, not the library's
    argument (freeinit, freeinit_filter, freeinit_cutoff)."""
    from ..model.travel.freeinit import FreeInitOptions

    try:
        return FreeInitOptions(iterations, filter, cutoff)
    except InputError as error:
        names = {"freeinit": "iterations", "freeinit_filter": "filter", "freeinit_cutoff": "cutoff"}
        raise InputError(names.get(error.name, error.name), error.problem) from None


class HotshotXLPromptTravel:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 8, "max": 8192, "step": 8}
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model whose two CLIP text encoders read the prompts."}),
                "keyframes": ("STRING", {"default": DEFAULT_KEYFRAMES, "multiline": True, "dynamicPrompts": False,
                                         "tooltip": "One `frame: prompt` line per keyframe, frames from 0 in "
                                                    "ascending order (or a JSON object {\"0\": \"...\"}). Each frame's "
                                                    "text blends between the keyframes around it; frames before the "
                                                    "first or after the last hold its prompt. Weights as in "
                                                    "CLIP Text Encode: (words:1.2); \\( \\) for literal "
                                                    "parentheses."}),
                "negative_prompt": ("STRING", {"default": "blurry", "multiline": True, "dynamicPrompts": True,
                                               "tooltip": "What the video should not show, for every frame."}),
                "interpolation": (list(INTERPOLATIONS), {"default": "linear",
                                                   "tooltip": "How the text blends between keyframes: linear, or "
                                                              "slerp (along the sphere, keeping the vectors' length)."}),
                "original_width": ("INT", {"default": 1920, **size, "tooltip": "SDXL size conditioning: the "
                                           "width of the source the model should imagine (the release uses 1920)."}),
                "original_height": ("INT", {"default": 1080, **size, "tooltip": "SDXL size conditioning: the "
                                            "height of the imagined source (the release uses 1080)."}),
                "target_width": ("INT", {"default": 512, **size, "tooltip": "SDXL size conditioning: the width "
                                         "the model should aim for (the release uses 512)."}),
                "target_height": ("INT", {"default": 512, **size, "tooltip": "SDXL size conditioning: the "
                                          "height the model should aim for (the release uses 512)."}),
            }
        }

    RETURN_TYPES = (CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Keyframed prompts, negative prompt and size conditioning for the Hotshot-XL Sampler.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Prompt travel: prompts by frame. Encodes each keyframe's prompt with both text encoders; the "
                   "sampler gives every frame its own blend of them (inside context windows too). One keyframe is "
                   "exactly Hotshot-XL Text Encode.")

    def encode(self, model, keyframes, negative_prompt, interpolation, original_width, original_height,
               target_width, target_height):
        from .sampling import _on_cpu

        sizes = {"original_width": original_width, "original_height": original_height,
                 "target_width": target_width, "target_height": target_height}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(name, f"must be a positive whole number, got {value!r}")
        for name, value in (("keyframes", keyframes), ("negative_prompt", negative_prompt)):
            if not isinstance(value, str):
                raise InputError(name, f"expected text, got {type(value).__name__}")
        from ..model.travel.keyframes import check_interpolation, prompt_keyframes

        parsed = prompt_keyframes(keyframes, "keyframes")  # InputError naming the line, before any work
        check_interpolation(interpolation)
        host.load(model.text)
        with applied(model, "text"):
            conditions = model.pipeline.encode_travel(parsed, negative_prompt, (original_width, original_height),
                                                      (target_width, target_height), interpolation, "keyframes")
        return (_on_cpu(conditions),)


class HotshotXLFreeInit:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **freeinit_inputs("Times the video is sampled"),
            }
        }

    RETURN_TYPES = (FREEINIT,)
    RETURN_NAMES = ("freeinit",)
    OUTPUT_TOOLTIPS = ("FreeInit options for the Hotshot-XL Sampler's freeinit input.",)
    FUNCTION = "options"
    CATEGORY = CATEGORY
    DESCRIPTION = ("FreeInit: more temporally consistent videos for N times the sampling. After each pass the "
                   "result is noised back and its low space-time frequencies start the next pass.")

    def options(self, iterations, filter, cutoff):
        return (freeinit_options(iterations, filter, cutoff),)
