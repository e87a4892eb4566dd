"""ControlNets: the original's ControlNet golden through Python and the CLI, every way of giving the
weights and the control frames, context windows, header-only layout recognition and bad input."""

import json
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model.denoising.context import ContextOptions, context_windows
from model.controlnet.apply import Control
from model.controlnet.frames import control_frames
from model.controlnet.layouts import layout_name
from model.controlnet.loading import describe, load_controlnet
from model.errors import InputError, ModelFileError
from model.pipeline import load_pipeline
from model.sample import run
from model.denoising.schedulers import make_scheduler
from tests.goldens import PNG_TOLERANCE, assert_close_to_golden, cli_flags_of as cli_flags, control_flags_of, png_frames
from tests.goldens import settings_of

TOLERANCE = 2e-3  # of the frames' largest value (1), allclose-style (tests/goldens.py) ...
FLOOR = 1e-6  # ... plus this much of the whole golden set's


@pytest.fixture(scope="module")
def case(fixtures_dir):
    return next(c for c in json.loads((fixtures_dir / "cond_golden.json").read_text())
                if c["name"] == "controlnet_euler_8f")


@pytest.fixture(scope="module")
def golden(fixtures_dir, case):
    return load_file(fixtures_dir / "cond_golden.safetensors")[case["name"]]


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def net(fixtures_dir, pipe):
    return load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp32", device="cpu", unet_config=pipe.unet.config)


def control_of(case, net, images) -> Control:
    return Control(net, images, case["controlnet_conditioning_scale"], case["control_guidance_start"],
                   case["control_guidance_end"])


@pytest.fixture(scope="module")
def images(fixtures_dir, case):
    return control_frames(fixtures_dir / case["control_frames"], case["width"], case["height"], case["video_length"])


@pytest.fixture(scope="module")
def frames(pipe, net, case, images):
    return pipe(case["prompt"], case["negative_prompt"], controls=[control_of(case, net, images)], **settings_of(case))


def test_python_api_reproduces_controlnet_golden(frames, golden, pipe, case):
    assert frames.shape == golden.shape
    assert_close_to_golden(frames, golden, TOLERANCE, FLOOR)
    # The ControlNet matters: without it the same call is far from the golden.
    plain = pipe(case["prompt"], case["negative_prompt"], **settings_of(case))
    assert (plain - golden).abs().max() > 0.05


def test_gif_gives_the_png_folder_frames(fixtures_dir, case, images):
    gif = fixtures_dir / (case["control_frames"] + ".gif")
    assert torch.equal(control_frames(gif, case["width"], case["height"], case["video_length"]), images)


def test_bare_safetensors_with_config_beside_or_given(tmp_path, fixtures_dir, pipe, case, images, frames):
    weights = fixtures_dir / "controlnet-tiny" / "diffusion_pytorch_model.safetensors"
    alone = tmp_path / "alone" / "tiny_controlnet.safetensors"
    alone.parent.mkdir()
    shutil.copy(weights, alone)
    with pytest.raises(ModelFileError, match="block widths"):  # tiny: not a full-size layout, needs its config
        describe(alone)
    given = load_controlnet(alone, config=fixtures_dir / "controlnet-tiny" / "config.json", dtype="fp32")
    beside = tmp_path / "beside" / "tiny_controlnet.safetensors"
    beside.parent.mkdir()
    shutil.copy(weights, beside)
    shutil.copy(fixtures_dir / "controlnet-tiny" / "config.json", beside.parent / "config.json")
    again = pipe(case["prompt"], case["negative_prompt"], controls=[control_of(case, given, images)],
                 **settings_of(case))
    assert torch.equal(again, frames)
    # With the config beside it: the same network and weights, so the same frames.
    found = load_controlnet(beside, dtype="fp32")
    assert dict(found.config) == dict(given.config)
    assert all(torch.equal(a, b) for a, b in zip(found.state_dict().values(), given.state_dict().values()))


@pytest.mark.parametrize("source", ["folder", "gif"])
def test_cli_png_frames_match_controlnet_golden(source, tmp_path, tiny_model_dir, fixtures_dir, case, golden):
    control = fixtures_dir / (case["control_frames"] + (".gif" if source == "gif" else ""))
    out = tmp_path / "frames"
    code = run(cli_flags(case, tiny_model_dir, str(out) + "/", *control_flags_of(case, fixtures_dir, control)))
    assert code == 0
    pixels = png_frames(out)
    assert pixels.shape == tuple(golden.shape)
    assert_close_to_golden(pixels, golden, PNG_TOLERANCE, FLOOR)


def test_windows_as_long_as_the_video_are_the_plain_result(pipe, net, case, images, frames):
    windowed = pipe(case["prompt"], case["negative_prompt"], controls=[control_of(case, net, images)],
                    **settings_of(case, context=ContextOptions(length=case["video_length"], overlap=2)))
    assert torch.equal(windowed, frames)


def test_each_window_gets_its_own_frames_control(pipe, net, monkeypatch):
    # Frame k's control image is the constant k/32: every ControlNet call says which frames it saw.
    count, options = 24, ContextOptions(length=8, overlap=4)
    images = (torch.arange(count, dtype=torch.float32) / 32).view(-1, 1, 1, 1).expand(-1, 3, 64, 64).contiguous()
    seen = []
    forward = net.forward

    def recording(sample, timestep, *args, controlnet_cond, **kwargs):
        seen.append((float(timestep), tuple(round(v * 32) for v in controlnet_cond[:, 0, 0, 0].tolist())))
        return forward(sample, timestep, *args, controlnet_cond=controlnet_cond, **kwargs)

    monkeypatch.setattr(net, "forward", recording)
    pipe("a cat", "blurry", controls=[Control(net, images)], width=64, height=64, frames=count, steps=1,
         scheduler="euler", context=options)
    scheduler = make_scheduler("euler", pipe.scheduler_config)
    scheduler.set_timesteps(1)
    expected = [(float(t), window + window)  # the CFG pair: negative then positive, the same frames
                for t in scheduler.timesteps for window in context_windows(count, options, t)]
    assert len(expected) > 2 and seen == expected


# Full-size SDXL ControlNet configs, as released: standard, and the "mid" and "small" variants.
SDXL_CONTROLNET = dict(
    block_out_channels=[320, 640, 1280],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    attention_head_dim=[5, 10, 20], cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    conditioning_embedding_out_channels=[16, 32, 96, 256], layers_per_block=2)
LAYOUTS = {"standard": dict(transformer_layers_per_block=[1, 2, 10]),
           "mid": dict(transformer_layers_per_block=[0, 0, 1]),
           "small": dict(transformer_layers_per_block=[0, 0, 0], mid_block_type="UNetMidBlock2D")}


def write_header(path, shapes: dict) -> None:
    """A safetensors file with this header and no data: enough for anything that reads headers."""
    offset, header = 0, {}
    for name, shape in shapes.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text)


def meta_controlnet(config):
    from diffusers import ControlNetModel

    with torch.device("meta"):
        return ControlNetModel.from_config(config)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_full_size_layouts_are_recognised_from_headers(layout, tmp_path):
    config = {**SDXL_CONTROLNET, **LAYOUTS[layout]}
    shapes = {k: tuple(v.shape) for k, v in meta_controlnet(config).state_dict().items()}
    file = tmp_path / f"controlnet_{layout}.safetensors"
    write_header(file, shapes)
    assert file.stat().st_size < 200_000  # a header, no weights
    found, kind = describe(file)
    assert layout_name(found) == layout and kind.endswith(f"SDXL {layout} layout")
    # The config read from the header builds exactly the file's tensors.
    rebuilt = {k: tuple(v.shape) for k, v in meta_controlnet(found).state_dict().items()}
    assert rebuilt == shapes
    # The same network in the original layout (control_model.*) is told apart too.
    original = tmp_path / f"control_{layout}_original.safetensors"
    write_header(original, {original_name(k): v for k, v in shapes.items()})
    found_original, kind = describe(original)
    assert kind == f"original-layout single file, SDXL {layout} layout"
    assert {k: v for k, v in found_original.items()} == found


RESNET_NAMES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def original_name(key: str, layers: int = 2) -> str:
    """The original (ldm) ControlNet layout's name of a diffusers ControlNet tensor (SDXL's three blocks)."""
    parts = key.split(".")
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "controlnet_cond_embedding.conv_in": "input_hint_block.0",
             "controlnet_cond_embedding.conv_out": "input_hint_block.14", "controlnet_mid_block": "middle_block_out.0"}
    layer, leaf = ".".join(parts[:-1]), parts[-1]
    if layer in fixed:
        return f"control_model.{fixed[layer]}.{leaf}"
    if parts[0] == "controlnet_cond_embedding":
        return f"control_model.input_hint_block.{2 * (int(parts[2]) + 1)}.{leaf}"
    if parts[0] == "controlnet_down_blocks":
        return f"control_model.zero_convs.{parts[1]}.0.{leaf}"
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"control_model.input_blocks.{1 + block * (layers + 1) + layers}.0.op.{leaf}"
        index = 1 + block * (layers + 1) + int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"control_model.input_blocks.{index}.0.{RESNET_NAMES.get(parts[4], parts[4])}.{leaf}"
        return f"control_model.input_blocks.{index}.1.{rest}"
    if parts[0] == "mid_block":
        if parts[1] == "resnets":
            return f"control_model.middle_block.{2 * int(parts[2])}.{RESNET_NAMES.get(parts[3], parts[3])}.{leaf}"
        return f"control_model.middle_block.1.{'.'.join(parts[3:])}"
    raise KeyError(key)


def test_original_layout_single_file_loads_the_same_weights(tmp_path, fixtures_dir, net):
    from safetensors.torch import save_file

    folder = fixtures_dir / "controlnet-tiny"
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    original = {original_name(key): value for key, value in state.items()}
    assert len(original) == len(state)
    file = tmp_path / "control_tiny_original.safetensors"
    save_file(original, file)
    loaded = load_controlnet(file, config=folder / "config.json", dtype="fp32")
    expected = net.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())


def test_sd15_controlnet_is_refused_by_name(tmp_path):
    config = dict(block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8)
    file = tmp_path / "control_sd15_canny.safetensors"
    write_header(file, {k: tuple(v.shape) for k, v in meta_controlnet(config).state_dict().items()})
    with pytest.raises(ModelFileError, match="SD 1.5") as error:
        describe(file)
    assert "control_sd15_canny.safetensors" in str(error.value)


def test_controlnet_for_another_unet_is_refused_before_loading(tmp_path, fixtures_dir, pipe):
    config = json.loads((fixtures_dir / "controlnet-tiny" / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**config, "block_out_channels": [32, 64, 128]}))
    with pytest.raises(ModelFileError, match="another base"):
        load_controlnet(other, dtype="fp32", unet_config=pipe.unet.config)
    (other / "config.json").write_text(json.dumps({**config, "conditioning_channels": 1}))
    with pytest.raises(ModelFileError, match="1-channel control images"):
        load_controlnet(other, dtype="fp32", unet_config=pipe.unet.config)


def test_fp8_controlnet_runs(fixtures_dir, pipe, images, case):
    net = load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp8", unet_config=pipe.unet.config)
    assert any(p.dtype == torch.float8_e4m3fn for p in net.parameters())
    from model.controlnet.apply import control_residuals

    sample = torch.randn(2, 4, 2, 8, 8, dtype=torch.bfloat16)
    out = control_residuals([Control(net, images)], sample, torch.tensor(500), torch.randn(2, 77, 64),
                            torch.randn(2, 32), torch.ones(2, 6), frames=(0, 1))
    assert len(out["down_residuals"]) == 9 and torch.isfinite(out["mid_residual"].float()).all()


@pytest.mark.parametrize("flags, flag, message", [
    (["--control-frames", "{frames}", "--control-start", "0.5", "--control-end", "0.5"], "--control-start", "below"),
    (["--control-frames", "{few}"], "--control-frames", "holds 3 frames"),
    (["--control-frames", "{empty}"], "--control-frames", "no images"),
    (["--control-frames", "{broken}"], "--control-frames", "not a readable video"),
    (["--control-strength", "nan", "--control-frames", "{frames}"], "--control-strength", "finite"),
    ([], "--control-frames", "has no --control-frames"),
])
def test_bad_control_input_one_error_nothing_written(flags, flag, message, tmp_path, tiny_model_dir, fixtures_dir,
                                                     case, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for name in sorted((fixtures_dir / case["control_frames"]).iterdir())[:3]:
        shutil.copy(name, few / name.name)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    paths = dict(frames=fixtures_dir / case["control_frames"], few=few, empty=tmp_path / "empty",
                 broken=tmp_path / "broken.mp4")
    flags = [f.format(**paths) for f in flags]
    out = tmp_path / "out.mp4"
    code = run(cli_flags(case, tiny_model_dir, out, "--controlnet", str(fixtures_dir / "controlnet-tiny"), *flags))
    error = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert flag in error and message in error and error.count("error:") == 1


def test_control_flags_need_a_controlnet_first(tmp_path, tiny_model_dir, case, capsys):
    with pytest.raises(SystemExit):
        run(cli_flags(case, tiny_model_dir, tmp_path / "o.mp4", "--control-frames", "x"))
    assert "must follow the --controlnet" in capsys.readouterr().err


def test_python_control_checks(net, images):
    for bad, message in [(dict(start=0.6, end=0.4), "start < end"), (dict(strength=float("inf")), "finite")]:
        with pytest.raises(InputError, match=message):
            Control(net, images, **bad).check(8, 64, 64)
    with pytest.raises(InputError, match="4 control frames for a 8-frame video"):
        Control(net, images[:4]).check(8, 64, 64)
    Control(net, images[:1]).check(8, 64, 64)  # one image serves every frame
    with pytest.raises(InputError, match="resize them"):
        Control(net, images).check(8, 64, 96)


def test_controlnet_moves_with_model_offload(tiny_model_dir, fixtures_dir, images):
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu", offload="model")
    net = load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp32", unet_config=pipe.unet.config)
    pipe.offloader.events = []
    conditions = pipe.encode("a cat", "blurry")
    from model.pipeline import Settings

    pipe.sample(conditions, Settings(width=64, height=64, frames=2, steps=1), controls=[Control(net, images[:2])])
    assert ("load", "controlnet0") in pipe.offloader.events and ("unload", "controlnet0") in pipe.offloader.events


def test_several_controlnets_add_up_and_respect_their_steps(net, images):
    from model.controlnet.apply import control_residuals

    inputs = (torch.randn(2, 4, 3, 8, 8), torch.tensor(500), torch.randn(2, 77, 64), torch.randn(2, 32),
              torch.ones(2, 6))
    both = control_residuals([Control(net, images, 0.3), Control(net, images, 0.5, end=0.5)], *inputs, frames=(1, 2, 5),
                             step=(0, 4))
    one = control_residuals([Control(net, images, 0.8)], *inputs, frames=(1, 2, 5), step=(0, 4))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(both["down_residuals"], one["down_residuals"]))
    # At step 3 of 4 the second one has ended: only the first applies.
    late = control_residuals([Control(net, images, 0.3), Control(net, images, 0.5, end=0.5)], *inputs,
                             frames=(1, 2, 5), step=(3, 4))
    alone = control_residuals([Control(net, images, 0.3)], *inputs, frames=(1, 2, 5), step=(3, 4))
    assert torch.equal(late["mid_residual"], alone["mid_residual"])
    assert control_residuals([Control(net, images, 0.5, start=0.5)], *inputs, step=(1, 4)) == {}


def test_canny_preprocess_gives_edges(tmp_path):
    from PIL import Image

    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, 32:] = 255  # one vertical edge
    Image.fromarray(pixels).save(tmp_path / "step.png")
    edges = control_frames(tmp_path / "step.png", 64, 64, 8, preprocess="canny")
    assert edges.shape == (1, 3, 64, 64)  # one image serves every frame
    columns = edges[0, 0].amax(dim=0)
    assert set(columns.nonzero().flatten().tolist()) <= {31, 32} and columns.max() == 1
    with pytest.raises(InputError, match="control preprocess"):
        control_frames(tmp_path / "step.png", 64, 64, 8, preprocess="sobel")
