"""The UNet reproduces the original implementation, and loads every released layout strictly."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.network.config import UNetConfig
from model.errors import InputError, ModelFileError
from model.files.loading import load_unet
from model.network.unet import HotshotXLUNet
from model.files.weights import assign_state_dict
from tests.goldens import assert_close_to_golden

# allclose-style (tests/goldens.py): 3e-5 of each output's largest magnitude (about 3, so 1e-4 as an
# absolute bound was and stays the strictness) plus 1e-6 of the whole set's.
RTOL = 3e-5
FLOOR = 1e-6


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(fixtures_dir / "unet_golden.safetensors")


def run(unet, golden, frames=None):
    sample = golden["sample"] if frames is None else golden["sample"][:, :, :frames]
    with torch.no_grad():
        return unet(sample, golden["timestep"], golden["encoder_hidden_states"], golden["text_embeds"],
                    golden["time_ids"]).float()


def assert_matches_golden(unet, golden):
    outputs = [golden["out"], golden["out_single_frame_no_temporal"]]
    assert_close_to_golden(run(unet, golden), golden["out"], RTOL, FLOOR, outputs)
    # One frame is the image path: temporal layers off, as in the reference.
    assert_close_to_golden(run(unet, golden, frames=1), golden["out_single_frame_no_temporal"], RTOL, FLOOR, outputs)


@pytest.fixture(scope="module")
def tiny_unet(tiny_model_dir):
    return load_unet(tiny_model_dir, dtype="fp32")


def test_released_folder_reproduces_golden(tiny_unet, golden):
    assert_matches_golden(tiny_unet, golden)


def test_unet_subfolder_loads_the_same(tiny_model_dir, golden):
    assert_matches_golden(load_unet(tiny_model_dir / "unet", dtype="fp32"), golden)


def test_temporal_layers_change_the_video_path(tiny_unet, golden):
    # Guards the golden comparison itself: the temporal layers must matter for 8 frames.
    without = tiny_unet(golden["sample"], golden["timestep"], golden["encoder_hidden_states"],
                        golden["text_embeds"], golden["time_ids"], temporal=False)
    assert (without - golden["out"]).abs().max() > 1e-2


def test_full_size_model_has_the_release_keys(fixtures_dir):
    release = json.loads((fixtures_dir / "hotshot_xl_unet_keys.json").read_text())
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(release["config"]))
    ours = {key: list(tensor.shape) for key, tensor in unet.state_dict().items()}
    assert ours == release["keys"]
    assert sum("temporal_attentions" in key for key in ours) == 420

    state = {key: torch.empty(shape, device="meta") for key, shape in release["keys"].items()}
    assign_state_dict(unet, state, "release keys")  # strict: raises on any difference
    with pytest.raises(ModelFileError, match="missing 1 tensors"):
        state.pop("conv_in.weight")
        assign_state_dict(unet, state, "release keys")


def _spatial_folder(tiny_model_dir, tmp_path, name="sdxl-unet"):
    """The tiny model's spatial weights as an SDXL (UNet2DConditionModel) diffusers folder."""
    folder = tmp_path / name / "unet"
    folder.mkdir(parents=True)
    config = json.loads((tiny_model_dir / "unet" / "config.json").read_text())
    config["_class_name"] = "UNet2DConditionModel"
    config["down_block_types"] = [n.replace("3D", "2D") for n in config["down_block_types"]]
    config["up_block_types"] = [n.replace("3D", "2D") for n in config["up_block_types"]]
    config["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    save_file({k: v for k, v in weights.items() if "temporal_attentions" not in k},
              folder / "diffusion_pytorch_model.safetensors")
    return folder.parent


def test_temporal_file_plus_sdxl_folder(fixtures_dir, tiny_model_dir, tmp_path, golden):
    sdxl = _spatial_folder(tiny_model_dir, tmp_path)
    temporal = fixtures_dir / "hsxl_temporal_layers_tiny.safetensors"
    assert_matches_golden(load_unet([temporal, sdxl], dtype="fp32"), golden)
    assert_matches_golden(load_unet([sdxl, temporal], dtype="fp32"), golden)


def test_temporal_file_plus_single_file_checkpoint(fixtures_dir, tiny_model_dir, golden):
    unet = load_unet([fixtures_dir / "hsxl_temporal_layers_tiny.safetensors",
                      fixtures_dir / "sdxl-tiny-single-file.safetensors"],
                     dtype="fp32", config=tiny_model_dir / "unet" / "config.json")
    assert_matches_golden(unet, golden)


def test_released_temporal_layers_on_a_fine_tune(tiny_model_dir, tmp_path, golden):
    # A Hotshot-XL folder plus an SDXL fine-tune: the folder's temporal layers on the fine-tune.
    sdxl = _spatial_folder(tiny_model_dir, tmp_path)
    weights_file = sdxl / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    weights["conv_in.bias"] = weights["conv_in.bias"] + 1.0
    save_file(weights, weights_file)
    unet = load_unet([tiny_model_dir, sdxl], dtype="fp32")
    assert torch.equal(unet.conv_in.bias, weights["conv_in.bias"])
    released = load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    key = "up_blocks.0.temporal_attentions.1.proj_in.weight"
    assert torch.equal(unet.state_dict()[key], released[key])


@pytest.mark.parametrize("dtype, tolerance", [("bf16", 0.1), ("fp16", 0.01)])
def test_half_precision_loads_stay_close(tiny_model_dir, golden, dtype, tolerance):
    unet = load_unet(tiny_model_dir, dtype=dtype)
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert all(t.dtype == expected for t in unet.state_dict().values())
    out = run(unet, golden)
    assert out.shape == golden["out"].shape
    error = (out - golden["out"]).abs().max().item()
    assert error < tolerance * golden["out"].abs().max().item()


def test_sharded_and_fp16_variant_folders(tiny_model_dir, tmp_path, golden):
    weights = load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    keys = sorted(weights)
    sharded = tmp_path / "sharded" / "unet"
    sharded.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "unet" / "config.json", sharded)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, part in halves.items():
        save_file({k: weights[k] for k in part}, sharded / name)
    index = {"weight_map": {k: name for name, part in halves.items() for k in part}}
    (sharded / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    assert_matches_golden(load_unet(sharded.parent, dtype="fp32"), golden)

    variant = tmp_path / "variant" / "unet"
    variant.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "unet" / "config.json", variant)
    save_file({k: v.half() for k, v in weights.items()}, variant / "diffusion_pytorch_model.fp16.safetensors")
    unet = load_unet(variant.parent, dtype="fp16")
    assert unet.conv_in.weight.dtype == torch.float16
    assert torch.equal(unet.conv_in.weight, weights["conv_in.weight"].half())


def test_more_frames_than_positions_is_a_clear_error(tiny_unet, golden):
    sample = golden["sample"][:1].repeat(1, 1, 4, 1, 1)  # 32 frames
    with pytest.raises(InputError, match="frames: 32 frames .* context windows"):
        tiny_unet(sample, golden["timestep"][:1], golden["encoder_hidden_states"][:1],
                  golden["text_embeds"][:1], golden["time_ids"][:1])


# --- bad input: each error names the file and what was expected -------------------------------

@pytest.fixture
def temporal_weights(fixtures_dir):
    return load_file(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")


def _with_sdxl(tiny_model_dir, tmp_path, temporal_file):
    return load_unet([temporal_file, _spatial_folder(tiny_model_dir, tmp_path)], dtype="fp32")


def test_pickle_checkpoints_are_refused(tmp_path):
    for suffix in (".ckpt", ".bin", ".pt"):
        path = tmp_path / f"model{suffix}"
        path.write_bytes(b"not read")
        with pytest.raises(ModelFileError, match=rf"model\{suffix}: .*pickle.*safetensors"):
            load_unet(path)


def test_missing_path_and_folder_without_unet(tmp_path):
    with pytest.raises(ModelFileError, match="nowhere: not found"):
        load_unet(tmp_path / "nowhere")
    with pytest.raises(ModelFileError, match="expected unet/config.json"):
        load_unet(tmp_path)


def test_truncated_file(fixtures_dir, tmp_path):
    data = (fixtures_dir / "hsxl_temporal_layers_tiny.safetensors").read_bytes()
    broken = tmp_path / "hsxl_temporal_layers.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="hsxl_temporal_layers.safetensors: .*truncated or corrupt"):
        load_unet([broken, fixtures_dir / "sdxl-tiny-single-file.safetensors"])


def test_temporal_file_missing_a_tensor(tiny_model_dir, tmp_path, temporal_weights):
    temporal_weights.pop("down_blocks.0.temporal_attentions.0.proj_in.weight")
    path = tmp_path / "t.safetensors"
    save_file(temporal_weights, path)
    with pytest.raises(ModelFileError, match=r"t.safetensors: temporal layers do not fit .*1 of 420"):
        _with_sdxl(tiny_model_dir, tmp_path, path)


def test_temporal_file_with_wrong_shapes(tiny_model_dir, tmp_path, temporal_weights):
    key = "up_blocks.2.temporal_attentions.0.proj_out.weight"
    temporal_weights[key] = torch.zeros(3, 3)
    path = tmp_path / "t.safetensors"
    save_file(temporal_weights, path)
    with pytest.raises(ModelFileError, match=rf"t.safetensors: .*{key} is \(3, 3\), expected \(32, 32\)"):
        _with_sdxl(tiny_model_dir, tmp_path, path)


def test_unexpected_tensor_in_the_spatial_part(tiny_model_dir, tmp_path, fixtures_dir):
    sdxl = _spatial_folder(tiny_model_dir, tmp_path)
    weights_file = sdxl / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, weights_file)
    with pytest.raises(ModelFileError, match="unexpected 1 tensors: extra.weight"):
        load_unet([fixtures_dir / "hsxl_temporal_layers_tiny.safetensors", sdxl])


def test_files_that_are_not_models(tmp_path, fixtures_dir):
    motion = tmp_path / "mm_sd_v15.safetensors"
    save_file({"down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(2, 2)}, motion)
    with pytest.raises(ModelFileError, match="mm_sd_v15.safetensors: this is an AnimateDiff motion module"):
        load_unet(motion)
    other = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.zeros(1)}, other)
    with pytest.raises(ModelFileError, match="lora.safetensors: this is not a Stable Diffusion checkpoint"):
        load_unet(other)
    with pytest.raises(ModelFileError, match="temporal layers alone are not a model"):
        load_unet(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")


def test_sdxl_without_temporal_layers_says_what_to_add(tiny_model_dir, tmp_path):
    with pytest.raises(ModelFileError, match="has no temporal layers: also give .*hsxl_temporal_layers"):
        load_unet(_spatial_folder(tiny_model_dir, tmp_path))


def test_two_sources_of_temporal_layers(tiny_model_dir, fixtures_dir):
    with pytest.raises(ModelFileError, match="give only one of them"):
        load_unet([tiny_model_dir, fixtures_dir / "hsxl_temporal_layers_tiny.safetensors"])


def test_bad_config_names_the_file(tiny_model_dir, tmp_path):
    folder = tmp_path / "m" / "unet"
    shutil.copytree(tiny_model_dir / "unet", folder)
    config = json.loads((folder / "config.json").read_text())
    config["class_embed_type"] = "projection"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=r"config.json: .*class_embed_type"):
        load_unet(folder.parent)
