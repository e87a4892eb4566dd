"""The temporal layers on their own (model/files/temporal_layers.py), as the native path hands them to a
host UNet: read from the released layouts, the frame-spanning GroupNorm, motion LoRAs."""

import pytest
import torch
from safetensors.torch import save_file

from model.errors import ModelFileError
from model.files.loading import load_unet
from model.files.temporal_layers import Position, merge_motion_lora, read_temporal_layers
from model.network.norms import FrameGroupNorm, frame_group_norm


def test_layers_are_the_released_ones_at_their_positions(fixtures_dir, tiny_model_dir):
    layers = read_temporal_layers(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")
    unet = load_unet(tiny_model_dir, dtype="fp32", device="cpu")
    assert len(layers) == 15  # 3 down blocks x 2 resnets, 3 up blocks x 3
    for position, layer in layers.items():
        blocks = unet.down_blocks if position.kind == "down" else unet.up_blocks
        expected = blocks[position.block].temporal_attentions[position.layer].state_dict()
        found = layer.state_dict()
        assert found.keys() == expected.keys() and all(torch.equal(found[k], expected[k]) for k in found), position
    # A released UNet file holds the same layers among its spatial weights.
    from_unet = read_temporal_layers(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    assert from_unet.keys() == layers.keys()


def test_frame_group_norm_is_the_originals_5d_group_norm():
    torch.manual_seed(0)
    norm = FrameGroupNorm(8, 32, eps=1e-5)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2 * 3, 32, 5, 4)  # two videos of three frames
    expected = norm(x, frames=3)
    assert (frame_group_norm(x, 3, 8, norm.weight, norm.bias, 1e-5) - expected).abs().max() < 1e-5
    per_image = torch.nn.functional.group_norm(x, 8, norm.weight, norm.bias, 1e-5)
    assert (frame_group_norm(x, 1, 8, norm.weight, norm.bias, 1e-5) - per_image).abs().max() < 1e-5
    assert (expected - per_image).abs().max() > 0.01  # the frames matter


def test_bad_files_name_the_file(tmp_path, fixtures_dir):
    motion_module = tmp_path / "mm_sd_v15_v2.safetensors"
    save_file({"down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(4, 4)},
              str(motion_module))
    with pytest.raises(ModelFileError, match="mm_sd_v15_v2.safetensors: this is an AnimateDiff motion module"):
        read_temporal_layers(motion_module)
    with pytest.raises(ModelFileError, match="holds no Hotshot-XL temporal layers"):
        read_temporal_layers(fixtures_dir / "sdxl-tiny-single-file.safetensors")
    pickle = tmp_path / "layers.ckpt"
    pickle.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="pickle"):
        read_temporal_layers(pickle)
    incomplete = tmp_path / "incomplete.safetensors"
    save_file({"down_blocks.0.temporal_attentions.0.proj_in.weight": torch.zeros(32, 32)}, str(incomplete))
    with pytest.raises(ModelFileError, match="down_blocks.0.temporal_attentions.0 is incomplete"):
        read_temporal_layers(incomplete)


def test_motion_lora_changes_only_its_layers_and_refuses_sdxl_loras(fixtures_dir):
    from pathlib import Path

    from model.lora.formats import LayerLoRA, LoRAFile, read_lora

    layers = read_temporal_layers(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")
    with pytest.raises(ModelFileError, match="not a motion LoRA"):
        merge_motion_lora(layers, read_lora(fixtures_dir / "lora_tiny_kohya.safetensors"), 1.0)
    position = Position("up", 1, 2)
    to_q = layers[position].transformer_blocks[0].attention_blocks[0].to_q
    before = to_q.weight.clone()
    down, up = torch.randn(2, before.shape[1]), torch.randn(before.shape[0], 2)
    name = "up_blocks.1.temporal_attentions.2.transformer_blocks.0.attention_blocks.0.to_q"
    lora = LoRAFile(Path("motion.safetensors"), {"unet": {name: LayerLoRA(down, up, alpha=1.0, keys=())}}, [], 3,
                    "motion")
    assert merge_motion_lora(layers, lora, 0.5) == 1
    assert torch.allclose(to_q.weight, before + 0.5 * 0.5 * up @ down)  # strength x alpha/rank x up @ down
    others = read_temporal_layers(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")
    assert all(torch.equal(a, b) for p in layers if p != position
               for a, b in zip(layers[p].state_dict().values(), others[p].state_dict().values()))
