"""Memory and speed options: fp8 weights, CPU offload, torch.compile.

Each must reach `load_unet` / `load_pipeline`, and none may change results beyond what it is
documented to change: offload and compile not at all, fp8 by the rounding of its weights.
"""

import copy
import json
import shutil
import weakref

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from model.config import UNetConfig
from model.errors import InputError
from model.fp8 import FLOAT8, FLOAT8_MAX, KEEP_PRECISE, Float8Conv2d, Float8Weight, quantize, use_float8
from model.loading import load_unet
from model.unet import HotshotXLUNet
from model.weights import assign_state_dict
from tests.test_unet import run

# Relative L2 distance of the fp8 UNet's output from the bf16 UNet's on the golden inputs, measured:
# 0.091 for 8 frames, 0.102 for the single-frame path (bf16 itself is 0.014 from float32). e4m3
# keeps 3 mantissa bits, so each weight is rounded by up to 2^-4 of itself (3.6% RMS), and the
# errors of some forty layers in sequence add up. A broken scale is far outside: all scales off by
# one power of two gives 0.81.
FP8_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(fixtures_dir / "unet_golden.safetensors")


@pytest.fixture(scope="module")
def fp8_unet(tiny_model_dir):
    return load_unet(tiny_model_dir, dtype="fp8")


@pytest.fixture(scope="module")
def bf16_unet(tiny_model_dir):
    return load_unet(tiny_model_dir, dtype="bf16")


def float8_layers(unet) -> list[str]:
    return [name for name, module in unet.named_modules() if isinstance(module, Float8Weight)]


def state_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def relative_error(out, expected) -> float:
    return ((out - expected).norm() / expected.norm()).item()


# ------------------------------------------------------------------------------------------- fp8

def test_quantize_scales_each_row_by_a_power_of_two_to_e4m3_precision():
    torch.manual_seed(0)
    # Rows of very different sizes, as in SDXL's weights, and an all-zero row.
    sizes = torch.tensor([1e-3, 1.0, 300.0, 0.0])
    weight = torch.randn(4, 64, 3, 3) * sizes[:, None, None, None]
    stored, scale = quantize(weight)
    assert stored.dtype == FLOAT8 and stored.shape == weight.shape and scale.shape == (4,)
    assert torch.equal(scale, torch.exp2(torch.log2(scale).round()))
    peaks = stored.float().flatten(1).abs().amax(dim=1)
    assert (peaks[:3] > FLOAT8_MAX / 2).all() and (peaks <= FLOAT8_MAX).all()  # each row fills e4m3's range
    assert torch.count_nonzero(stored[3].float()) == 0 and scale[3] == 1
    # Rounded to 3 mantissa bits: at most 2^-4 of each value where e4m3 is normal (2^-6 and up)...
    scaled = weight / scale[:, None, None, None]
    normal = scaled.abs() >= 2**-6
    restored = stored.float() * scale[:, None, None, None]
    assert ((restored - weight).abs() <= weight.abs() * 2**-4)[normal].all()
    # ... which is nearly all of the 1e-3 row too: one scale for the tensor would have put that
    # row below 2^-6, in e4m3's coarse subnormals.
    assert normal[0].float().mean() > 0.95


def test_fp8_unet_computes_exactly_with_its_upcast_weights(fp8_unet, bf16_unet, golden):
    layers = float8_layers(fp8_unet)
    linear_and_conv = [name for name, module in bf16_unet.named_modules()
                       if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))]
    assert sorted(layers) == sorted(name for name in linear_and_conv if name.split(".")[0] not in KEEP_PRECISE)
    assert all(fp8_unet.get_submodule(name).weight.dtype == FLOAT8 for name in layers)
    assert fp8_unet.conv_in.weight.dtype == fp8_unet.time_embedding.linear_1.weight.dtype == torch.bfloat16
    assert fp8_unet.dtype == torch.bfloat16
    # The bf16 UNet given the fp8 weights, upcast, must compute the same numbers, bit for bit:
    # fp8 changes the weights and nothing else.
    rounded = copy.deepcopy(bf16_unet)
    for name in layers:
        rounded.get_submodule(name).weight.data = fp8_unet.get_submodule(name).weight_rows()
    assert torch.equal(run(fp8_unet, golden), run(rounded, golden))


def test_fp8_conv_upcasts_only_the_rows_of_each_piece(fp8_unet, monkeypatch):
    conv = copy.deepcopy(fp8_unet.down_blocks[1].resnets[0].conv2)
    assert isinstance(conv, Float8Conv2d) and conv.out_channels == 64
    x = torch.randn(3, conv.in_channels, 8, 8).to(torch.bfloat16)
    whole = F.conv2d(x, conv.weight_rows(), conv.bias, padding=1)
    upcast_rows = []
    weight_rows = conv.weight_rows

    def spy(rows):
        upcast_rows.append(weight_rows(rows).shape[0])
        return weight_rows(rows)

    monkeypatch.setattr(conv, "weight_rows", spy)
    conv.piece_budget = conv.weight[0].numel() * x.element_size() * 16  # 16 output channels a piece
    assert torch.equal(conv(x), whole)
    assert upcast_rows == [16, 16, 16, 16]


def test_fp8_stays_close_to_bf16(fp8_unet, bf16_unet, golden):
    for frames in (None, 1):  # the video path, and the image path (no temporal layers)
        assert relative_error(run(fp8_unet, golden, frames), run(bf16_unet, golden, frames)) < FP8_TOLERANCE


def test_fp8_halves_the_weight_memory(fp8_unet, bf16_unet, fixtures_dir):
    # Measured 0.526 on the tiny model, whose norms, biases and position tables weigh relatively more.
    assert state_bytes(fp8_unet) < 0.55 * state_bytes(bf16_unet)
    # The full-size UNet, counted on the meta device: 5.22 GiB in bf16, 2.64 GiB with fp8.
    release = json.loads((fixtures_dir / "hotshot_xl_unet_keys.json").read_text())
    with torch.device("meta"):
        full = HotshotXLUNet(UNetConfig.from_dict(release["config"])).to(torch.bfloat16)
    bf16_bytes = state_bytes(full)
    use_float8(full)
    assert 0.5 * bf16_bytes < state_bytes(full) < 0.51 * bf16_bytes


def test_fp8_state_dict_adds_only_the_scales_and_loads_strictly(fp8_unet, bf16_unet, golden):
    fp8_keys, plain_keys = fp8_unet.state_dict().keys(), bf16_unet.state_dict().keys()
    assert fp8_keys - plain_keys == {f"{name}.weight_scale" for name in float8_layers(fp8_unet)}
    assert plain_keys <= fp8_keys
    with torch.device("meta"):
        again = HotshotXLUNet(fp8_unet.config)
    use_float8(again)
    assign_state_dict(again, dict(fp8_unet.state_dict()), "fp8 state dict")  # strict: raises on any difference
    assert torch.equal(run(again, golden), run(fp8_unet, golden))


def test_fp8_load_converts_each_tensor_as_it_is_read(tiny_model_dir, monkeypatch):
    """Peak memory of an fp8 load is about the fp8 model plus one tensor: no tensor as read from
    the file outlives its conversion."""
    import model.weights

    open_file = model.weights.safe_open
    read, alive_at_read = [], []

    class Reader:  # safetensors' reader, recording each tensor it hands out
        def __init__(self, *args, **kwargs):
            self.reader = open_file(*args, **kwargs)

        def __enter__(self):
            self.inner = self.reader.__enter__()
            return self

        def __exit__(self, *exc):
            return self.reader.__exit__(*exc)

        def keys(self):
            return self.inner.keys()

        def get_tensor(self, key):
            tensor = self.inner.get_tensor(key)
            read.append(weakref.ref(tensor))
            alive_at_read.append(sum(ref() is not None for ref in read))
            return tensor

    monkeypatch.setattr(model.weights, "safe_open", Reader)
    load_unet(tiny_model_dir, dtype="fp8")
    assert len(read) > 1000 and max(alive_at_read) <= 2  # the tensor just read, and the one before
    # The spy does see tensors that are kept: a float32 load of the float32 file keeps them all.
    read.clear()
    alive_at_read.clear()
    load_unet(tiny_model_dir, dtype="fp32")
    assert max(alive_at_read) == len(read)


def test_fp8_from_a_single_file_equals_fp8_from_the_folder(fixtures_dir, tiny_model_dir, fp8_unet):
    unet = load_unet([fixtures_dir / "hsxl_temporal_layers_tiny.safetensors",
                      fixtures_dir / "sdxl-tiny-single-file.safetensors"],
                     dtype="fp8", config=tiny_model_dir / "unet" / "config.json")
    ours, folder = unet.state_dict(), fp8_unet.state_dict()
    assert ours.keys() == folder.keys()
    # Quantized from the file's own dtype, as from the folder: not rounded twice.
    assert all(ours[key].dtype == folder[key].dtype and torch.equal(ours[key].float(), folder[key].float())
               for key in ours)


def test_store_fp8_quantizes_a_loaded_unet_as_loading_does(tiny_model_dir, tmp_path, golden):
    from model.loading import store_fp8

    # Both quantize the same bf16 values: a bf16 copy of the tiny UNet.
    folder = tmp_path / "bf16" / "unet"
    folder.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "unet" / "config.json", folder)
    weights = load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    save_file({key: value.to(torch.bfloat16) for key, value in weights.items()},
              folder / "diffusion_pytorch_model.safetensors")
    loaded = load_unet(folder.parent, dtype="fp8")
    stored = store_fp8(load_unet(folder.parent, dtype="bf16"))
    assert stored.state_dict().keys() == loaded.state_dict().keys()
    assert torch.equal(run(stored, golden), run(loaded, golden))


def test_dtype_choices_name_fp8(tiny_model_dir):
    with pytest.raises(InputError, match=r"^dtype: unknown dtype 'fp4'; use one of bf16, fp16, fp32, fp8 or auto"):
        load_unet(tiny_model_dir, dtype="fp4")
    unet = load_unet(tiny_model_dir, dtype=torch.float8_e4m3fn)
    assert unet.dtype == torch.bfloat16 and float8_layers(unet)
