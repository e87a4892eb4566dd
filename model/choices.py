"""The values users choose from (CLI flags, their defaults and limits), as plain data.

This module imports nothing heavy, so `python -m model.sample --help` can list every choice
without loading torch or diffusers. The modules that act on a choice import it from here.
"""

# The release's aspect buckets (width, height): Hotshot-XL was trained around 512 px on these.
ASPECT_BUCKETS = [(320, 768), (384, 672), (416, 608), (512, 512), (608, 416), (672, 384), (768, 320)]

DTYPES = ("auto", "bf16", "fp16", "fp32", "fp8")  # "auto": see precision.default_dtype
OFFLOAD_MODES = ("none", "model", "sequential")  # see memory/offload.py
VAE_TILING = ("auto", "on", "off")  # see media/decode.wants_tiling
TRAIN_DTYPES = ("auto", "bf16", "fp32")  # the trainer's compute dtypes: see memory/precision.training_dtype
SAVE_DTYPES = ("fp32", "fp16", "bf16")  # the dtypes trained temporal layers are written in

# Context windows (see denoising/context.py).
MAX_LENGTH = 24  # positions in the released temporal layers' sinusoidal table
SCHEDULES = ("uniform", "static")  # how windows are laid over the frames
WEIGHTINGS = ("pyramid", "flat")  # how overlapping windows' predictions are blended
NOISE_TYPES = ("independent", "freenoise")  # initial noise for videos longer than one window
# ContextOptions' defaults (its fields read them from here).
CONTEXT_DEFAULTS = {"length": 8, "overlap": 4, "stride": 1, "schedule": "uniform", "weighting": "pyramid", "loop": False}
STRIDE_MAX = 64  # the widest context stride offered (any power of two is valid)

# Schedulers (see denoising/schedulers.py, whose SCHEDULERS has these names in this order: a test checks).
SCHEDULER_NAMES = ("euler_a", "euler", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "unipc", "lcm")
DEFAULT_SCHEDULER = "euler_a"
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction")

# The generation settings' defaults: pipeline.Settings' fields, the CLI's flags and the nodes' inputs read them.
SETTINGS_DEFAULTS = {"width": 672, "height": 384, "frames": 8, "steps": 30, "guidance": 5.0, "seed": 455,
                     "original_size": (1920, 1080), "target_size": (512, 512),  # width, height, as inference.py
                     "decode_chunk": 4, "noise": "independent", "vae_tiling": "auto", "strength": 1.0,
                     "cache_interval": 1}  # 1: no step caching
DEFAULT_PROMPT = "a bulldog in the captains chair of a spaceship, hd, high quality"
DEFAULT_NEGATIVE_PROMPT = "blurry"

GUIDANCE_MAX = 100.0  # ComfyUI's cfg widget range; far past 20 the frames saturate, past it fp16 overflows
SEED_MAX = 2**64 - 1  # torch.Generator takes 64-bit seeds (ComfyUI's seed widget has the same range)

# `--model tiny-random` is an install check: unless the user asks for more, it makes a small video
# in a few steps, so the check takes seconds, not the minutes of the release's 672x384 at 30 steps.
TINY_RANDOM = "tiny-random"
TINY_RANDOM_DEFAULTS = {"width": 256, "height": 256, "steps": 4}
