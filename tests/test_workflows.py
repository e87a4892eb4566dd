"""The shipped workflows: both formats agree, they only use existing nodes with valid values, and
each API workflow runs node by node on the tiny fixture, giving the headless pipeline's frames."""

import dataclasses
from fractions import Fraction

import pytest
import torch

from model.denoising.context import ContextOptions
from model.pipeline import Settings, load_pipeline
from model.media.video import read_video
from tests.pack_graph import (API_WORKFLOWS, CORE_NODES, CORE_TITLES, EDITOR_KEYS, EDITOR_WORKFLOWS, TINY, WORKFLOWS,
                              api_files, editor_files, editor_to_api, input_specs, is_native, is_widget, load_json,
                              nodes_of, run_api, shrink, value_problems)

# The model names the shipped workflows use (the released files' own names), and the fixtures they
# stand for in these tests.
RELEASE_NAMES = {
    ("diffusers", "Hotshot-XL"): "hotshot-xl-tiny",
    ("checkpoints", "sd_xl_base_1.0.safetensors"): "sdxl-tiny-single-file.safetensors",
    ("animatediff_models", "hsxl_temporal_layers.safetensors"): "hsxl_temporal_layers_tiny.safetensors",
    ("loras", "sdxl_lora.safetensors"): "lora_tiny_kohya.safetensors",
    ("controlnet", "controlnet-canny-sdxl-1.0"): "controlnet-tiny",
}
RELEASE_SIZES = {(672, 384), (512, 512)}
FRAME_TOLERANCE = 1e-4


# Every test sees the models folder below and its own output folder (conftest's host_env).
pytestmark = pytest.mark.usefixtures("host_env")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, fixtures_dir):
    root = tmp_path_factory.mktemp("models")
    for (folder, name), fixture in RELEASE_NAMES.items():
        (root / folder).mkdir(exist_ok=True)
        target = fixtures_dir / fixture
        (root / folder / name).symlink_to(target, target_is_directory=target.is_dir())
    return root


@pytest.fixture(scope="module")
def classes(pack):
    return {**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}  # the pack's nodes and the core ones workflows use


@pytest.fixture(scope="module")
def headless(tiny_model_dir):
    """The library on its own: the reference the node runs must agree with."""
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


def names(paths):
    return [path.name for path in paths]


def test_every_editor_workflow_has_an_api_twin():
    assert names(editor_files()) == names(api_files())
    assert {"hotshot_xl_text_to_video.json", "hotshot_xl_sdxl_checkpoint_text_to_video.json"} <= set(names(editor_files()))


@pytest.mark.parametrize("name", names(editor_files()))
def test_editor_workflow_is_well_formed(classes, name):
    workflow = load_json(EDITOR_WORKFLOWS / name)
    assert set(workflow) == EDITOR_KEYS
    ids = [node["id"] for node in workflow["nodes"]]
    assert len(set(ids)) == len(ids) and workflow["last_node_id"] >= max(ids)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    link_ids = [link[0] for link in workflow["links"]]
    assert len(set(link_ids)) == len(link_ids) and workflow["last_link_id"] >= max(link_ids)
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:
        output = nodes[source]["outputs"][slot]
        assert link_id in output["links"] and output["type"] == kind
        entry = nodes[target]["inputs"][target_slot]
        assert entry["link"] == link_id and entry["type"] == kind
        assert kind == classes[nodes[source]["type"]].RETURN_TYPES[slot]
    for node in workflow["nodes"]:
        assert node["type"] in classes, f"unknown node type {node['type']}"
        for entry in node["inputs"]:
            if entry["link"] is not None:
                assert entry["link"] in link_ids
        for output in node["outputs"]:
            for link_id in output["links"]:
                assert workflow["links"][link_ids.index(link_id)][1] == node["id"]


@pytest.mark.parametrize("name", names(editor_files()))
def test_api_twin_has_the_same_nodes_values_and_links(classes, name):
    editor = load_json(EDITOR_WORKFLOWS / name)
    api = load_json(API_WORKFLOWS / name)
    expected = editor_to_api(editor, classes)
    assert {node_id: {k: v for k, v in node.items() if k != "_meta"} for node_id, node in api.items()} == expected


@pytest.mark.parametrize("name", names(api_files()))
def test_api_workflow_uses_existing_nodes_with_valid_values(pack, classes, name):
    prompt = load_json(API_WORKFLOWS / name)
    for node_id, node in prompt.items():
        assert node["class_type"] in classes, f"node {node_id}: unknown class {node['class_type']}"
        assert node["_meta"]["title"] == {**pack.NODE_DISPLAY_NAME_MAPPINGS, **CORE_TITLES}[node["class_type"]]
        specs = {spec[0]: spec for spec in input_specs(classes[node["class_type"]])}
        assert set(node["inputs"]) <= set(specs), f"node {node_id}: unknown inputs"
        for input_name, (_, kind, options, required) in specs.items():
            where = f"node {node_id} ({node['class_type']}).{input_name}"
            if input_name not in node["inputs"]:
                assert not required, f"{where} missing"
                continue
            value = node["inputs"][input_name]
            if isinstance(value, list):
                source = prompt[value[0]]
                assert classes[source["class_type"]].RETURN_TYPES[value[1]] == kind, where
            else:
                assert is_widget(kind), f"{where}: a {kind} input needs a link"
                # Model names are checked against a models folder holding the released files' names.
                assert value_problems(kind, options, value) == [], where


@pytest.mark.parametrize("name", names(api_files()))
def test_workflow_defaults_are_the_release_settings(name):
    prompt = load_json(API_WORKFLOWS / name)
    if is_native(prompt):
        return check_native_defaults(name, prompt)
    (sampler,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "HotshotXLSampler")]
    (save,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "HotshotXLSaveVideo")]
    assert (sampler["steps"], sampler["scheduler"], save["fps"]) == (30, "euler_a", 8.0)
    if "long_video" in name:
        assert (sampler["width"], sampler["height"], sampler["frames"]) == (1280, 720, 80)
        assert nodes_of(prompt, "HotshotXLContextOptions")
    elif "prompt_travel" in name:  # prompt travel over 32 frames in windows
        assert (sampler["width"], sampler["height"]) in RELEASE_SIZES and sampler["frames"] == 32
        assert nodes_of(prompt, "HotshotXLContextOptions") and nodes_of(prompt, "HotshotXLPromptTravel")
    else:
        assert (sampler["width"], sampler["height"]) in RELEASE_SIZES and sampler["frames"] == 8


def check_native_defaults(name, prompt):
    """Native workflows: core KSampler at the release's settings; the batch is the frame count."""
    (sampler,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "KSampler")]
    (latent,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "EmptyLatentImage")]
    (video,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "CreateVideo")]
    assert (sampler["steps"], sampler["sampler_name"], video["fps"]) == (30, "euler_ancestral", 8.0)
    if "long_video" in name:
        assert (latent["width"], latent["height"], latent["batch_size"]) == (1280, 720, 80)
        (windows,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "ContextWindowsManual")]
        assert windows["dim"] == 0 and windows["context_length"] <= 24  # frames are the batch; 24 positions
    elif "prompt_travel" in name:  # per-frame CONDITIONING over 32 frames in core context windows
        assert (latent["width"], latent["height"]) in RELEASE_SIZES and latent["batch_size"] == 32
        (windows,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "ContextWindowsManual")]
        assert windows["dim"] == 0 and windows["context_length"] <= 24
        (travel,) = [prompt[i]["inputs"] for i in nodes_of(prompt, "HotshotXLNativePromptTravel")]
        assert travel["latent"] == sampler["latent_image"]  # the frame count comes from the sampled latent
        assert sampler["positive"] == [nodes_of(prompt, "HotshotXLNativePromptTravel")[0], 0]
    else:
        assert (latent["width"], latent["height"]) in RELEASE_SIZES and latent["batch_size"] == 8


@pytest.mark.parametrize("name", names(api_files()))
def test_api_workflow_runs_and_matches_the_headless_pipeline(classes, headless, host_env, models_dir, name):
    prompt = shrink(load_json(API_WORKFLOWS / name), configs="Hotshot-XL")
    if is_native(prompt):
        pytest.skip("core samplers: run in a real ComfyUI by tests/test_comfyui_host.py")
    if nodes_of(prompt, "HotshotXLApplyControlNet") or nodes_of(prompt, "HotshotXLEncode"):
        pytest.skip("checked against the library in test_controlnet_nodes.py")
    outputs, ui = run_api(prompt, classes)
    for lora in (prompt[i]["inputs"] for i in nodes_of(prompt, "HotshotXLLoRA")):  # the library's own LoRA loading
        headless.load_lora(models_dir / "loras" / lora["lora_name"], lora["strength_model"], lora["strength_clip"])
    try:
        check_run_matches_headless(prompt, outputs, ui, headless, host_env)
    finally:
        headless.unload_loras()


def check_run_matches_headless(prompt, outputs, ui, headless, host_env):
    (encode_id,) = nodes_of(prompt, "HotshotXLTextEncode") or nodes_of(prompt, "HotshotXLPromptTravel")
    (sampler_id,) = nodes_of(prompt, "HotshotXLSampler")
    (decode_id,) = nodes_of(prompt, "HotshotXLDecode")
    (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
    text, sampler, decode = (prompt[i]["inputs"] for i in (encode_id, sampler_id, decode_id))
    sizes = (text["original_width"], text["original_height"]), (text["target_width"], text["target_height"])
    if "keyframes" in text:  # Prompt Travel
        conditions = headless.encode_travel(text["keyframes"], text["negative_prompt"], *sizes, text["interpolation"])
    else:
        conditions = headless.encode(text["prompt"], text["negative_prompt"], *sizes)
    context = None
    if "context_options" in sampler:  # the library's own options, equal to what the node made
        context = ContextOptions(**prompt[sampler["context_options"][0]]["inputs"])
        assert dataclasses.asdict(outputs[sampler["context_options"][0]][0]) == dataclasses.asdict(context)
    settings = Settings(width=sampler["width"], height=sampler["height"], frames=sampler["frames"],
                        steps=sampler["steps"], guidance=sampler["cfg"], seed=sampler["seed"],
                        scheduler=sampler["scheduler"], context=context, noise=sampler.get("noise", "independent"),
                        motion_scale=sampler.get("motion_scale", 1.0))
    settings.check()
    expected = headless.decode(headless.sample(conditions, settings), decode["frames_per_chunk"], decode["tiling"])

    images = outputs[decode_id][0]
    assert images.shape == (TINY["frames"], TINY["height"], TINY["width"], 3)
    assert (images - expected).abs().max() < FRAME_TOLERANCE
    assert images.std() > 0.01  # not a blank video

    (shown,) = ui[save_id]["images"]
    file = host_env / shown["subfolder"] / shown["filename"]
    frames, fps = read_video(file)
    assert frames.shape == (TINY["frames"], TINY["height"], TINY["width"], 3)
    assert fps == Fraction(prompt[save_id]["inputs"]["fps"])
    assert (frames.float() / 255 - images).abs().mean() < 0.1
    assert [p for p in host_env.rglob("*") if p.is_file()] == [file]
    assert torch.isfinite(images).all()
