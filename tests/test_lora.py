"""LoRA: the original's LoRA call reproduced through Python and the CLI, every layout read alike,
merges equal to W + strength * alpha / rank * up @ down, removal bit-exact, and bad files refused."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model.errors import InputError, ModelFileError
from model.lora import apply as lora_apply
from model.lora.apply import LoRAStack, match
from model.lora.cli import parse_lora
from model.lora.formats import MOTION_FORMAT, LayerLoRA, LoRAFile, read_lora
from model.pipeline import load_pipeline
from model.sample import run
from tests.goldens import PNG_TOLERANCE, assert_close_to_golden, cli_flags_of, png_frames, settings_of

TOLERANCE = 2e-3  # of the frames' largest value (1), allclose-style (tests/goldens.py) ...
FLOOR = 1e-6  # ... plus this much of the whole golden set's
GOLDEN = "lora_euler_a_8f"


def lora_case(fixtures_dir):
    return next(c for c in json.loads((fixtures_dir / "cond_golden.json").read_text()) if c["name"] == GOLDEN)


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")
    yield pipe
    pipe.unload_loras()


@pytest.fixture
def clean(pipe):
    """The shared pipeline, with whatever a test loaded removed afterwards."""
    yield pipe
    pipe.unload_loras()


@pytest.fixture(scope="module")
def kohya_file(fixtures_dir) -> Path:
    return fixtures_dir / "lora_tiny_kohya.safetensors"


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(fixtures_dir / "cond_golden.safetensors")[GOLDEN]


def snapshot(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.clone() for c, m in pipe.lora_modules().items() for k, v in m.state_dict().items()}


def assert_same(state, pipe):
    now = snapshot(pipe)
    assert now.keys() == state.keys()
    changed = [k for k in state if not torch.equal(state[k], now[k])]
    assert not changed, f"{len(changed)} tensors differ, e.g. {changed[:3]}"


def peft_layout(lora: LoRAFile) -> dict[str, torch.Tensor]:
    """The same LoRA under PEFT/diffusers names (`<component>.<module>.lora_A.weight`, `.alpha`)."""
    out = {}
    for component, layers in lora.layers.items():
        for module, layer in layers.items():
            out[f"{component}.{module}.lora_A.weight"] = layer.down.clone()
            out[f"{component}.{module}.lora_B.weight"] = layer.up.clone()
            out[f"{component}.{module}.alpha"] = torch.tensor(layer.alpha)
    return out


def old_diffusers_layout(lora: LoRAFile) -> dict[str, torch.Tensor]:
    """diffusers' older layout (attention processors, lora_linear_layer), no alphas: scale baked into up."""
    out = {}
    for component, layers in lora.layers.items():
        for module, layer in layers.items():
            up = layer.up * layer.scale
            attention = re.match(r"(.*\.attn[12])\.(to_q|to_k|to_v|to_out)(\.0)?$", module)
            text_attention = re.match(r"(.*\.self_attn)\.(q|k|v|out)_proj$", module)
            if attention:
                name = f"{attention[1]}.processor.{attention[2]}_lora"
            elif text_attention:
                name = f"{text_attention[1]}.to_{text_attention[2]}_lora"
            elif component == "unet":
                name = f"{module}.lora"
            else:
                name = f"{module}.lora_linear_layer"
            out[f"{component}.{name}.down.weight"] = layer.down.clone()
            out[f"{component}.{name}.up.weight"] = up.contiguous()
    return out


# ------------------------------------------------------------------------------------------ goldens

def test_python_api_reproduces_the_original_lora_call(clean, fixtures_dir, kohya_file, golden):
    case = lora_case(fixtures_dir)
    before = snapshot(clean)
    report = clean.load_lora(kohya_file, case["lora_strength"])
    # Every tensor of the file matched: 192 UNet layers and 18 per text encoder, 3 tensors each.
    assert report.matched == {"unet": 576, "text_encoder": 54, "text_encoder_2": 54} and not report.unknown
    frames = clean(case["prompt"], case["negative_prompt"], **settings_of(case))
    assert frames.shape == golden.shape
    assert_close_to_golden(frames, golden, TOLERANCE, FLOOR)
    clean.unload_loras()
    assert_same(before, clean)


def test_cli_lora_png_frames_match_the_original(tiny_model_dir, fixtures_dir, kohya_file, golden, tmp_path, capsys):
    case = lora_case(fixtures_dir)
    out = tmp_path / "frames/"
    code = run(cli_flags_of(case, tiny_model_dir, str(out) + "/", "--lora", f"{kohya_file}:{case['lora_strength']}"))
    assert code == 0
    assert "LoRA lora_tiny_kohya.safetensors (kohya): 684 of 684 tensors matched" in capsys.readouterr().err
    pixels = png_frames(out)
    assert pixels.shape == golden.shape
    assert_close_to_golden(pixels, golden, PNG_TOLERANCE, FLOOR)


def test_peft_and_older_diffusers_layouts_give_the_same_frames(clean, fixtures_dir, kohya_file, golden, tmp_path):
    case = lora_case(fixtures_dir)
    kohya = read_lora(kohya_file)
    peft_path, old_path = tmp_path / "peft.safetensors", tmp_path / "diffusers_old.safetensors"
    save_file(peft_layout(kohya), peft_path)
    save_file(old_diffusers_layout(kohya), old_path)
    clean.load_lora(kohya_file)
    kohya_weights = snapshot(clean)
    clean.unload_loras()
    for path, layout in ((peft_path, "peft"), (old_path, "diffusers")):
        report = clean.load_lora(path)
        assert report.lora.layout == layout and not report.unknown
        assert sum(report.layers.values()) == 228
        now = snapshot(clean)
        assert max((now[k] - kohya_weights[k]).abs().max().item() for k in now) < 1e-6
        if layout == "peft":  # the keys name the same layers with the same alpha: the same merge exactly
            assert all(torch.equal(now[k], kohya_weights[k]) for k in now)
            frames = clean(case["prompt"], case["negative_prompt"], **settings_of(case))
            assert_close_to_golden(frames, golden, TOLERANCE, FLOOR)
        clean.unload_loras()


# ---------------------------------------------------------------------------------- merge arithmetic

def test_every_merged_layer_is_w_plus_strength_alpha_over_rank_up_down(clean, kohya_file):
    lora = read_lora(kohya_file)
    before = snapshot(clean)
    clean.load_lora(lora, strength=0.7, text_strength=-0.4)
    after = snapshot(clean)
    checked = 0
    for component, layers in lora.layers.items():
        strength = 0.7 if component == "unet" else -0.4
        for module, layer in layers.items():
            module = module.removeprefix("text_model.") if component == "text_encoder" else module
            key = f"{component}.{module}.weight"
            expected = before[key] + strength * (layer.alpha / layer.rank) * (layer.up.float() @ layer.down.float())
            assert torch.allclose(after[key], expected, atol=1e-6, rtol=0), key
            checked += 1
    assert checked == 228
    untouched = [k for k in before if torch.equal(before[k], after[k])]
    assert len(untouched) == len(before) - checked  # nothing else changed


def test_strength_zero_is_bit_identical_to_no_lora(clean, kohya_file):
    before = snapshot(clean)
    settings = dict(width=64, height=64, frames=2, steps=1)
    plain = clean("a cat", **settings)
    clean.load_lora(kohya_file, strength=0.0)
    assert_same(before, clean)
    assert torch.equal(clean("a cat", **settings), plain)
    clean.load_lora(kohya_file, strength=0.0, text_strength=1.0)  # text encoders only
    assert torch.equal(snapshot(clean)["unet.conv_in.weight"], before["unet.conv_in.weight"])
    assert all(torch.equal(v, before[k]) for k, v in snapshot(clean).items() if k.startswith("unet."))


def test_hundred_apply_remove_cycles_and_stacks_are_bit_identical(clean, kohya_file, tmp_path):
    lora = read_lora(kohya_file)
    before = snapshot(clean)
    for _ in range(100):
        clean.load_lora(lora, strength=0.8)
        clean.unload_loras()
    assert_same(before, clean)
    # Stacked: two LoRAs on the same layers add up; removing restores the base.
    clean.load_lora(lora, strength=0.5)
    clean.load_lora(lora, strength=0.25)
    stacked = snapshot(clean)
    clean.unload_loras()
    clean.load_lora(lora, strength=0.75)
    once = snapshot(clean)
    assert max((stacked[k] - once[k]).abs().max().item() for k in once) < 1e-6
    clean.unload_loras()
    assert_same(before, clean)


def test_fp8_layers_merge_by_requantizing_and_restore_exactly(tiny_model_dir, kohya_file):
    pipe = load_pipeline(tiny_model_dir, dtype="fp8", device="cpu")
    layer = pipe.unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")
    weight, scale = layer.weight.clone(), layer.weight_scale.clone()
    original = layer.weight_rows().float()
    pipe.load_lora(kohya_file)
    update = read_lora(kohya_file).layers["unet"]["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"]
    merged = layer.weight_rows().float()
    expected = original + update.delta()
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert ((merged - expected).abs() <= expected.abs() * 2 ** -4 + 1e-6).all()  # e4m3 rounding only
    assert not torch.equal(merged, original)
    pipe.unload_loras()
    assert torch.equal(layer.weight.view(torch.uint8), weight.view(torch.uint8))
    assert torch.equal(layer.weight_scale, scale)


def test_offload_sees_the_merged_weights(tiny_model_dir, kohya_file):
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu", offload="model")
    name = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k"
    layer = pipe.unet.get_submodule(name)
    base = layer.weight.clone()
    pipe.load_lora(kohya_file)
    expected = base + read_lora(kohya_file).layers["unet"][name].delta()
    with pipe.offloader.running(pipe.unet):  # the copy brought to the compute device carries the merge
        assert torch.allclose(layer.weight, expected, atol=1e-6)
    pipe.unload_loras()
    with pipe.offloader.running(pipe.unet):
        assert torch.equal(layer.weight, base)


def test_compiled_modules_see_merges_in_place():
    """Merges write into the same tensors, so a compiled module needs no recompiling to see them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval().requires_grad_(False)
    x = torch.randn(2, 8)
    plain = model(x)
    update = LayerLoRA(torch.randn(2, 8), torch.randn(8, 2), alpha=1.0, keys=("a", "b"))
    lora = LoRAFile(Path("x.safetensors"), {"unet": {"0": update}}, [], 2, "peft")
    compiled = torch.compile(model, backend="eager")
    assert torch.allclose(compiled(x), plain)
    stack = LoRAStack()
    stack.add(lora, {"unet": model}, {"unet": 1.0})
    assert torch.allclose(compiled(x), plain + 0.5 * x @ (update.up @ update.down).T, atol=1e-5)
    stack.restore()
    assert torch.equal(compiled(x), plain)


# ------------------------------------------------------------------------------- other layouts

def test_motion_lora_on_the_temporal_layers(clean, tmp_path):
    """The fine-tuning trainer's layout: PEFT keys on temporal Linear layers, 0-d alphas, format metadata."""
    name = "down_blocks.0.temporal_attentions.0.transformer_blocks.0.attention_blocks.0.to_q"
    other = "up_blocks.1.temporal_attentions.2.transformer_blocks.0.attention_blocks.1.to_out.0"
    torch.manual_seed(1)
    tensors = {}
    for module, rank in ((name, 4), (other, 2)):
        width = clean.unet.get_submodule(module).weight.shape[0]
        tensors[f"unet.{module}.lora_A.weight"] = torch.randn(rank, width)
        tensors[f"unet.{module}.lora_B.weight"] = torch.randn(width, rank)
    tensors[f"unet.{name}.alpha"] = torch.tensor(1.0)  # `other` has none: alpha = rank (scale 1)
    path = tmp_path / "motion.safetensors"
    save_file(tensors, path, metadata={"format": MOTION_FORMAT})
    before = snapshot(clean)
    report = clean.load_lora(path, strength=0.5)
    assert report.lora.layout == "motion" and report.matched == {"unet": 5} and report.layers == {"unet": 2}
    after = snapshot(clean)
    for module, scale in ((name, 1.0 / 4), (other, 1.0)):
        delta = tensors[f"unet.{module}.lora_B.weight"] @ tensors[f"unet.{module}.lora_A.weight"]
        key = f"unet.{module}.weight"
        assert torch.allclose(after[key], before[key] + 0.5 * scale * delta, atol=1e-6)


def test_locon_on_resnet_convolutions_with_sgm_names(clean, tmp_path):
    torch.manual_seed(2)
    conv = clean.unet.get_submodule("down_blocks.0.resnets.0.conv1")  # SGM input_blocks.1.0.in_layers.2
    out_channels, in_channels = conv.weight.shape[:2]
    down, up = torch.randn(3, in_channels, 3, 3), torch.randn(out_channels, 3, 1, 1)
    path = tmp_path / "locon.safetensors"
    save_file({"lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight": down,
               "lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight": up,
               "lora_unet_input_blocks_1_0_in_layers_2.alpha": torch.tensor(1.5),
               "lora_unet_input_blocks_1_0_in_layers_2.hada_w1_a": torch.zeros(1)}, path)
    base = conv.weight.clone()
    report = clean.load_lora(path)
    assert report.matched == {"unet": 3} and report.unknown == ["lora_unet_input_blocks_1_0_in_layers_2.hada_w1_a"]
    expected = base + 0.5 * (up.flatten(1) @ down.flatten(1)).view_as(base)
    assert torch.allclose(conv.weight, expected, atol=1e-5)


def test_unknown_keys_are_named_in_a_warning(clean, kohya_file, tmp_path, caplog):
    tensors = load_file(kohya_file)
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_zz.lora_down.weight"] = torch.zeros(4, 64)
    tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_zz.lora_up.weight"] = torch.zeros(64, 4)
    path = tmp_path / "extra.safetensors"
    save_file(tensors, path)
    with caplog.at_level("INFO", logger="hotshot_xl.lora"):
        report = clean.load_lora(path)
    assert len(report.unknown) == 2
    warning = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and "attn1_to_zz.lora_down.weight" in warning[0].getMessage()
    assert any("684 of 686 tensors matched" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------- bad input

def kohya_for_other_base(path: Path, width: int):
    """A kohya LoRA on a layer this model has, with another model's width (as SD 1.5's 768 text states)."""
    save_file({"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(4, width),
               "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(width, 4)}, path)


@pytest.mark.parametrize("kind", ["other_base", "flux", "sd15_blocks", "truncated", "pickle", "not_lora", "loha",
                                  "nan"])
def test_bad_files_are_refused_and_nothing_is_applied(clean, kohya_file, tmp_path, kind):
    before = snapshot(clean)
    path = tmp_path / f"{kind}.safetensors"
    if kind == "other_base":
        tensors = load_file(kohya_file)  # good layers first: none of them may stay merged
        tensors["lora_te2_text_model_encoder_layers_2_mlp_fc2.lora_down.weight"] = torch.zeros(4, 3072)
        save_file(tensors, path)
        message = "made for another base model.*this model's text_encoder_2 layer"
    elif kind == "flux":
        save_file({"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": torch.zeros(4, 64),
                   "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": torch.zeros(64, 4)}, path,
                  metadata={"ss_base_model_version": "flux1"})
        message = "none of its 2 tensors match a layer of this model.*flux1"
    elif kind == "sd15_blocks":  # SD 1.5 has attentions in down_blocks.0; SDXL does not
        save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
                   "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4)}, path)
        message = "none of its 2 tensors match"
    elif kind == "truncated":
        path.write_bytes(kohya_file.read_bytes()[:5000])
        message = "truncated or corrupt"
    elif kind == "pickle":
        path = tmp_path / "lora.ckpt"
        path.write_bytes(b"not unpickled")
        message = "pickle format"
    elif kind == "not_lora":
        save_file({"model.diffusion_model.out.2.weight": torch.zeros(4, 4)}, path)
        message = "holds no LoRA layers"
    elif kind == "loha":
        save_file({"lora_unet_input_blocks_4_1_proj_in.hada_w1_a": torch.zeros(4, 64),
                   "lora_unet_input_blocks_4_1_proj_in.hada_w1_b": torch.zeros(4, 64)}, path)
        message = "LoHa/LoKr layers, which are not supported"
    else:
        tensors = load_file(kohya_file)
        tensors["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"][0, 0] = float("nan")
        save_file(tensors, path)
        message = "non-finite"
    with pytest.raises(ModelFileError, match=message) as error:
        clean.load_lora(path)
    assert str(path) in str(error.value)
    assert_same(before, clean)


def test_a_failure_while_merging_leaves_nothing_applied(clean, kohya_file, monkeypatch):
    lora = read_lora(kohya_file)
    clean.load_lora(lora, strength=0.3)
    merged = snapshot(clean)
    writes = []
    real_write = lora_apply._write

    def failing_write(layer, weight):
        writes.append(layer)
        if len(writes) == 50:
            raise RuntimeError("out of memory")
        real_write(layer, weight)

    monkeypatch.setattr(lora_apply, "_write", failing_write)
    with pytest.raises(RuntimeError, match="out of memory"):
        clean.load_lora(lora, strength=1.0)
    monkeypatch.setattr(lora_apply, "_write", real_write)
    assert_same(merged, clean)  # the first LoRA still merged, the failed one not at all


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), "1"])
def test_strength_must_be_a_finite_number(clean, kohya_file, strength):
    with pytest.raises(InputError, match="strength: must be a finite number"):
        clean.load_lora(kohya_file, strength=strength)
    with pytest.raises(InputError, match="text_strength: must be a finite number"):
        clean.load_lora(kohya_file, 1.0, text_strength=strength)


def test_lora_flag_parsing():
    assert parse_lora("a.safetensors").strength == 1.0
    assert parse_lora("dir/a.safetensors:0.6") == parse_lora("dir/a.safetensors:.6")
    assert parse_lora(r"C:\loras\a.safetensors").path == Path(r"C:\loras\a.safetensors")
    assert parse_lora(r"C:\loras\a.safetensors:-1").strength == -1.0
    for bad, message in (("a.safetensors:strong", "must be a number"), ("a.safetensors:nan", "finite"),
                         ("a.safetensors:inf", "finite")):
        with pytest.raises(InputError, match=f"--lora: .*{message}"):
            parse_lora(bad)


@pytest.mark.parametrize("flag, message", [
    ("{lora}:inf", "--lora: .*finite number"),
    ("{missing}", "missing.safetensors: LoRA file not found"),
    ("{pickle}", "pickle format"),
])
def test_cli_bad_lora_fails_before_loading_the_model(tmp_path, kohya_file, capsys, monkeypatch, flag, message):
    import model.pipeline

    monkeypatch.setattr(model.pipeline, "load_pipeline", lambda *a, **k: pytest.fail("loaded the model"))
    (tmp_path / "x.pt").write_bytes(b"")
    value = flag.format(lora=kohya_file, missing=tmp_path / "missing.safetensors", pickle=tmp_path / "x.pt")
    code = run(["--model", "tiny-random", "--lora", value, "--out", str(tmp_path / "x.mp4")])
    assert code == 2 and re.search(message, capsys.readouterr().err)


def test_other_base_error_names_file_and_layer(clean, tmp_path):
    path = tmp_path / "sd15_text.safetensors"
    kohya_for_other_base(path, 768)
    with pytest.raises(ModelFileError, match=r"sd15_text.safetensors: made for another base model.*\(768, 768\).*"
                                             r"text_encoder layer text_model.encoder.layers.0.self_attn.q_proj"):
        clean.load_lora(path)
    lora = read_lora(path)
    with pytest.raises(ModelFileError):
        match(lora, clean.lora_modules())


# ---------------------------------------------------------------------------------- ComfyUI nodes

@pytest.fixture
def models_dir(tmp_path, kohya_file):
    (tmp_path / "models" / "loras").mkdir(parents=True)
    (tmp_path / "models" / "loras" / kohya_file.name).symlink_to(kohya_file)
    (tmp_path / "models" / "loras" / "old.ckpt").write_bytes(b"not listed")
    return tmp_path / "models"


def node_video(nodes, model, case):
    sizes = (*case["og"], *case["target"])
    conditioning = nodes["HotshotXLTextEncode"]().encode(model, case["prompt"], case["negative_prompt"], *sizes)[0]
    latent = nodes["HotshotXLSampler"]().sample(model, conditioning, case["seed"], case["steps"],
                                                case["guidance_scale"], case["scheduler"], case["video_length"],
                                                case["width"], case["height"])[0]
    return nodes["HotshotXLDecode"]().decode(model, latent, 4, "off")[0]


@pytest.fixture(scope="module")
def node_model(pack, tiny_model_dir):
    return pack.NODE_CLASS_MAPPINGS["HotshotXLModelLoader"]().load(str(tiny_model_dir), "fp32")[0]


def test_lora_node_branches_never_change_each_other(pack, host_env, node_model, fixtures_dir, kohya_file, golden):
    nodes = pack.NODE_CLASS_MAPPINGS
    lora_node = nodes["HotshotXLLoRA"]
    assert lora_node.INPUT_TYPES()["required"]["lora_name"][0] == [kohya_file.name]  # pickles not offered
    model = node_model
    before = snapshot(model.pipeline)
    (full,) = lora_node().add_lora(model, kohya_file.name, 1.0, 1.0)
    (half,) = lora_node().add_lora(model, kohya_file.name, 0.5, 0.0)
    (chained,) = lora_node().add_lora(full, kohya_file.name, 0.0, 0.0)
    assert model.loras == () and len(full.loras) == 1 and len(chained.loras) == 2
    assert full.pipeline is model.pipeline  # the same weights, not a copy
    assert_same(before, model.pipeline)  # adding a LoRA changes nothing until a node runs it
    case = lora_case(fixtures_dir)
    videos = {name: node_video(nodes, m, case) for name, m in
              (("full", full), ("half", half), ("plain", model), ("chained", chained))}
    assert_close_to_golden(videos["full"], golden, TOLERANCE, FLOOR)  # the original's LoRA call, via nodes
    assert torch.equal(videos["chained"], videos["full"])  # a strength-0 LoRA on top changes nothing
    differences = [(videos[a] - videos[b]).abs().max().item() for a, b in
                   (("full", "half"), ("full", "plain"), ("half", "plain"))]
    assert min(differences) > 0.05
    assert_same(before, model.pipeline)  # every run restored the loader's weights


def test_lora_node_bad_inputs(pack, host_env, node_model, models_dir):
    model = node_model
    node = pack.NODE_CLASS_MAPPINGS["HotshotXLLoRA"]()
    kohya_for_other_base(models_dir / "loras" / "sd15.safetensors", 768)
    for args, message in ((("lora_tiny_kohya.safetensors", float("nan"), 1.0), "strength_model: must be a finite"),
                          (("lora_tiny_kohya.safetensors", 1.0, float("inf")), "strength_clip: must be a finite"),
                          (("missing.safetensors", 1.0, 1.0), "lora_name: file 'missing.safetensors' not found"),
                          (("sd15.safetensors", 1.0, 1.0), "lora_name: .*sd15.safetensors: made for another base")):
        with pytest.raises(ValueError, match=message):
            node.add_lora(model, *args)
