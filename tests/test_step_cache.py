"""Step caching (model/step_cache.py): off is today's sampler bit for bit; on, the steps between
refreshes run only the outermost blocks, and the result stays close to the uncached one."""

import pytest
import torch

from model.controlnet.apply import Control
from model.controlnet.loading import load_controlnet
from model.denoising.context import ContextOptions, context_windows
from model.denoising.loop import guided_predictor
from model.denoising.schedulers import make_scheduler
from model.denoising.step_cache import StepCache
from model.errors import InputError
from model.pipeline import Settings, load_pipeline

SMALL = dict(width=64, height=64, steps=5, scheduler="euler")
FEW = dict(width=48, height=48, steps=4, scheduler="euler")  # refreshes at 0 and 3 with interval 3


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def conditions(pipe):
    return pipe.encode("a cat", "blurry")


def relative(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


class BlockCalls:
    """Counts the forward calls of the UNet's outermost and deep blocks while in a `with`."""

    def __init__(self, unet):
        self.blocks = {"outer_down": unet.down_blocks[0].resnets[0], "outer_up": unet.up_blocks[-1],
                       "deep_down": unet.down_blocks[1], "mid": unet.mid_block, "deep_up": unet.up_blocks[0],
                       "downsampler": unet.down_blocks[0].downsamplers[0]}
        self.counts = dict.fromkeys(self.blocks, 0)

    def __enter__(self):
        self.handles = [block.register_forward_pre_hook(lambda *_, name=name: self.counts.__setitem__(
            name, self.counts[name] + 1)) for name, block in self.blocks.items()]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def test_off_is_the_plain_sampler_bit_for_bit(pipe, conditions):
    plain = pipe.sample(conditions, Settings(frames=8, **FEW))
    assert torch.equal(plain, pipe.sample(conditions, Settings(frames=8, cache_interval=1, **FEW)))
    assert guided_predictor(pipe.unet, conditions, 5.0).step_cache is None
    # A refresh step is the whole UNet itself: one step at any interval is the uncached result.
    one = dict(SMALL, steps=1)
    assert torch.equal(pipe.sample(conditions, Settings(frames=8, **one)),
                       pipe.sample(conditions, Settings(frames=8, cache_interval=4, **one)))


def test_cached_steps_skip_the_deep_blocks_and_stay_close(pipe, conditions):
    plain = pipe.sample(conditions, Settings(frames=8, **SMALL))
    with BlockCalls(pipe.unet) as calls:
        cached = pipe.sample(conditions, Settings(frames=8, cache_interval=2, **SMALL))
    # 5 steps, refreshed at steps 0, 2, 4: the deep blocks run 3 times, the outermost ones 5 times,
    # and the downsampler (which only feeds the deep blocks) only with them.
    assert calls.counts == {"outer_down": 5, "outer_up": 5, "deep_down": 3, "mid": 3, "deep_up": 3,
                            "downsampler": 3}
    assert torch.isfinite(cached).all() and not torch.equal(cached, plain)
    # Measured 0.11 on the tiny model at interval 3 (another seed: 1.07 away).
    other_seed = pipe.sample(conditions, Settings(frames=8, seed=1, **SMALL))
    assert relative(cached, plain) < 0.25 * relative(other_seed, plain)


def test_shallow_calls_leave_the_kept_features_untouched(pipe, conditions):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 3, 8, 8, generator=generator)
    context, pooled, time_ids = conditions.batch("cpu", torch.float32, cfg=True)
    cache = StepCache(pipe.unet, 3)
    full = cache(sample, torch.tensor(900), context, pooled, time_ids, step=(0, 3))
    assert torch.equal(full, pipe.unet(sample, torch.tensor(900), context, pooled, time_ids))
    (kept,) = cache.entries.values()
    before = kept.clone()
    cache(sample * 0.9, torch.tensor(600), context, pooled, time_ids, step=(1, 3))
    cache(sample * 0.8, torch.tensor(300), context, pooled, time_ids, step=(2, 3))
    assert torch.equal(kept, before) and (cache.full_calls, cache.shallow_calls) == (1, 2)
    # Without a step (a caller outside the sampling loop), every call is the whole UNet.
    assert torch.equal(cache(sample, torch.tensor(900), context, pooled, time_ids), full)


@pytest.mark.parametrize("schedule, guidance", [("static", 5.0), ("uniform", 1.0)])
def test_windows_keep_a_cache_each(pipe, conditions, schedule, guidance):
    settings = dict(frames=10, context=ContextOptions(6, 2, schedule=schedule), guidance=guidance, **FEW)
    plain = pipe.sample(conditions, Settings(**settings))
    predictor = guided_predictor(pipe.unet, conditions, guidance, cache_interval=3)
    cached = pipe.sample(conditions, Settings(**settings), predictor=predictor)
    cache = predictor.step_cache
    # Refreshed at steps 0 and 3, every window runs the whole UNet; at the other steps every window
    # reuses (static: each window its own entry; uniform: the windows moved, so their features are
    # gathered frame by frame from the refresh step's windows).
    scheduler = make_scheduler("euler", pipe.scheduler_config)
    scheduler.set_timesteps(FEW["steps"])
    windows = [len(context_windows(10, settings["context"], t)) for t in scheduler.timesteps]
    assert min(windows) >= 2
    assert cache.full_calls == windows[0] + windows[3] and cache.shallow_calls == sum(windows) - cache.full_calls
    assert torch.isfinite(cached).all() and relative(cached, plain) < 0.3


def test_controlnet_residuals_reach_the_cached_steps(pipe, conditions, fixtures_dir):
    net = load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp32", device="cpu", unet_config=pipe.unet.config)
    images = torch.rand(8, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    settings = Settings(frames=8, cache_interval=2, **dict(FEW, steps=3))  # refreshes at steps 0 and 2
    # The control applies at step 1 of 3 only, a cached step: if the shallow path dropped its
    # residuals, the result would not depend on the control at all.
    controlled = pipe.sample(conditions, settings, controls=[Control(net, images, start=0.3, end=0.7)])
    uncontrolled = pipe.sample(conditions, settings)
    assert torch.isfinite(controlled).all() and not torch.equal(controlled, uncontrolled)


def test_cli_flag_reaches_the_settings():
    from model.sample import _settings, build_parser

    flags = ["--model", "tiny-random", "--out", "x.mp4"]
    assert _settings(build_parser().parse_args(flags)).cache_interval == 1
    assert _settings(build_parser().parse_args(flags + ["--cache-interval", "3"])).cache_interval == 3
    assert _settings(build_parser().parse_args(flags + ["--deepcache", "2"])).cache_interval == 2


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "3"])
def test_bad_interval_names_the_setting(pipe, value):
    with pytest.raises(InputError, match="^cache_interval: "):
        pipe("a cat", cache_interval=value, **SMALL)
