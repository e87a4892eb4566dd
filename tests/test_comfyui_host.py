"""The pack inside a real ComfyUI server (integration; skipped unless COMFYUI_PATH is set).

Run:  COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfyui-venv/bin/python \\
      python -m pytest tests/test_comfyui_host.py -v

One server is started for this module (fixture ``comfy``) with the repo root mounted under an
arbitrary folder name; every test here shares it. See tests/comfyui_host.py for the client
(object_info, queue, wait, interrupt, output_dir, log_text).
"""

import os
from pathlib import Path

import pytest

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: no ComfyUI checkout to run the pack in", allow_module_level=True)

from tests.comfyui_host import PromptRejected, history_messages, running_comfyui  # noqa: E402

# Model files or folders the server should see, by ComfyUI model folder name, e.g.
# {"diffusers": [TINY_MODEL], "animatediff_models": [FIXTURES / "hsxl_temporal_layers_tiny.safetensors"]}.
# Node tests that need weights add them here: they are linked into models/<folder>/ before startup.
HOST_MODELS: dict = {}

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def comfy():
    with running_comfyui(REPO_ROOT, models=HOST_MODELS) as client:
        yield client


@pytest.fixture(scope="module")
def object_info(comfy):
    return comfy.object_info()


def test_pack_loads_and_registers_every_node(comfy, object_info, pack):
    """ComfyUI imports the mounted folder without IMPORT FAILED and lists exactly the pack's classes."""
    log = comfy.log_text()
    import_lines = comfy.pack_import_lines()
    assert import_lines, f"no import line for {comfy.pack_mount} in the log\n{comfy.log_tail()}"
    assert not any("IMPORT FAILED" in line for line in import_lines), "\n".join(import_lines) + "\n" + log
    assert f"Cannot import {comfy.pack_mount}" not in log, log

    # Core video/animation nodes are there, so the host itself is healthy.
    for core in ("SaveAnimatedWEBP", "CreateVideo", "SaveVideo", "VAEDecode", "VAELoader", "CheckpointLoaderSimple"):
        assert core in object_info, f"core node {core} missing from /object_info"

    # Exactly the pack's classes come from our folder (ComfyUI reports "custom_nodes.<folder>").
    expected = set(pack.NODE_CLASS_MAPPINGS)
    ours = {name for name, info in object_info.items()
            if info.get("python_module") == f"custom_nodes.{comfy.pack_folder_name}"}
    assert ours == expected, (f"missing: {sorted(expected - ours)}, unexpected: {sorted(ours - expected)} "
                              "(a name equal to a core node's is silently ignored by ComfyUI)")
    for name, display in pack.NODE_DISPLAY_NAME_MAPPINGS.items():
        if name in expected:
            assert object_info[name]["display_name"] == display


def test_harness_round_trip_with_core_nodes(comfy):
    """The harness itself: a core-only graph runs and writes into output_dir; a bad one is rejected."""
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 3, "color": 255}},
        "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "harness/anim",
                                                           "fps": 8.0, "lossless": False, "quality": 80,
                                                           "method": "fastest"}},
    }
    entry = comfy.wait(comfy.queue(prompt), timeout=120)
    assert entry["status"]["status_str"] == "success", history_messages(entry, "execution_error")
    ui = entry["outputs"]["2"]
    assert ui["animated"] == [True]
    (image,) = ui["images"]
    assert (comfy.output_dir / image["subfolder"] / image["filename"]).is_file()

    prompt["2"]["inputs"]["method"] = "no-such-method"
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(prompt)
    assert "2" in rejected.value.node_errors


# ------------------------------------------------------------------------------------------------
# Node-specific tests go below, sharing the `comfy` server (add needed weights to HOST_MODELS):
#   entry = comfy.wait(comfy.queue({...API graph using the pack's nodes...}), timeout=...)
#   failures: history_messages(entry, "execution_error") -> node_type, exception_type, exception_message
#   cancel:   comfy.interrupt(prompt_id) -> history_messages(entry, "execution_interrupted")
# ------------------------------------------------------------------------------------------------

# ---- Hotshot-XL nodes inside ComfyUI --------------------------------------------------------------
# The tiny fixtures are linked into models/ under their own names; the shipped workflows use the
# released files' names, replaced by these. The SDXL single file is also put in animatediff_models,
# so that picking it as temporal layers reaches the node (ComfyUI itself refuses names not listed).

import json  # noqa: E402
import time  # noqa: E402
from fractions import Fraction  # noqa: E402

import torch  # noqa: E402

from model.media.video import read_video  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402
from tests.pack_graph import (API_WORKFLOWS, CORE_DECLARATIONS, TINY, api_files, input_specs, is_native,  # noqa: E402
                              load_json, nodes_of, shrink)

TINY_FOLDER = FIXTURES / "hotshot-xl-tiny"
TEMPORAL = FIXTURES / "hsxl_temporal_layers_tiny.safetensors"
SINGLE_FILE = FIXTURES / "sdxl-tiny-single-file.safetensors"
LORA = FIXTURES / "lora_tiny_kohya.safetensors"
CONTROLNET = FIXTURES / "controlnet-tiny"
HOST_MODELS.update({"diffusers": [TINY_FOLDER], "checkpoints": [SINGLE_FILE],
                    "animatediff_models": [TEMPORAL, SINGLE_FILE], "loras": [LORA], "controlnet": [CONTROLNET]})
TINY_NAMES = {"Hotshot-XL": TINY_FOLDER.name, "sd_xl_base_1.0.safetensors": SINGLE_FILE.name,
              "hsxl_temporal_layers.safetensors": TEMPORAL.name, "sdxl_lora.safetensors": LORA.name,
              "controlnet-canny-sdxl-1.0": CONTROLNET.name}
WITH_PREVIEWS = {"preview_method": "auto"}  # as the editor asks: Latent2RGB previews of each step


@pytest.fixture(scope="module", autouse=True)
def sdxl_vae_model(tmp_path_factory):
    """A model folder like the tiny one but with a full-size SDXL VAE (random weights), which ComfyUI's
    own VAE Loader can also load (it only knows SDXL's real VAE shape): for the LATENT round trips."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from model.files.sdxl_configs import shipped_config

    folder = tmp_path_factory.mktemp("sdxl_vae") / "hotshot-xl-tiny-sdxl-vae"
    folder.mkdir()
    for item in TINY_FOLDER.iterdir():
        if item.name != "vae":
            (folder / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (folder / "vae").mkdir()
    config = shipped_config("vae")
    (folder / "vae" / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(config)
    vae_file = folder.parent / "sdxl_vae_random.safetensors"  # the harness links files by their own name
    save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()}, str(vae_file))
    del vae
    (folder / "vae" / "diffusion_pytorch_model.safetensors").symlink_to(vae_file)
    HOST_MODELS.update({"vae": [vae_file]})
    HOST_MODELS["diffusers"] = [TINY_FOLDER, folder]
    return folder


def saved_file(comfy, entry, node_id):
    (shown,) = entry["outputs"][node_id]["images"]
    assert shown["type"] == "output"
    return comfy.output_dir / shown["subfolder"] / shown["filename"]


def succeeded(entry):
    assert entry["status"]["status_str"] == "success", history_messages(entry, "execution_error")
    return entry


def tiny_graph():
    """The model-folder workflow at test size on the tiny model."""
    return shrink(load_json(API_WORKFLOWS / "hotshot_xl_text_to_video.json"), configs=TINY_FOLDER.name,
                  names=TINY_NAMES)


def test_object_info_lists_each_node_with_its_inputs(object_info, pack):
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        info = object_info[name]
        assert info["category"] == "Hotshot-XL" and info["description"] == cls.DESCRIPTION
        assert info["output"] == list(cls.RETURN_TYPES) and info["output_node"] == bool(getattr(cls, "OUTPUT_NODE", False))
        for section in ("required", "optional"):
            declared = [spec[0] for spec in input_specs(cls) if spec[3] == (section == "required")]
            assert list(info["input"].get(section, {})) == declared, (name, section)
            assert info.get("input_order", {}).get(section, declared) == declared
    # Model lists come from ComfyUI's folders, including the two the pack registers.
    inputs = {name: object_info[name]["input"] for name in pack.NODE_CLASS_MAPPINGS}
    assert inputs["HotshotXLModelLoader"]["required"]["model_name"][0] == sorted(
        [TINY_FOLDER.name, "hotshot-xl-tiny-sdxl-vae"], key=str.lower)
    loader = inputs["HotshotXLCheckpointLoader"]
    assert loader["required"]["ckpt_name"][0] == [SINGLE_FILE.name]
    assert loader["required"]["temporal_layers"][0] == sorted([TEMPORAL.name, SINGLE_FILE.name], key=str.lower)
    assert loader["optional"]["configs"][0][0] == "default"
    assert inputs["HotshotXLSampler"]["required"]["seed"][1]["control_after_generate"] is True


@pytest.fixture(scope="module")
def example_inputs(comfy):
    """The shipped workflows' example inputs in ComfyUI's input/ folder, where the README puts them."""
    import shutil

    for file in (REPO_ROOT / "workflows" / "inputs").iterdir():
        shutil.copy(file, comfy.models_dir.parent / "input" / file.name)


@pytest.mark.parametrize("name", [path.name for path in api_files() if not is_native(load_json(path))])
def test_shipped_workflow_runs_in_comfyui(comfy, example_inputs, name):
    prompt = shrink(load_json(API_WORKFLOWS / name), configs=TINY_FOLDER.name, names=TINY_NAMES)
    (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
    started = time.monotonic()
    entry = succeeded(comfy.wait(comfy.queue(prompt, extra_data=WITH_PREVIEWS), timeout=300))
    assert time.monotonic() - started < 300
    ui = entry["outputs"][save_id]
    assert ui["animated"] == [True]  # mp4: the editor plays it in a video element
    file = saved_file(comfy, entry, save_id)
    assert file.suffix == ".mp4" and file.parent.is_relative_to(comfy.output_dir)
    frames, fps = read_video(file)
    # Video to video: the example input's 8 frames at 672x384, not the sampler's size.
    expected = (8, 384, 672) if nodes_of(prompt, "HotshotXLEncode") else (TINY["frames"], TINY["height"], TINY["width"])
    assert frames.shape == (*expected, 3)
    assert fps == Fraction(8) and frames.float().std() > 2  # not blank
    assert not list(comfy.output_dir.rglob("*.part"))


def test_bad_input_is_reported_and_comfyui_keeps_running(comfy):
    # Out of range or not a multiple of 8: the sampler's VALIDATE_INPUTS refuses the prompt when it is
    # queued, naming the input (ComfyUI marks every input the check takes: width and height).
    prompt = tiny_graph()
    (sampler,) = nodes_of(prompt, "HotshotXLSampler")
    for width in (8, 100):
        prompt[sampler]["inputs"]["width"] = width
        with pytest.raises(PromptRejected) as rejected:
            comfy.queue(prompt)
        errors = rejected.value.node_errors[sampler]["errors"]
        assert {error["extra_info"]["input_name"] for error in errors} == {"width", "height"}
        assert all(f"width: must be a multiple of 8 from 64 to 4096, got {width}" in e["details"] for e in errors)

    # A file that is not temporal layers, picked as temporal layers.
    checkpoint_prompt = shrink(load_json(API_WORKFLOWS / "hotshot_xl_sdxl_checkpoint_text_to_video.json"),
                               configs=TINY_FOLDER.name, names=TINY_NAMES)
    (loader,) = nodes_of(checkpoint_prompt, "HotshotXLCheckpointLoader")
    checkpoint_prompt[loader]["inputs"]["temporal_layers"] = SINGLE_FILE.name
    entry = comfy.wait(comfy.queue(checkpoint_prompt), timeout=300)
    (failure,) = history_messages(entry, "execution_error")
    assert failure["node_type"] == "HotshotXLCheckpointLoader"
    assert failure["exception_message"].startswith("temporal_layers: ")
    assert "expected Hotshot-XL temporal layers" in failure["exception_message"]
    assert "SDXL single-file checkpoint" in failure["exception_message"]

    # The server is fine: the same graph with a good width runs.
    prompt[sampler]["inputs"]["width"] = 64
    succeeded(comfy.wait(comfy.queue(prompt), timeout=300))


def test_cancel_stops_sampling_between_steps(comfy):
    prompt = tiny_graph()
    (sampler,) = nodes_of(prompt, "HotshotXLSampler")
    (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
    prompt[save_id]["inputs"]["filename_prefix"] = "cancel/video"
    # Load and encode once, so the cancelled run goes straight to sampling (ComfyUI caches the rest).
    prompt[sampler]["inputs"]["steps"] = 1
    succeeded(comfy.wait(comfy.queue(prompt), timeout=300))
    before = sorted(comfy.output_dir.rglob("*"))

    prompt[sampler]["inputs"]["steps"] = 1000
    prompt_id = comfy.queue(prompt, extra_data=WITH_PREVIEWS)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = comfy.get_json("/queue")["queue_running"]
        if any(item[1] == prompt_id for item in running):
            break
        time.sleep(0.1)
    time.sleep(3)  # a few steps in
    started = time.monotonic()
    comfy.interrupt(prompt_id)
    entry = comfy.wait(prompt_id, timeout=120)
    assert time.monotonic() - started < 60  # stopped between steps, not after 1000 of them
    (stopped,) = history_messages(entry, "execution_interrupted")
    assert stopped["node_type"] == "HotshotXLSampler"
    assert sorted(comfy.output_dir.rglob("*")) == before  # nothing written, nothing partial

    prompt[sampler]["inputs"]["steps"] = 2
    succeeded(comfy.wait(comfy.queue(prompt), timeout=300))


def test_images_and_latents_work_with_core_nodes(comfy, sdxl_vae_model):
    """Our IMAGE into ComfyUI's video nodes; our LATENT into ComfyUI's VAE Decode and back."""
    prompt = shrink(load_json(API_WORKFLOWS / "hotshot_xl_text_to_video.json"), configs=TINY_FOLDER.name,
                    names={"Hotshot-XL": sdxl_vae_model.name})
    (sampler,) = nodes_of(prompt, "HotshotXLSampler")
    (decode,) = nodes_of(prompt, "HotshotXLDecode")
    (loader,) = nodes_of(prompt, "HotshotXLModelLoader")
    prompt.update({
        "20": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae_random.safetensors"}},
        "21": {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": ["20", 0]}},
        "22": {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "core/frame"}},
        "23": {"class_type": "SaveImage", "inputs": {"images": [decode, 0], "filename_prefix": "ours/frame"}},
        "24": {"class_type": "CreateVideo", "inputs": {"images": [decode, 0], "fps": 8.0}},
        "25": {"class_type": "SaveVideo", "inputs": {"video": ["24", 0], "filename_prefix": "core/video",
                                                     "format": "mp4", "codec": "h264"}},
        "26": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": [decode, 0], "filename_prefix": "core/anim",
                                                            "fps": 8.0, "lossless": True, "quality": 100,
                                                            "method": "default"}},
        # ComfyUI's VAE Encode gives a LATENT our Decode reads: an image round trip through both.
        "27": {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["20", 0]}},
        "28": {"class_type": "HotshotXLDecode", "inputs": {"model": [loader, 0], "samples": ["27", 0],
                                                           "frames_per_chunk": 4, "tiling": "auto"}},
        "29": {"class_type": "VAEDecode", "inputs": {"samples": ["27", 0], "vae": ["20", 0]}},
        "30": {"class_type": "SaveImage", "inputs": {"images": ["28", 0], "filename_prefix": "ours_from_core/frame"}},
        "31": {"class_type": "SaveImage", "inputs": {"images": ["29", 0], "filename_prefix": "core_from_core/frame"}},
    })
    entry = succeeded(comfy.wait(comfy.queue(prompt), timeout=300))
    # ComfyUI runs the valid outputs of a partly invalid graph: make sure none was left out.
    assert {"22", "23", "25", "26", "30", "31"} <= set(entry["outputs"]), comfy.log_tail()

    def frames_of(node_id):
        from PIL import Image
        import numpy as np

        files = [comfy.output_dir / i["subfolder"] / i["filename"] for i in entry["outputs"][node_id]["images"]]
        return torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).float() / 255

    ours, core = frames_of("23"), frames_of("22")
    assert ours.shape == core.shape == (TINY["frames"], TINY["height"], TINY["width"], 3)
    assert ours.std() > 0.02  # a real picture, not all clipped
    assert (ours - core).abs().max() <= 2 / 255  # same latents, same VAE: same frames (8-bit PNG rounding)
    assert (frames_of("30") - frames_of("31")).abs().max() <= 2 / 255
    video, fps = read_video(saved_file(comfy, entry, "25"))
    assert video.shape[0] == TINY["frames"] and fps == Fraction(8)
    animation, _ = read_video(saved_file(comfy, entry, "26"))
    assert (animation.float() / 255 - ours).abs().max() <= 2 / 255


def test_lora_branches_of_one_loader_stay_apart(comfy):
    """One loader feeds two LoRA nodes of different strengths and a branch without LoRA: three
    different videos. Queued again after other runs (which re-execute the samplers on the cached
    loader and LoRA outputs), the graph gives the same three, bit for bit."""
    prompt = {"1": {"class_type": "HotshotXLModelLoader", "inputs": {"model_name": TINY_FOLDER.name, "dtype": "fp32"}}}
    branches = {"plain": "1", "full": "2", "half": "3"}
    for node_id, strength in (("2", 1.0), ("3", 0.5)):
        prompt[node_id] = {"class_type": "HotshotXLLoRA", "inputs": {"model": ["1", 0], "lora_name": LORA.name,
                                                                     "strength_model": strength,
                                                                     "strength_clip": strength}}
    for index, (name, model_id) in enumerate(branches.items()):
        base = 10 * (index + 1)
        model = [model_id, 0]
        prompt.update({
            f"{base}": {"class_type": "HotshotXLTextEncode", "inputs": {
                "model": model, "prompt": "a corgi running on a beach, hd", "negative_prompt": "blurry",
                "original_width": 1920, "original_height": 1080, "target_width": 512, "target_height": 512}},
            f"{base + 1}": {"class_type": "HotshotXLSampler", "inputs": {
                "model": model, "conditioning": [f"{base}", 0], "seed": 455, "steps": 2, "cfg": 7.5,
                "scheduler": "euler_a", "frames": 4, "width": 64, "height": 64}},
            f"{base + 2}": {"class_type": "HotshotXLDecode", "inputs": {
                "model": model, "samples": [f"{base + 1}", 0], "frames_per_chunk": 4, "tiling": "off"}},
            f"{base + 3}": {"class_type": "SaveImage", "inputs": {"images": [f"{base + 2}", 0],
                                                                   "filename_prefix": f"lora_{name}/frame"}},
        })

    def videos(entry):
        from PIL import Image
        import numpy as np

        found = {}
        for index, name in enumerate(branches):
            shown = entry["outputs"][str(10 * (index + 1) + 3)]["images"]
            files = [comfy.output_dir / i["subfolder"] / i["filename"] for i in shown]
            found[name] = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
        return found

    first = videos(succeeded(comfy.wait(comfy.queue(prompt), timeout=300)))
    assert all(video.shape == (4, 64, 64, 3) for video in first.values())
    for a, b in (("plain", "full"), ("plain", "half"), ("full", "half")):
        assert (first[a].float() - first[b].float()).abs().max() > 10, (a, b)
    for sampler in ("11", "21", "31"):  # another run: every sampler again, on the cached LoRA models
        prompt[sampler]["inputs"]["steps"] = 3
    succeeded(comfy.wait(comfy.queue(prompt), timeout=300))
    for sampler in ("11", "21", "31"):
        prompt[sampler]["inputs"]["steps"] = 2
    again = videos(succeeded(comfy.wait(comfy.queue(prompt), timeout=300)))
    for name in branches:
        assert torch.equal(again[name], first[name]), name


def test_prompt_travel_over_32_frames_in_windows_runs_in_comfyui(comfy):
    """The shipped prompt travel workflow at its own 32 frames, keyframes and windows (tiny sizes
    and steps otherwise), with FreeInit attached; then keyframes past the end fail naming the input
    and the line, and the server keeps running."""
    workflow = load_json(API_WORKFLOWS / "hotshot_xl_prompt_travel_32_frames.json")
    (travel_id,) = nodes_of(workflow, "HotshotXLPromptTravel")
    keyframes = workflow[travel_id]["inputs"]["keyframes"]
    prompt = shrink(workflow, configs=TINY_FOLDER.name, names=TINY_NAMES)
    (sampler,) = nodes_of(prompt, "HotshotXLSampler")
    (context,) = nodes_of(prompt, "HotshotXLContextOptions")
    (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
    prompt[travel_id]["inputs"]["keyframes"] = keyframes  # 0, 12, 22, 31: the shipped ones
    prompt[sampler]["inputs"].update(frames=32, steps=1, motion_scale=0.8, freeinit=["90", 0])
    prompt[context]["inputs"].update(length=8, overlap=4)
    prompt["90"] = {"class_type": "HotshotXLFreeInit", "inputs": {"iterations": 2, "filter": "gaussian",
                                                                  "cutoff": 0.25}}
    entry = succeeded(comfy.wait(comfy.queue(prompt), timeout=300))
    frames, fps = read_video(saved_file(comfy, entry, save_id))
    assert frames.shape == (32, TINY["height"], TINY["width"], 3) and fps == Fraction(8)
    assert frames.float().std() > 2
    assert "FreeInit: 2 iterations, so the video is sampled 2 times (2 steps instead of 1" in comfy.log_text()

    prompt[travel_id]["inputs"]["keyframes"] = keyframes + "\n40: the same tree, next spring"
    entry = comfy.wait(comfy.queue(prompt), timeout=300)
    (failure,) = history_messages(entry, "execution_error")
    assert failure["node_type"] == "HotshotXLSampler"
    assert failure["exception_message"].startswith("keyframes: line 5: frame 40 is past the last frame of a "
                                                   "32-frame video")
    prompt[travel_id]["inputs"]["keyframes"] = keyframes
    succeeded(comfy.wait(comfy.queue(prompt), timeout=300))


# ---- The native path: Hotshot-XL's motion on a core MODEL, sampled by core nodes ----------------------

import subprocess  # noqa: E402

from tests.comfyui_host import comfyui_path, comfyui_python  # noqa: E402

NATIVE_FOLDER = "hotshot-xl-tiny-sdxl-vae"  # the tiny model with a VAE ComfyUI's classes can build


def native_check(name: str) -> dict:
    """tests/native_checks.py <name>, run by ComfyUI's interpreter in its checkout: its JSON result."""
    result = subprocess.run([comfyui_python(), str(REPO_ROOT / "tests" / "native_checks.py"), name, str(REPO_ROOT),
                             str(FIXTURES)], cwd=comfyui_path(), capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_native_model_equals_the_unet_golden():
    """BaseModel.apply_model of the patched core MODEL, in sigma parameterisation, is the original UNet."""
    found = native_check("exactness")
    assert found["cond_uncond"] < 1e-4  # cond and uncond batched: each chunk one video
    assert found["two_videos_one_chunk_kind"] < 1e-4  # two chunks of one kind (e.g. two prompts)
    assert found["each_alone"] < 1e-4
    assert found["unpatched"] > 0.1  # the same call without the node is not the video model ...
    assert found["unpatched_single_frame"] < 1e-4  # ... but is the original's image path
    assert found["base_unchanged"] and found["input_untouched"]  # loaded, unloaded: the base is as it was
    assert found["size_added_is_temporal_weights"]  # ComfyUI's memory accounting counts the temporal layers
    assert found["applied_twice"] < 1e-4 and found["applied_twice_size"]  # re-applied: replaced, not stacked
    assert found["lowvram_partial_load"] and found["lowvram"] < 1e-4  # weights cast at use, as under --lowvram


def test_native_bad_inputs_are_refused_naming_the_input():
    found = native_check("refusals")
    assert found["sd15_model"].startswith("InputError: model: expected an SDXL MODEL")
    assert found["motion_module"].startswith("InputError: temporal_layers: ")
    assert "AnimateDiff motion module" in found["motion_module"]
    assert "truncated or corrupt" in found["truncated"] and found["truncated"].startswith("InputError: temporal_layers")
    assert "pickle" in found["pickle"] and found["pickle"].startswith("InputError: temporal_layers")
    assert "holds no Hotshot-XL temporal layers" in found["spatial_only"]
    assert "cannot be split into 3 equal cond/uncond chunks" in found["uneven_batch"]
    # The tiny fixture's own VAE (8 norm groups) is not a shape ComfyUI's VAE classes can build.
    assert found["tiny_vae"].startswith("InputError: model_name: ") and "SDXL's VAE shape" in found["tiny_vae"]
    assert found["input_untouched"]


def test_native_controlnet_frames_reach_each_frame():
    """ComfyUI's ControlNet with an IMAGE batch of 8 control frames on the patched MODEL: changing
    control frame k changes frame k most, in the cond and the uncond video alike."""
    found = native_check("controlnet")
    assert found["control_changes_output"] > 0.05
    assert found["most_changed"] == [[k, k] for k in range(8)]


def test_native_motion_lora_equals_the_librarys():
    """A motion LoRA through the Apply node equals the library's own LoRA merge on its UNet."""
    found = native_check("motion_lora")
    assert found["vs_library"] < 1e-4 and found["changes_output"] > 0.1
    assert found["strength_zero"] < 1e-4  # strength 0: the plain temporal layers (the golden)
    assert found["sdxl_lora"].startswith("InputError: motion_lora: ") and "not a motion LoRA" in found["sdxl_lora"]


def test_prompt_weights_mean_what_comfyuis_clip_text_encode_makes_of_them():
    """The same prompt, weights and escapes included, gives the pack's text encoding and ComfyUI's own
    (tokenize + encode_from_tokens, fp32) on the tiny encoders loaded by the native loader: the
    context states and the pooled embedding."""
    found = native_check("prompt_weights")
    for prompt, result in found.items():
        assert not isinstance(result["context"], str), (prompt, result)  # the same chunks
        assert result["context"] < 1e-5 * result["scale"] + 1e-6 and result["pooled"] < 1e-5, (prompt, result)
    assert [result["chunks"] for result in found.values()] == [1, 1, 1, 1, 1, 2]
    weighted = [result["vs_unweighted"] for result in found.values() if result["vs_unweighted"] is not None]
    assert len(weighted) == 4 and min(weighted) > 1e-2  # the weights changed the states


def test_native_temporal_weights_take_the_models_dtype():
    found = native_check("dtypes")
    assert found["bf16"]["stored"] == ["torch.bfloat16"] and found["bf16"]["error"] < 0.1  # bf16 rounding
    assert found["fp8"]["stored"] == ["torch.float8_e4m3fn"] and found["fp8"]["error"] < 1.0  # runs; fp8 rounding


def test_native_full_size_layout_fits_comfyuis_sdxl():
    """No weights (meta device): the native loader's config for the release is ComfyUI's SDXL, and the
    release's 420 temporal tensors fit the UNet ComfyUI builds for it (6 down + 9 up blocks patched,
    plus the middle block and the output norm)."""
    found = native_check("full_size_layout")
    assert found == {"sdxl_detected": True, "temporal_tensors": 420, "module_layout_is_released": True,
                     "patched_blocks": 17}


def native_prompt(seed=7, frames=8, size=64, steps=2, branches=("video", "images"), model_nodes=None):
    """Native loader -> (Apply Temporal Layers) -> KSampler -> SaveLatent, one branch per name.
    `model_nodes` (branch -> extra nodes between the loader and the sampler) lets tests insert LoRAs
    and context windows; node ids of later branches are smaller, so branches run in the given order."""
    prompt = {
        "100": {"class_type": "HotshotXLNativeLoader", "inputs": {"model_name": NATIVE_FOLDER, "dtype": "fp32"}},
        "101": {"class_type": "CLIPTextEncode", "inputs": {"text": "a corgi running on a beach", "clip": ["100", 1]}},
        "102": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["100", 1]}},
        "103": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": frames}},
    }
    for index, branch in enumerate(branches):
        base = 90 - 10 * index
        chain = (model_nodes or {}).get(branch)
        if chain is None:
            chain = [("HotshotXLApplyTemporalLayers", {"temporal_layers": TEMPORAL.name})] if branch == "video" else []
        model = ["100", 0]
        for offset, (class_type, inputs) in enumerate(chain):
            prompt[str(base + offset)] = {"class_type": class_type, "inputs": {"model": model, **inputs}}
            model = [str(base + offset), 0]
        prompt[str(base + 8)] = {"class_type": "KSampler", "inputs": {
            "model": model, "positive": ["101", 0], "negative": ["102", 0], "latent_image": ["103", 0],
            "seed": seed, "steps": steps, "cfg": 7.5, "sampler_name": "euler_ancestral", "scheduler": "normal",
            "denoise": 1.0}}
        prompt[str(base + 9)] = {"class_type": "SaveLatent", "inputs": {"samples": [str(base + 8), 0],
                                                                       "filename_prefix": f"native/{branch}"}}
    return prompt


def saved_latents(comfy, entry, prompt) -> dict:
    """Branch name -> the latents its SaveLatent wrote."""
    from safetensors.torch import load_file

    found = {}
    for node_id, node in prompt.items():
        if node["class_type"] == "SaveLatent":
            (shown,) = entry["outputs"][node_id]["latents"]
            file = comfy.output_dir / shown["subfolder"] / shown["filename"]
            found[node["inputs"]["filename_prefix"].split("/")[-1]] = load_file(str(file))["latent_tensor"]
    return found


def run_native(comfy, prompt, fresh=False) -> dict:
    if fresh:  # ComfyUI forgets its cached outputs and unloads models before the next prompt
        comfy.free()
        time.sleep(1.5)
    entry = comfy.wait(comfy.queue(prompt), timeout=300)
    assert entry["status"]["status_str"] == "success", [
        (f["node_type"], f["exception_message"], "".join(f["traceback"])[-3000:])
        for f in history_messages(entry, "execution_error")]
    return saved_latents(comfy, entry, prompt)


def test_native_branches_of_one_loader_stay_apart(comfy):
    """One loader feeding KSampler with and without the node: a video and ordinary SDXL images, each
    exactly what it is alone, in either order, and again on a later queue."""
    images = run_native(comfy, native_prompt(branches=("images",)), fresh=True)["images"]
    video = run_native(comfy, native_prompt(branches=("video",)), fresh=True)["video"]
    assert images.shape == video.shape == (8, 4, 8, 8)
    assert (images - video).abs().max() > 0.05
    for order in (("video", "images"), ("images", "video")):
        both = run_native(comfy, native_prompt(branches=order), fresh=True)
        assert torch.equal(both["images"], images) and torch.equal(both["video"], video), order
    run_native(comfy, native_prompt(seed=8))  # other runs in between, models staying loaded
    again = run_native(comfy, native_prompt())
    assert torch.equal(again["images"], images) and torch.equal(again["video"], video)


def test_native_lora_before_or_after_the_node(comfy):
    lora = ("LoraLoaderModelOnly", {"lora_name": LORA.name, "strength_model": 1.0})
    apply = ("HotshotXLApplyTemporalLayers", {"temporal_layers": TEMPORAL.name})
    found = run_native(comfy, native_prompt(branches=("video", "before", "after"), model_nodes={
        "before": [lora, apply], "after": [apply, lora]}))
    assert (found["before"] - found["after"]).abs().max() < 1e-5
    assert (found["before"] - found["video"]).abs().max() > 0.05  # the LoRA does something


def test_native_long_video_needs_context_windows(comfy):
    windows = ("ContextWindowsManual", {"context_length": 16, "context_overlap": 4,
                                        "context_schedule": "standard_static", "context_stride": 1,
                                        "closed_loop": False, "fuse_method": "pyramid", "dim": 0, "freenoise": True})
    apply = ("HotshotXLApplyTemporalLayers", {"temporal_layers": TEMPORAL.name})
    prompt = native_prompt(frames=80, size=32, steps=1, branches=("video",), model_nodes={"video": [apply, windows]})
    (video,) = run_native(comfy, prompt).values()
    assert video.shape == (80, 4, 4, 4) and torch.isfinite(video).all()

    prompt = native_prompt(frames=80, size=32, steps=1, branches=("video",))
    entry = comfy.wait(comfy.queue(prompt), timeout=300)
    (failure,) = history_messages(entry, "execution_error")
    assert failure["node_type"] == "KSampler"
    assert failure["exception_message"].startswith("latent_image: a batch of 80 latents is one 80-frame video")
    assert "Context Windows (Manual)" in failure["exception_message"]


def test_native_apply_names_its_input_in_the_graph(comfy):
    prompt = native_prompt(branches=("video",))
    (apply_id,) = nodes_of(prompt, "HotshotXLApplyTemporalLayers")
    prompt[apply_id]["inputs"]["temporal_layers"] = SINGLE_FILE.name
    entry = comfy.wait(comfy.queue(prompt), timeout=300)
    (failure,) = history_messages(entry, "execution_error")
    assert failure["node_type"] == "HotshotXLApplyTemporalLayers"
    assert failure["exception_message"].startswith("temporal_layers: ")


def test_native_core_declarations_are_comfyuis(object_info):
    """tests/core_nodes.json (what the workflow tests check the native workflows against) is what this
    ComfyUI declares, model lists aside."""
    for name, declared in load_json(CORE_DECLARATIONS).items():
        if name.startswith("_"):
            continue
        live = object_info[name]
        assert live["output"] == declared["output"] and live.get("input_order") == declared["input_order"], name
        for section, inputs in declared["input"].items():
            for input_name, spec in inputs.items():
                if isinstance(spec[0], list):  # a model list: depends on the models folder
                    continue
                assert live["input"][section][input_name] == spec, (name, input_name)


def native_workflow(name: str, size: int = 64, frames: int | None = None) -> dict:
    """A shipped native workflow at test size: the tiny model through the native loader (ComfyUI's
    checkpoint loader cannot detect it), 2 steps, small frames."""
    prompt = load_json(API_WORKFLOWS / name)
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            node["class_type"], node["inputs"] = "HotshotXLNativeLoader", {"model_name": NATIVE_FOLDER, "dtype": "fp32"}
        elif node["class_type"] == "EmptyLatentImage":
            inputs.update(width=size, height=size, batch_size=frames or inputs["batch_size"])
        elif node["class_type"] == "KSampler":
            inputs["steps"] = 2
        elif node["class_type"] == "VAEDecodeTiled":
            inputs.update(tile_size=64, overlap=32)
        elif node["class_type"] == "HotshotXLApplyTemporalLayers":
            inputs["temporal_layers"] = TEMPORAL.name
        elif node["class_type"] == "LoraLoader":
            inputs["lora_name"] = LORA.name
    return prompt


def without_controlnet(prompt: dict) -> dict:
    """The graph with ControlNet Apply bypassed: ComfyUI's ControlNet loader cannot detect the tiny
    ControlNet (it knows full-size SDXL ControlNets only), so the host runs the rest of the workflow."""
    for apply_id in nodes_of(prompt, "ControlNetApplyAdvanced"):
        apply = prompt.pop(apply_id)
        for node in prompt.values():
            for key, value in node["inputs"].items():
                if isinstance(value, list) and value[0] == apply_id:
                    node["inputs"][key] = apply["inputs"]["positive" if value[1] == 0 else "negative"]
    used = {value[0] for node in prompt.values() for value in node["inputs"].values() if isinstance(value, list)}
    for dangling in ("ControlNetLoader", "Canny", "LoadImage"):
        for node_id in nodes_of(prompt, dangling):
            if node_id not in used:
                prompt.pop(node_id)
        used = {value[0] for node in prompt.values() for value in node["inputs"].values() if isinstance(value, list)}
    return prompt


@pytest.mark.parametrize("name", [path.name for path in api_files() if is_native(load_json(path))])
def test_native_workflow_runs_in_comfyui(comfy, example_inputs, name):
    long = "long_video" in name
    prompt = without_controlnet(native_workflow(name, size=32 if long else 64))
    (save_id,) = nodes_of(prompt, "SaveVideo")
    entry = comfy.wait(comfy.queue(prompt), timeout=600)
    assert entry["status"]["status_str"] == "success", [
        (f["node_type"], f["exception_message"]) for f in history_messages(entry, "execution_error")]
    file = saved_file(comfy, entry, save_id)
    frames, fps = read_video(file)
    (latent,) = [node["inputs"] for node in prompt.values() if node["class_type"] == "EmptyLatentImage"]
    size = 32 if long else 64
    assert frames.shape == (latent["batch_size"], size, size, 3) and latent["batch_size"] == (80 if long else
                                                                                           32 if "travel" in name else 8)
    assert fps == Fraction(8) and frames.float().std() > 2  # not blank


def test_native_model_patches_and_custom_sampling_compose(comfy):
    """Core model patches on top of the node (FreeU_V2, PerturbedAttentionGuidance) and
    SamplerCustomAdvanced with its own guider, sampler and scheduler run on the patched MODEL."""
    apply = ("HotshotXLApplyTemporalLayers", {"temporal_layers": TEMPORAL.name})
    patches = [apply, ("FreeU_V2", {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}),
               ("PerturbedAttentionGuidance", {"scale": 3.0})]
    prompt = native_prompt(branches=("video", "patched"), model_nodes={"patched": patches})
    prompt.update({
        "200": {"class_type": "HotshotXLApplyTemporalLayers", "inputs": {"model": ["100", 0],
                                                                       "temporal_layers": TEMPORAL.name}},
        "201": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "202": {"class_type": "CFGGuider", "inputs": {"model": ["200", 0], "positive": ["101", 0],
                                                      "negative": ["102", 0], "cfg": 7.5}},
        "203": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "204": {"class_type": "BasicScheduler", "inputs": {"model": ["200", 0], "scheduler": "karras", "steps": 2,
                                                           "denoise": 1.0}},
        "205": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["201", 0], "guider": ["202", 0],
                                                                  "sampler": ["203", 0], "sigmas": ["204", 0],
                                                                  "latent_image": ["103", 0]}},
        "206": {"class_type": "SaveLatent", "inputs": {"samples": ["205", 0], "filename_prefix": "native/custom"}},
    })
    found = run_native(comfy, prompt)
    assert set(found) == {"video", "patched", "custom"}
    assert all(torch.isfinite(latents).all() and latents.shape == (8, 4, 8, 8) for latents in found.values())
    assert (found["patched"] - found["video"]).abs().max() > 0.01  # the patches act on the video model


# ---- The native path's directing nodes: per-frame CONDITIONING, motion scale ---------------------

APPLY = ("HotshotXLApplyTemporalLayers", {"temporal_layers": TEMPORAL.name})
CORGI, CAT = "a corgi running on a beach", "a cat sleeping on a sofa"


def motion(scale, keyframes=""):
    return ("HotshotXLNativeMotionScale", {"motion_scale": scale, "keyframes": keyframes})


def with_positives(prompt: dict, positives: dict) -> dict:
    """`prompt` (from native_prompt) with each named branch's KSampler taking its own positive: a
    Prompt Travel (CONDITIONING) node on the loader's CLIP for keyframes (`0: ...`), else a CLIP Text
    Encode of the text."""
    for branch, text in positives.items():
        (save_id,) = [i for i, node in prompt.items() if node["class_type"] == "SaveLatent"
                      and node["inputs"]["filename_prefix"] == f"native/{branch}"]
        sampler = prompt[prompt[save_id]["inputs"]["samples"][0]]["inputs"]
        node_id = f"3{save_id}"
        if text.partition(":")[0].strip().isdigit():  # keyframes `0: ...`
            prompt[node_id] = {"class_type": "HotshotXLNativePromptTravel", "inputs": {
                "clip": ["100", 1], "keyframes": text, "frames": 1, "interpolation": "linear",
                "latent": sampler["latent_image"]}}
        else:
            prompt[node_id] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["100", 1]}}
        sampler["positive"] = [node_id, 0]
    return prompt


def test_native_one_keyframe_and_motion_scale_one_are_todays_video(comfy):
    """Through core KSampler: one keyframe is CLIP Text Encode bit for bit; motion scale 1 is the
    video model as it was, bit for bit; 0 is the SDXL image model without the node, frame by frame,
bit for bit (ComfyUI's own resnets and output norm run, the temporal layers skipped)."""
    weighted = "a (corgi:1.5) running on a beach"  # ComfyUI's prompt weights, read by the CLIP's own encode
    prompt = native_prompt(branches=("video", "images", "travel", "scale1", "scale0", "scale0_travel", "weighted",
                                     "weighted_travel"), model_nodes={
        "travel": [APPLY], "scale1": [APPLY, motion(1.0)], "scale0": [APPLY, motion(0.0)],
        "scale0_travel": [APPLY, motion(0.0)], "weighted": [APPLY], "weighted_travel": [APPLY]})
    with_positives(prompt, {"travel": f"0: {CORGI}", "scale0_travel": f"0: {CORGI}", "weighted": weighted,
                            "weighted_travel": f"0: {weighted}"})
    found = run_native(comfy, prompt)
    assert torch.equal(found["travel"], found["video"])
    assert torch.equal(found["weighted_travel"], found["weighted"])
    assert (found["weighted"] - found["video"]).abs().max() > 1e-3  # the weight does act
    assert torch.equal(found["scale1"], found["video"])
    assert torch.equal(found["scale0"], found["images"]) and torch.equal(found["scale0_travel"], found["images"])
    assert (found["video"] - found["images"]).abs().max() > 0.05  # the temporal layers do act at 1


def test_native_two_keyframes_first_and_last_frames_follow_their_prompts(comfy):
    """Two keyframes with motion scale 0 (every frame the image model on its own row): frame 0 is the
    run of the first prompt alone, frame 7 the second's, frames between are neither; at scale 1 the
    travel differs from both prompts too, and a keyframed scale runs."""
    keyframes = f"0: {CORGI}\n7: {CAT}"
    branches = {"travel": [APPLY, motion(0.0)], "first": [APPLY, motion(0.0)], "last": [APPLY, motion(0.0)],
                "travel_video": [APPLY], "keyframed_scale": [APPLY, motion(1.0, "0: 0.5 | 7: 1.5")]}
    prompt = native_prompt(branches=("video", *branches), model_nodes=branches)
    with_positives(prompt, {"travel": keyframes, "first": CORGI, "last": CAT, "travel_video": keyframes,
                            "keyframed_scale": keyframes})
    found = run_native(comfy, prompt)
    travel, first, last = found["travel"], found["first"], found["last"]
    assert torch.equal(travel[0], first[0]) and torch.equal(travel[7], last[7])  # same batch shapes: exact
    assert (first[7] - last[7]).abs().max() > 0.05  # the prompts do differ
    for frame in (3, 4):
        assert min((travel[frame] - first[frame]).abs().max(), (travel[frame] - last[frame]).abs().max()) > 1e-3
    assert (found["travel_video"] - found["video"]).abs().max() > 0.05
    assert torch.isfinite(found["keyframed_scale"]).all()
    assert (found["keyframed_scale"] - found["travel_video"]).abs().max() > 1e-3


def test_native_context_windows_give_each_window_its_frames_rows(comfy):
    """16 frames of travel at motion scale 0 in core context windows of 8 (no FreeNoise): each frame
    is the image model on its own row in every window, so the fused result is the run without
    windows. Rows handed to the wrong window would change the frames."""
    windows = ("ContextWindowsManual", {"context_length": 8, "context_overlap": 4,
                                        "context_schedule": "standard_static", "context_stride": 1,
                                        "closed_loop": False, "fuse_method": "pyramid", "dim": 0, "freenoise": False})
    keyframes = f"0: {CORGI}\n15: {CAT}"
    branches = {"whole": [APPLY, motion(0.0)], "windows": [APPLY, motion(0.0), windows],
                "video_windows": [APPLY, windows]}
    prompt = native_prompt(frames=16, size=32, branches=tuple(branches), model_nodes=branches)
    with_positives(prompt, {name: keyframes for name in branches})
    found = run_native(comfy, prompt)
    assert found["whole"].shape == (16, 4, 4, 4)
    scale = found["whole"].abs().max()  # the tiny model's latents run into the hundreds: float rounding is relative
    assert (found["windows"] - found["whole"]).abs().max() < 1e-5 * scale
    assert (found["whole"][0] - found["whole"][15]).abs().max() > 0.05
    assert torch.isfinite(found["video_windows"]).all()


def test_native_travel_bad_inputs_name_the_input(comfy):
    def failure_of(prompt):
        entry = comfy.wait(comfy.queue(prompt), timeout=300)
        (failure,) = history_messages(entry, "execution_error")
        return failure["node_type"], failure["exception_message"].strip()

    prompt = with_positives(native_prompt(branches=("video",)), {"video": f"0: {CORGI}\n12: {CAT}"})
    assert failure_of(prompt) == ("HotshotXLNativePromptTravel", "keyframes: line 2: frame 12 is past the last "
                                  "frame of a 8-frame video (frames count from 0 to 7)")

    prompt = with_positives(native_prompt(branches=("video",)), {"video": f"0: {CORGI}\n12: {CAT}"})
    (travel_id,) = nodes_of(prompt, "HotshotXLNativePromptTravel")
    del prompt[travel_id]["inputs"]["latent"]
    prompt[travel_id]["inputs"]["frames"] = 16
    node_type, message = failure_of(prompt)
    assert node_type == "KSampler"
    assert message.startswith("positive: the conditioning has 16 rows, one per frame"), message

    prompt = native_prompt(branches=("video",), model_nodes={"video": [motion(1.0, "0: 1\n9: 2")]})
    assert failure_of(prompt)[1].startswith("model: this MODEL has no Hotshot-XL temporal layers")
    prompt = native_prompt(branches=("video",), model_nodes={"video": [APPLY, motion(1.0, "0: 1\n9: 2")]})
    assert failure_of(prompt) == ("KSampler", "keyframes (Hotshot-XL Motion Scale): line 2: frame 9 is past the "
                                  "last frame of a 8-frame video (frames count from 0 to 7)")


def test_native_freeinit_runs_the_sampler_n_times(comfy):
    """FreeInit on the native MODEL: 1 iteration is plain sampling bit for bit; 2 run core KSampler's
    sampler twice (the log says the cost), also under core context windows, and change the video."""
    def freeinit(iterations):
        return ("HotshotXLNativeFreeInit", {"iterations": iterations, "filter": "gaussian", "cutoff": 0.25})

    windows = ("ContextWindowsManual", {"context_length": 4, "context_overlap": 2,
                                        "context_schedule": "standard_static", "context_stride": 1,
                                        "closed_loop": False, "fuse_method": "pyramid", "dim": 0, "freenoise": False})
    branches = {"once": [APPLY, freeinit(1)], "twice": [APPLY, freeinit(2)],
                "twice_windows": [APPLY, windows, freeinit(2)]}
    found = run_native(comfy, native_prompt(seed=11, branches=("video", *branches), model_nodes=branches))
    assert torch.equal(found["once"], found["video"])
    assert torch.isfinite(found["twice"]).all() and (found["twice"] - found["video"]).abs().max() > 1e-3
    assert torch.isfinite(found["twice_windows"]).all()
    assert (found["twice_windows"] - found["twice"]).abs().max() > 1e-3
    assert comfy.log_text().count("FreeInit: 2 iterations, so the video is sampled 2 times (4 steps instead "
                                  "of 2") >= 2
