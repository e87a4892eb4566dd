"""Directing the native path: per-frame core CONDITIONING (prompt travel) for core samplers, and the
motion scale and FreeInit on a MODEL from Apply Temporal Layers.

The conditioning is ComfyUI's own: each keyframe's prompt goes through the core CLIP's encode
(so `(word:1.2)` weights, CLIP LoRAs and clip skip act as in CLIP Text Encode), and the result has
one row per frame (batch = frames) in both the cross-attention states and `pooled_output`. Core
samplers keep such a cond per frame (it matches the latent batch, so nothing is repeated), and
core Context Windows (Manual, dim 0) give each window its frames' rows.
"""

from __future__ import annotations

import numbers

from ..types import CATEGORY
from ..travel import DEFAULT_KEYFRAMES, freeinit_inputs, freeinit_options
from ...model.errors import InputError
from ...model.travel.choices import INTERPOLATIONS  # plain data, no torch

MAX_FRAMES = 4096


def _frame_count(frames, latent) -> int:
    """The video's frame count: the latent's batch when one is connected, else `frames`."""
    if latent is not None:
        samples = latent.get("samples") if isinstance(latent, dict) else None
        if samples is None or getattr(samples, "ndim", 0) != 4:
            raise InputError("latent", "expected a LATENT whose batch is the video's frames (from Empty Latent "
                             "Image, VAE Encode, ...)")
        return int(samples.shape[0])
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or not 1 <= frames <= MAX_FRAMES:
        raise InputError("frames", f"must be a whole number from 1 to {MAX_FRAMES}, got {frames!r}")
    return int(frames)


def travel_conditioning(encoded: list[list], keyframe_frames: list[int], frames: int, interpolation: str) -> list:
    """Core CONDITIONING with one row per frame, from each keyframe's own core CONDITIONING
    (`encoded[k]`, a list of [cond (1, tokens, dim), {"pooled_output": (1, dim), ...}]; a CLIP with
    scheduled hooks gives several entries, the same for every keyframe, blended entry by entry)."""
    from ...model.travel.interpolate import blend, same_length

    out = []
    for entries in zip(*encoded):
        indices = range(frames)
        contexts = same_length([cond for cond, _ in entries])
        extras = dict(entries[0][1])
        pooled = [extra.get("pooled_output") for _, extra in entries]
        if all(p is not None for p in pooled):
            extras["pooled_output"] = blend(pooled, keyframe_frames, indices, interpolation)
        out.append([blend(contexts, keyframe_frames, indices, interpolation), extras])
    return out


class HotshotXLNativePromptTravel:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("CLIP", {"tooltip": "The CLIP from Load Checkpoint (or the native loader), after CLIP "
                                             "LoRAs or not: it encodes every keyframe's prompt as CLIP Text Encode "
                                             "does, (word:1.2) weights included."}),
                "keyframes": ("STRING", {"default": DEFAULT_KEYFRAMES, "multiline": True, "dynamicPrompts": False,
                                         "tooltip": "One `frame: prompt` line per keyframe, frames from 0 in "
                                                    "ascending order (or a JSON object {\"0\": \"...\"}). Each frame "
                                                    "gets its own blend of the keyframes around it; frames before "
                                                    "the first or after the last hold its prompt."}),
                "frames": ("INT", {"default": 32, "min": 1, "max": MAX_FRAMES,
                                   "tooltip": "The video's frame count: the batch size of the latent KSampler "
                                              "samples. Not used when `latent` is connected."}),
                "interpolation": (list(INTERPOLATIONS), {"default": "linear",
                                                         "tooltip": "How the text blends between keyframes: linear, "
                                                                    "or slerp (along the sphere, keeping the "
                                                                    "vectors' length)."}),
            },
            "optional": {
                "latent": ("LATENT", {"tooltip": "Optional: the latent the sampler will denoise; its batch size "
                                                 "is the frame count (instead of `frames`)."}),
            },
        }

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Core CONDITIONING with one row per frame (batch = frames) for KSampler's positive input on "
                       "a MODEL from Hotshot-XL Apply Temporal Layers; core Context Windows slice it per window.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Prompt travel for core samplers: prompts by frame. Encodes each keyframe's prompt with the core "
                   "CLIP and gives every frame its own blend of them, in the cross-attention states and the pooled "
                   "embedding alike. One keyframe is exactly CLIP Text Encode's result (repeated per frame).")

    def encode(self, clip, keyframes, frames, interpolation, latent=None):
        from ...model.travel.keyframes import check_in_range, check_interpolation, prompt_keyframes

        if clip is None:
            raise InputError("clip", "no CLIP: the checkpoint holds no text encoders; load one with a CLIP loader")
        if not isinstance(keyframes, str):
            raise InputError("keyframes", f"expected text, got {type(keyframes).__name__}")
        parsed = prompt_keyframes(keyframes, "keyframes")  # InputError naming the line, before any work
        check_interpolation(interpolation)
        count = _frame_count(frames, latent)
        check_in_range(parsed, count, "keyframes")
        encoded = [clip.encode_from_tokens_scheduled(clip.tokenize(keyframe.value)) for keyframe in parsed]
        return (travel_conditioning(encoded, [keyframe.frame for keyframe in parsed], count, interpolation),)


class HotshotXLNativeMotionScale:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A MODEL from Hotshot-XL Apply Temporal Layers (after core patches "
                                               "and LoRAs or not)."}),
                "motion_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                           "tooltip": "Motion strength: a scale on the temporal layers' update. 0: "
                                                      "the SDXL image model frame by frame (no motion); 1: "
                                                      "Hotshot-XL as released; above 1: stronger motion."}),
            },
            "optional": {
                "keyframes": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": False,
                                         "tooltip": "Optional: the scale by frame, one `frame: scale` line per "
                                                    "keyframe (e.g. `0: 1.0` and `31: 1.3`), blended linearly; "
                                                    "replaces motion_scale when given. Inside context windows each "
                                                    "window takes its own frames' scales."}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The same video MODEL with its temporal layers' update scaled; the input MODEL is unchanged.",)
    FUNCTION = "scale"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Motion strength on the native MODEL: scales the temporal layers' update. 0 samples each frame "
                   "with the SDXL image model alone, 1 is Hotshot-XL as released (bit for bit), above 1 stronger "
                   "motion. Optionally keyframed by frame.")

    def scale(self, model, motion_scale, keyframes=""):
        from ...model.travel.motion import motion_scale as parse_scale

        if not isinstance(keyframes, str):
            raise InputError("keyframes", f"expected text, got {type(keyframes).__name__}")
        if keyframes.strip():
            scale = parse_scale(keyframes.strip(), None, "keyframes")
        else:
            scale = parse_scale(motion_scale, None, "motion_scale")
        from . import patch  # imports ComfyUI: after the inputs are checked

        return (patch.with_motion_scale(model, scale),)


class HotshotXLNativeFreeInit:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A MODEL from Hotshot-XL Apply Temporal Layers (after core patches, "
                                               "LoRAs and context windows or not)."}),
                **freeinit_inputs("Times the sampler runs"),
            }
        }

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The same video MODEL, sampled N times by core KSampler / SamplerCustomAdvanced; the input "
                       "MODEL is unchanged.",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    DESCRIPTION = ("FreeInit for core samplers: more temporally consistent videos for N times the sampling. After "
                   "each pass the result is noised back to the first sigma and its low space-time frequencies start "
                   "the next pass, with fresh noise for the high ones.")

    def apply(self, model, iterations, filter, cutoff):
        options = freeinit_options(iterations, filter, cutoff)
        from . import patch  # imports ComfyUI: after the inputs are checked

        return (patch.with_freeinit(model, options),)
