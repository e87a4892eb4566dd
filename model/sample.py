"""Command line: `python -m model.sample --model PATH --prompt TEXT --out video.mp4` from the
repository, `hotshot-xl-sample ...` once the package is installed.

Every flag is checked before any weights are read, so a typo costs nothing; errors are one line
naming the flag or file, with a non-zero exit. This module imports nothing heavy at its top, so
`--help` answers at once: torch, diffusers and the model code are imported once the flags are read.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager

from .choices import (ASPECT_BUCKETS, CONTEXT_DEFAULTS, DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, DEFAULT_SCHEDULER, DTYPES, MAX_LENGTH, NOISE_TYPES, OFFLOAD_MODES,
                      PREDICTION_TYPES, SCHEDULER_NAMES, SCHEDULES, SEED_MAX, TIMESTEP_SPACINGS, TINY_RANDOM,
                      TINY_RANDOM_DEFAULTS, VAE_TILING, WEIGHTINGS)
from .controlnet.cli import add_controlnet_arguments, check_controlnet_args, controls_from_args
from .distributed.cli import add_distributed_arguments, plan_session
from .errors import HotshotError, InputError
from .lora.cli import add_lora_arguments, loras_from_args, read_chosen
from .travel.cli import add_travel_arguments, direction_from_args
from .video2video.cli import add_video2video_arguments, init_from_args
from .media.formats import DEFAULT_FPS, VIDEO_FORMATS
from .choices import SETTINGS_DEFAULTS as SETTING

# How the user started us: the console script of the installed package, or the module in a checkout.
PROG = "python -m model.sample" if __package__ == "model" else "hotshot-xl-sample"

WHERE_TO_GET_WEIGHTS = f"""no model given. Hotshot-XL's weights are at https://huggingface.co/hotshotco/Hotshot-XL:
  download the folder (for example `git lfs install && git clone https://huggingface.co/hotshotco/Hotshot-XL`)
  and run:   {PROG} --model ./Hotshot-XL --prompt "..." --out video.mp4
  or use any SDXL checkpoint with the temporal layers file from that repository:
             {PROG} --temporal-layers hsxl_temporal_layers.safetensors --sdxl my_sdxl.safetensors ...
  To check the install without weights: {PROG} --model tiny-random --out demo.mp4"""

# The one place that maps the library's names (Settings fields, load_pipeline and write_video
# arguments) to the flags that set them, so errors speak in the user's terms: see _in_flag_terms.
FLAG_OF = {"width": "--width", "height": "--height", "frames": "--frames", "steps": "--steps",
           "guidance": "--guidance", "scheduler": "--scheduler", "original_size": "--original-size",
           "target_size": "--target-size", "decode_chunk": "--decode-chunk", "seed": "--seed",
           "noise": "--noise", "vae_tiling": "--vae-tiling", "offload": "--offload", "compile": "--compile",
           "timestep_spacing": "--timestep-spacing", "prediction_type": "--prediction-type",
           "zero_terminal_snr": "--zero-terminal-snr", "cache_interval": "--cache-interval",
           "model": "--model", "temporal_layers": "--temporal-layers", "sdxl": "--sdxl", "tokenizer": "--tokenizer",
           "configs": "--configs", "dtype": "--dtype", "device": "--device",
           "fps": "--fps", "loop": "--loop", "overwrite": "--overwrite", "frames_per_chunk": "--decode-chunk",
           "path": "--out", "prompt": "--prompt", "negative_prompt": "--negative-prompt"}
# ContextOptions fields and their flags (apart: their `loop` is not write_video's); a flag left
# unset keeps the field's default.
CONTEXT_FLAGS = {"length": "--context-length", "overlap": "--context-overlap", "stride": "--context-stride",
                 "schedule": "--context-schedule", "weighting": "--context-weighting", "loop": "--context-loop"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default at the end of its help, unless there is none (None, a switch's False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _fps_limits() -> str:
    limits = {}
    for extension, fmt in VIDEO_FORMATS.items():
        if extension != ".png":
            limits.setdefault(fmt.fps_range()[1], []).append(extension)
    return ", ".join(f"{'/'.join(extensions)} up to {fastest:g}" for fastest, extensions in limits.items())


def build_parser() -> argparse.ArgumentParser:
    buckets = ", ".join(f"{w}x{h}" for w, h in ASPECT_BUCKETS)
    tiny = TINY_RANDOM_DEFAULTS
    parser = argparse.ArgumentParser(
        prog=PROG, description="Hotshot-XL text-to-video.", formatter_class=_HelpFormatter,
        allow_abbrev=False,  # --fram 3 is an error, not --frames 3
        epilog=f"--model {TINY_RANDOM} checks the install without weights: unless given, --width {tiny['width']} "
        f"--height {tiny['height']} --steps {tiny['steps']} (the video is noise).")
    source = parser.add_argument_group("model")
    source.add_argument("--model", help="Hotshot-XL model folder (hotshotco/Hotshot-XL layout), or tiny-random: "
                        "random weights built in memory, to check the install")
    source.add_argument("--temporal-layers", help="hsxl_temporal_layers*.safetensors, used with --sdxl")
    source.add_argument("--sdxl", help="SDXL checkpoint (.safetensors single file) or diffusers folder")
    source.add_argument("--tokenizer", help="folder with tokenizer/ and tokenizer_2/, a tokenizer folder "
                        "(vocab.json, merges.txt) or bpe_simple_vocab_16e6.txt.gz (single files carry none)")
    source.add_argument("--configs", help="folder of component configs in diffusers layout, for non-standard "
                        "single files")
    source.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="precision of the weights; auto: bf16 where the device computes it faster (GPUs with "
                        "bf16 in hardware, CPUs with AMX), else fp16 on GPUs and fp32 on CPUs (fp32 for tiny-random "
                        "on CPUs: faster there); fp8: the "
                        "UNet's Linear and Conv2d weights stored in float8 (half of bf16's memory), computed in bf16")
    source.add_argument("--device", default="auto", help="auto (a CUDA GPU, else Apple's MPS, else the CPU), cpu, "
                        "cuda, cuda:1, mps")
    source.add_argument("--offload", default="none", choices=OFFLOAD_MODES,
                        help="keep weights on the CPU and move them to --device only while they run: model: one "
                        "component at a time; sequential: the UNet also layer by layer (least memory, slowest)")
    source.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet: faster steps on GPUs after minutes of compiling")

    gen = parser.add_argument_group("generation")
    gen.add_argument("--prompt", default=DEFAULT_PROMPT,
                     help="what the video shows (longer than 75 tokens: encoded in chunks); (words:1.2) or "
                     "(words) weighs words as ComfyUI does, \\( and \\) are literal parentheses")
    gen.add_argument("--negative-prompt", default=DEFAULT_NEGATIVE_PROMPT, help="what it should not show")
    gen.add_argument("--zero-negative", action="store_true",
                     help="use the all-zero negative embedding instead of encoding --negative-prompt")
    gen.add_argument("--width", type=int, default=SETTING["width"],
                     help=f"multiple of 8; trained buckets: {buckets} (default: %(default)s; {tiny['width']} for "
                     "tiny-random)")
    gen.add_argument("--height", type=int, default=SETTING["height"],
                     help=f"multiple of 8 (default: %(default)s; {tiny['height']} for tiny-random)")
    gen.add_argument("--frames", type=int, default=SETTING["frames"], help="number of frames (trained on 8)")
    gen.add_argument("--steps", type=int, default=SETTING["steps"],
                     help=f"denoising steps (default: %(default)s; {tiny['steps']} for tiny-random)")
    gen.add_argument("--guidance", type=float, default=SETTING["guidance"],
                     help="classifier-free guidance scale, finite, zero or more (off at <= 1)")
    gen.add_argument("--seed", type=int, default=SETTING["seed"], help=f"0 to 2**64-1 ({SEED_MAX}): the same seed gives the "
                     "same video on any device")
    gen.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=SCHEDULER_NAMES,
                     help="euler_a is the release's; lcm is for LCM-distilled weights (4-8 steps, guidance 1-2)")
    gen.add_argument("--timestep-spacing", choices=TIMESTEP_SPACINGS,
                     help="how the steps spread over the training timesteps (default: the model's scheduler "
                     "config; the release's is leading; trailing suits few steps and zero-SNR models)")
    gen.add_argument("--prediction-type", choices=PREDICTION_TYPES,
                     help="what the UNet predicts (default: the model's; v_prediction for SDXL fine-tunes "
                     "trained that way)")
    gen.add_argument("--zero-terminal-snr", action="store_true",
                     help="rescale the noise schedule to end on pure noise, for models trained with zero "
                     "terminal SNR")
    gen.add_argument("--original-size", type=int, nargs=2, default=SETTING["original_size"], metavar=("W", "H"),
                     help="SDXL size conditioning, width first as in the original inference.py")
    gen.add_argument("--target-size", type=int, nargs=2, default=SETTING["target_size"], metavar=("W", "H"),
                     help="SDXL size conditioning, width first")
    gen.add_argument("--decode-chunk", type=int, default=SETTING["decode_chunk"], help="frames decoded by the VAE at once")
    gen.add_argument("--vae-tiling", default=SETTING["vae_tiling"], choices=VAE_TILING,
                     help="decode each frame in overlapping 512 px tiles to bound memory; auto: above 768x768 pixels")
    gen.add_argument("--cache-interval", "--deepcache", type=int, default=SETTING["cache_interval"], metavar="N",
                     help="step caching (DeepCache-style): run the whole UNet every N steps and only its outermost "
                          "blocks in between, reusing the deep features; 1 (default) is off, 3 is a common choice. "
                          "Faster, at a cost in fidelity that is unmeasured on real weights")

    default = argparse.Namespace(**CONTEXT_DEFAULTS)
    windows = parser.add_argument_group(
        "long videos", f"The UNet sees overlapping windows of frames. Any --context-* flag turns windows on; past "
        f"{MAX_LENGTH} frames they are on by themselves. An unset flag keeps its default.")
    unset = argparse.SUPPRESS  # only the flags given become attributes: see _context
    windows.add_argument("--context-length", type=int, default=unset,
                         help=f"frames per window, at most {MAX_LENGTH} (default {default.length}, as trained)")
    windows.add_argument("--context-overlap", type=int, default=unset,
                         help="frames shared by neighbouring windows, less than --context-length (default "
                         f"{default.overlap}; with --context-length alone, at most half of it)")
    windows.add_argument("--context-stride", type=int, default=unset,
                         help="largest spacing between a window's frames, a power of two; above 1 adds windows "
                         f"of every 2nd, 4th, ... frame (default {default.stride})")
    windows.add_argument("--context-schedule", choices=SCHEDULES, default=unset,
                         help="uniform: windows shift from step to step; static: the same windows every step "
                         f"(default {default.schedule})")
    windows.add_argument("--context-weighting", choices=WEIGHTINGS, default=unset,
                         help="blend overlapping windows with pyramid (frames count more near a window's middle) "
                         f"or flat weights (default {default.weighting})")
    windows.add_argument("--context-loop", action="store_true", default=unset,
                         help="wrap windows around the end for a seamless loop (--loop is the gif/webp loop count)")
    windows.add_argument("--noise", default=SETTING["noise"], choices=NOISE_TYPES,
                         help="independent: the original's noise; freenoise: the first window's noise, shuffled, "
                         "along the video, for long-range consistency")

    add_travel_arguments(parser)
    add_lora_arguments(parser)

    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, help="output file: " + ", ".join(
        e for e in VIDEO_FORMATS if e != ".png") + ", or PNG frames (frame_00000.png, ...): a folder ending in /, an "
        "existing folder, or a name with %%05d")
    out.add_argument("--fps", type=float, default=DEFAULT_FPS,
                     help=f"frames per second (trained at 8); {_fps_limits()} (GIF times frames in 1/100 s, WebM and "
                     "WebP in ms)")
    out.add_argument("--loop", type=int, default=0, help="gif/webp loop count, 0 = forever")
    out.add_argument("--overwrite", action="store_true", help="replace an existing output")
    out.add_argument("--no-metadata", action="store_true",
                     help="store nothing about the run in the file (by default the command, every setting and the "
                     "SHA-256 of each model file go where ComfyUI keeps a workflow, under the key hotshot_xl)")
    add_controlnet_arguments(parser)
    add_video2video_arguments(parser)
    add_distributed_arguments(parser)
    return parser


_MENTION = re.compile(r"`(\w+)(?:=([^`]*))?`")  # how library messages quote a parameter: `sdxl`, `overwrite=True`


def _in_flag_terms(text: str, flags: dict[str, str]) -> str:
    """`text` with each quoted parameter that has a flag said as the flag: `overwrite=True` -> --overwrite,
    `sdxl=a.safetensors` -> --sdxl a.safetensors, `model=tiny-random` -> --model tiny-random."""
    def flag(match):
        name, value = match.groups()
        if name not in flags:
            return match.group()
        return flags[name] if value in (None, "True") else f"{flags[name]} {value}"

    return _MENTION.sub(flag, text)


@contextmanager
def _errors_named_by_flag(flags: dict[str, str]):
    """Re-raise an InputError from the library in the flags' terms (`flags`: library name -> flag)."""
    try:
        yield
    except InputError as error:
        raise InputError(flags.get(error.name, error.name), _in_flag_terms(error.problem, flags)) from None


def _settings(args):
    from .pipeline import Settings
    from .denoising.schedulers import SchedulerOptions

    with _errors_named_by_flag(FLAG_OF):
        scheduler = SchedulerOptions(args.scheduler, args.timestep_spacing, args.prediction_type,
                                     args.zero_terminal_snr)
        settings = Settings(width=args.width, height=args.height, frames=args.frames, steps=args.steps,
                            guidance=args.guidance, seed=args.seed, scheduler=scheduler,
                            original_size=tuple(args.original_size), target_size=tuple(args.target_size),
                            decode_chunk=args.decode_chunk, noise=args.noise, vae_tiling=args.vae_tiling,
                            context=_context(args), cache_interval=args.cache_interval)
        settings.check()
    return settings


def _context(args):
    """ContextOptions from the --context-* flags given, or None when none was."""
    from .denoising.context import ContextOptions

    attributes = {field: flag[2:].replace("-", "_") for field, flag in CONTEXT_FLAGS.items()}
    given = {field: getattr(args, name) for field, name in attributes.items() if hasattr(args, name)}
    if not given:
        return None
    if "length" in given and "overlap" not in given:  # short windows: the default overlap would not fit
        given["overlap"] = min(ContextOptions.overlap, given["length"] // 2)
    with _errors_named_by_flag(CONTEXT_FLAGS):
        return ContextOptions(**given)


def _given(parser: argparse.ArgumentParser, argv) -> set[str]:
    """The destinations of the flags the user typed (parsed again with every default suppressed)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _small_for_tiny_random(args, given: set[str]) -> list[str]:
    """tiny-random is an install check: a small video in a few steps unless the user asked otherwise.
    Returns the flags so chosen."""
    if args.model != TINY_RANDOM:
        return []
    chosen = [name for name in TINY_RANDOM_DEFAULTS if name not in given]
    for name in chosen:
        setattr(args, name, TINY_RANDOM_DEFAULTS[name])
    return [f"{FLAG_OF[name]} {TINY_RANDOM_DEFAULTS[name]}" for name in chosen]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds as Ctrl-C does: partial outputs removed."""


@contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(interruption: KeyboardInterrupt) -> int:
    """The one line an interruption prints (what was written, if a batch wrote some), and the exit code."""
    written = getattr(interruption, "written", [])  # set by a --prompts batch: see distributed/batch.py
    done = f"wrote {', '.join(written)}; the other lines are not written (run again to continue)" if written \
        else "nothing written"
    terminated = isinstance(interruption, Terminated)
    print(f"{'terminated' if terminated else 'interrupted'}: {done}", file=sys.stderr)
    return 128 + signal.SIGTERM if terminated else 130


def run(argv=None) -> int:
    with _sigterm_as_interrupt():
        try:
            return _run(argv)
        except KeyboardInterrupt as interruption:  # also what happens before _run's own handler is reached
            return _interrupted(interruption)


def _run(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    given = _given(parser, argv)
    small = _small_for_tiny_random(args, given)
    started = time.perf_counter()
    try:
        if args.model is None and args.sdxl is None:
            print(WHERE_TO_GET_WEIGHTS, file=sys.stderr)
            return 2
        # Every check before anything heavy: torch and the model code load here, the weights much later.
        from .pipeline import check_file_roles, check_prompts, check_sources, check_speed_options
        from .memory.precision import resolve_device
        from .media.video import check_output

        with _errors_named_by_flag(FLAG_OF):
            check_sources(args.model, args.temporal_layers, args.sdxl, args.tokenizer, args.configs)
            check_file_roles(args.model, args.temporal_layers, args.sdxl)  # headers only
            check_prompts(args.prompt, args.negative_prompt)  # weights, `(words:1.2)`, well formed
        settings = _settings(args)
        settings, init_frames = init_from_args(args, argv, settings)
        settings, keyframes = direction_from_args(args, given, settings)  # --prompt-travel, --motion-scale, ...
        control_groups = check_controlnet_args(args, settings.width, settings.height, settings.frames)
        with _errors_named_by_flag(FLAG_OF):
            check_speed_options(args.offload, args.compile)
            resolve_device(args.device)  # refuses a device this machine lacks
        session = plan_session(args, settings)  # --prompts and torchrun's ranks, checked before loading
        if session.finished:
            return 0
        hashes = None
        if session.writes_one_video:
            with _errors_named_by_flag(FLAG_OF):
                check_output(args.out, settings.frames, args.fps, args.loop, args.overwrite)
            if not args.no_metadata:  # model files hashed in the background while the model loads and samples
                from .media.run_record import start_hashing

                hashes = start_hashing(value for name, value in vars(args).items() if name != "out")
        loras = read_chosen(loras_from_args(args))  # small files: every one is checked before the model loads
        from .budget import check_before_loading

        with _errors_named_by_flag(FLAG_OF):  # a run that cannot fit is refused here; a very long one warned
            check_before_loading(settings, model=args.model, sdxl=args.sdxl, configs=args.configs, dtype=args.dtype,
                                 device=args.device, offload=args.offload, init_video=init_frames is not None,
                                 warn=lambda text: print(_in_flag_terms(text, FLAG_OF), file=sys.stderr))
        if small:
            print(f"tiny-random: {' '.join(small)} (an install check; give them to choose)", file=sys.stderr)
        from .denoising.context import ContextOptions, context_for

        if settings.context is None and context_for(settings.frames, None) is not None:
            default = ContextOptions()
            print(f"--frames {settings.frames}: more than the {MAX_LENGTH} frames the temporal layers take in one "
                  f"pass, so the UNet runs on windows of {default.length} frames overlapping by {default.overlap} "
                  "(choose with --context-length, --context-overlap)", file=sys.stderr)

        from .pipeline import load_pipeline
        from .progress import bar

        session.join()
        with _errors_named_by_flag(FLAG_OF):
            pipe = load_pipeline(args.model, temporal_layers=args.temporal_layers, sdxl=args.sdxl,
                                 tokenizer=args.tokenizer, configs=args.configs, dtype=args.dtype,
                                 device=session.device(args.device), offload=args.offload, compile=args.compile,
                                 progress=True)
        if args.model == TINY_RANDOM:
            print("tiny-random: random weights, so the video is noise; this only checks the install",
                  file=sys.stderr)
        for lora, strength in loras:
            print(pipe.load_lora(lora, strength).lines()[0], file=sys.stderr)  # unknown keys: a logged warning
        if session.batch:
            return session.run_batch(pipe)
        session.share(pipe)
        negative = None if args.zero_negative else args.negative_prompt
        prompts = [(f"--prompt-travel {k.where}", k.value) for k in keyframes] if keyframes else [("--prompt", args.prompt)]
        for label, text in (*prompts, ("--negative-prompt", negative)):
            tokens = pipe.text.prompt_tokens(text) if text else 0
            if tokens > 75:
                chunks = pipe.text._chunks_for(text)  # (weighted runs are not split: maybe one more than n/75)
                print(f"{label} is {tokens} tokens: encoded in {chunks} chunks of 75 (CLIP reads 75 at a time)",
                      file=sys.stderr)
        if keyframes is not None:
            conditions = pipe.encode_travel(keyframes, negative, settings.original_size, settings.target_size,
                                            args.prompt_interpolation, "--prompt-travel")
        else:
            conditions = pipe.encode(args.prompt, negative, settings.original_size, settings.target_size)
        controls = controls_from_args(control_groups, pipe)
        init = None if init_frames is None else pipe.encode_video(init_frames, settings.decode_chunk,
                                                                   settings.vae_tiling, settings.frames)
        from .travel.freeinit import freeinit_options

        with bar(True, settings.steps * freeinit_options(settings.freeinit).iterations, "sampling", "step") as advance:
            latents = pipe.sample(conditions, settings, callback=lambda *_: advance(), controls=controls, init=init)
        with bar(True, settings.frames, "decoding", "frame") as advance:
            frames = pipe.decode(latents, settings.decode_chunk, settings.vae_tiling,
                                 callback=lambda done, total: advance(done))
        if not session.writes_one_video:
            return 0
        from .media.video import write_video
        from .media.run_record import cli_tags

        tags = None if args.no_metadata else cli_tags(PROG, sys.argv[1:] if argv is None else argv, args, hashes)
        with _errors_named_by_flag(FLAG_OF):
            files = write_video(frames, args.out, fps=args.fps, loop=args.loop, overwrite=args.overwrite,
                                metadata=tags)
    except HotshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        return _interrupted(interruption)
    seconds = time.perf_counter() - started
    where = files[0] if len(files) == 1 else f"{files[0].parent}/ ({len(files)} PNG files)"
    print(f"wrote {where}: {frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, "
          f"{args.fps:g} fps, {seconds:.1f} s")
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
