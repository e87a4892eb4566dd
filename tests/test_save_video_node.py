"""Hotshot-XL Save Video: workflow tags in every format, a VIDEO with sound in, format options, and
VALIDATE_INPUTS refusing what can be known before the graph runs (no ComfyUI needed)."""

import importlib
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

PROMPT = {"7": {"class_type": "HotshotXLSaveVideo", "inputs": {"filename_prefix": "clips/cat"}}}
WORKFLOW = {"workflow": {"nodes": [{"id": 7, "type": "HotshotXLSaveVideo"}], "links": []}}


def submodule(pack, name):
    return importlib.import_module(f"{pack.__name__}.{name}")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("no_models")  # saving needs no model


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


def frames_clip(count=4, height=32, width=48):
    torch.manual_seed(0)
    return torch.rand(count, height, width, 3)


def saved(host_env, result):
    return [host_env / shown["subfolder"] / shown["filename"] for shown in result["ui"]["images"]]


def stored_tags(path):
    """prompt and workflow as ComfyUI's editor finds them in each format (GIF: our comment)."""
    from model.media.metadata import read_tags

    return read_tags(path)


@pytest.mark.parametrize("video_format", ["mp4", "webm", "gif", "webp", "png"])
def test_prompt_and_workflow_are_stored_in_every_format(nodes, host_env, video_format):
    result = nodes["HotshotXLSaveVideo"]().save("clips/cat", video_format, 8.0, 0, images=frames_clip(),
                                                  prompt=PROMPT, extra_pnginfo=WORKFLOW)
    files = saved(host_env, result)
    assert len(files) == (4 if video_format == "png" else 1)
    for file in files:
        tags = stored_tags(file)
        assert json.loads(tags["prompt"]) == PROMPT and json.loads(tags["workflow"]) == WORKFLOW["workflow"]


def test_disable_metadata_stores_nothing(nodes, host_env, monkeypatch, pack):
    monkeypatch.setattr(submodule(pack, "nodes.host"), "metadata_disabled", lambda: True)
    result = nodes["HotshotXLSaveVideo"]().save("plain", "webp", 8.0, 0, images=frames_clip(), prompt=PROMPT,
                                                  extra_pnginfo=WORKFLOW)
    assert b"EXIF" not in saved(host_env, result)[0].read_bytes()


def test_png_frames_go_to_a_numbered_folder(nodes, host_env):
    save = nodes["HotshotXLSaveVideo"]()
    first = saved(host_env, save.save("seq/cat", "png", 8.0, 0, images=frames_clip(3)))
    second = saved(host_env, save.save("seq/cat", "png", 8.0, 0, images=frames_clip(3)))
    assert [f.parent.name for f in first] == ["cat_00001_"] * 3 and second[0].parent.name == "cat_00002_"
    assert [f.name for f in first] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]


def test_a_video_with_sound_is_saved_with_its_audio_and_rate(nodes, host_env, pack):
    media = submodule(pack, "nodes.media")
    wave = torch.sin(torch.linspace(0, 3000, 44100 * 2)).expand(1, 2, -1).contiguous()
    video = media.make_video(frames_clip(6), 12.0, {"waveform": wave, "sample_rate": 44100})
    result = nodes["HotshotXLSaveVideo"]().save("av/clip", "mp4", 8.0, 0, video=video)
    (file,) = saved(host_env, result)
    with av.open(str(file)) as container:
        assert container.streams.video[0].average_rate == 12 and len(container.streams.audio) == 1
    # gif holds no sound: saved without it (a warning in the log), not refused
    result = nodes["HotshotXLSaveVideo"]().save("av/clip", "gif", 8.0, 0, video=video)
    assert saved(host_env, result)[0].is_file()


def test_decode_gives_a_video_that_save_takes(nodes, host_env, pack):
    video = submodule(pack, "nodes.media").make_video(frames_clip(4), 8.0)
    images, rate, audio = submodule(pack, "nodes.media").video_parts(video)
    assert images.shape == (4, 32, 48, 3) and rate == Fraction(8) and audio is None


def test_ping_pong_crf_and_pixel_format(nodes, host_env):
    from model.media.video import read_video

    save = nodes["HotshotXLSaveVideo"]()
    clip = frames_clip(4)
    (file,) = saved(host_env, save.save("pp", "webp", 8.0, 0, ping_pong=True, quality=100, images=clip))
    frames, _ = read_video(file)
    assert frames.shape[0] == 6  # 0 1 2 3 2 1
    assert (frames[4].float() - frames[2].float()).abs().mean() < 3
    small = saved(host_env, save.save("q", "mp4", 8.0, 0, crf=45, images=clip))[0].stat().st_size
    large = saved(host_env, save.save("q", "mp4", 8.0, 0, crf=0, images=clip))[0].stat().st_size
    assert small < large
    (file,) = saved(host_env, save.save("pf", "mp4", 8.0, 0, pixel_format="yuv444p", images=clip))
    with av.open(str(file)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv444p"


@pytest.mark.parametrize("inputs, message", [
    ({"filename_prefix": "../outside"}, r"^filename_prefix: '\.\./outside' leaves the output folder"),
    ({"filename_prefix": "/etc/x"}, r"^filename_prefix: '/etc/x' is an absolute path"),
    ({"format": "gif", "fps": 60.0}, r"^fps: 60 is out of range for GIF"),
    ({"format": "mkv"}, r"^format: unknown format"),
    ({"format": "mp4", "crf": 60}, r"^crf: 60 is out of range for H.264"),
    ({"quality": 101}, r"^quality: must be a whole number"),
    ({"pixel_format": "rgb24"}, r"^pixel_format: "),
])
def test_validate_inputs_refuses_before_anything_runs(nodes, host_env, inputs, message):
    import re

    answer = nodes["HotshotXLSaveVideo"].VALIDATE_INPUTS(**inputs)
    assert isinstance(answer, str) and re.match(message, answer), answer
    assert not list(host_env.rglob("*"))  # nothing created, not even a folder


def test_validate_inputs_accepts_good_values_and_sockets(nodes, host_env):
    validate = nodes["HotshotXLSaveVideo"].VALIDATE_INPUTS
    assert validate("videos/%year%/cat", "mp4", 8.0, 0, 18, 90, "yuv420p") is True
    assert validate(None, None, None, None, None, None, None) is True  # widgets turned into sockets


def test_images_or_video_not_both_nor_neither(nodes, host_env, pack):
    InputError = submodule(pack, "model.errors").InputError
    video = submodule(pack, "nodes.media").make_video(frames_clip(), 8.0)
    with pytest.raises(InputError, match="connect either images or a video"):
        nodes["HotshotXLSaveVideo"]().save("x", "mp4", 8.0, 0)
    with pytest.raises(InputError, match="both connected"):
        nodes["HotshotXLSaveVideo"]().save("x", "mp4", 8.0, 0, video=video, images=frames_clip())


def test_sampler_sizes_are_checked_when_queued(nodes):
    validate = nodes["HotshotXLSampler"].VALIDATE_INPUTS
    assert validate(672, 384) is True and validate(None, None) is True
    assert validate(100, 384) == "width: must be a multiple of 8 from 64 to 4096, got 100"
    assert validate(672, 8).startswith("height: ")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_preview_estimates_the_clean_latents(pack, prediction_type):
    """The sampler's previews show x0 recovered from the UNet's input and output at any timestep."""
    preview = submodule(pack, "nodes.preview").SamplingPreview.__new__(
        submodule(pack, "nodes.preview").SamplingPreview)
    preview.alphas = torch.linspace(0.99, 0.01, 1000)
    preview.prediction_type = prediction_type
    x0, eps = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 4, 3, 8, 8)
    alpha = float(preview.alphas[700])
    x_t = alpha ** 0.5 * x0 + (1 - alpha) ** 0.5 * eps
    out = eps if prediction_type == "epsilon" else alpha ** 0.5 * eps - (1 - alpha) ** 0.5 * x0
    assert torch.allclose(preview._clean_estimate(x_t, out, torch.tensor([700.0])), x0, atol=1e-4)
