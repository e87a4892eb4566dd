"""A LoRA and a ControlNet together: the original's `controlnet_lora_euler_a_8f_end` call (LoRA at strength 1,
the ControlNet for the first half of the steps only) through Python and as CLI PNG frames."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model.controlnet.apply import Control
from model.controlnet.frames import control_frames
from model.controlnet.loading import load_controlnet
from model.pipeline import load_pipeline
from model.sample import run
from tests.goldens import PNG_TOLERANCE, assert_close_to_golden, cli_flags_of, control_flags_of, png_frames
from tests.goldens import settings_of

GOLDEN = "controlnet_lora_euler_a_8f_end"
TOLERANCE = 2e-3  # of the frames' largest value (1), allclose-style (tests/goldens.py) ...
FLOOR = 1e-6  # ... plus this much of the whole golden set's


@pytest.fixture(scope="module")
def case(fixtures_dir):
    return next(c for c in json.loads((fixtures_dir / "cond_golden.json").read_text()) if c["name"] == GOLDEN)


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(fixtures_dir / "cond_golden.safetensors")[GOLDEN]


def test_python_api_reproduces_the_lora_controlnet_golden(tiny_model_dir, fixtures_dir, case, golden):
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")
    net = load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp32", device="cpu", unet_config=pipe.unet.config)
    images = control_frames(fixtures_dir / case["control_frames"], case["width"], case["height"], case["video_length"])
    control = Control(net, images, case["controlnet_conditioning_scale"], case["control_guidance_start"],
                      case["control_guidance_end"])
    pipe.load_lora(fixtures_dir / case["lora_file"], case["lora_strength"])
    frames = pipe(case["prompt"], case["negative_prompt"], controls=[control], **settings_of(case))
    assert frames.shape == golden.shape
    assert_close_to_golden(frames, golden, TOLERANCE, FLOOR)
    # Both matter: without the LoRA the same ControlNet call is far from the golden.
    pipe.unload_loras()
    without_lora = pipe(case["prompt"], case["negative_prompt"], controls=[control], **settings_of(case))
    assert (without_lora - golden).abs().max() > 0.05
    assert not torch.equal(without_lora, frames)


def test_cli_png_frames_match_the_lora_controlnet_golden(tmp_path, tiny_model_dir, fixtures_dir, case, golden):
    out = tmp_path / "frames"
    code = run(cli_flags_of(case, tiny_model_dir, str(out) + "/",
                            "--lora", f"{fixtures_dir / case['lora_file']}:{case['lora_strength']}",
                            *control_flags_of(case, fixtures_dir, fixtures_dir / (case["control_frames"] + ".gif"))))
    assert code == 0
    pixels = png_frames(out)
    assert pixels.shape == tuple(golden.shape)
    assert_close_to_golden(pixels, golden, PNG_TOLERANCE, FLOOR)
