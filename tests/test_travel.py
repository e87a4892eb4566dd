"""Directing a video (model/travel/): prompt travel, motion strength and FreeInit, on the tiny model."""

import math

import pytest
import torch

from model.denoising.context import ContextOptions, windowed_predictor
from model.errors import InputError
from model.pipeline import Settings, load_pipeline
from model.denoising.loop import guided_predictor
from model.denoising.schedulers import make_scheduler
from model.travel import freeinit as freeinit_module
from model.travel.freeinit import FreeInitOptions, low_pass
from model.travel.keyframes import prompt_keyframes, read_prompt_travel, scale_keyframes
from model.travel.prompts import encode_travel

SIZE = dict(width=64, height=64, steps=2, seed=7)
CAT, DOG = "a cat on a sofa", "a dog in the snow"


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


def latents(pipe, conditions, **settings):
    return pipe.sample(conditions, Settings(**{**SIZE, **settings}))


# ---- prompt travel ---------------------------------------------------------------------------------

def test_one_keyframe_is_the_plain_prompt_bit_for_bit(pipe):
    plain = pipe(CAT, "blurry", frames=3, **SIZE)
    assert torch.equal(pipe(prompts={0: CAT}, negative_prompt="blurry", frames=3, **SIZE), plain)
    assert torch.equal(pipe(prompts={2: CAT}, negative_prompt="blurry", frames=3, **SIZE), plain)


@pytest.mark.parametrize("interpolation", ["linear", "slerp"])
def test_two_keyframes_give_per_frame_states_that_interpolate(pipe, interpolation):
    travel, _ = encode_travel(pipe.text, prompt_keyframes({0: CAT, 4: DOG}), "blurry", interpolation)
    cat, dog = pipe.encode(CAT, "blurry").positive, pipe.encode(DOG, "blurry").positive
    context, pooled = travel.for_frames(range(5))
    assert context.shape == (5, *cat.context.shape[1:]) and pooled.shape == (5, cat.pooled.shape[1])
    assert torch.equal(context[0], cat.context[0]) and torch.equal(context[4], dog.context[0])
    assert torch.equal(pooled[0], cat.pooled[0]) and torch.equal(pooled[4], dog.pooled[0])
    middle = context[2], pooled[2]
    if interpolation == "linear":
        assert torch.allclose(middle[0], (cat.context[0] + dog.context[0]) / 2, atol=1e-6)
        assert torch.allclose(middle[1], (cat.pooled[0] + dog.pooled[0]) / 2, atol=1e-6)
        assert torch.allclose(context[1], cat.context[0] * 0.75 + dog.context[0] * 0.25, atol=1e-6)
    else:  # halfway along the great circle: equal angles to both ends, the mean length
        for mid, a, b in ((middle[0], cat.context[0], dog.context[0]), (middle[1], cat.pooled[0], dog.pooled[0])):
            def angle(u, v):
                return torch.arccos((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))).clamp(0, math.pi)
            moving = angle(a, b) > 1e-2  # tokens the two prompts share are left alone by this check
            assert moving.any()
            assert torch.allclose(angle(mid, a)[moving], angle(mid, b)[moving], atol=1e-3)
            assert torch.allclose(mid.norm(dim=-1)[moving], ((a.norm(dim=-1) + b.norm(dim=-1)) / 2)[moving],
                                  rtol=1e-4)


def test_travel_video_ends_follow_their_own_prompts(pipe):
    """Motion scale 0 makes each frame depend on its own text alone: the travel's first and last
    frames are the single-prompt runs' first and last frames."""
    settings = dict(frames=4, motion_scale=0.0)
    travel = latents(pipe, pipe.encode_travel({0: CAT, 3: DOG}, "blurry"), **settings)
    cat = latents(pipe, pipe.encode(CAT, "blurry"), **settings)
    dog = latents(pipe, pipe.encode(DOG, "blurry"), **settings)
    assert torch.allclose(travel[:, :, 0], cat[:, :, 0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(travel[:, :, 3], dog[:, :, 3], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(travel[:, :, 1], cat[:, :, 1], atol=1e-3)  # the middle frames blend
    assert not torch.allclose(travel[:, :, 1], dog[:, :, 1], atol=1e-3)


class RecordingUNet:
    """Stands in for the UNet: records the text rows of each call and predicts zeros."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self):
        self.calls = []

    def __call__(self, sample, timestep, context, pooled, time_ids, **extra):
        self.calls.append((sample.shape, context, pooled, time_ids, extra))
        return torch.zeros_like(sample)


def test_each_context_window_gets_its_own_frames_states(pipe):
    conditions = pipe.encode_travel({0: CAT, 9: DOG}, "blurry")
    unet = RecordingUNet()
    predict = windowed_predictor(guided_predictor(unet, conditions, 5.0, motion=None),
                                 ContextOptions(length=4, overlap=2, schedule="static"))
    predict(torch.zeros(1, 4, 10, 8, 8), torch.tensor(500))
    assert len(unet.calls) == 4  # windows 0-3, 2-5, 4-7, 6-9
    for (shape, context, pooled, time_ids, _), start in zip(unet.calls, (0, 2, 4, 6)):
        frames = range(start, start + 4)
        positive_context, positive_pooled = conditions.positive.for_frames(frames)
        assert shape == (2, 4, 4, 8, 8) and context.shape[0] == pooled.shape[0] == time_ids.shape[0] == 8
        assert torch.equal(context[4:], positive_context) and torch.equal(pooled[4:], positive_pooled)
        assert torch.equal(context[:4], conditions.negative.context.expand(4, -1, -1))  # one negative for all


# ---- motion strength -------------------------------------------------------------------------------

def test_motion_scale_one_is_today_bit_for_bit(pipe):
    plain = latents(pipe, pipe.encode(CAT, "blurry"), frames=3)
    for scale in (1.0, 1, {0: 1.0, 2: 1.0}, "0: 1 | 2: 1"):
        assert torch.equal(latents(pipe, pipe.encode(CAT, "blurry"), frames=3, motion_scale=scale), plain)


def test_motion_scale_zero_is_the_image_model_frame_by_frame(pipe):
    conditions = pipe.encode(CAT, "blurry")
    guided = guided_predictor(pipe.unet, conditions, 5.0)

    def frame_by_frame(sample, timestep):  # each frame alone: the UNet's image path, no temporal layers
        return torch.cat([guided(sample[:, :, i:i + 1], timestep) for i in range(sample.shape[2])], dim=2)

    zero = latents(pipe, conditions, frames=3, motion_scale=0.0)
    images = pipe.sample(conditions, Settings(frames=3, **SIZE), predictor=frame_by_frame)
    assert torch.allclose(zero, images, rtol=1e-4, atol=1e-4)  # batched differently: float rounding only
    assert not torch.allclose(zero, latents(pipe, conditions, frames=3), atol=1e-3)


def test_motion_scale_scales_the_temporal_update(pipe):
    """The temporal layers' update times s: s=2 moves the UNet's output the other way from s=0, and
    a keyframed scale gives each frame its own."""
    conditions = pipe.encode(CAT, "blurry")
    torch.manual_seed(0)
    sample = torch.randn(1, 4, 3, 8, 8)
    args = sample, torch.tensor(500), conditions.positive.context, conditions.positive.pooled, conditions.time_ids
    unet = pipe.unet
    one, zero, two = unet(*args), unet(*args, motion_scale=0.0), unet(*args, motion_scale=2.0)
    alone = torch.cat([unet(sample[:, :, i:i + 1], *args[1:]) for i in range(3)], dim=2)  # each frame by itself
    assert torch.allclose(zero, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(two, one, atol=1e-3) and not torch.allclose(two, zero, atol=1e-3)
    half = unet(*args, motion_scale=0.5)
    assert torch.equal(unet(*args, motion_scale=torch.tensor([0.5, 0.5, 0.5])), half)
    mixed = unet(*args, motion_scale=torch.tensor([0.0, 1.0, 2.0]))
    assert not torch.allclose(mixed, one, atol=1e-3) and not torch.allclose(mixed, two, atol=1e-3)


# ---- FreeInit --------------------------------------------------------------------------------------

def test_freeinit_one_iteration_is_plain_sampling(pipe):
    conditions = pipe.encode(CAT, "blurry")
    plain = latents(pipe, conditions, frames=3)
    assert torch.equal(latents(pipe, conditions, frames=3, freeinit=1), plain)
    assert torch.equal(latents(pipe, conditions, frames=3, freeinit=FreeInitOptions(1, "gaussian", 0.5)), plain)


def test_freeinit_second_iteration_starts_from_the_filtered_previous_result(pipe, monkeypatch):
    conditions = pipe.encode(CAT, "blurry")
    options = FreeInitOptions(2, "butterworth", 0.25)  # (the Gaussian: in the windows test and the nodes' test)
    mixes = []
    mix = freeinit_module.mix_frequencies

    def recording(low, high, gains):
        mixes.append((low, high, gains, mix(low, high, gains)))
        return mixes[-1][-1]

    monkeypatch.setattr(freeinit_module, "mix_frequencies", recording)
    steps = []
    result = pipe.sample(conditions, Settings(frames=4, freeinit=options, **SIZE),
                         callback=lambda index, total, _: steps.append((index, total)))
    assert steps == [(i, 4) for i in range(4)]  # both iterations' steps, counted together

    first = latents(pipe, conditions, frames=4)  # the first iteration is plain sampling
    noise = torch.randn((1, 4, 4, 8, 8), generator=torch.Generator().manual_seed(SIZE["seed"]))
    alpha_bar = float(make_scheduler("euler_a", pipe.scheduler_config).alphas_cumprod[-1])
    ((low, high, gains, start),) = mixes
    expected_low = first * math.sqrt(alpha_bar) + noise * math.sqrt(1 - alpha_bar)
    assert torch.allclose(low, expected_low, atol=1e-6)
    assert gains.shape == (4, 8, 8) and gains[0, 0, 0] == 1 and gains.max() <= 1 and gains.min() >= 0
    # In the frequency domain the start is the previous result's low frequencies plus the fresh
    # noise's high ones, gain by gain.
    spectrum = torch.fft.fftn(start, dim=(-3, -2, -1))
    wanted = torch.fft.fftn(expected_low, dim=(-3, -2, -1)) * gains + torch.fft.fftn(high, dim=(-3, -2, -1)) * (1 - gains)
    assert torch.allclose(spectrum, wanted, atol=1e-3)
    assert (high - noise).abs().max() > 0.5  # fresh noise, not the first draw
    assert abs(float(high.std()) - 1) < 0.2
    # Past the cutoff the low-passed signal is mostly gone; near zero frequency it is kept.
    assert gains[2, 4, 4] < 0.05 and gains[0, 0, 1] >= 0.5  # (at the cutoff: 0.5 for Butterworth)
    assert not torch.allclose(result, first, atol=1e-3)
    assert torch.isfinite(result).all()


def test_freeinit_with_windows_and_prompt_travel_runs(pipe):
    conditions = pipe.encode_travel({0: CAT, 5: DOG}, "blurry", interpolation="slerp")
    settings = dict(frames=6, context=ContextOptions(length=3, overlap=1), noise="freenoise",
                    motion_scale={0: 0.5, 5: 1.5})
    once = latents(pipe, conditions, **settings)
    twice = latents(pipe, conditions, freeinit=FreeInitOptions(2, "gaussian"), **settings)
    assert once.shape == twice.shape == (1, 4, 6, 8, 8) and torch.isfinite(twice).all()
    assert not torch.allclose(once, twice, atol=1e-3)


@pytest.mark.parametrize("filter, at_cutoff", [("butterworth", 0.5), ("gaussian", math.exp(-0.5))])
def test_low_pass_is_one_at_zero_frequency_symmetric_and_its_cutoff_is_a_fraction_of_nyquist(filter, at_cutoff):
    gains = low_pass((5, 6, 8), FreeInitOptions(2, filter, 0.5))
    assert gains[0, 0, 0] == 1
    assert torch.allclose(gains[1], gains[-1]) and torch.allclose(gains[:, 1], gains[:, -1])
    assert gains[0, 0, 3] < gains[0, 0, 1]
    # Width 8: frequency 2/8 is half of Nyquist (4/8), the cutoff 0.5 itself.
    assert math.isclose(float(gains[0, 0, 2]), at_cutoff, rel_tol=1e-6)


# ---- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompts, message", [
    ({0: CAT, 8: DOG}, "keyframe 8: frame 8 is past the last frame of a 4-frame video"),
    ({3: CAT, 0: DOG}, "keyframe 0: frame 0 comes after frame 3"),
    ({0: CAT, 2: "  "}, "keyframe 2: empty prompt"),
    ({-1: CAT}, "keyframe -1: frame -1 is negative"),
    ({"x": CAT}, "keyframe x: the frame must be a whole number"),
    ({}, "no keyframes"),
])
def test_bad_prompt_keyframes_name_the_keyframe(pipe, prompts, message):
    with pytest.raises(InputError, match="^prompts: ") as error:
        pipe(prompts=prompts, frames=4, **SIZE)
    assert message in str(error.value)


def test_prompt_and_prompts_together_are_refused(pipe):
    with pytest.raises(InputError, match="^prompts: give either"):
        pipe(CAT, prompts={0: DOG}, frames=2, **SIZE)
    with pytest.raises(InputError, match="^interpolation: must be one of linear, slerp"):
        pipe(prompts={0: CAT, 1: DOG}, interpolation="cubic", frames=2, **SIZE)


def test_prompt_travel_files_and_inline_form(tmp_path):
    lines = tmp_path / "travel.txt"
    lines.write_text("# spring to winter\n0: a tree in spring\n\n64: a tree in winter\n")
    assert [(k.frame, k.value) for k in read_prompt_travel(str(lines))] == [(0, "a tree in spring"),
                                                                          (64, "a tree in winter")]
    inline = read_prompt_travel("0: a tree in spring | 64: a tree in winter")
    assert [(k.frame, k.value) for k in inline] == [(0, "a tree in spring"), (64, "a tree in winter")]
    as_json = tmp_path / "travel.json"
    as_json.write_text('{"0": "a tree in spring", "64": "a tree, winter: snow"}')
    assert [k.value for k in read_prompt_travel(str(as_json))] == ["a tree in spring", "a tree, winter: snow"]

    bad = tmp_path / "bad.txt"
    for text, message in [("0: a\n16 b\n", "line 2: expected `frame: prompt`"),
                          ("0: a\n16: b\n16: c\n", "line 3: frame 16 is given twice (also at"),
                          ("0: a\n16: b\n8: c\n", "line 3: frame 8 comes after frame 16"),
                          ("0: a\n16:\n", "line 2: empty prompt"),
                          ('{"0": "a",\n "0": "b"}', "keyframe 0: frame 0 is given twice"),
                          ('{"0": "a",\n "4" "b"}', "line 2: not valid JSON")]:
        bad.write_text(text)
        with pytest.raises(InputError, match="^--prompt-travel: ") as error:
            read_prompt_travel(str(bad))
        assert f"{bad}, {message}" in str(error.value), str(error.value)
    with pytest.raises(InputError, match="is neither a file nor keyframes"):
        read_prompt_travel("missing.txt")


@pytest.mark.parametrize("settings, name, message", [
    (dict(motion_scale=float("nan")), "motion_scale", "must be a finite number"),
    (dict(motion_scale={0: 1.0, 3: float("inf")}), "motion_scale", "keyframe 3: must be a finite number"),
    (dict(motion_scale=-1.0), "motion_scale", "must be zero or more"),
    (dict(motion_scale={0: 1.0, 9: 0.0}), "motion_scale", "keyframe 9: frame 9 is past the last frame"),
    (dict(freeinit=0), "freeinit", "must be a whole number of at least 1"),
])
def test_bad_direction_settings_name_the_setting(settings, name, message):
    with pytest.raises(InputError, match=f"^{name}: ") as error:
        Settings(frames=4, **settings).check()
    assert message in str(error.value)


@pytest.mark.parametrize("options, name", [(dict(iterations=0), "freeinit"), (dict(filter="box"), "freeinit_filter"),
                                           (dict(cutoff=0.0), "freeinit_cutoff"),
                                           (dict(cutoff=float("nan")), "freeinit_cutoff")])
def test_bad_freeinit_options_name_the_option(options, name):
    with pytest.raises(InputError, match=f"^{name}: "):
        FreeInitOptions(**options)


def test_scale_keyframes_forms():
    assert [(k.frame, k.value) for k in scale_keyframes("0: 1 | 16: 0.5")] == [(0, 1.0), (16, 0.5)]
    assert [(k.frame, k.value) for k in scale_keyframes(0.5)] == [(0, 0.5)]
    assert [(k.frame, k.value) for k in scale_keyframes({0: 0, 4: 2})] == [(0, 0.0), (4, 2.0)]


# ---- the CLI ---------------------------------------------------------------------------------------

def test_cli_prompt_travel_gives_the_python_frames(tmp_path, tiny_model_dir, pipe, capsys):
    from model.sample import run
    from tests.goldens import png_frames

    travel = tmp_path / "travel.txt"
    travel.write_text(f"0: {CAT}\n3: {DOG}\n")
    flags = ["--model", str(tiny_model_dir), "--dtype", "fp32", "--device", "cpu", "--width", "64", "--height", "64",
             "--frames", "4", "--steps", "2", "--seed", "7", "--negative-prompt", "blurry",
             "--prompt-travel", str(travel), "--motion-scale", "0: 1 | 3: 0.5", "--freeinit", "2",
             "--freeinit-filter", "gaussian", "--out", str(tmp_path / "out") + "/"]
    assert run(flags) == 0
    assert "FreeInit: 2 iterations, so the video is sampled 2 times (4 steps instead of 2" in capsys.readouterr().err
    frames = pipe(prompts={0: CAT, 3: DOG}, negative_prompt="blurry", frames=4, motion_scale={0: 1, 3: 0.5},
                  freeinit=FreeInitOptions(2, "gaussian"), **SIZE)
    assert abs(png_frames(tmp_path / "out") - frames.numpy()).max() <= 1 / 255 + 1e-6


# ---- with a ControlNet -------------------------------------------------------------------------------

def test_prompt_travel_and_motion_scale_with_a_controlnet(pipe, fixtures_dir):
    from model.controlnet.apply import Control
    from model.controlnet.loading import load_controlnet

    net = load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp32", device="cpu", unet_config=pipe.unet.config)
    torch.manual_seed(0)
    control = Control(net, torch.rand(3, 3, 64, 64), 0.8)
    one = pipe(prompts={0: CAT}, negative_prompt="blurry", controls=[control], frames=3, **SIZE)
    assert torch.equal(one, pipe(CAT, "blurry", controls=[control], frames=3, **SIZE))
    # Per-frame text reaches the ControlNet too: at motion scale 0 the travel's first frame is the
    # single prompt's.
    travel = pipe.sample(pipe.encode_travel({0: CAT, 2: DOG}, "blurry"), Settings(frames=3, motion_scale=0, **SIZE),
                         controls=[control])
    cat = pipe.sample(pipe.encode(CAT, "blurry"), Settings(frames=3, motion_scale=0, **SIZE), controls=[control])
    assert torch.allclose(travel[:, :, 0], cat[:, :, 0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(travel[:, :, 2], cat[:, :, 2], atol=1e-3)
    twice = pipe.sample(pipe.encode(CAT, "blurry"), Settings(frames=3, freeinit=2, **SIZE), controls=[control])
    assert torch.isfinite(twice).all()
