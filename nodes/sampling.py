"""Text encoding and sampling nodes, and the LATENT conversion both ways.

A ComfyUI LATENT holds raw SDXL VAE latents; Hotshot-XL samples them times the VAE's scaling factor
(0.13025). Video latents travel as a batch of frames, (frames, 4, height/8, width/8), so ComfyUI's own
VAE Decode turns them into an IMAGE batch of frames.
"""

from __future__ import annotations

from . import host
from .latents import from_comfy_latent, to_comfy_latent
from .lora import applied
from .types import CATEGORY, CONDITIONING, CONTEXT_OPTIONS, FREEINIT, MODEL, SCHEDULER
# The option lists, defaults and ranges are model/choices.py's (plain data: no torch or diffusers import).
from ..model import choices
from ..model.errors import InputError

SCHEDULER_NAMES = list(choices.SCHEDULER_NAMES)
MODEL_DEFAULT = "model default"  # keep the model folder's scheduler config
CONTEXT = choices.CONTEXT_DEFAULTS

# Settings fields -> the sampler inputs that set them, for error messages in the node's terms.
_INPUT_OF = {"guidance": "cfg", "context": "context_options", "strength": "denoise"}

MAX_SIZE = 4096
MAX_FRAMES = 4096
SETTING = choices.SETTINGS_DEFAULTS


def _on_cpu(conditions):
    """Conditions kept between nodes on ComfyUI's intermediate device, not on the text encoders' GPU."""
    from ..model.denoising.loop import Conditions
    from ..model.text.encoders import Conditioning

    device = host.intermediate_device()

    def moved(c):
        if not isinstance(c, Conditioning):  # prompt travel (model/travel/prompts.py)
            return c.to(device)
        return Conditioning(c.context.to(device), c.pooled.to(device), c.tokens)

    return Conditions(moved(conditions.positive), moved(conditions.negative), conditions.time_ids.to(device))


class HotshotXLTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 8, "max": 8192, "step": 8}
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model whose two CLIP text encoders read the prompts."}),
                "prompt": ("STRING", {"default": choices.DEFAULT_PROMPT, "multiline": True, "dynamicPrompts": True,
                                      "tooltip": "What the video shows. Prompts over 75 tokens are encoded in "
                                                 "chunks of 75 rather than cut off. Weights as in CLIP Text "
                                                 "Encode: (words:1.2), (words) = 1.1; \\( \\) for literal "
                                                 "parentheses."}),
                "negative_prompt": ("STRING", {"default": choices.DEFAULT_NEGATIVE_PROMPT, "multiline": True, "dynamicPrompts": True,
                                               "tooltip": "What the video should not show. An empty text is "
                                                          "encoded as an empty prompt, as ComfyUI does."}),
                "original_width": ("INT", {"default": SETTING["original_size"][0], **size, "tooltip": "SDXL size conditioning: the "
                                           "width of the source the model should imagine (the release uses 1920)."}),
                "original_height": ("INT", {"default": SETTING["original_size"][1], **size, "tooltip": "SDXL size conditioning: the "
                                            "height of the imagined source (the release uses 1080)."}),
                "target_width": ("INT", {"default": SETTING["target_size"][0], **size, "tooltip": "SDXL size conditioning: the width "
                                         "the model should aim for (the release uses 512)."}),
                "target_height": ("INT", {"default": SETTING["target_size"][1], **size, "tooltip": "SDXL size conditioning: the "
                                          "height the model should aim for (the release uses 512)."}),
            }
        }

    RETURN_TYPES = (CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Prompt, negative prompt and size conditioning for the Hotshot-XL Sampler.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encodes the prompt and negative prompt with the model's two CLIP text encoders, together with "
                   "SDXL's size conditioning (original and target size, width first as the release passes them).")

    def encode(self, model, prompt, negative_prompt, original_width, original_height, target_width, target_height):
        sizes = {"original_width": original_width, "original_height": original_height,
                 "target_width": target_width, "target_height": target_height}
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(name, f"must be a positive whole number, got {value!r}")
        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if not isinstance(value, str):
                raise InputError(name, f"expected text, got {type(value).__name__}")
        host.load(model.text)
        with applied(model, "text"):  # the model's LoRAs at strength_clip, removed afterwards
            conditions = model.pipeline.encode(prompt, negative_prompt, (original_width, original_height),
                                               (target_width, target_height))
        return (_on_cpu(conditions),)


class HotshotXLSampler:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 64, "max": MAX_SIZE, "step": 8}
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The Hotshot-XL model that denoises the video."}),
                "conditioning": (CONDITIONING, {"tooltip": "Prompts from Hotshot-XL Text Encode (made with the "
                                                           "same model)."}),
                "seed": ("INT", {"default": SETTING["seed"], "min": 0, "max": choices.SEED_MAX, "control_after_generate": True,
                                 "tooltip": "The random seed of the initial noise (drawn on the CPU, so a seed gives "
                                            "the same video on any device)."}),
                "steps": ("INT", {"default": SETTING["steps"], "min": 1, "max": 1000, "tooltip": "Number of denoising steps."}),
                "cfg": ("FLOAT", {"default": SETTING["guidance"], "min": 0.0, "max": choices.GUIDANCE_MAX, "step": 0.1, "round": 0.01,
                                  "tooltip": "Classifier-free guidance scale: how strongly the video follows the "
                                             "prompt against the negative prompt. 1 or less switches guidance off "
                                             "(twice as fast)."}),
                "scheduler": (SCHEDULER_NAMES, {"default": choices.DEFAULT_SCHEDULER,
                                                "tooltip": "The sampling algorithm. euler_a (Euler ancestral) is the "
                                                           "release's; lcm is for LCM-distilled weights (4-8 steps, "
                                                           "cfg 1-2)."}),
                "frames": ("INT", {"default": SETTING["frames"], "min": 1, "max": MAX_FRAMES,
                                   "tooltip": "Number of video frames. Hotshot-XL was trained on 8 frames at 8 fps. "
                                              "The temporal layers see at most 24 frames at once: longer videos are "
                                              "sampled in overlapping windows (default ones unless context options "
                                              "are connected)."}),
                "width": ("INT", {"default": SETTING["width"], **size, "tooltip": "Video width in pixels, a multiple of 8. The "
                                                                     "trained sizes are about 512x512 in area: "
                                                                     "672x384, 512x512, 384x672, ..."}),
                "height": ("INT", {"default": SETTING["height"], **size, "tooltip": "Video height in pixels, a multiple of 8."}),
            },
            "optional": {
                "context_options": (CONTEXT_OPTIONS, {"tooltip": "Optional: sample in overlapping windows of frames "
                                                                 "(from Hotshot-XL Context Options), for long videos."}),
                "noise": (list(choices.NOISE_TYPES), {"default": SETTING["noise"],
                                        "tooltip": "Initial noise. independent: a fresh draw for every frame, as the "
                                                   "release. freenoise: the first window's noise reused, shuffled, "
                                                   "along the video, for long videos that stay more consistent."}),
                "custom_scheduler": (SCHEDULER, {"tooltip": "Optional: a scheduler with options, from Hotshot-XL "
                                                            "Scheduler. Replaces the scheduler chosen above."}),
                "latent": ("LATENT", {"tooltip": "Optional: video-to-video, start from these latents (Hotshot-XL "
                                                 "Encode or VAE Encode) instead of noise; their frame count and size "
                                                 "replace frames, width and height (one frame: image-to-video, "
                                                 "repeated for `frames` frames)."}),
                "denoise": ("FLOAT", {"default": SETTING["strength"], "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "With a latent: how much of it is redrawn, as KSampler's denoise "
                                                 "(about denoise x steps steps run). 1 without a latent."}),
                "motion_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                           "tooltip": "Motion strength: a scale on the temporal layers' update. 0: "
                                                      "the SDXL image model frame by frame (no motion); 1: Hotshot-XL "
                                                      "as released; above 1: stronger motion."}),
                "freeinit": (FREEINIT, {"tooltip": "Optional: FreeInit (from Hotshot-XL FreeInit), "
                                                                "sampling several times for temporal consistency."}),
                "cache_interval": ("INT", {"default": SETTING["cache_interval"], "min": 1, "max": 1000,
                                           "tooltip": "Step caching (DeepCache-style): the whole UNet runs every N "
                                                      "steps, only its outermost blocks in between, reusing the deep "
                                                      "features. 1 is off (exact); 2-4 are faster at some cost in "
                                                      "fidelity."}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The denoised video as SDXL latents, a batch of frames: decode it with Hotshot-XL Decode "
                       "or ComfyUI's VAE Decode with an SDXL VAE.",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Generates a video latent from noise with Hotshot-XL: classifier-free guidance over the "
                   "chosen scheduler, with progress (per window of a long video), Cancel between steps, and a "
                   "preview of every frame as it forms.")

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None):
        """Sizes checked when the prompt is queued (a red outline, nothing loaded yet); ComfyUI leaves
        the range checks of the inputs named here to this function. None: turned into a socket."""
        for name, value in (("width", width), ("height", height)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value % 8 or not 64 <= value <= MAX_SIZE:
                return f"{name}: must be a multiple of 8 from 64 to {MAX_SIZE}, got {value!r}"
        return True

    def sample(self, model, conditioning, seed, steps, cfg, scheduler, frames, width, height, context_options=None,
               noise="independent", custom_scheduler=None, latent=None, denoise=1.0, motion_scale=1.0, freeinit=None,
               cache_interval=1):
        from ..model.denoising.context import ContextOptions
        from ..model.pipeline import Settings
        from ..model.denoising.loop import Conditions
        from ..model.denoising.schedulers import SchedulerOptions

        if not isinstance(conditioning, Conditions):
            raise InputError("conditioning", f"expected Hotshot-XL conditioning, got {type(conditioning).__name__}")
        if context_options is not None and not isinstance(context_options, ContextOptions):
            raise InputError("context_options", f"expected Hotshot-XL context options, got "
                             f"{type(context_options).__name__}")
        if custom_scheduler is not None:
            if not isinstance(custom_scheduler, SchedulerOptions):
                raise InputError("custom_scheduler", f"expected a Hotshot-XL scheduler, got "
                                 f"{type(custom_scheduler).__name__}")
            scheduler = custom_scheduler
        init = None
        if latent is not None:  # video-to-video: the latent's frames and size
            init = from_comfy_latent(latent, model.latent_scale, "latent")
            frames = frames if init.shape[2] == 1 else init.shape[2]
            height, width = init.shape[3] * 8, init.shape[4] * 8
            init = init.expand(-1, -1, frames, -1, -1)
        elif denoise != 1.0:
            raise InputError("denoise", f"is {denoise}: below 1 it needs a latent to start from (connect latent)")
        from ..model.travel.freeinit import FreeInitOptions, cost_line

        if freeinit is not None and not isinstance(freeinit, FreeInitOptions):
            raise InputError("freeinit", f"expected Hotshot-XL FreeInit options, got {type(freeinit).__name__}")
        freeinit = freeinit or FreeInitOptions()
        settings = Settings(width=width, height=height, frames=frames, steps=steps, guidance=cfg, seed=seed,
                            scheduler=scheduler, context=context_options, noise=noise, strength=denoise,
                            motion_scale=motion_scale, freeinit=freeinit, cache_interval=cache_interval)
        try:
            settings.check()
        except InputError as error:
            raise InputError(_INPUT_OF.get(error.name, error.name), error.problem) from None
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 0xFFFFFFFFFFFFFFFF:
            raise InputError("seed", f"must be a whole number from 0 to 2^64-1, got {seed!r}")
        if hasattr(conditioning.positive, "check"):  # prompt travel: its keyframes within the video
            conditioning.positive.check(frames)
        width_needed = model.pipeline.unet.config.cross_attention_dim
        if conditioning.positive.context.shape[-1] != width_needed:
            raise InputError("conditioning", f"was encoded by a different model (text states of width "
                             f"{conditioning.positive.context.shape[-1]}, this UNet takes {width_needed})")

        from .controlnet import prepare_controls

        controls, handles = prepare_controls(conditioning, width, height, frames)
        host.load(model.unet, *handles, memory_required=_activation_bytes(settings, model.unet))
        if freeinit.iterations > 1:
            import sys

            print(f"Hotshot-XL Sampler: {cost_line(freeinit, steps)}", file=sys.stderr)
        from .preview import sampling_hooks

        with applied(model, "unet"):  # the model's LoRAs at strength_model, removed afterwards
            # Inside ComfyUI: progress per window and every frame previewed (nodes/preview.py).
            watch, callback = sampling_hooks(model, settings)
            latents = model.pipeline.sample(conditioning, settings, callback, controls=controls, init=init,
                                            watch=watch)
        return (to_comfy_latent(latents, model.latent_scale),)


def _activation_bytes(settings, unet) -> int:
    """A rough bound on sampling memory beyond the weights, for ComfyUI to free room: the widest
    activations (1280 channels at 1/8 scale) for both guidance halves, a few held at once."""
    length = choices.MAX_LENGTH if settings.context is None else settings.context.length
    window = min(settings.frames, length)
    halves = 2 if settings.guidance > 1 else 1
    element = unet.module.dtype.itemsize if hasattr(unet.module, "dtype") else 4
    return halves * window * (settings.height // 8) * (settings.width // 8) * 1280 * element * 8


class HotshotXLScheduler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "scheduler": (SCHEDULER_NAMES, {"default": choices.DEFAULT_SCHEDULER,
                                                "tooltip": "The sampling algorithm. euler_a (Euler ancestral) is the "
                                                           "release's; lcm is for LCM-distilled weights."}),
                "timestep_spacing": ([MODEL_DEFAULT, *choices.TIMESTEP_SPACINGS], {
                    "default": MODEL_DEFAULT,
                    "tooltip": "How the steps spread over the training timesteps. model default: the model folder's "
                               "scheduler config (leading for the release). trailing starts from pure noise: better "
                               "with few steps and for zero-SNR models."}),
                "prediction_type": ([MODEL_DEFAULT, *choices.PREDICTION_TYPES], {
                    "default": MODEL_DEFAULT,
                    "tooltip": "What the UNet predicts. epsilon for the release and SDXL base; v_prediction for SDXL "
                               "fine-tunes trained that way."}),
                "zero_terminal_snr": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Rescale the noise schedule so that its last step is pure noise, for models trained "
                               "with zero terminal SNR (with v_prediction and trailing)."}),
            }
        }

    RETURN_TYPES = (SCHEDULER,)
    RETURN_NAMES = ("scheduler",)
    OUTPUT_TOOLTIPS = ("A scheduler with options, for the Hotshot-XL Sampler's custom_scheduler input.",)
    FUNCTION = "scheduler"
    CATEGORY = CATEGORY
    DESCRIPTION = ("A diffusers scheduler with the options the sampler node does not show: timestep spacing, "
                   "prediction type and zero terminal SNR, over the model's own scheduler config.")

    def scheduler(self, scheduler, timestep_spacing, prediction_type, zero_terminal_snr):
        from ..model.denoising.schedulers import SchedulerOptions

        def chosen(value):
            return None if value == MODEL_DEFAULT else value

        # InputError naming the input if a value is not one of the options
        return (SchedulerOptions(scheduler, chosen(timestep_spacing), chosen(prediction_type), zero_terminal_snr),)


class HotshotXLContextOptions:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "length": ("INT", {"default": CONTEXT["length"], "min": 1, "max": choices.MAX_LENGTH,
                                   "tooltip": "Frames per window, at most 24 (the positions the temporal layers "
                                              "know); Hotshot-XL was trained on 8."}),
                "overlap": ("INT", {"default": CONTEXT["overlap"], "min": 0, "max": choices.MAX_LENGTH - 1,
                                    "tooltip": "Frames shared by neighbouring windows, less than the length. More "
                                               "overlap blends windows more smoothly and costs more steps."}),
                "stride": ("INT", {"default": CONTEXT["stride"], "min": 1, "max": choices.STRIDE_MAX,
                                   "tooltip": "Largest spacing between a window's frames, a power of two. 1: windows "
                                              "of consecutive frames; 2, 4, ...: also windows of every 2nd, 4th, ... "
                                              "frame, which tie distant frames together."}),
                "schedule": (list(choices.SCHEDULES), {"default": CONTEXT["schedule"],
                                                 "tooltip": "uniform: windows shift a little from step to step, so no "
                                                            "seam stays on the same frames; static: the same windows "
                                                            "at every step."}),
                "weighting": (list(choices.WEIGHTINGS), {"default": CONTEXT["weighting"],
                                                   "tooltip": "How overlapping windows are blended. pyramid: a frame "
                                                              "counts most in the windows where it is near the middle; "
                                                              "flat: all windows count the same."}),
                "loop": ("BOOLEAN", {"default": CONTEXT["loop"],
                                     "tooltip": "Windows wrap around the end, so the video loops without a jump."}),
            }
        }

    RETURN_TYPES = (CONTEXT_OPTIONS,)
    RETURN_NAMES = ("context_options",)
    OUTPUT_TOOLTIPS = ("Context windows for the Hotshot-XL Sampler.",)
    FUNCTION = "options"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Long videos: the sampler denoises overlapping windows of frames, each within the temporal "
                   "layers' reach, and blends them, so videos can be far longer than 24 frames with memory bounded "
                   "by the window.")

    def options(self, length, overlap, stride, schedule, weighting, loop):
        from ..model.denoising.context import ContextOptions

        return (ContextOptions(length=length, overlap=overlap, stride=stride, schedule=schedule,
                               weighting=weighting, loop=loop),)  # InputError naming the field if invalid
