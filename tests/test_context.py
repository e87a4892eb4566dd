"""Long and large videos: context windows over the frames, FreeNoise noise, tiled VAE decode."""

import itertools
import math

import pytest
import torch

from model.denoising.context import (ContextOptions, blend_weights, context_for, context_windows, freenoise, window_weights,
                           windowed_predictor)
from model.media.decode import AUTO_TILING_PIXELS, decode_latents, wants_tiling
from model.errors import InputError
from model.pipeline import Settings, load_pipeline
from model.denoising.loop import guided_predictor, initial_noise


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def conditions(pipe):
    return pipe.encode("a cat", "blurry")


# --- windows and weights, without a model ---------------------------------------------------------

FRAMES = (1, 2, 3, 5, 7, 8, 9, 10, 13, 16, 17, 23, 24, 25, 31, 40, 80)
LENGTHS = (1, 2, 3, 5, 8, 12, 24)
TIMESTEPS = (999, 501, 1, 0)


def spacing_of(window, frames, loop):
    steps = {(b - a) % frames if loop else b - a for a, b in zip(window, window[1:])}
    assert len(steps) <= 1, f"{window}: frames not evenly spaced"
    return steps.pop() if steps else 1


@pytest.mark.parametrize("stride, loop", list(itertools.product((1, 2, 4), (False, True))))
def test_windows_cover_every_frame_and_weights_sum_to_one(stride, loop):
    for frames, length, schedule in itertools.product(FRAMES, LENGTHS, ("uniform", "static")):
        for overlap in sorted({0, 1, length // 2, length - 1} & set(range(length))):
            options = ContextOptions(length, overlap, stride, schedule, loop=loop)
            for timestep in TIMESTEPS if schedule == "uniform" else (0,):
                case = f"frames={frames} {options} t={timestep}"
                windows = context_windows(frames, options, timestep)
                if frames <= length:
                    assert windows == [tuple(range(frames))], case  # one window: the plain path
                    continue
                for window in windows:
                    assert len(window) == length == len(set(window)), case
                    assert all(0 <= f < frames for f in window), case
                    spacing = spacing_of(window, frames, loop)
                    assert spacing & (spacing - 1) == 0 and spacing <= stride, case
                    if not loop:
                        assert list(window) == sorted(window), f"{case}: {window} wraps without loop"
                # Neighbouring contiguous windows share at least `overlap` frames (so no hard cut).
                contiguous = sorted(w for w in windows if spacing_of(w, frames, loop) == 1)
                pairs = zip(contiguous, contiguous[1:] + (contiguous[:1] if loop else []))
                assert all(len(set(a) & set(b)) >= overlap for a, b in pairs), case
                # Looping, the last and first frames are neighbours like any others (with no overlap
                # they may or may not share a window, as anywhere); without, never.
                wraps = [w for w in contiguous if 0 in w and frames - 1 in w]
                if loop and overlap:
                    assert wraps, f"{case}: the last and first frames share no window"
                if not loop:
                    assert not wraps, f"{case}: the last and first frames share a window"

                for weighting in ("pyramid", "flat"):
                    shares = blend_weights(frames, windows, weighting)
                    assert shares.shape == (len(windows), len(windows[0]))
                    weights = torch.zeros(len(windows), frames)  # as a dense table, for the checks
                    for row, window, share in zip(weights, windows, shares):
                        row[list(window)] = share
                    assert torch.allclose(weights.sum(dim=0), torch.ones(frames), atol=1e-6), case
                    held = torch.zeros(len(windows), frames, dtype=torch.bool)
                    for row, window in zip(held, windows):
                        row[list(window)] = True
                    assert (weights[~held] == 0).all() and (weights[held] > 0).all(), case


def test_window_weights():
    assert window_weights(8, "pyramid").tolist() == [1, 2, 3, 4, 4, 3, 2, 1]
    assert window_weights(5, "pyramid").tolist() == [1, 2, 3, 2, 1]
    assert window_weights(4, "flat").tolist() == [1, 1, 1, 1]
    # A frame near a window's middle counts more than one at its edge.
    shares = blend_weights(12, [tuple(range(8)), tuple(range(4, 12))], "pyramid")
    assert shares[0, 4:8].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2])  # frames 4 to 7 in the first window
    assert shares[1, 0:4].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])  # ... and in the second


def test_uniform_schedule_moves_window_borders_static_keeps_them():
    timesteps = torch.linspace(999, 0, 10).round()
    uniform = {tuple(context_windows(40, ContextOptions(), t)) for t in timesteps}
    static = {tuple(context_windows(40, ContextOptions(schedule="static"), t)) for t in timesteps}
    assert len(static) == 1 and len(uniform) >= 3
    assert static.pop()[:3] == ((0, 1, 2, 3, 4, 5, 6, 7), (4, 5, 6, 7, 8, 9, 10, 11), (8, 9, 10, 11, 12, 13, 14, 15))


def test_loop_windows_wrap_around_the_end():
    windows = context_windows(12, ContextOptions(schedule="static", loop=True))
    assert windows == [(0, 1, 2, 3, 4, 5, 6, 7), (4, 5, 6, 7, 8, 9, 10, 11), (8, 9, 10, 11, 0, 1, 2, 3)]
    assert context_windows(12, ContextOptions(schedule="static")) == windows[:2]
    strided = context_windows(16, ContextOptions(stride=2, schedule="static", loop=True))
    assert (8, 10, 12, 14, 0, 2, 4, 6) in strided and (1, 3, 5, 7, 9, 11, 13, 15) in strided


@pytest.mark.parametrize("options", [ContextOptions(), ContextOptions(6, 2, 2, "static", "flat", True),
                                     ContextOptions(4, 0, 4, loop=True)])
def test_windowed_predictor_puts_every_window_back_in_place(options):
    """With predict = identity every frame must come back as itself: shares sum to one, no frame moves."""
    latents = torch.randn(2, 4, 19, 3, 5)
    seen = []

    def identity(window_latents, timestep):
        seen.append(window_latents.shape[2])
        return window_latents.clone()

    blended = windowed_predictor(identity, options)(latents, torch.tensor(700.0))
    assert torch.allclose(blended, latents, atol=1e-6)
    assert len(seen) == len(context_windows(19, options, 700)) > 1 and set(seen) == {options.length}


@pytest.mark.parametrize("field, value, message", [
    ("length", 0, "must be 1 to 24"), ("length", 25, "must be 1 to 24"), ("length", 8.0, "whole number"),
    ("overlap", 8, "must be 0 to 7"), ("overlap", -1, "must be 0 to 7"), ("stride", 3, "power of two"),
    ("schedule", "looped", "choose one of uniform, static"), ("weighting", "gauss", "choose one of pyramid, flat"),
    ("loop", 1, "True or False")])
def test_bad_options_name_the_field(field, value, message):
    with pytest.raises(InputError, match=rf"^{field}: .*{message}"):
        ContextOptions(**{field: value})


def test_windows_switch_on_past_the_temporal_layers_reach():
    assert context_for(24, None) is None
    assert context_for(25, None) == ContextOptions()
    mine = ContextOptions(12, 6)
    assert context_for(10, mine) is mine


# --- sampling with windows on the tiny model ----------------------------------------------------

SMALL = dict(width=64, height=64, steps=1, seed=7)  # one step of euler_a: the UNet, then ancestral noise


@pytest.mark.parametrize("frames, options", [
    (8, [ContextOptions(), ContextOptions(length=16, overlap=2, stride=2, schedule="static", loop=True)]),
    (5, [ContextOptions()])])
def test_one_window_is_exactly_the_plain_path(pipe, conditions, frames, options):
    plain = pipe.sample(conditions, Settings(frames=frames, **SMALL))
    for context in options:
        assert torch.equal(plain, pipe.sample(conditions, Settings(frames=frames, context=context, **SMALL)))


def test_windowed_sampling_is_deterministic_and_bounded_by_the_window(pipe, conditions):
    settings = Settings(frames=10, context=ContextOptions(length=6, overlap=2), **SMALL)
    sizes = []
    unet_predict = guided_predictor(pipe.unet, conditions, settings.guidance)

    def spy(latents, timestep):
        sizes.append(latents.shape[2])
        return unet_predict(latents, timestep)

    first = pipe.sample(conditions, settings, predictor=spy)
    assert set(sizes) == {6} and len(sizes) >= 2  # every UNet call sees one window, never the video
    assert torch.equal(first, pipe.sample(conditions, settings))
    assert not torch.equal(first, pipe.sample(conditions, Settings(frames=10, **SMALL)))


def smooth_latents(frames, size, seed, turn):
    """Unit-variance latents that drift smoothly: frame f = a cos(f turn) + b sin(f turn)."""
    a, b = torch.randn(2, 1, 4, 1, size, size, generator=torch.Generator().manual_seed(seed))
    angle = (torch.arange(frames) * turn).view(1, 1, -1, 1, 1)
    return a * angle.cos() + b * angle.sin()


def neighbour_differences(noise, cyclic=False):
    """(frames - 1,) or, cyclic, (frames,): mean |prediction(f + 1) - prediction(f)| per frame pair."""
    following = noise.roll(-1, dims=2) if cyclic else noise[:, :, 1:]
    return (following - noise[:, :, :following.shape[2]]).abs().mean(dim=(0, 1, 3, 4))


def border_ratio(predict, options, frames=24, size=8, timestep=500):
    """Largest neighbour difference at a window border over the median one inside windows.

    Input: smoothly drifting latents, so neighbouring frames' predictions differ little where the
    same windows see both, and any jump comes from the windows. A pair (f, f + 1) is at a border
    when the set of windows holding f differs from the set holding f + 1 (for 24 frames, windows
    of 8 overlapping by 4: pairs 3-4, 7-8, ..., 19-20); otherwise it is inside. The static
    schedule keeps borders in place: the worst case.
    """
    latents = smooth_latents(frames, size, seed=0, turn=0.15)
    differences = neighbour_differences(windowed_predictor(predict, options)(latents, torch.tensor(timestep)))
    windows = context_windows(frames, options, timestep)
    holders = [{i for i, window in enumerate(windows) if f in window} for f in range(frames)]
    border = [f for f in range(frames - 1) if holders[f] != holders[f + 1]]
    inside = [f for f in range(frames - 1) if holders[f] == holders[f + 1]]
    assert border and len(inside) >= len(border)
    return (differences[border].max() / differences[inside].median()).item()


def test_no_seam_at_window_borders(pipe, conditions):
    """Measured on the tiny model over 3 seeds and 3 timesteps: 1.45-1.8 with pyramid blending (the
    plain single pass gives 1.05-1.1 at the same pairs), 8.5-10.7 for hard cuts (no overlap, flat)."""
    predict = guided_predictor(pipe.unet, conditions, 5.0)
    blended = border_ratio(predict, ContextOptions(8, 4, schedule="static"))
    hard_cut = border_ratio(predict, ContextOptions(8, 0, schedule="static", weighting="flat"))
    assert blended < 2.0
    assert hard_cut > 4.0  # the statistic does see a seam where there is one


def test_loop_mode_joins_the_last_frame_to_the_first(pipe, conditions):
    """Latents going once round a circle: the last frame is as close to the first as to its other
    neighbour. Measured: the last-to-first difference is 1.0-1.2x the median with loop, 3.3-3.6x without."""
    predict = guided_predictor(pipe.unet, conditions, 5.0)
    frames = 16
    latents = smooth_latents(frames, 8, seed=0, turn=2 * math.pi / frames)

    def wrap_ratio(loop):
        options = ContextOptions(8, 4, schedule="static", loop=loop)
        noise = windowed_predictor(predict, options)(latents, torch.tensor(500))
        differences = neighbour_differences(noise, cyclic=True)  # the last entry: frame 15 -> frame 0
        return (differences[-1] / differences[:-1].median()).item()

    assert wrap_ratio(loop=True) < 1.6
    assert wrap_ratio(loop=False) > 2.5


# --- FreeNoise -----------------------------------------------------------------------------------

def test_freenoise_windows_are_permutations_of_the_first():
    length, overlap, frames = 8, 4, 30
    independent, _ = initial_noise(11, frames, 64, 64)
    noise, generator = initial_noise(11, frames, 64, 64)
    shuffled = freenoise(noise, length, overlap, generator)
    assert torch.equal(noise, independent)  # the input is left alone
    assert torch.equal(shuffled[:, :, :length], independent[:, :, :length])
    first = [independent[:, :, f] for f in range(length)]

    def source(frame):
        matches = [i for i, candidate in enumerate(first) if torch.equal(shuffled[:, :, frame], candidate)]
        assert len(matches) == 1, f"frame {frame}'s noise is not one of the first window's"
        return matches[0]

    sources = [source(f) for f in range(frames)]
    step = length - overlap
    for start in range(0, frames - length + 1, step):
        assert sorted(sources[start:start + length]) == list(range(length)), f"window at {start}"
    blocks = [sources[start:start + step] for start in range(length, frames, step)]
    assert any(block != sorted(block) for block in blocks)  # shuffled, not copied in order

    fresh, fresh_generator = initial_noise(11, frames, 64, 64)
    assert torch.equal(freenoise(fresh, length, overlap, fresh_generator), shuffled)  # deterministic for a seed
    other = freenoise(fresh, length, overlap, torch.Generator().manual_seed(12))
    assert not torch.equal(other, shuffled)  # the shuffles come from the generator


def test_freenoise_sampling(pipe, conditions):
    # One window: nothing to shuffle, so FreeNoise is the original's draw exactly.
    plain = pipe.sample(conditions, Settings(frames=8, **SMALL))
    assert torch.equal(plain, pipe.sample(conditions, Settings(frames=8, noise="freenoise", **SMALL)))
    settings = Settings(frames=10, noise="freenoise", context=ContextOptions(6, 2, schedule="static"), **SMALL)
    first = pipe.sample(conditions, settings)
    assert torch.equal(first, pipe.sample(conditions, settings))
    independent = Settings(frames=10, context=ContextOptions(6, 2, schedule="static"), **SMALL)
    assert not torch.equal(first, pipe.sample(conditions, independent))


@pytest.mark.parametrize("field, value", [("noise", "pyramid"), ("vae_tiling", "yes"), ("context", {"length": 8})])
def test_bad_long_video_settings_name_the_setting(pipe, field, value):
    with pytest.raises(InputError, match=rf"^{field}: "):
        pipe("a cat", **{field: value})


# --- large frames --------------------------------------------------------------------------------

def test_auto_tiling_threshold():
    assert not wants_tiling("auto", 384, 672) and not wants_tiling("auto", 768, 768)
    assert wants_tiling("auto", 720, 1280) and wants_tiling("auto", 776, 768)
    assert wants_tiling("on", 64, 64) and not wants_tiling("off", 2160, 3840)
    assert wants_tiling(True, 8, 8) and not wants_tiling(False, 4096, 4096)
    assert AUTO_TILING_PIXELS == 768 * 768


def record_decoder_inputs(vae):
    shapes = []
    handle = vae.decoder.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    return shapes, handle


def test_tiled_decode_bounds_each_decoder_call(pipe):
    vae = pipe.vae
    generator = torch.Generator().manual_seed(0)
    latents, unrelated = torch.randn(2, 1, 4, 5, 16, 24, generator=generator)
    before = vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size
    shapes, handle = record_decoder_inputs(vae)
    try:
        whole = decode_latents(vae, latents, frames_per_chunk=2, tiled="off")
        assert shapes == [(2, 4, 16, 24), (2, 4, 16, 24), (1, 4, 16, 24)]
        shapes.clear()
        tiled = decode_latents(vae, latents, frames_per_chunk=2, tiled="on", tile_size=128)
    finally:
        handle.remove()
    # 128 px tiles are 16 latents, starting every 12 (a quarter overlap): 2 x 2 tiles for each of
    # the 3 chunks of frames, none larger than a tile.
    assert len(shapes) == 3 * 2 * 2 and all(s[0] <= 2 and s[2] <= 16 and s[3] <= 16 for s in shapes)
    assert tiled.shape == whole.shape == (5, 128, 192, 3)
    # The same picture, blended seams aside: measured 0.1x the difference to another latent's.
    other = decode_latents(vae, unrelated, frames_per_chunk=2, tiled="off")
    assert (tiled - whole).abs().mean() < 0.3 * (other - whole).abs().mean()
    assert (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size) == before
    with pytest.raises(InputError, match="^tile_size: "):
        decode_latents(vae, latents, tile_size=60)


@pytest.fixture(scope="module")
def slim_pipe(pipe):
    """The fixture's text encoders and scheduler around a UNet and a VAE slimmer still (UNet: 8 to
    16 channels, one resnet per block, spatial attention only at the smallest latent size; VAE: 2
    channels, one resnet per up block, no attention), random.

    What the 80-frame 1280x720 test shows is which windows and tiles run, not what the layers
    compute: with the fixture's UNet and VAE it took 250-550 s on 2 cores, most of it in
    convolutions and attention over 1280x720 frames that these layers make many times cheaper.
    """
    from diffusers import AutoencoderKL

    from model.network.config import UNetConfig
    from model.pipeline import HotshotXLPipeline
    from model.network.unet import HotshotXLUNet

    config = UNetConfig(block_out_channels=(8, 16, 16), down_cross_attention=(False, False, True),
                        up_cross_attention=(True, False, False), layers_per_block=1,
                        transformer_layers_per_block=(1, 1, 1), attention_heads=(1, 2, 2),
                        cross_attention_dim=pipe.unet.config.cross_attention_dim, norm_num_groups=8,
                        addition_time_embed_dim=pipe.unet.config.addition_time_embed_dim,
                        projection_class_embeddings_input_dim=pipe.unet.config.projection_class_embeddings_input_dim,
                        temporal_heads=2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = HotshotXLUNet(config).eval().requires_grad_(False)
        vae = AutoencoderKL(block_out_channels=[2, 2, 2, 2], down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=0, norm_num_groups=2,
                            latent_channels=4, mid_block_add_attention=False,
                            scaling_factor=pipe.vae.config.scaling_factor).eval().requires_grad_(False)
    # oneDNN's convolutions with so few channels are several times faster channels-last.
    vae.to(memory_format=torch.channels_last)
    return HotshotXLPipeline(unet, vae, pipe.text, pipe.scheduler_config, name="slim")


def test_ten_seconds_at_1280x720_end_to_end(slim_pipe):
    """80 frames (10 s at 8 fps) at 1280x720 with the defaults: windows and tiles switch on by themselves.

    One step, no CFG, on narrow random layers (slim_pipe): the UNet runs about 20 windows of 8
    frames, the VAE 20 chunks of 4 frames in 8 tiles each. Every UNet and decoder call is recorded
    to show that none of them sees the whole video or the whole frame.
    """
    pipe = slim_pipe
    unet_calls = []  # (frames, timestep) of each UNet call
    unet_handle = pipe.unet.register_forward_pre_hook(
        lambda module, args: unet_calls.append((args[0].shape[2], int(args[1].flatten()[0]))))
    tiles, vae_handle = record_decoder_inputs(pipe.vae)
    try:
        frames = pipe("a cat", frames=80, width=1280, height=720, steps=1, guidance=1.0, seed=3)
    finally:
        unet_handle.remove()
        vae_handle.remove()
    assert frames.shape == (80, 720, 1280, 3) and torch.isfinite(frames).all()
    assert frames.std() > 0.01 and not torch.equal(frames[1:], frames[:-1])  # a picture, and it moves
    # Windows of 8 overlapping by 4 (the uniform schedule shifts them with the timestep): about 20.
    (_, timestep), = set(unet_calls)
    windows = context_windows(80, ContextOptions(), timestep)
    assert unet_calls == [(8, timestep)] * len(windows) and 19 <= len(windows) <= 20
    # 512 px tiles (64 latents, every 48): 2 rows x 4 columns for each of 20 chunks of 4 frames.
    assert len(tiles) == 20 * 2 * 4 and all(s[0] <= 4 and s[2] <= 64 and s[3] <= 64 for s in tiles)
