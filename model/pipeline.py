"""Text to video: `load_pipeline(...)` returns a callable that gives the frames.

The stages are separate methods (`encode`, `sample`, `decode`) because ComfyUI runs them as
separate nodes; `__call__` chains them with the original `inference.py`'s defaults.
"""

from __future__ import annotations

import math
import numbers
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .choices import ASPECT_BUCKETS  # noqa: F401 (re-exported)
from .choices import GUIDANCE_MAX, SEED_MAX, SETTINGS_DEFAULTS, TINY_RANDOM
from .denoising.context import NOISE_TYPES, ContextOptions, context_for, freenoise, windowed_predictor
from .files.components import (force_zeros_for_empty_prompt, load_text_encoders, load_vae, scheduler_config)
from .media.decode import VAE_TILING, decode_latents
from .errors import InputError, ModelFileError
from .memory.fp8 import use_float8
from .files.loading import classify, load_unet
from .memory.offload import OFFLOAD_MODES, Offloader, unet_units
from .memory.precision import resolve_device, resolve_precision
from .progress import bar
from .denoising.loop import Conditions, StepCallback, denoise, guided_predictor, initial_noise, micro_conditioning
from .denoising.schedulers import DEFAULT_SCHEDULER, SchedulerOptions, make_scheduler, scheduler_options
from .text.encoders import TextEncoders
from .network.unet import HotshotXLUNet
from .files.weights import reading_progress


@dataclass
class Settings:
    """One generation's settings; defaults are those of the original `inference.py`.

    `context`: windows over the frames (see `ContextOptions`); None runs all frames in one UNet
    pass, and switches to default windows by itself past the 24 frames the temporal layers hold.
    `noise`: "independent" is the original's draw; "freenoise" reuses the first window's noise,
    shuffled, along the video (windows of `context`, or default ones). `vae_tiling`: "auto" decodes
    frames with more pixels than 768x768 in 512 px tiles (see `decode.wants_tiling`), "on" or "off".
    """

    width: int = SETTINGS_DEFAULTS["width"]
    height: int = SETTINGS_DEFAULTS["height"]
    frames: int = SETTINGS_DEFAULTS["frames"]
    steps: int = SETTINGS_DEFAULTS["steps"]
    guidance: float = SETTINGS_DEFAULTS["guidance"]
    seed: int = SETTINGS_DEFAULTS["seed"]
    scheduler: str | SchedulerOptions = DEFAULT_SCHEDULER  # a name, or one with options
    original_size: tuple[int, int] = SETTINGS_DEFAULTS["original_size"]  # width, height, as inference.py passes them
    target_size: tuple[int, int] = SETTINGS_DEFAULTS["target_size"]
    decode_chunk: int = SETTINGS_DEFAULTS["decode_chunk"]
    context: ContextOptions | None = None  # windows over the frames; None: all frames in one pass
    noise: str = SETTINGS_DEFAULTS["noise"]  # initial noise for long videos: see context.NOISE_TYPES
    vae_tiling: str = SETTINGS_DEFAULTS["vae_tiling"]  # decode frames in tiles: auto, on, off
    strength: float = SETTINGS_DEFAULTS["strength"]  # video-to-video: how far from the init video (see video2video/)
    # Directing (travel/): motion scale (a number or keyframes {frame: scale}; 1: as released) and
    # FreeInit (iterations, or travel.freeinit.FreeInitOptions; 1: plain sampling).
    motion_scale: float | dict | str = 1.0
    freeinit: int | FreeInitOptions = 1  # noqa: F821 (travel.freeinit's; imported lazily)
    cache_interval: int = SETTINGS_DEFAULTS["cache_interval"]  # step caching: see denoising/step_cache.py

    def check(self) -> None:
        """Raise InputError naming the first bad setting, before any heavy work."""
        for field in fields(self):  # NaN and inf are never a setting (guidance=inf gives NaN frames)
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(field.name, f"must be a finite number, got {value!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value % 8:
                raise InputError(name, f"must be a positive multiple of 8, got {value!r}")
        for name in ("frames", "steps", "decode_chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # True is not 1 step
                raise InputError(name, f"must be a positive whole number, got {value!r}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, numbers.Real) or not self.guidance >= 0:
            raise InputError("guidance", f"must be zero or more, got {self.guidance!r}")
        if self.guidance > GUIDANCE_MAX:  # 1e30 overflows to inf in the guided prediction: NaN frames
            raise InputError("guidance", f"must be at most {GUIDANCE_MAX:g} (ComfyUI's cfg range; 5 is the release's), "
                             f"got {self.guidance!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or \
                not 0 <= self.seed <= SEED_MAX:
            raise InputError("seed", f"must be a whole number from 0 to 2**64-1 ({SEED_MAX}), got {self.seed!r}")
        scheduler_options(self.scheduler)
        for name in ("original_size", "target_size"):
            size = getattr(self, name)
            if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
                raise InputError(name, f"must be two positive whole numbers (width, height), got {size!r}")
        if self.context is not None and not isinstance(self.context, ContextOptions):
            raise InputError("context", f"must be ContextOptions(...) or None, got {self.context!r}")
        if self.noise not in NOISE_TYPES:
            raise InputError("noise", f"unknown noise {self.noise!r}; choose one of {', '.join(NOISE_TYPES)}")
        if self.vae_tiling not in VAE_TILING:
            raise InputError("vae_tiling", f"must be one of {', '.join(VAE_TILING)}, got {self.vae_tiling!r}")
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) \
                or not 0 <= self.strength <= 1:
            raise InputError("strength", f"must be a number from 0 to 1, got {self.strength!r}")
        from .denoising.step_cache import check_interval
        from .travel.freeinit import freeinit_options
        from .travel.motion import motion_scale

        check_interval(self.cache_interval)
        if motion_scale(self.motion_scale, self.frames) is not None and self.cache_interval != 1:
            raise InputError("cache_interval", "step caching reuses features the temporal layers made at full "
                             "strength: use it with motion_scale 1, or set cache_interval to 1")
        freeinit_options(self.freeinit)


def check_prompts(prompt, negative_prompt=None) -> None:
    """InputError naming `prompt` or `negative_prompt` unless each is one string (the negative may be
    None) whose weights, `(words:1.2)`, are well formed."""
    from .text.weights import parse_weights

    for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if value is None and name == "negative_prompt":
            continue
        if isinstance(value, str):
            parse_weights(value, name)
            continue
        if isinstance(value, (list, tuple)):
            raise InputError(name, f"one prompt per call, got a {type(value).__name__} of {len(value)}; call once "
                             "per prompt (the CLI's --prompts renders a file of them)")
        raise InputError(name, f"must be a string, got {type(value).__name__} {value!r}")


def check_speed_options(offload: str = "none", compile: bool = False) -> None:
    """Raise InputError naming `offload` or `compile` if they are malformed or do not go together."""
    if offload not in OFFLOAD_MODES:
        raise InputError("offload", f"must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    if not isinstance(compile, bool):
        raise InputError("compile", f"must be True or False, got {compile!r}")
    if compile and offload == "sequential":
        raise InputError("compile", "cannot be combined with sequential offload: the compiled UNet would hold "
                         "weights that the offload hooks move during its forward pass (use model offload)")


class HotshotXLPipeline:
    def __init__(self, unet: HotshotXLUNet, vae, text: TextEncoders, scheduler_config: dict, name: str = ""):
        self.unet = unet
        self.vae = vae
        self.text = text
        self.scheduler_config = scheduler_config
        self.name = name
        self.offload = "none"  # see enable_offload
        self.offloader: Offloader | None = None
        self.compiled = False
        self.distributed = None  # model.distributed.distribute: windows and decoding shared among ranks
        self.loras = None  # lora.apply.LoRAStack once a LoRA is loaded (see load_lora)

    @property
    def device(self) -> torch.device:
        """Where the stages compute (with offload, the weights rest elsewhere in between)."""
        return self.unet.device if self.offloader is None else self.offloader.device

    def enable_offload(self, mode: str, device=None) -> HotshotXLPipeline:
        """Keep the weights on the CPU and bring them to `device` (default: where the UNet is) only
        while they run. "model": each component for its stage; "sequential": the text encoders and
        the VAE likewise, and the UNet unit by unit during each forward pass (see memory/offload.py)."""
        check_speed_options(mode, self.compiled)
        if self.offload != "none":
            raise InputError("offload", f"this pipeline already offloads ({self.offload!r}); load it again to change")
        if mode == "none":
            return self
        offloader = Offloader(self.device if device is None else resolve_device(device))
        for name, module in (("text_encoder", self.text.text_encoder), ("text_encoder_2", self.text.text_encoder_2),
                             ("vae", self.vae)):
            offloader.manage(module, name)
        if mode == "model":
            offloader.manage(self.unet, "unet")
        else:
            offloader.attach_sequential(self.unet, unet_units(self.unet), "unet")
        self.offload, self.offloader = mode, offloader
        return self

    def compile_unet(self, **options) -> HotshotXLPipeline:
        """torch.compile the UNet in place (`nn.Module.compile`: same module, same state dict).

        Each new latent size or frame count compiles on first use (minutes for the full-size UNet);
        `options` go to torch.compile. Not with sequential offload (see check_speed_options).
        """
        check_speed_options(self.offload, compile=True)
        self.unet.compile(**options)
        self.compiled = True
        return self

    def lora_modules(self) -> dict:
        """The components LoRAs apply to, by the names LoRA files give them."""
        return {"unet": self.unet, "text_encoder": self.text.text_encoder, "text_encoder_2": self.text.text_encoder_2}

    def load_lora(self, path, strength: float = 1.0, text_strength: float | None = None):
        """Merge a LoRA file (or a LoRAFile already read) into the weights: the UNet at `strength`,
        the text encoders at `text_strength` (default: `strength`). Several stack; `unload_loras`
        removes them all. Returns the match report (tensors matched per component; also logged)."""
        from .lora.apply import LoRAStack, check_strength
        from .lora.formats import LoRAFile, read_lora

        strength = check_strength(strength, "strength")
        text_strength = strength if text_strength is None else check_strength(text_strength, "text_strength")
        lora = path if isinstance(path, LoRAFile) else read_lora(path, self.unet.config.layers_per_block)
        if self.loras is None:
            self.loras = LoRAStack()
        report = self.loras.add(lora, self.lora_modules(), {"unet": strength, "text_encoder": text_strength,
                                                            "text_encoder_2": text_strength})
        report.log()
        return report

    def unload_loras(self) -> None:
        """Remove every loaded LoRA: the weights are the original ones again, bit for bit."""
        if self.loras is not None:
            self.loras.restore()

    def _running(self, *modules):
        """A context in which `modules` are on the compute device (a no-op without offload)."""
        return nullcontext() if self.offloader is None else self.offloader.running(*modules)

    def encode(self, prompt: str, negative_prompt: str | None = "",
               original_size=(1920, 1080), target_size=(512, 512)) -> Conditions:
        check_prompts(prompt, negative_prompt)
        with self._running(self.text.text_encoder, self.text.text_encoder_2):
            positive, negative = self.text.encode_pair(prompt, negative_prompt)
        return Conditions(positive, negative, micro_conditioning(original_size, target_size))

    def encode_travel(self, prompts, negative_prompt: str | None = "", original_size=(1920, 1080),
                      target_size=(512, 512), interpolation: str = "linear", name: str = "prompts") -> Conditions:
        """Prompt travel: keyframes `{frame: prompt}` (or travel.keyframes' forms) -> Conditions whose
        positive gives each frame its blend of the keyframes' states (see travel/). One keyframe is
        `encode(prompt)` exactly. InputError naming `name` and the keyframe if one is bad."""
        from .travel.keyframes import check_interpolation, prompt_keyframes
        from .travel.prompts import encode_travel

        keyframes = prompt_keyframes(prompts, name)
        check_interpolation(interpolation)
        if len(keyframes) == 1:
            return self.encode(keyframes[0].value, negative_prompt, original_size, target_size)
        with self._running(self.text.text_encoder, self.text.text_encoder_2):
            positive, negative = encode_travel(self.text, keyframes, negative_prompt, interpolation, name)
        return Conditions(positive, negative, micro_conditioning(original_size, target_size))

    def sample(self, conditions: Conditions, settings: Settings, callback: StepCallback | None = None,
               predictor=None, controls=(), init: torch.Tensor | None = None, watch=None) -> torch.Tensor:
        """Latents (1, 4, frames, h/8, w/8), float32, on the pipeline's device.

        `predictor` replaces the guided UNet; with context windows it is called window by window.
        `watch(predict)` returns a predictor that calls `predict` and observes its result (the nodes'
        previews), wrapped around the guided UNet, inside the context windows.
        `controls`: ControlNets steering every frame (controlnet.Control); `init`: latents of an
        input video (`encode_video`), noised to `settings.strength` and denoised (video-to-video).
        """
        if controls:
            from .controlnet.apply import check_controls

            check_controls(controls, settings.frames, settings.height, settings.width)
        nets = [control.net for control in controls]
        if self.offloader is not None:
            for index, net in enumerate(nets):  # ControlNets arrive with each call: offload them like the UNet
                self.offloader.manage(net, f"controlnet{index}")
        from .travel.freeinit import freeinit_options, sample_with_freeinit
        from .travel.motion import motion_scale

        if hasattr(conditions.positive, "check"):  # prompt travel: keyframes within the video
            conditions.positive.check(settings.frames)
        motion = motion_scale(settings.motion_scale, settings.frames)
        noise, generator = initial_noise(settings.seed, settings.frames, settings.height, settings.width)
        context = context_for(settings.frames, settings.context, self.unet.config.temporal_max_frames)
        window = context or ContextOptions()

        def new_noise(noise):
            return freenoise(noise, window.length, window.overlap, generator) if settings.noise == "freenoise" \
                else noise

        noise = new_noise(noise)
        scheduler = make_scheduler(settings.scheduler, self.scheduler_config)
        with self._running(self.unet, *nets):
            predict = predictor or guided_predictor(self.unet, conditions, settings.guidance, controls, motion,
                                                    settings.cache_interval)
            if watch is not None:
                predict = watch(predict)
            if context is not None:
                predict = windowed_predictor(predict, context, self.distributed and self.distributed.windows)
            from .video2video.strength import steps_run

            freeinit = freeinit_options(settings.freeinit)
            if freeinit.iterations == 1 or init is not None and steps_run(settings.steps, settings.strength) == 0:
                init = None if init is None else init.to(self.device)  # (strength 0: the input, however often)
                return denoise(predict, scheduler, noise.to(self.device), settings.steps, generator, callback,
                               init, settings.strength)

            def sample_once(start, step_callback, video=None):  # a fresh scheduler each time: no state carried
                return denoise(predict, make_scheduler(settings.scheduler, self.scheduler_config),
                               start.to(self.device), settings.steps, generator, step_callback,
                               None if video is None else video.to(self.device), settings.strength)

            def fresh_noise():
                shape = settings.frames, settings.height, settings.width
                return new_noise(initial_noise(settings.seed, *shape, generator=generator)[0])

            alpha_bar = float(scheduler.alphas_cumprod[-1])  # the last training timestep's
            video = None if init is None else init.float().cpu()  # video-to-video: re-noised each iteration
            return sample_with_freeinit(sample_once, noise, freeinit, alpha_bar, fresh_noise, callback, video)

    def decode(self, latents: torch.Tensor, frames_per_chunk: int = 4, tiled: bool | str = False, callback=None):
        """Frames (frames, height, width, 3) in 0..1; `tiled`: True/False or "auto"/"on"/"off"."""
        decode = decode_latents if self.distributed is None else self.distributed.decode
        with self._running(self.vae):
            return decode(self.vae, latents, frames_per_chunk, tiled, callback)

    def encode_video(self, frames: torch.Tensor, frames_per_chunk: int = 4, tiled: bool | str = "auto",
                     count: int | None = None):
        """Frames (frames, height, width, 3), uint8 or float 0..1 -> latents (1, 4, frames, h/8, w/8),
        float32; one image is the start of each of `count` frames (image-to-video)."""
        from .video2video.encode import encode_frames

        with self._running(self.vae):
            latents = encode_frames(self.vae, frames, frames_per_chunk, tiled)
        if count is not None and latents.shape[2] == 1:
            latents = latents.expand(-1, -1, count, -1, -1)
        return latents

    def __call__(self, prompt: str | None = None, negative_prompt: str | None = "blurry",
                 callback: StepCallback | None = None, controls=(), init_frames: torch.Tensor | None = None,
                 progress: bool = False, prompts=None, interpolation: str = "linear", **settings) -> torch.Tensor:
        """Frames (frames, height, width, 3), float in 0..1, on the CPU.

        `prompts`: prompt travel instead of `prompt`, keyframes `{frame: prompt}` whose text states
        blend from frame to frame (`interpolation` "linear" or "slerp"); see travel/.

        `settings` are Settings' fields. `controls`: ControlNets (controlnet.Control); `init_frames`:
        an input video (frames, height, width, 3) at the video's size for video-to-video (`settings`
        strength), see video2video/. `progress=True` shows bars on stderr for sampling and decoding;
        `callback(step, steps, latents)` is called after each step (and may raise to stop).
        """
        settings = Settings(**settings)
        settings.check()
        if (prompt is None) == (prompts is None):
            raise InputError("prompts" if prompts is not None else "prompt",
                             "give either `prompt` or `prompts` (keyframes {frame: prompt}), not both"
                             if prompts is not None else "must be a string, got NoneType None (or give `prompts`: "
                             "keyframes {frame: prompt})")
        if prompts is not None:
            from .travel.keyframes import check_in_range, prompt_keyframes

            check_in_range(prompt_keyframes(prompts), settings.frames, "prompts")
        freeinit = None
        if progress:
            from .travel.freeinit import cost_line, freeinit_options

            freeinit = freeinit_options(settings.freeinit)
            if freeinit.iterations > 1:
                import sys

                print(cost_line(freeinit, settings.steps), file=sys.stderr)
        check_prompts("" if prompt is None else prompt, negative_prompt)  # `prompts` were checked above
        from .budget import check_pipeline

        check_pipeline(self, settings, init_frames is not None)  # refuses what cannot fit; warns when long
        init = None
        if controls:
            from .controlnet.apply import check_controls

            check_controls(controls, settings.frames, settings.height, settings.width)
        if init_frames is not None:
            from .video2video.encode import check_init_frames

            check_init_frames(init_frames, settings.frames, settings.height, settings.width)
        if prompts is not None:
            conditions = self.encode_travel(prompts, negative_prompt, settings.original_size, settings.target_size,
                                            interpolation)
        else:
            conditions = self.encode(prompt, negative_prompt, settings.original_size, settings.target_size)
        if init_frames is not None:
            init = self.encode_video(init_frames, settings.decode_chunk, settings.vae_tiling, settings.frames)
        steps = settings.steps * (freeinit.iterations if freeinit else 1)
        with bar(progress, steps, "sampling", "step") as advance:
            def step(index, total, latents):
                advance()
                if callback is not None:
                    callback(index, total, latents)

            latents = self.sample(conditions, settings, step if progress or callback else None,
                                  controls=controls, init=init)
        with bar(progress, settings.frames, "decoding", "frame") as advance:
            return self.decode(latents, settings.decode_chunk, settings.vae_tiling,
                               lambda done, total: advance(done))


def _tokenizers(explicit, *sources):
    from .text.tokenizers import BPE_FILE, load_tokenizers

    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if not explicit.exists():
            raise InputError("tokenizer", f"{explicit} does not exist; expected a model folder with tokenizer/ and "
                             f"tokenizer_2/ (e.g. the release's), a tokenizer folder (vocab.json, merges.txt) or {BPE_FILE}")
        if explicit.is_file() or (explicit / "vocab.json").is_file() or (explicit / BPE_FILE).is_file():
            return load_tokenizers(explicit)
    for source in (explicit, *sources):
        if source is not None and (Path(source) / "tokenizer").is_dir():
            return load_tokenizers(source)
    return load_tokenizers(None)  # searched for: ComfyUI's files, installed CLIP packages


def load_pipeline(model: str | Path | None = None, *, temporal_layers: str | Path | None = None,
                  sdxl: str | Path | None = None, tokenizer: str | Path | None = None,
                  configs: str | Path | None = None, dtype=None, device=None, offload: str = "none",
                  compile: bool = False, progress: bool = False) -> HotshotXLPipeline:
    """Load Hotshot-XL for text-to-video.

    - `model`: a released Hotshot-XL folder (or "tiny-random" for an install check: noise out);
    - or `temporal_layers` (hsxl_temporal_layers*.safetensors) with `sdxl`, an SDXL single file or
      diffusers folder; `model` with `sdxl` puts the release's temporal layers on that fine-tune.
    The VAE and text encoders come from `sdxl` when given, else from `model`. `tokenizer` is a
    folder with tokenizer/ and tokenizer_2/ (single files carry none); `configs` a folder in
    diffusers layout giving component configs for non-standard single files.

    Memory and speed: `dtype` "fp8" stores the UNet's Linear and Conv2d weights in float8 and
    computes in bf16, as the VAE and text encoders are held (see memory/fp8.py); `offload` "model" or
    "sequential" keeps the weights on the CPU and brings them to `device` only while they run (see
    memory/offload.py); `compile` runs the UNet through torch.compile (see `compile_unet`). `progress=True`
    shows a bar on stderr as the parts load. `dtype` None or "auto": see precision.default_dtype
    (for tiny-random, tiny.fastest_dtype).
    """
    check_speed_options(offload, compile)  # plain values first: no file is looked at for a bad option
    check_sources(model, temporal_layers, sdxl, tokenizer, configs)
    device = resolve_device(device)
    if str(model) == TINY_RANDOM and dtype in (None, "auto"):
        from .tiny import fastest_dtype

        dtype = fastest_dtype(device)
    dtype, fp8 = resolve_precision(dtype, device)
    # With offload the weights are read straight to the CPU: they need not fit the device at once.
    load_device = device if offload == "none" else torch.device("cpu")
    if str(model) == TINY_RANDOM:
        from .tiny import tiny_random_components

        pipe = HotshotXLPipeline(**tiny_random_components(dtype=dtype, device=load_device))
        if fp8:
            use_float8(pipe.unet, dtype)
        return _speed_up(pipe, device, offload, compile)
    if model is None and sdxl is None:
        raise InputError("model", "give a Hotshot-XL model folder, or temporal layers with an SDXL checkpoint")
    if model is None and temporal_layers is None:
        raise InputError("temporal_layers", "an SDXL checkpoint alone has no temporal layers: also give "
                         "hsxl_temporal_layers.safetensors (or a Hotshot-XL model folder)")
    model = None if model is None else Path(model).expanduser()
    sdxl = None if sdxl is None else Path(sdxl).expanduser()
    configs = None if configs is None else Path(configs).expanduser()
    if model is not None and not model.is_dir():
        raise ModelFileError(model, "expected a Hotshot-XL model folder (with unet/, vae/, text_encoder/, ...)")

    unet_paths = [p for p in (model, sdxl, temporal_layers) if p is not None]
    unet_config = configs if configs is not None and sdxl is not None and sdxl.is_file() else None
    # Check every path (cheap, header-only) before loading anything heavy.
    _check_roles({path: classify(path).kind for path in unet_paths}, temporal_layers, sdxl)
    components = sdxl if sdxl is not None else model
    folder_for_text = components if components.is_dir() else None
    if folder_for_text is not None:
        missing = [name for name in ("vae", "text_encoder", "text_encoder_2")
                   if not (folder_for_text / name / "config.json").is_file()]
        if missing:
            raise ModelFileError(folder_for_text, f"model folder lacks {', '.join(missing)} (each a sub-folder "
                                 "with config.json and weights, as in hotshotco/Hotshot-XL)")
    tokenizers = _tokenizers(tokenizer, folder_for_text, model)

    with bar(progress, None, "loading", "B") as advance, reading_progress(lambda nbytes: advance(by=nbytes)):
        unet = load_unet(unet_paths, dtype="fp8" if fp8 else dtype, device=load_device, config=unet_config)
        vae = load_vae(components, dtype, load_device, configs)
        text = load_text_encoders(components, tokenizers, dtype, load_device, configs,
                                  force_zeros_for_empty_prompt(model or folder_for_text, configs))
    name = str(model if model is not None else sdxl)
    pipe = HotshotXLPipeline(unet, vae, text, scheduler_config(model or folder_for_text, configs), name)
    return _speed_up(pipe, device, offload, compile)


SDXL_KINDS = ("sdxl", "sdxl_single_file")


def check_sources(model=None, temporal_layers=None, sdxl=None, tokenizer=None, configs=None) -> None:
    """load_pipeline's checks of its sources that read no file (the CLI runs them first): the
    tiny model takes no files, so any given with it would be silently ignored; `model` takes a folder,
    so a single checkpoint file given as `model` is pointed at `sdxl`. InputError names the argument."""
    if model is not None and not str(model).strip():  # Path("") is the current folder
        raise InputError("model", "is empty; expected a Hotshot-XL model folder (or tiny-random)")
    if model is not None and str(model) != TINY_RANDOM and Path(model).expanduser().is_file():
        raise InputError("model", f"{model} is a single file; `model` takes a Hotshot-XL model folder (with unet/, "
                         "vae/, text_encoder/, ...). For an SDXL checkpoint file give it as `sdxl` together with "
                         "the release's hsxl_temporal_layers.safetensors as `temporal_layers`")
    if model is not None and str(model) != TINY_RANDOM and not Path(model).expanduser().is_dir():
        raise ModelFileError(Path(model).expanduser(), "expected a Hotshot-XL model folder (with unet/, vae/, "
                             "text_encoder/, ...)")
    if str(model) != TINY_RANDOM:
        return
    given = {"temporal_layers": temporal_layers, "sdxl": sdxl, "tokenizer": tokenizer, "configs": configs}
    for name, value in given.items():
        if value is not None:
            raise InputError(name, f"cannot be used with `model=tiny-random`: that model is built in memory "
                             "from random weights and reads no files")


def check_file_roles(model=None, temporal_layers=None, sdxl=None) -> None:
    """load_pipeline's header-only checks (the CLI runs them before its estimate): each weights file
    exists and is given in its role."""
    paths = [p for p in (model, sdxl, temporal_layers) if p is not None and str(p) != TINY_RANDOM]
    _check_roles({path: classify(path).kind for path in paths}, temporal_layers, sdxl)


def _check_roles(kinds: dict, temporal_layers, sdxl) -> None:
    """Name a weights file given in the wrong role (from its header: see loading.classify), with the fix."""
    kind_of = {key: kinds.get(value) for key, value in (("temporal_layers", temporal_layers), ("sdxl", sdxl))}
    if kind_of["temporal_layers"] in SDXL_KINDS and kind_of["sdxl"] == "temporal":
        raise InputError("temporal_layers", f"{temporal_layers} is an SDXL checkpoint and {sdxl} holds Hotshot-XL "
                         f"temporal layers: the two look swapped; give `temporal_layers={sdxl}` and "
                         f"`sdxl={temporal_layers}`")
    if kind_of["temporal_layers"] in SDXL_KINDS:
        raise InputError("temporal_layers", f"{temporal_layers} is an SDXL checkpoint, not Hotshot-XL temporal "
                         "layers (hsxl_temporal_layers*.safetensors); give it as `sdxl`")
    if kind_of["sdxl"] == "temporal":
        raise InputError("sdxl", f"{sdxl} holds only Hotshot-XL temporal layers, not an SDXL checkpoint; give it "
                         "as `temporal_layers`")


def _speed_up(pipe: HotshotXLPipeline, device: torch.device, offload: str, compile: bool) -> HotshotXLPipeline:
    pipe.enable_offload(offload, device)
    return pipe.compile_unet() if compile else pipe
