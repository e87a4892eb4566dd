"""SDXL single-file reading: exact agreement with the released layout, dtype, refusals, shipped configs.

The fixture `sdxl-tiny-single-file.safetensors` is the spatial part of `hotshot-xl-tiny/` written in
the original SGM layout, so converting it back must give the tiny folder's tensors bit for bit.
"""

import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.errors import InputError, ModelFileError
from model.files.sdxl_configs import SHIPPED_CONFIGS, shipped_config
from model.files.single_file import (
    describe_checkpoint,
    fit_text_encoder_keys,
    is_sdxl_single_file,
    read_sdxl_text_encoders,
    read_sdxl_unet,
    read_sdxl_vae,
    unet_2d_config,
)


@pytest.fixture(scope="module")
def single_file(fixtures_dir):
    return fixtures_dir / "sdxl-tiny-single-file.safetensors"


def _config(tiny_model_dir, component):
    return json.loads((tiny_model_dir / component / "config.json").read_text())


def _assert_same(actual, expected, dtype=None):
    assert set(actual) == set(expected), (sorted(set(actual) - set(expected))[:5], sorted(set(expected) - set(actual))[:5])
    for key, value in expected.items():
        want = value if dtype is None else value.to(dtype)
        assert actual[key].dtype == want.dtype, key
        assert torch.equal(actual[key], want), key


# ------------------------------------------------------------------------------ exact conversion

def test_unet_is_the_tiny_folders_spatial_unet(single_file, tiny_model_dir):
    expected = {key: value for key, value in load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors").items()
                if "temporal_attentions" not in key}
    _assert_same(read_sdxl_unet(single_file, _config(tiny_model_dir, "unet")), expected)


def test_unet_in_bfloat16(single_file, tiny_model_dir):
    expected = {key: value for key, value in load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors").items()
                if "temporal_attentions" not in key}
    _assert_same(read_sdxl_unet(single_file, _config(tiny_model_dir, "unet"), torch.bfloat16), expected, torch.bfloat16)


def test_unet_accepts_a_2d_sdxl_config(single_file, tiny_model_dir):
    config_2d = unet_2d_config(_config(tiny_model_dir, "unet"))
    assert config_2d["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert config_2d["mid_block_type"] == "UNetMidBlock2DCrossAttn"
    assert set(read_sdxl_unet(single_file, config_2d)) == set(read_sdxl_unet(single_file, _config(tiny_model_dir, "unet")))


def test_vae_is_the_tiny_folders_vae(single_file, tiny_model_dir):
    expected = load_file(tiny_model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    _assert_same(read_sdxl_vae(single_file, _config(tiny_model_dir, "vae")), expected)


def test_standalone_vae_files_are_read_too(single_file, tiny_model_dir, tmp_path):
    """An original-layout VAE file (like sdxl_vae.safetensors) and a diffusers one."""
    expected = load_file(tiny_model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    original = {key.removeprefix("first_stage_model."): value for key, value in load_file(single_file).items()
                if key.startswith("first_stage_model.")}
    save_file(original, tmp_path / "vae.safetensors")
    assert describe_checkpoint(tmp_path / "vae.safetensors").kind == "vae"
    _assert_same(read_sdxl_vae(tmp_path / "vae.safetensors", _config(tiny_model_dir, "vae")), expected)
    diffusers_file = tiny_model_dir / "vae" / "diffusion_pytorch_model.safetensors"
    assert describe_checkpoint(diffusers_file).kind == "diffusers_vae"
    _assert_same(read_sdxl_vae(diffusers_file, _config(tiny_model_dir, "vae"), torch.float16), expected, torch.float16)


def test_text_encoders_are_the_tiny_folders(single_file, tiny_model_dir):
    state_1, state_2 = read_sdxl_text_encoders(
        single_file, _config(tiny_model_dir, "text_encoder"), _config(tiny_model_dir, "text_encoder_2"))
    # The released files hold no `position_ids` (transformers >= 4.31 makes it a non-persistent
    # buffer); ours must not either, so both compare as equal key sets.
    _assert_same(state_1, load_file(tiny_model_dir / "text_encoder" / "model.safetensors"))
    _assert_same(state_2, load_file(tiny_model_dir / "text_encoder_2" / "model.safetensors"))


def test_text_encoders_in_bfloat16_without_position_ids(single_file, tiny_model_dir, tmp_path):
    """Single files saved by older transformers carry an int64 position_ids buffer: it is dropped."""
    tensors = load_file(single_file)
    tensors["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(tensors, tmp_path / "with_position_ids.safetensors")
    state_1, state_2 = read_sdxl_text_encoders(
        tmp_path / "with_position_ids.safetensors", _config(tiny_model_dir, "text_encoder"),
        _config(tiny_model_dir, "text_encoder_2"), torch.bfloat16)
    _assert_same(state_1, load_file(tiny_model_dir / "text_encoder" / "model.safetensors"), torch.bfloat16)
    _assert_same(state_2, load_file(tiny_model_dir / "text_encoder_2" / "model.safetensors"), torch.bfloat16)


def test_text_encoder_state_loads_strictly_into_transformers(single_file, tiny_model_dir):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    state_1, state_2 = read_sdxl_text_encoders(
        single_file, _config(tiny_model_dir, "text_encoder"), _config(tiny_model_dir, "text_encoder_2"))
    model_1 = CLIPTextModel(CLIPTextConfig.from_pretrained(tiny_model_dir / "text_encoder"))
    model_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(tiny_model_dir / "text_encoder_2"))
    model_1.load_state_dict(fit_text_encoder_keys(state_1, model_1), strict=True)
    model_2.load_state_dict(fit_text_encoder_keys(state_2, model_2), strict=True)
    assert torch.equal(model_2.text_projection.weight, state_2["text_projection.weight"])


# ------------------------------------------------------------------------------------ refusals

@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth"])
def test_pickles_are_refused_unopened(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not even opened")
    for read in (describe_checkpoint, read_sdxl_unet, read_sdxl_vae, read_sdxl_text_encoders):
        with pytest.raises(ModelFileError, match="pickle") as caught:
            read(path)
        assert str(path) in str(caught.value) and "arbitrary code" in str(caught.value)
    assert not is_sdxl_single_file(path)


def test_truncated_file_names_the_path(single_file, tmp_path):
    path = tmp_path / "truncated.safetensors"
    with open(single_file, "rb") as source:
        path.write_bytes(source.read(single_file.stat().st_size - 4096))
    for read in (describe_checkpoint, read_sdxl_unet, read_sdxl_vae, read_sdxl_text_encoders):
        with pytest.raises(ModelFileError, match="truncated or corrupt") as caught:
            read(path)
        assert caught.value.path == str(path)
    assert not is_sdxl_single_file(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        read_sdxl_unet(tmp_path / "nothing.safetensors")
    with pytest.raises(ModelFileError, match="folder"):
        describe_checkpoint(tmp_path)


def _synthetic(tmp_path, name, keys):
    path = tmp_path / f"{name}.safetensors"
    save_file({key: torch.zeros(2) for key in keys}, path)
    return path


SD15_KEYS = ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.output_blocks.11.0.skip_connection.weight",
             "first_stage_model.encoder.conv_in.weight",
             "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"]


@pytest.mark.parametrize("name, keys, kind, message", [
    ("sd15", SD15_KEYS, "sd1", "Stable Diffusion 1.x"),
    ("sd2", ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.ln_final.weight"], "sd2",
     "Stable Diffusion 2.x"),
    ("refiner", ["model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.0.model.ln_final.weight"],
     "sdxl_refiner", "refiner"),
    ("sd_unet_only", ["model.diffusion_model.input_blocks.0.0.weight"], "sd_unet", "not SDXL"),
    ("no_unet", ["foo.weight", "bar.bias"], "unknown", "no model.diffusion_model"),
    ("animatediff", ["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"], "animatediff", "AnimateDiff"),
])
def test_non_sdxl_files_are_explained(tmp_path, name, keys, kind, message):
    path = _synthetic(tmp_path, name, keys)
    info = describe_checkpoint(path)
    assert info.kind == kind and not info.is_sdxl and message in info.summary
    assert not is_sdxl_single_file(path)
    for read in (read_sdxl_unet, read_sdxl_vae, read_sdxl_text_encoders):
        with pytest.raises(ModelFileError, match=message) as caught:
            read(path)
        assert caught.value.path == str(path)


def test_temporal_layers_file_given_by_mistake(fixtures_dir):
    path = fixtures_dir / "hsxl_temporal_layers_tiny.safetensors"
    assert describe_checkpoint(path).kind == "hotshot_temporal"
    with pytest.raises(ModelFileError, match="temporal-layers file") as caught:
        read_sdxl_unet(path)
    assert "give it as the temporal layers" in str(caught.value)


def test_other_diffusers_files_are_named(tiny_model_dir):
    assert describe_checkpoint(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors").kind == "hotshot_unet"
    assert describe_checkpoint(tiny_model_dir / "text_encoder" / "model.safetensors").kind == "text_encoder"
    with pytest.raises(ModelFileError, match="diffusers layout"):
        read_sdxl_unet(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")


def test_sdxl_file_without_text_encoders(single_file, tmp_path):
    tensors = {key: value for key, value in load_file(single_file).items() if not key.startswith("conditioner.")}
    save_file(tensors, tmp_path / "unet_vae.safetensors")
    info = describe_checkpoint(tmp_path / "unet_vae.safetensors")
    assert info.is_sdxl and info.components == {"unet", "vae"}
    with pytest.raises(ModelFileError, match="lacks the CLIP ViT-L text encoder.*holds only unet, vae"):
        read_sdxl_text_encoders(tmp_path / "unet_vae.safetensors")


def test_header_only_detection(single_file):
    info = describe_checkpoint(single_file)
    assert info.is_sdxl and info.components == {"unet", "vae", "text_encoder", "text_encoder_2"}
    assert is_sdxl_single_file(single_file)


def test_wrong_config_says_which_tensors_differ(single_file):
    # The shipped configs are full-size; the fixture is tiny.
    with pytest.raises(ModelFileError, match=r"UNet does not match the config.*\(128, 80\), expected \(1280, 2816\)"):
        read_sdxl_unet(single_file)
    with pytest.raises(ModelFileError, match="VAE does not match the config"):
        read_sdxl_vae(single_file)


def test_bad_dtype(single_file):
    with pytest.raises(InputError, match="dtype"):
        read_sdxl_unet(single_file, dtype=torch.int8)


# ------------------------------------------------------------------------------ shipped configs

def test_shipped_unet_config_builds_the_released_spatial_unet(fixtures_dir):
    """The shipped config, as a 2D SDXL UNet, has exactly the released file's spatial keys and shapes."""
    from diffusers import UNet2DConditionModel

    released = json.loads((fixtures_dir / "hotshot_xl_unet_keys.json").read_text())
    assert {k: v for k, v in shipped_config("unet").items() if not k.startswith("_")} == released["config"]
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_2d_config(shipped_config("unet")))
    shapes = {key: list(value.shape) for key, value in unet.state_dict().items()}
    spatial = {key: shape for key, shape in released["keys"].items() if "temporal_attentions" not in key}
    assert shapes == spatial


@pytest.mark.parametrize("name, parameters", [
    # Parameter counts of SDXL base 1.0's components (diffusers/transformers report these).
    ("vae", 83_653_863), ("text_encoder", 123_060_480), ("text_encoder_2", 694_659_840)])
def test_shipped_sdxl_configs_have_the_published_sizes(name, parameters):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = shipped_config(name)
    with torch.device("meta"):
        if name == "vae":
            model = AutoencoderKL.from_config(config)
        else:
            cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
            assert config["architectures"] == [cls.__name__]
            model = cls(CLIPTextConfig.from_dict(config))
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_shipped_scheduler_and_pipeline_facts(tiny_model_dir):
    assert shipped_config("scheduler") == json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert shipped_config("model_index")["force_zeros_for_empty_prompt"] is True
    assert shipped_config("vae")["scaling_factor"] == 0.13025 and shipped_config("vae")["force_upcast"] is True
    config = shipped_config("unet")
    config["in_channels"] = 99  # a fresh copy each call
    assert shipped_config("unet")["in_channels"] == 4
    assert set(SHIPPED_CONFIGS) == {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler", "model_index"}
    with pytest.raises(InputError):
        shipped_config("tokenizer")


# ------------------------------------------------------------------------ the file's page cache

posix_fadvise = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform")


def _record_fadvise(monkeypatch, free_bytes, mapped=None):
    """posix_fadvise calls as (offset, length, advice); with `mapped` (a list, and a Linux /proc), also
    whether the file being advised was still memory-mapped by this process at each call."""
    import model.files.weights as weights

    calls = []

    def record(fd, offset, length, advice):
        calls.append((offset, length, advice))
        if mapped is not None:
            maps = open("/proc/self/maps").read()
            mapped.append(os.path.realpath(f"/proc/self/fd/{fd}") in maps)

    monkeypatch.setattr(weights, "_free_memory_bytes", lambda: free_bytes)
    monkeypatch.setattr(os, "posix_fadvise", record)
    return calls


def _raw_bytes(path, prefix):
    """Each tensor's bytes as stored, for the tensors of a safetensors file whose names start with `prefix`."""
    return [tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
            for name, tensor in load_file(path).items() if name.startswith(prefix)]


@posix_fadvise
def test_converted_tensors_let_their_pages_go_when_memory_is_short(single_file, tiny_model_dir, monkeypatch):
    mapped = []
    calls = _record_fadvise(monkeypatch, free_bytes=0, mapped=mapped)
    state = read_sdxl_unet(single_file, _config(tiny_model_dir, "unet"), torch.bfloat16)
    data = single_file.read_bytes()
    # Mapped pages are never dropped: every view of the file must be gone when the advice is given.
    if os.path.exists("/proc/self/maps"):
        assert mapped and not any(mapped)
    assert {advice for *_, advice in calls} == {os.POSIX_FADV_DONTNEED}
    # exactly the UNet's tensors, each once: no other component's pages
    released = sorted(data[offset:offset + length] for offset, length, _ in calls)
    assert released == sorted(_raw_bytes(single_file, "model.diffusion_model."))
    assert all(tensor.dtype == torch.bfloat16 for tensor in state.values())


@posix_fadvise
def test_pages_stay_cached_with_memory_to_spare_or_nothing_converted(single_file, tiny_model_dir, monkeypatch):
    unet_config, vae_config = _config(tiny_model_dir, "unet"), _config(tiny_model_dir, "vae")
    calls = _record_fadvise(monkeypatch, free_bytes=1 << 60)
    read_sdxl_unet(single_file, unet_config, torch.bfloat16)
    read_sdxl_text_encoders(single_file, _config(tiny_model_dir, "text_encoder"),
                            _config(tiny_model_dir, "text_encoder_2"), torch.bfloat16)
    assert calls == []
    calls = _record_fadvise(monkeypatch, free_bytes=0)
    read_sdxl_unet(single_file, unet_config, None)  # the file's own tensors, used where they lie
    read_sdxl_vae(single_file, vae_config, torch.float32)  # already float32: nothing converted
    assert calls == []


@posix_fadvise
def test_a_folders_converted_file_lets_its_pages_go_too(tiny_model_dir, monkeypatch):
    from model.files.weights import read_safetensors

    path = tiny_model_dir / "vae" / "diffusion_pytorch_model.safetensors"
    calls = _record_fadvise(monkeypatch, free_bytes=0)
    read_safetensors(path, torch.bfloat16)
    data = path.read_bytes()
    assert sorted(data[offset:offset + length] for offset, length, _ in calls) == sorted(_raw_bytes(path, ""))


def test_progress_counts_each_tensor_of_a_single_file_once_as_it_is_converted(single_file, tiny_model_dir):
    from model.files.weights import reading_progress

    read, during_conversion = [], []

    def count(nbytes):
        read.append(nbytes)
        frame, names = sys._getframe(1), set()
        while frame is not None:
            names.add(frame.f_code.co_name)
            frame = frame.f_back
        during_conversion.append("materialize" in names)

    with reading_progress(count):
        read_sdxl_unet(single_file, _config(tiny_model_dir, "unet"), torch.bfloat16)
    # in the file's bytes (float32 here), not the converted ones, and no tensor twice
    assert sum(read) == sum(len(raw) for raw in _raw_bytes(single_file, "model.diffusion_model."))
    # told as each tensor is converted (where the time goes), not all at once when the file is opened
    assert during_conversion and all(during_conversion)
