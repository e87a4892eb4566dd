"""Memory and speed options: fp8 weights, CPU offload, torch.compile.

Each must reach `load_unet` / `load_pipeline`, and none may change results beyond what it is
documented to change: offload and compile not at all, fp8 by the rounding of its weights.
"""

import copy
import json
import shutil
import weakref
from itertools import chain

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from model.network.config import UNetConfig
from model.errors import InputError
from model.memory.fp8 import FLOAT8, FLOAT8_MAX, KEEP_PRECISE, Float8Conv2d, Float8Weight, quantize, use_float8
from model.files.loading import load_unet
from model.memory.offload import unet_units
from model.pipeline import Settings, load_pipeline
from model.network.unet import HotshotXLUNet
from model.files.weights import assign_state_dict
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
    import model.files.weights

    open_file = model.files.weights.safe_open
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

    monkeypatch.setattr(model.files.weights, "safe_open", Reader)
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
    from model.files.loading import store_fp8

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


def test_fp8_pipeline_holds_the_vae_and_text_encoders_in_bf16(tiny_model_dir, fixtures_dir):
    pipe = load_pipeline(tiny_model_dir, dtype="fp8", device="cpu")
    assert float8_layers(pipe.unet) and pipe.unet.dtype == torch.bfloat16
    others = chain(pipe.vae.parameters(), pipe.text.text_encoder.parameters(), pipe.text.text_encoder_2.parameters())
    assert {t.dtype for t in others} == {torch.bfloat16}
    # Golden case 0 (4 steps, 8 frames): mean error 0.016 measured (bf16: 0.009).
    case = json.loads((fixtures_dir / "pipeline_golden.json").read_text())[0]
    frames = pipe(case["prompt"], case["negative_prompt"], width=case["width"], height=case["height"],
                  steps=case["steps"], frames=case["video_length"], seed=case["seed"],
                  guidance=case["guidance_scale"], original_size=tuple(case["og"]),
                  target_size=tuple(case["target"]), scheduler=case["scheduler"])
    expected = load_file(fixtures_dir / "pipeline_golden.safetensors")[case["name"]]
    assert (frames - expected).abs().mean() < 0.03


def test_fp8_node_option(pack, tiny_model_dir):
    from tests.pack_graph import input_specs

    loaders = [pack.NODE_CLASS_MAPPINGS[name] for name in ("HotshotXLModelLoader", "HotshotXLCheckpointLoader")]
    assert all("fp8" in kind for cls in loaders for name, kind, _, _ in input_specs(cls) if name == "dtype")
    loader = loaders[0]
    (model,) = loader().load(str(tiny_model_dir), "fp8")
    assert model.pipeline.unet.down_blocks[1].attentions[0].proj_in.weight.dtype == FLOAT8
    assert model.pipeline.vae.dtype == torch.bfloat16


# --------------------------------------------------------------------------------------- offload

SMALL = dict(width=64, height=64, frames=3, steps=2)


def tensors(module):
    return list(chain(module.parameters(), module.buffers()))


def aligned(pipe):
    """`pipe` with every weight copied to fresh memory. Offload computes with such copies, and CPU
    kernels round a few results differently when a weight sits unaligned in memory, as tensors
    read by safetensors do (2e-5 on the latents): the reference computes with copies too."""
    for module in (pipe.unet, pipe.vae, pipe.text.text_encoder, pipe.text.text_encoder_2):
        for owner in module.modules():
            for name, tensor in chain(owner.named_parameters(recurse=False), owner.named_buffers(recurse=False)):
                if isinstance(tensor, torch.nn.Parameter):
                    tensor.data = tensor.data.clone()
                else:
                    setattr(owner, name, tensor.clone())
    return pipe


@pytest.fixture(scope="module")
def plain_frames(tiny_model_dir):
    return aligned(load_pipeline(tiny_model_dir, dtype="fp32", device="cpu"))("a cat", "blurry", **SMALL)


class Residence:
    """Which of some modules are on the compute device: every tensor a copy, not the one it rests in."""

    def __init__(self, modules: dict, device):
        self.modules, self.device = modules, device
        self.homes = {name: [t.data_ptr() for t in tensors(module)] for name, module in modules.items()}

    def state(self, name) -> str:
        now = tensors(self.modules[name])
        moved = [t.data_ptr() != home for t, home in zip(now, self.homes[name])]
        if all(moved) and all(t.device == self.device for t in now):
            return "compute"
        return "rest" if not any(moved) else "mixed"

    def on_device(self) -> set:
        states = {name: self.state(name) for name in self.modules}
        assert "mixed" not in states.values(), states
        return {name for name, state in states.items() if state == "compute"}


def test_model_offload_brings_each_component_for_its_stage(tiny_model_dir, plain_frames):
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu", offload="model")
    text = pipe.text
    components = {"text_encoder": text.text_encoder, "text_encoder_2": text.text_encoder_2, "unet": pipe.unet,
                  "vae": pipe.vae}
    residence = Residence(components, pipe.device)
    assert residence.on_device() == set()
    seen = []
    for name, module in (("text_encoder", text.text_encoder), ("text_encoder_2", text.text_encoder_2),
                         ("unet", pipe.unet), ("vae", pipe.vae.decoder)):  # the VAE runs through vae.decode
        module.register_forward_pre_hook(lambda *_, name=name: seen.append((name, residence.on_device())))
    pipe.offloader.events = []

    frames = pipe("a cat", "blurry", **SMALL)

    assert torch.equal(frames, plain_frames)
    text_stage = {"text_encoder", "text_encoder_2"}
    expected = {"text_encoder": text_stage, "text_encoder_2": text_stage, "unet": {"unet"}, "vae": {"vae"}}
    assert {name for name, _ in seen} == set(expected)
    assert all(on_device == expected[name] for name, on_device in seen), seen
    assert residence.on_device() == set()
    assert pipe.offloader.events == [(event, name) for stage in (["text_encoder", "text_encoder_2"], ["unet"], ["vae"])
                                     for event in ("load", "unload") for name in stage]


def test_sequential_offload_brings_each_unit_for_its_forward(tiny_model_dir, plain_frames):
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu", offload="sequential")
    units = unet_units(pipe.unet)
    # Every UNet tensor moves with a unit but those of the small top-level layers, which stay.
    in_units = {id(t) for unit in units.values() for t in tensors(unit)}
    staying = {name for name, t in chain(pipe.unet.named_parameters(), pipe.unet.named_buffers())
               if id(t) not in in_units}
    assert {name.split(".")[0] for name in staying} == {"conv_in", "time_embedding", "add_embedding",
                                                        "conv_norm_out", "conv_out"}
    residence = Residence(units, pipe.device)
    log = []
    for name, unit in units.items():
        # Registered after the offload hooks: this pre-hook runs after the unit arrived, and this
        # (prepended) forward hook before it leaves.
        unit.register_forward_pre_hook(lambda *_, name=name: log.append(("start", name, residence.on_device())))
        unit.register_forward_hook(lambda *_, name=name: log.append(("end", name, residence.on_device())),
                                   prepend=True)
    pipe.offloader.events = []

    frames = pipe("a cat", "blurry", **SMALL)

    assert torch.equal(frames, plain_frames)
    assert {name for _, name, _ in log} == set(units)  # every unit ran (3 frames: temporal layers too)
    assert all(on_device == {name} for _, name, on_device in log), log  # alone on the device, while it ran
    assert residence.on_device() == set()
    unet_events = [(event, name) for event, name in pipe.offloader.events if name.startswith("unet.")]
    assert unet_events == [(event, f"unet.{name}") for kind, name, _ in log
                           for event in {"start": ["load"], "end": ["unload"]}[kind]]
    assert [name for _, name in pipe.offloader.events if not name.startswith("unet.")] == [
        "text_encoder", "text_encoder_2", "text_encoder", "text_encoder_2", "vae", "vae"]


def test_a_unit_that_fails_still_leaves_the_device(monkeypatch):
    pipe = load_pipeline("tiny-random", dtype="fp32", device="cpu", offload="sequential")
    name, unit = next((name, unit) for name, unit in unet_units(pipe.unet).items() if "attentions" in name)
    residence = Residence({name: unit}, pipe.device)

    def fail(*args, **kwargs):
        assert residence.on_device() == {name}
        raise RuntimeError("interrupted")

    monkeypatch.setattr(unit, "forward", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        pipe("a cat", width=64, height=64, frames=2, steps=1)
    assert residence.on_device() == set()


def test_offload_and_compile_options_are_checked_before_loading(tmp_path):
    missing = tmp_path / "no-model"  # never read: the options fail first
    with pytest.raises(InputError, match=r"^offload: must be one of none, model, sequential, got 'gpu'"):
        load_pipeline(missing, offload="gpu")
    with pytest.raises(InputError, match=r"^compile: must be True or False, got 'yes'"):
        load_pipeline(missing, compile="yes")
    with pytest.raises(InputError, match=r"^compile: cannot be combined with sequential offload"):
        load_pipeline(missing, offload="sequential", compile=True)
    pipe = load_pipeline("tiny-random", dtype="fp32", device="cpu", offload="model")
    with pytest.raises(InputError, match=r"^offload: this pipeline already offloads \('model'\)"):
        pipe.enable_offload("sequential")
    sequential = load_pipeline("tiny-random", dtype="fp32", device="cpu", offload="sequential")
    with pytest.raises(InputError, match=r"^compile: cannot be combined with sequential offload"):
        sequential.compile_unet()


# --------------------------------------------------------------------------------------- compile

def test_compile_is_off_by_default_and_switched_on_by_load_pipeline(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda function, **options: compiled.append(options) or function)
    assert not load_pipeline("tiny-random", dtype="fp32", device="cpu").compiled and compiled == []
    pipe = load_pipeline("tiny-random", dtype="fp32", device="cpu", offload="model", compile=True)
    assert pipe.compiled and compiled == [{}]
    assert pipe("a cat", width=64, height=64, frames=2, steps=1).shape == (2, 64, 64, 3)


def test_compiled_unet_traces_as_one_graph_and_gives_the_same_latents(tiny_model_dir):
    """Inductor (torch.compile's default backend) took 300 s to compile the tiny UNet on this
    project's 2-core test machine, too long for the suite: this runs TorchDynamo's capture alone
    (about 15 s), where model code breaks compilation. fullgraph=True fails on any graph break."""
    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")
    conditions = pipe.encode("a cat", "blurry")
    settings = Settings(width=64, height=64, frames=2, steps=1)
    eager = pipe.sample(conditions, settings)
    graphs = []

    def capture(graph_module, example_inputs):  # a TorchDynamo backend that runs the captured graph as is
        graphs.append(graph_module)
        return graph_module.forward

    try:
        pipe.compile_unet(backend=capture, fullgraph=True)
        assert torch.equal(pipe.sample(conditions, settings), eager)
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1 and len(graphs[0].graph.nodes) > 1000
