"""The ComfyUI nodes without ComfyUI: declarations, name resolution, results, and errors.

The pack is imported the way ComfyUI imports it (conftest's `pack` fixture: the repo root under an
arbitrary package name); nodes run on the tiny fixture model.
"""

import importlib
import inspect
import json
import os
import subprocess
import sys
import textwrap
import types
from fractions import Fraction

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.denoising.schedulers import SCHEDULERS
from tests.goldens import assert_close_to_golden
from tests.pack_graph import function_parameters, input_specs, is_widget, value_problems
from tests.pack_import import comfyui_style_import

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_TOLERANCE = 2e-3  # of the frames' largest value (1), allclose-style (tests/goldens.py) ...
GOLDEN_FLOOR = 1e-6  # ... plus this much of the whole golden set's


def submodule(pack, name):
    return importlib.import_module(f"{pack.__name__}.{name}")


# Every test sees the models folder below and its own output folder (conftest's host_env).
pytestmark = pytest.mark.usefixtures("host_env")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, fixtures_dir, tiny_model_dir):
    """A models folder laid out like ComfyUI's, pointing at the tiny fixtures."""
    root = tmp_path_factory.mktemp("models")
    for folder, name, target in (
            ("diffusers", "Hotshot-XL", tiny_model_dir),
            ("hotshot_xl", "nested/hotshot-xl-tiny", tiny_model_dir),
            ("hotshot_xl", "hsxl_temporal_layers_tiny.safetensors", fixtures_dir / "hsxl_temporal_layers_tiny.safetensors"),
            ("checkpoints", "sdxl-tiny.safetensors", fixtures_dir / "sdxl-tiny-single-file.safetensors")):
        link = root / folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=target.is_dir())
    (root / "checkpoints" / "old.ckpt").write_bytes(b"not listed")
    return root


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def tiny(nodes, tiny_model_dir):
    """The tiny model through the folder loader (an absolute path: no models folder needed), in fp32."""
    (model,) = nodes["HotshotXLModelLoader"]().load(str(tiny_model_dir), "fp32")
    return model


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    case = json.loads((fixtures_dir / "pipeline_golden.json").read_text())[1]
    return case, load_file(fixtures_dir / "pipeline_golden.safetensors")[case["name"]]


def encode(nodes, model, prompt="a corgi", negative="blurry", sizes=(1920, 1080, 512, 512)):
    return nodes["HotshotXLTextEncode"]().encode(model, prompt, negative, *sizes)[0]


def sample(nodes, model, conditioning, seed=1, steps=1, cfg=5.0, scheduler="euler_a", frames=2, width=64,
           height=64, **optional):
    return nodes["HotshotXLSampler"]().sample(model, conditioning, seed, steps, cfg, scheduler, frames, width,
                                              height, **optional)[0]


# ---------------------------------------------------------------------------------- declarations

def test_every_node_is_registered_with_a_display_name(pack, nodes):
    assert nodes and set(nodes) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in nodes.items():
        assert name.startswith("HotshotXL") and cls.__name__ == name
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("Hotshot-XL ")
    assert len(set(pack.NODE_DISPLAY_NAME_MAPPINGS.values())) == len(nodes)


# ComfyUI's own link types the pack's nodes take or give (MODEL, CLIP, VAE: the native path).
CORE_TYPES = ("LATENT", "IMAGE", "VIDEO", "MODEL", "CLIP", "VAE", "CONDITIONING")


def test_node_declarations_are_valid(nodes):
    """Types, tooltips, defaults within bounds and option lists, FUNCTION matching the inputs."""
    for name, cls in nodes.items():
        assert cls.CATEGORY == "Hotshot-XL", name
        assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20, name
        assert isinstance(cls.RETURN_TYPES, tuple), name
        if cls.RETURN_TYPES:
            assert len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES), name
        else:
            assert getattr(cls, "OUTPUT_NODE", False), f"{name} has no outputs and is not an output node"
        for kind in cls.RETURN_TYPES:
            assert kind in CORE_TYPES or kind.startswith("HOTSHOT_XL_"), (name, kind)
        specs = input_specs(cls)
        assert specs, name
        for input_name, kind, options, _ in specs:
            where = f"{name}.{input_name}"
            assert isinstance(options.get("tooltip"), str) and options["tooltip"].strip(), f"{where}: no tooltip"
            if isinstance(kind, list):
                assert all(isinstance(option, str) for option in kind), where
                assert len(set(kind)) == len(kind), where
                if "default" in options:
                    assert options["default"] in kind, f"{where}: default {options['default']!r} not an option"
            elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                assert "default" in options, f"{where}: no default"
                assert not value_problems(kind, options, options["default"]), (where, options)
                if kind in ("INT", "FLOAT"):
                    assert options["min"] <= options["default"] <= options["max"], where
            else:
                assert kind in CORE_TYPES or kind.startswith("HOTSHOT_XL_"), (where, kind)
        signature = function_parameters(cls)
        hidden = set(cls.INPUT_TYPES().get("hidden", {}))  # e.g. the prompt and workflow a save node stores
        parameters = [p for p in signature.parameters.values() if p.name != "self" and p.name not in hidden]
        assert [p.name for p in parameters] == [spec[0] for spec in specs], name
        for parameter, (_, _, _, required) in zip(parameters, specs):
            has_default = parameter.default is not inspect.Parameter.empty
            assert has_default != required, f"{name}.{parameter.name}: optional inputs need a default, required none"


def test_file_lists_come_from_the_models_folder(nodes):
    model_options = input_specs(nodes["HotshotXLModelLoader"])[0][1]
    assert model_options == ["Hotshot-XL", "nested/hotshot-xl-tiny"]
    specs = {name: kind for name, kind, _, _ in input_specs(nodes["HotshotXLCheckpointLoader"])}
    assert specs["ckpt_name"] == ["sdxl-tiny.safetensors"]  # .ckpt pickles are not offered
    # The temporal file, but not the weight files inside the model folder next to it.
    assert specs["temporal_layers"] == ["hsxl_temporal_layers_tiny.safetensors"]
    assert specs["configs"] == ["default", "Hotshot-XL", "nested/hotshot-xl-tiny"]


def test_file_lists_are_empty_without_a_models_folder(nodes, monkeypatch):
    monkeypatch.delenv("HOTSHOT_XL_MODELS")
    assert input_specs(nodes["HotshotXLModelLoader"])[0][1] == []


def test_option_lists_defaults_and_ranges_are_the_librarys_own(nodes):
    """Every option list, default and range a node shows, read from its INPUT_TYPES, is model/'s single source
    (choices.py, ContextOptions' fields, the formats table), not a copy kept beside it."""
    import dataclasses

    from model import choices
    from model.denoising.context import ContextOptions
    from model.media.formats import DEFAULT_FPS, VIDEO_FORMATS

    def specs(node):
        return {name: (kind, opts) for name, kind, opts, _ in input_specs(nodes[node])}

    sampler = specs("HotshotXLSampler")
    assert sampler["scheduler"] == (list(SCHEDULERS), {**sampler["scheduler"][1], "default": choices.DEFAULT_SCHEDULER})
    assert list(SCHEDULERS) == list(choices.SCHEDULER_NAMES)
    assert sampler["noise"][0] == list(choices.NOISE_TYPES)
    assert sampler["seed"][1]["max"] == choices.SEED_MAX and sampler["seed"][1]["control_after_generate"] is True
    scheduler = specs("HotshotXLScheduler")
    assert scheduler["scheduler"][0] == list(SCHEDULERS)
    assert scheduler["timestep_spacing"][0][1:] == list(choices.TIMESTEP_SPACINGS)
    assert scheduler["prediction_type"][0][1:] == list(choices.PREDICTION_TYPES)
    options = specs("HotshotXLContextOptions")
    assert options["schedule"][0] == list(choices.SCHEDULES)
    assert options["weighting"][0] == list(choices.WEIGHTINGS)
    assert options["length"][1]["max"] == choices.MAX_LENGTH and options["overlap"][1]["max"] == choices.MAX_LENGTH - 1
    library_defaults = {field.name: field.default for field in dataclasses.fields(ContextOptions)}
    assert {name: opts["default"] for name, (_, opts) in options.items()} == library_defaults
    for loader in ("HotshotXLModelLoader", "HotshotXLCheckpointLoader"):
        assert specs(loader)["dtype"][0] == list(choices.DTYPES)
    from model.pipeline import Settings

    settings = Settings()
    defaults = {name: opts.get("default") for name, (_, opts) in sampler.items()}
    assert (defaults["seed"], defaults["steps"], defaults["cfg"], defaults["frames"], defaults["width"],
            defaults["height"], defaults["noise"], defaults["denoise"]) == (
        settings.seed, settings.steps, settings.guidance, settings.frames, settings.width, settings.height,
        settings.noise, settings.strength)
    text = {name: opts.get("default") for name, (_, opts) in specs("HotshotXLTextEncode").items()}
    assert (text["original_width"], text["original_height"]) == settings.original_size
    assert (text["target_width"], text["target_height"]) == settings.target_size
    for node in ("HotshotXLDecode", "HotshotXLEncode"):
        chunking = specs(node)
        assert chunking["frames_per_chunk"][1]["default"] == settings.decode_chunk
        assert chunking["tiling"] == (list(choices.VAE_TILING), {**chunking["tiling"][1], "default": settings.vae_tiling})
    save = specs("HotshotXLSaveVideo")
    assert save["format"][0] == [suffix[1:] for suffix in VIDEO_FORMATS]  # png: a folder of PNG frames
    from model.media.formats import PIXEL_FORMATS

    assert set(save["pixel_format"][0]) == {name for names in PIXEL_FORMATS.values() for name in names}
    assert save["fps"][1]["default"] == DEFAULT_FPS


def test_importing_and_listing_nodes_loads_no_heavy_library(tmp_path):
    folder = tmp_path / "Any Folder.name"
    folder.symlink_to(REPO_ROOT, target_is_directory=True)
    code = comfyui_style_import(folder) + """
        for cls in pack.NODE_CLASS_MAPPINGS.values():
            cls.INPUT_TYPES()
        heavy = [m for m in ("torch", "diffusers", "transformers", "av") if m in sys.modules]
        print("heavy:", heavy)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "heavy: []"
    assert result.stderr == ""  # no prints, no warnings


# ------------------------------------------------------------------------------- name resolution

def test_names_resolve_to_paths_and_bad_names_name_the_input(pack, models_dir, fixtures_dir, monkeypatch):
    host = submodule(pack, "nodes.host")
    InputError = submodule(pack, "model.errors").InputError
    assert host.resolve("Hotshot-XL", host.MODEL_FOLDERS, "model_name", True) == models_dir / "diffusers" / "Hotshot-XL"
    absolute = fixtures_dir / "hsxl_temporal_layers_tiny.safetensors"
    assert host.resolve(str(absolute), host.TEMPORAL_FOLDERS, "temporal_layers", False) == absolute
    with pytest.raises(InputError, match=r"^model_name: folder 'Nope' not found; looked in .*diffusers"):
        host.resolve("Nope", host.MODEL_FOLDERS, "model_name", True)
    with pytest.raises(InputError, match=r"^ckpt_name: '.*Hotshot-XL' is not a \.safetensors file"):
        host.resolve(str(models_dir / "diffusers" / "Hotshot-XL"), host.CHECKPOINT_FOLDERS, "ckpt_name", False)
    monkeypatch.delenv("HOTSHOT_XL_MODELS")
    with pytest.raises(InputError, match="HOTSHOT_XL_MODELS"):
        host.resolve("Hotshot-XL", host.MODEL_FOLDERS, "model_name", True)


def test_inside_comfyui_folders_are_registered_and_listed_through_folder_paths(pack, models_dir, monkeypatch):
    """A stand-in for ComfyUI's folder_paths (the real one is exercised by test_comfyui_host.py)."""
    host = submodule(pack, "nodes.host")
    registered = {"diffusers": ([str(models_dir / "diffusers")], {"folder"})}

    def add_model_folder_path(name, path, is_default=False):
        paths, _ = registered.setdefault(name, ([], set()))
        if path not in paths:
            paths.append(path)

    fake = types.SimpleNamespace(models_dir=str(models_dir), folder_names_and_paths=registered,
                                 add_model_folder_path=add_model_folder_path,
                                 get_folder_paths=lambda name: registered[name][0])
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    monkeypatch.delenv("HOTSHOT_XL_MODELS")  # ComfyUI's folders win over the environment
    assert host.in_comfyui()
    assert host.list_weight_files(host.TEMPORAL_FOLDERS) == []  # not registered yet
    host.register_model_folders()
    host.register_model_folders()  # twice is harmless
    assert registered["hotshot_xl"][0] == [str(models_dir / "hotshot_xl")]
    assert registered["animatediff_models"][0] == [str(models_dir / "animatediff_models")]
    assert host.list_weight_files(host.TEMPORAL_FOLDERS) == ["hsxl_temporal_layers_tiny.safetensors"]
    assert host.list_model_folders() == ["Hotshot-XL", "nested/hotshot-xl-tiny"]


# ----------------------------------------------------------------------------------- running nodes

def test_node_chain_reproduces_the_original_implementation(nodes, tiny, golden):
    """Text Encode -> Sampler -> Decode gives the reference frames of the original Hotshot-XL."""
    case, expected = golden
    conditioning = encode(nodes, tiny, case["prompt"], case["negative_prompt"], (*case["og"], *case["target"]))
    latent = sample(nodes, tiny, conditioning, case["seed"], case["steps"], case["guidance_scale"], case["scheduler"],
                    case["video_length"], case["width"], case["height"])
    frames = case["video_length"]
    assert latent["samples"].shape == (frames, 4, case["height"] // 8, case["width"] // 8)
    images, _ = nodes["HotshotXLDecode"]().decode(tiny, latent, 4, "off")
    assert images.shape == expected.shape and images.dtype == torch.float32 and images.device.type == "cpu"
    assert_close_to_golden(images, expected, GOLDEN_TOLERANCE, GOLDEN_FLOOR)

    # The LATENT holds raw VAE latents, as ComfyUI's VAE Decode expects: the VAE decodes them unscaled.
    with torch.no_grad():
        direct = tiny.pipeline.vae.decode(latent["samples"][:2]).sample
    direct = (direct / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert (direct - images[:2]).abs().max() < 1e-4
    # Frame chunking does not change the frames; 5-D latents (1, 4, frames, h, w) are accepted too.
    one_by_one, _ = nodes["HotshotXLDecode"]().decode(tiny, latent, 1, "off")
    assert (one_by_one - images).abs().max() < 1e-5
    video = {"samples": latent["samples"].transpose(0, 1).unsqueeze(0)}
    from_5d, _ = nodes["HotshotXLDecode"]().decode(tiny, video, 4, "auto")
    assert torch.equal(from_5d, images)


def test_text_encode_keeps_empty_and_long_prompts(nodes, tiny):
    empty = encode(nodes, tiny, "a corgi", "")
    assert torch.count_nonzero(empty.negative.context) > 0  # "" is encoded, not replaced by zeros
    long_prompt = "a corgi running on a beach " * 20
    conditioning = encode(nodes, tiny, long_prompt, "blurry", (96, 64, 96, 64))
    assert conditioning.positive.chunks == conditioning.negative.chunks > 1
    assert conditioning.time_ids.tolist() == [[96, 64, 0, 0, 96, 64]]


def test_scheduler_node_replaces_the_samplers_choice_with_its_options(pack, nodes, tiny):
    schedulers = submodule(pack, "model.denoising.schedulers")
    node = nodes["HotshotXLScheduler"]()
    (as_released,) = node.scheduler("euler", "model default", "model default", False)
    (trailing,) = node.scheduler("euler", "trailing", "model default", False)
    assert trailing == schedulers.SchedulerOptions("euler", timestep_spacing="trailing")
    conditioning = encode(nodes, tiny)
    euler = sample(nodes, tiny, conditioning, steps=2, scheduler="euler")["samples"]
    assert not torch.allclose(euler, sample(nodes, tiny, conditioning, steps=2, scheduler="euler_a")["samples"])
    # Connected, the node's scheduler wins over the sampler's own choice (euler_a here) ...
    assert torch.equal(euler, sample(nodes, tiny, conditioning, steps=2, scheduler="euler_a",
                                     custom_scheduler=as_released)["samples"])
    # ... and its options reach the sampling.
    assert not torch.allclose(euler, sample(nodes, tiny, conditioning, steps=2, scheduler="euler",
                                            custom_scheduler=trailing)["samples"])

    InputError = submodule(pack, "model.errors").InputError
    with pytest.raises(InputError, match=r"^timestep_spacing: must be one of leading, trailing, linspace"):
        node.scheduler("euler", "even", "model default", False)
    with pytest.raises(InputError, match=r"^custom_scheduler: expected a Hotshot-XL scheduler, got str"):
        sample(nodes, tiny, conditioning, custom_scheduler="euler")
    options = {name: kind for name, kind, _, _ in input_specs(nodes["HotshotXLScheduler"])}
    assert options["scheduler"] == list(schedulers.SCHEDULERS)
    assert options["timestep_spacing"] == ["model default", *schedulers.TIMESTEP_SPACINGS]
    assert options["prediction_type"] == ["model default", *schedulers.PREDICTION_TYPES]


@pytest.mark.parametrize("field, value, message", [
    ("width", 100, r"^width: must be a positive multiple of 8"),
    ("height", 0, r"^height: must be a positive multiple of 8"),
    ("frames", 0, r"^frames: must be a positive whole number"),
    ("noise", "pink", r"^noise: unknown noise 'pink'"),
    ("steps", 0, r"^steps: must be a positive whole number"),
    ("cfg", -1.0, r"^cfg: must be zero or more"),
    ("scheduler", "heun", r"^scheduler: unknown scheduler 'heun'"),
    ("seed", -1, r"^seed: must be a whole number"),
    ("cache_interval", 0, r"^cache_interval: must be a whole number from 1"),
])
def test_bad_sampler_inputs_name_the_input(pack, nodes, tiny, field, value, message):
    InputError = submodule(pack, "model.errors").InputError
    conditioning = encode(nodes, tiny)
    settings = dict(seed=1, steps=1, cfg=5.0, scheduler="euler_a", frames=2, width=64, height=64, noise="independent")
    settings[field] = value
    with pytest.raises(InputError, match=message):
        sample(nodes, tiny, conditioning, **settings)


def test_wrong_links_are_refused_with_the_input_named(pack, nodes, tiny):
    InputError = submodule(pack, "model.errors").InputError
    with pytest.raises(InputError, match=r"^conditioning: expected Hotshot-XL conditioning"):
        sample(nodes, tiny, {"not": "conditioning"})
    conditioning = encode(nodes, tiny)
    conditioning.positive.context = conditioning.positive.context[..., :16]
    with pytest.raises(InputError, match=r"^conditioning: was encoded by a different model"):
        sample(nodes, tiny, conditioning)
    decode = nodes["HotshotXLDecode"]()
    with pytest.raises(InputError, match=r"^samples: expected SDXL latents with 4 channels, got 16"):
        decode.decode(tiny, {"samples": torch.zeros(2, 16, 8, 8)}, 4, "auto")
    with pytest.raises(InputError, match=r"^samples: expected video latents as a batch of frames"):
        decode.decode(tiny, {"samples": torch.zeros(4, 8, 8)}, 4, "auto")
    with pytest.raises(InputError, match=r"^samples: expected a LATENT"):
        decode.decode(tiny, torch.zeros(2, 4, 8, 8), 4, "auto")
    with pytest.raises(InputError, match=r"^frames_per_chunk: must be a positive whole number"):
        decode.decode(tiny, {"samples": torch.zeros(2, 4, 8, 8)}, 0, "auto")
    with pytest.raises(InputError, match=r"^tiling: must be one of auto, on, off"):
        decode.decode(tiny, {"samples": torch.zeros(2, 4, 8, 8)}, 4, True)


def test_interrupted_sampling_stops_between_steps(pack, nodes, tiny, monkeypatch, host_env):
    """A step callback that raises (as ComfyUI's progress bar does on Cancel) ends sampling at once."""
    preview = submodule(pack, "nodes.preview")
    calls = []

    class Interrupted(Exception):
        pass

    def interrupting_hooks(model, settings):
        def callback(step, total, latents):
            calls.append((step, total))
            if step == 1:
                raise Interrupted()
        return None, callback

    monkeypatch.setattr(preview, "sampling_hooks", interrupting_hooks)
    with pytest.raises(Interrupted):
        sample(nodes, tiny, encode(nodes, tiny), steps=30)
    assert calls == [(0, 30), (1, 30)]
    assert not host_env.exists() or not any(host_env.rglob("*"))


def test_context_options_node_gives_the_library_options(pack, nodes, tiny):
    context = submodule(pack, "model.denoising.context")
    InputError = submodule(pack, "model.errors").InputError
    node = nodes["HotshotXLContextOptions"]()
    (options,) = node.options(6, 2, 2, "static", "flat", True)
    assert options == context.ContextOptions(length=6, overlap=2, stride=2, schedule="static", weighting="flat",
                                             loop=True)
    with pytest.raises(InputError, match=r"^overlap: must be 0 to 5"):
        node.options(6, 6, 1, "uniform", "pyramid", False)
    with pytest.raises(InputError, match=r"^stride: must be a power of two"):
        node.options(8, 4, 3, "uniform", "pyramid", False)
    with pytest.raises(InputError, match=r"^context_options: expected Hotshot-XL context options"):
        sample(nodes, tiny, encode(nodes, tiny), context_options={"length": 8})


def test_windows_and_freenoise_reach_the_pipeline(pack, nodes, tiny):
    """With context options (windows of 2 frames over 4) and FreeNoise, the sampler gives what the
    library gives for the same settings: the options are passed, not dropped."""
    pipeline = submodule(pack, "model.pipeline")
    (options,) = nodes["HotshotXLContextOptions"]().options(2, 1, 1, "uniform", "pyramid", False)
    conditioning = encode(nodes, tiny)
    settings = dict(seed=3, steps=1, frames=4)
    latent = sample(nodes, tiny, conditioning, **settings, context_options=options, noise="freenoise")
    expected = tiny.pipeline.sample(conditioning, pipeline.Settings(
        width=64, height=64, guidance=5.0, **settings, context=options, noise="freenoise"))
    assert torch.allclose(latent["samples"] * tiny.latent_scale, expected[0].transpose(0, 1), atol=1e-6)
    plain = sample(nodes, tiny, conditioning, **settings)
    assert not torch.allclose(plain["samples"], latent["samples"], atol=1e-3)


def test_step_caching_reaches_the_pipeline(pack, nodes, tiny):
    """cache_interval 2 over 2 steps: step 1 reuses the deep features, as the library does."""
    pipeline = submodule(pack, "model.pipeline")
    conditioning = encode(nodes, tiny)
    latent = sample(nodes, tiny, conditioning, seed=3, steps=2, cache_interval=2)
    expected = tiny.pipeline.sample(conditioning, pipeline.Settings(
        width=64, height=64, frames=2, steps=2, seed=3, scheduler="euler_a", cache_interval=2))
    assert torch.allclose(latent["samples"] * tiny.latent_scale, expected[0].transpose(0, 1), atol=1e-6)
    plain = sample(nodes, tiny, conditioning, seed=3, steps=2)
    assert not torch.allclose(plain["samples"], latent["samples"], atol=1e-4)


# ------------------------------------------------------------------------------------------ loaders

def write_safetensors(path, keys):
    save_file({key: torch.zeros(1) for key in keys}, str(path))
    return path


def test_loader_errors_name_the_input_and_the_file(pack, nodes, fixtures_dir, tiny_model_dir, tmp_path, monkeypatch):
    InputError = submodule(pack, "model.errors").InputError
    folder_loader, checkpoint_loader = nodes["HotshotXLModelLoader"](), nodes["HotshotXLCheckpointLoader"]()
    temporal = str(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")
    single_file = str(fixtures_dir / "sdxl-tiny-single-file.safetensors")

    with pytest.raises(InputError, match=r"^model_name: folder 'missing' not found"):
        folder_loader.load("missing", "fp32")
    with pytest.raises(InputError, match=r"^dtype: unknown dtype 'fp4'"):
        folder_loader.load(str(tiny_model_dir), "fp4")
    not_a_model = tmp_path / "photos"
    not_a_model.mkdir()
    with pytest.raises(InputError, match=r"^model_name: .*photos: not a model folder"):
        folder_loader.load(str(not_a_model), "fp32")

    # A temporal-layers input that holds something else says what it holds.
    with pytest.raises(InputError, match=r"^temporal_layers: .*expected Hotshot-XL temporal layers .*, but this "
                                         r"is an SDXL single-file checkpoint"):
        checkpoint_loader.load(single_file, single_file, "fp32")
    animatediff = write_safetensors(tmp_path / "mm_sdxl.safetensors", ["down_blocks.0.motion_modules.0.x.weight"])
    with pytest.raises(InputError, match=r"^temporal_layers: .*AnimateDiff motion module"):
        checkpoint_loader.load(single_file, str(animatediff), "fp32")
    # A checkpoint that is not SDXL, or not complete.
    with pytest.raises(InputError, match=r"^ckpt_name: .*expected an SDXL checkpoint, but this is a Hotshot-XL "
                                         r"temporal-layers file"):
        checkpoint_loader.load(temporal, temporal, "fp32")
    sd15 = write_safetensors(tmp_path / "v1-5.safetensors", ["cond_stage_model.transformer.text_model.x",
                                                              "model.diffusion_model.input_blocks.0.0.weight"])
    with pytest.raises(InputError, match=r"^ckpt_name: .*Stable Diffusion 1\.x checkpoint"):
        checkpoint_loader.load(str(sd15), temporal, "fp32")
    partial = write_safetensors(tmp_path / "partial.safetensors", ["model.diffusion_model.label_emb.0.0.weight",
                                                                   "conditioner.embedders.1.model.x"])
    with pytest.raises(InputError, match=r"^ckpt_name: .*this SDXL checkpoint lacks vae, text_encoder; "):
        checkpoint_loader.load(str(partial), temporal, "fp32")
    # No CLIP vocabulary anywhere (no ComfyUI, no open_clip): the configs input is what can provide one.
    tokenizers = submodule(pack, "model.text.tokenizers")
    monkeypatch.setattr(tokenizers, "find_vocabulary", lambda: None)
    with pytest.raises(InputError, match=r"^configs: no CLIP tokenizer found for the single-file checkpoint"):
        checkpoint_loader.load(single_file, temporal, "fp32")
    # A single file whose shapes do not fit the default (SDXL base) configs: named as the checkpoint's fault.
    monkeypatch.setattr(tokenizers, "find_vocabulary", lambda: tiny_model_dir)
    with pytest.raises(InputError, match=r"^ckpt_name: .*sdxl-tiny-single-file.safetensors: .*does not match"):
        checkpoint_loader.load(single_file, temporal, "fp32")
    with pytest.raises(InputError, match=r"^configs: folder 'elsewhere' not found"):
        checkpoint_loader.load(single_file, temporal, "fp32", "elsewhere")


# --------------------------------------------------------------------------------------- save video

def frames_clip(count=3, height=32, width=48):
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, width).view(1, 1, width, 1)
    return (ramp.expand(count, height, width, 3) * 0.8 + 0.1 * torch.rand(count, height, width, 3)).contiguous()


@pytest.mark.parametrize("video_format, animated", [("mp4", True), ("webm", True), ("gif", None), ("webp", True)])
def test_save_writes_numbered_videos_and_shows_them(pack, nodes, host_env, video_format, animated):
    from model.media.video import read_video

    save = nodes["HotshotXLSaveVideo"]()
    images = frames_clip()
    user_file = host_env / "clips" / f"cat_00001_.{video_format}"
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b"the user's own file")
    result = save.save("clips/cat", video_format, 8.0, 0, images=images)
    assert result["result"] == ()
    (shown,) = result["ui"]["images"]
    assert shown == {"filename": f"cat_00002_.{video_format}", "subfolder": "clips", "type": "output"}
    assert result["ui"].get("animated") == (None if animated is None else (True,))
    assert user_file.read_bytes() == b"the user's own file"
    frames, fps = read_video(host_env / "clips" / shown["filename"])
    assert frames.shape == (3, 32, 48, 3) and fps == Fraction(8)
    assert (frames.float() / 255 - images).abs().mean() < 0.08
    again = save.save("clips/cat", video_format, 8.0, 0, images=images)
    assert again["ui"]["images"][0]["filename"] == f"cat_00003_.{video_format}"
    assert sorted(p.name for p in user_file.parent.iterdir()) == [f"cat_0000{i}_.{video_format}" for i in (1, 2, 3)]


def test_single_frame_webp_is_a_still(nodes, host_env):
    result = nodes["HotshotXLSaveVideo"]().save("still", "webp", 8.0, 0, images=frames_clip(1))
    assert "animated" not in result["ui"]


@pytest.mark.parametrize("args, message", [
    (("../outside", "mp4", 8.0, 0), r"^filename_prefix: '\.\./outside' leaves the output folder"),
    (("", "mp4", 8.0, 0), r"^filename_prefix: must not be empty"),
    (("ok", "mkv", 8.0, 0), r"^format: unknown format 'mkv'"),
    (("ok", "mp4", 0.0, 0), r"^fps: must be a positive number"),
    (("ok", "gif", 8.0, -1), r"^loop: expected a whole number"),
])
def test_bad_save_inputs_name_the_input_and_write_nothing(pack, nodes, host_env, args, message):
    InputError = submodule(pack, "model.errors").InputError
    with pytest.raises(InputError, match=message):
        nodes["HotshotXLSaveVideo"]().save(*args, images=frames_clip())
    assert not any(p.is_file() for p in host_env.parent.rglob("*") if "output" in p.parts or "outside" in p.name)


def test_bad_images_are_refused(pack, nodes):
    InputError = submodule(pack, "model.errors").InputError
    with pytest.raises(InputError, match=r"^images: expected an IMAGE batch"):
        nodes["HotshotXLSaveVideo"]().save("x", "mp4", 8.0, 0, images=torch.zeros(2, 8, 8, 4))


def test_failed_encoding_leaves_no_partial_file(pack, nodes, host_env, monkeypatch):
    video = submodule(pack, "model.media.video")
    original = video._encode

    class Interrupted(Exception):
        pass

    def encode_then_fail(pixels, path, *args, **kwargs):
        original(pixels[:1], path, *args, **kwargs)  # something is on disk under the temporary name
        assert path.exists()
        raise Interrupted()

    monkeypatch.setattr(video, "_encode", encode_then_fail)
    with pytest.raises(Interrupted):
        nodes["HotshotXLSaveVideo"]().save("partial", "mp4", 8.0, 0, images=frames_clip())
    assert host_env.is_dir() and list(host_env.rglob("*")) == []
