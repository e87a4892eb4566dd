"""Whole text-to-video calls reproduce the original pipeline's frames."""

import json

import pytest
import torch
from safetensors.torch import load_file

from model.errors import InputError
from model.pipeline import Settings, load_pipeline
from model.denoising.schedulers import SCHEDULERS, SchedulerOptions, make_scheduler
from model.text.encoders import CHUNK_TOKENS
from tests.goldens import assert_close_to_golden, settings_of

TOLERANCE = 2e-3  # of the frames' largest value (1), allclose-style (tests/goldens.py) ...
FLOOR = 1e-6  # ... plus this much of the whole golden set's


def golden_cases(fixtures_dir):
    return json.loads((fixtures_dir / "pipeline_golden.json").read_text())


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def golden_frames(fixtures_dir):
    return load_file(fixtures_dir / "pipeline_golden.safetensors")


@pytest.mark.parametrize("index", [0, 1])
def test_pipeline_reproduces_golden(pipe, fixtures_dir, golden_frames, index):
    case = golden_cases(fixtures_dir)[index]
    frames = pipe(case["prompt"], case["negative_prompt"], **settings_of(case))
    expected = golden_frames[case["name"]]
    assert frames.shape == expected.shape == (case["video_length"], case["height"], case["width"], 3)
    assert_close_to_golden(frames, expected, TOLERANCE, FLOOR, golden_frames.values())


def test_single_file_and_temporal_layers_reproduce_golden(fixtures_dir, tiny_model_dir, golden_frames):
    pipe = load_pipeline(temporal_layers=fixtures_dir / "hsxl_temporal_layers_tiny.safetensors",
                         sdxl=fixtures_dir / "sdxl-tiny-single-file.safetensors",
                         tokenizer=tiny_model_dir, configs=tiny_model_dir, dtype="fp32", device="cpu")
    case = golden_cases(fixtures_dir)[0]
    frames = pipe(case["prompt"], case["negative_prompt"], **settings_of(case))
    assert_close_to_golden(frames, golden_frames[case["name"]], TOLERANCE, FLOOR, golden_frames.values())


def test_no_negative_prompt_is_the_zero_embedding_empty_is_encoded(pipe):
    positive, negative = pipe.text.encode_pair("a cat", None)
    assert torch.count_nonzero(negative.context) == 0 and torch.count_nonzero(negative.pooled) == 0
    _, empty = pipe.text.encode_pair("a cat", "")
    assert torch.count_nonzero(empty.context) > 0
    assert empty.context.shape == positive.context.shape


def test_long_prompts_are_chunked_not_cut(pipe):
    long_prompt = "a corgi running on a beach " * 6
    tokens = pipe.text.prompt_tokens(long_prompt)
    assert tokens > CHUNK_TOKENS
    positive, negative = pipe.text.encode_pair(long_prompt, "blurry")
    chunks = -(-tokens // CHUNK_TOKENS)
    assert positive.chunks == negative.chunks == chunks >= 2
    assert positive.context.shape[1] == chunks * 77
    # The first chunk is exactly what the original pipeline made of the prompt (cut at 77 tokens).
    text = pipe.text
    cut = [tok(long_prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
           for tok in (text.tokenizer, text.tokenizer_2)]
    with torch.no_grad():
        original = torch.cat([text.text_encoder(cut[0], output_hidden_states=True).hidden_states[-2],
                              text.text_encoder_2(cut[1], output_hidden_states=True).hidden_states[-2]], dim=-1)
    assert torch.allclose(positive.context[:, :77], original, atol=1e-6)
    # The rest of the prompt still conditions the video: nothing was dropped.
    settings = Settings(width=64, height=64, frames=2, steps=1)
    whole = pipe.sample(pipe.encode(long_prompt, "blurry"), settings)
    first_chunk_only = pipe.encode(long_prompt, "blurry")
    first_chunk_only.positive.context = first_chunk_only.positive.context[:, :77]
    first_chunk_only.negative.context = first_chunk_only.negative.context[:, :77]
    assert not torch.allclose(whole, pipe.sample(first_chunk_only, settings))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_runs_and_is_deterministic(pipe, name):
    settings = Settings(width=64, height=64, frames=2, steps=2, scheduler=name, seed=3)
    conditions = pipe.encode("a cat", "blurry")
    first = pipe.sample(conditions, settings)
    assert first.shape == (1, 4, 2, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(first, pipe.sample(conditions, settings))


def test_scheduler_options_reach_the_diffusers_config_and_change_the_video(pipe):
    plain = make_scheduler("euler", pipe.scheduler_config)
    config = plain.config
    assert (config.timestep_spacing, config.prediction_type, config.rescale_betas_zero_snr) == ("leading", "epsilon",
                                                                                                False)
    tuned = make_scheduler(SchedulerOptions("euler", "trailing", "v_prediction", True), pipe.scheduler_config)
    config = tuned.config
    assert (config.timestep_spacing, config.prediction_type, config.rescale_betas_zero_snr) == ("trailing",
                                                                                                "v_prediction", True)
    plain.set_timesteps(2)
    tuned.set_timesteps(2)
    assert plain.timesteps.tolist() == [501, 1] and tuned.timesteps.tolist() == [999, 499]  # leading vs trailing

    conditions = pipe.encode("a cat", "blurry")
    settings = dict(width=64, height=64, frames=2, steps=2, seed=3)
    released = pipe.sample(conditions, Settings(**settings))
    assert torch.equal(released, pipe.sample(conditions, Settings(**settings, scheduler=SchedulerOptions())))
    trailing = pipe.sample(conditions, Settings(**settings, scheduler=SchedulerOptions(timestep_spacing="trailing")))
    assert torch.isfinite(trailing).all() and not torch.allclose(released, trailing)


@pytest.mark.parametrize("field, value", [("scheduler", "heun"), ("timestep_spacing", "even"),
                                          ("prediction_type", "sample"), ("zero_terminal_snr", "yes")])
def test_bad_scheduler_options_name_the_option(field, value):
    with pytest.raises(InputError, match=rf"^{field}: "):
        SchedulerOptions(**{"name" if field == "scheduler" else field: value})


def test_seed_changes_the_video(pipe):
    conditions = pipe.encode("a cat", "blurry")
    a = pipe.sample(conditions, Settings(width=64, height=64, frames=2, steps=1, seed=1))
    b = pipe.sample(conditions, Settings(width=64, height=64, frames=2, steps=1, seed=2))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("field, value", [("width", 65), ("height", 0), ("frames", 0), ("steps", -1),
                                          ("scheduler", "heun"), ("guidance", -1.0),
                                          ("original_size", (1920,)), ("decode_chunk", 0), ("steps", True),
                                          ("width", True), ("guidance", 1e30), ("original_size", (True, 1080))])
def test_bad_settings_name_the_setting(pipe, field, value):
    with pytest.raises(InputError, match=rf"^{field}: "):
        pipe("a cat", **{field: value})


@pytest.mark.parametrize("prompt, negative, name, problem", [
    (None, "blurry", "prompt", "must be a string, got NoneType None"),
    (123, "blurry", "prompt", "must be a string, got int 123"),
    (["a", "b"], "blurry", "prompt", "one prompt per call, got a list of 2"),
    ("a cat", 5, "negative_prompt", "must be a string, got int 5"),
])
def test_a_prompt_that_is_not_one_string_is_named(pipe, monkeypatch, prompt, negative, name, problem):
    monkeypatch.setattr(pipe.text, "encode_pair", lambda *a: pytest.fail("encoded a bad prompt"))
    with pytest.raises(InputError, match=rf"^{name}: {problem}"):
        pipe(prompt, negative, width=64, height=64, frames=2, steps=1)
    with pytest.raises(InputError, match=rf"^{name}: "):
        pipe.encode(prompt, negative)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_pipeline_stays_close(tiny_model_dir, fixtures_dir, golden_frames, dtype):
    pipe = load_pipeline(tiny_model_dir, dtype=dtype, device="cpu")
    case = golden_cases(fixtures_dir)[0]
    frames = pipe(case["prompt"], case["negative_prompt"], **settings_of(case))
    assert frames.dtype == torch.float32 and torch.isfinite(frames).all()
    assert (frames - golden_frames[case["name"]]).abs().mean() < 0.05


def test_tiny_random_needs_no_files():
    pipe = load_pipeline("tiny-random", dtype="fp32", device="cpu")
    frames = pipe("a test", width=64, height=64, frames=3, steps=2)
    assert frames.shape == (3, 64, 64, 3)
    assert 0 <= frames.min() and frames.max() <= 1
