"""The ControlNet and video-to-video nodes and their shipped workflows, run node by node without
ComfyUI (core Load Image and Canny as tests/pack_graph.py's stand-ins), against the library."""

import pytest
import torch
from PIL import Image

from model.controlnet.apply import Control
from model.controlnet.loading import load_controlnet
from model.pipeline import Settings, load_pipeline
from tests.pack_graph import API_WORKFLOWS, CORE_NODES, load_json, nodes_of, run_api, shrink

pytestmark = pytest.mark.usefixtures("host_env")
FRAME_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, fixtures_dir, tiny_model_dir):
    root = tmp_path_factory.mktemp("models")
    for folder, name, target in (("diffusers", "Hotshot-XL", tiny_model_dir),
                                 ("controlnet", "controlnet-canny-sdxl-1.0", fixtures_dir / "controlnet-tiny")):
        (root / folder).mkdir()
        (root / folder / name).symlink_to(target, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def classes(pack):
    return {**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}


@pytest.fixture(scope="module")
def headless(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


def settings_of(sampler, **changes) -> Settings:
    return Settings(width=sampler["width"], height=sampler["height"], frames=sampler["frames"], steps=sampler["steps"],
                    guidance=sampler["cfg"], seed=sampler["seed"], scheduler=sampler["scheduler"], **changes)


def conditions_of(headless, text):
    return headless.encode(text["prompt"], text["negative_prompt"], (text["original_width"], text["original_height"]),
                           (text["target_width"], text["target_height"]))


def small_gif(folder, count, target):
    """The first `count` PNGs of a fixture folder as one GIF: a small stand-in for the example input."""
    frames = [Image.open(p) for p in sorted(folder.glob("*.png"))[:count]]
    frames[0].save(target, save_all=True, append_images=frames[1:], duration=125, loop=0)
    return str(target)


def test_controlnet_workflow_matches_the_library(classes, headless, fixtures_dir, tmp_path):
    prompt = shrink(load_json(API_WORKFLOWS / "hotshot_xl_controlnet_from_video.json"), configs="Hotshot-XL")
    (load_id,) = nodes_of(prompt, "LoadImage")
    prompt[load_id]["inputs"]["image"] = small_gif(fixtures_dir / "control_frames_tiny" / "96x64", 4,
                                                   tmp_path / "control.gif")
    outputs, _ = run_api(prompt, classes)
    (text_id,), (sampler_id,), (apply_id,), (canny_id,), (decode_id,) = (
        nodes_of(prompt, kind) for kind in ("HotshotXLTextEncode", "HotshotXLSampler", "HotshotXLApplyControlNet",
                                            "Canny", "HotshotXLDecode"))
    sampler, apply = prompt[sampler_id]["inputs"], prompt[apply_id]["inputs"]
    net = load_controlnet(fixtures_dir / "controlnet-tiny", dtype="fp32")
    edges = outputs[canny_id][0].permute(0, 3, 1, 2)  # the core Canny node's IMAGE batch, 96x64
    control = Control(net, edges, apply["strength"], apply["start_percent"], apply["end_percent"])
    control = control.fitted(sampler["width"], sampler["height"])
    settings = settings_of(sampler)
    latents = headless.sample(conditions_of(headless, prompt[text_id]["inputs"]), settings, controls=[control])
    expected = headless.decode(latents, 4, "auto")
    images = outputs[decode_id][0]
    assert images.shape == expected.shape == (sampler["frames"], sampler["height"], sampler["width"], 3)
    assert (images - expected).abs().max() < FRAME_TOLERANCE
    plain = headless.decode(headless.sample(conditions_of(headless, prompt[text_id]["inputs"]), settings), 4, "auto")
    assert (images - plain).abs().max() > 0.01  # the ControlNet was applied


def test_video_to_video_workflow_matches_the_library(classes, headless, fixtures_dir, tmp_path):
    prompt = shrink(load_json(API_WORKFLOWS / "hotshot_xl_video_to_video.json"), configs="Hotshot-XL")
    (load_id,) = nodes_of(prompt, "LoadImage")  # a 3-frame 96x64 input instead of the 672x384 example
    prompt[load_id]["inputs"]["image"] = small_gif(fixtures_dir / "control_frames_tiny" / "96x64", 3,
                                                   tmp_path / "small.gif")
    outputs, _ = run_api(prompt, classes)
    (text_id,), (sampler_id,), (decode_id,) = (nodes_of(prompt, kind) for kind in (
        "HotshotXLTextEncode", "HotshotXLSampler", "HotshotXLDecode"))
    sampler = prompt[sampler_id]["inputs"]
    video = outputs[load_id][0]
    settings = settings_of({**sampler, "frames": 3, "width": 96, "height": 64}, strength=sampler["denoise"])
    init = headless.encode_video(video)
    expected = headless.decode(headless.sample(conditions_of(headless, prompt[text_id]["inputs"]), settings,
                                               init=init), 4, "auto")
    images = outputs[decode_id][0]
    assert images.shape == (3, 64, 96, 3)  # the input's frames and size, not the sampler's widgets
    assert (images - expected).abs().max() < FRAME_TOLERANCE


def test_apply_nodes_chain_and_check_inputs(classes, pack):
    import importlib

    InputError = importlib.import_module(f"{pack.__name__}.model.errors").InputError  # the pack's own class
    loader = classes["HotshotXLModelLoader"]()
    (model,) = loader.load("Hotshot-XL", "fp32")
    (net,) = classes["HotshotXLControlNetLoader"]().load(model, "controlnet-canny-sdxl-1.0")
    (conditioning,) = classes["HotshotXLTextEncode"]().encode(model, "a cat", "blurry", 1920, 1080, 512, 512)
    apply = classes["HotshotXLApplyControlNet"]()
    image = torch.rand(4, 64, 64, 3)
    (once,) = apply.apply(conditioning, net, image, 0.5, 0.0, 1.0)
    (twice,) = apply.apply(once, net, image[:1], 1.0, 0.0, 0.5)
    assert len(conditioning.controls) == 0 and len(once.controls) == 1 and len(twice.controls) == 2
    with pytest.raises(InputError, match="start_percent"):
        apply.apply(conditioning, net, image, 0.5, 0.6, 0.6)
    sampler = classes["HotshotXLSampler"]()
    with pytest.raises(InputError, match="denoise"):
        sampler.sample(model, conditioning, 1, 2, 5.0, "euler", 4, 64, 64, denoise=0.5)
    with pytest.raises(InputError, match="4 control frames for a 8-frame video"):
        sampler.sample(model, once, 1, 2, 5.0, "euler", 8, 64, 64)
    with pytest.raises(InputError, match="controlnet_name"):
        classes["HotshotXLControlNetLoader"]().load(model, "missing")
    with pytest.raises(InputError, match="multiples of 8"):
        classes["HotshotXLEncode"]().encode(model, torch.rand(2, 60, 64, 3), 4, "auto")
