"""The directing nodes without ComfyUI: Prompt Travel, FreeInit and the sampler's motion scale give
the library's results; bad keyframes name the input and the line."""

import pytest
import torch

from model.pipeline import Settings, load_pipeline
from model.travel.freeinit import FreeInitOptions

pytestmark = pytest.mark.usefixtures("host_env")
SIZES = (1920, 1080, 512, 512)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")  # the nodes here load by absolute path


@pytest.fixture(scope="module")
def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def tiny(nodes, tiny_model_dir):
    (model,) = nodes["HotshotXLModelLoader"]().load(str(tiny_model_dir), "fp32")
    return model


@pytest.fixture(scope="module")
def headless(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


def travel(nodes, model, keyframes, negative="blurry", interpolation="linear"):
    return nodes["HotshotXLPromptTravel"]().encode(model, keyframes, negative, interpolation, *SIZES)[0]


def sample(nodes, model, conditioning, frames=4, **optional):
    return nodes["HotshotXLSampler"]().sample(model, conditioning, 3, 2, 5.0, "euler_a", frames, 64, 64,
                                              **optional)[0]["samples"]


def test_one_keyframe_is_text_encode(nodes, tiny):
    plain = nodes["HotshotXLTextEncode"]().encode(tiny, "a cat", "blurry", *SIZES)[0]
    assert torch.equal(sample(nodes, tiny, travel(nodes, tiny, "0: a cat")), sample(nodes, tiny, plain))


def test_prompt_travel_freeinit_and_motion_scale_give_the_library_result(nodes, tiny, headless):
    keyframes = "# spring to winter\n0: a cat\n3: a dog\n"
    conditioning = travel(nodes, tiny, keyframes, interpolation="slerp")
    (freeinit,) = nodes["HotshotXLFreeInit"]().options(2, "gaussian", 0.3)
    context = nodes["HotshotXLContextOptions"]().options(3, 1, 1, "uniform", "pyramid", False)[0]
    got = sample(nodes, tiny, conditioning, context_options=context, motion_scale=0.5, freeinit=freeinit)
    conditions = headless.encode_travel({0: "a cat", 3: "a dog"}, "blurry", interpolation="slerp")
    settings = Settings(width=64, height=64, frames=4, steps=2, seed=3, context=context, motion_scale=0.5,
                        freeinit=FreeInitOptions(2, "gaussian", 0.3))
    expected = headless.sample(conditions, settings)
    assert torch.allclose(got, expected[0].transpose(0, 1) / tiny.latent_scale, atol=1e-5)
    assert torch.equal(sample(nodes, tiny, conditioning, motion_scale=1.0), sample(nodes, tiny, conditioning))


@pytest.mark.parametrize("keyframes, message", [
    ("0: a cat\n8: a dog", "keyframes: line 2: frame 8 is past the last frame of a 4-frame video"),
    ("0: a cat\n0: a dog", "keyframes: line 2: frame 0 is given twice"),
    ("2: a cat\n1: a dog", "keyframes: line 2: frame 1 comes after frame 2"),
    ("0: a cat\n2:", "keyframes: line 2: empty prompt"),
    ("0 a cat", "keyframes: line 1: expected `frame: prompt`"),
])
def test_bad_keyframes_name_the_input_and_line(pack, nodes, tiny, keyframes, message):
    from importlib import import_module

    InputError = import_module(f"{pack.__name__}.model.errors").InputError
    with pytest.raises(InputError) as error:
        sample(nodes, tiny, travel(nodes, tiny, keyframes))
    assert message in str(error.value)


def test_bad_freeinit_and_motion_scale_name_the_input(pack, nodes, tiny):
    from importlib import import_module

    InputError = import_module(f"{pack.__name__}.model.errors").InputError
    with pytest.raises(InputError, match="^iterations: "):
        nodes["HotshotXLFreeInit"]().options(0, "butterworth", 0.25)
    with pytest.raises(InputError, match="^cutoff: "):
        nodes["HotshotXLFreeInit"]().options(2, "butterworth", float("nan"))
    conditioning = travel(nodes, tiny, "0: a cat")
    with pytest.raises(InputError, match="^motion_scale: .*finite"):
        sample(nodes, tiny, conditioning, motion_scale=float("inf"))
    with pytest.raises(InputError, match="^freeinit: expected Hotshot-XL FreeInit options"):
        sample(nodes, tiny, conditioning, freeinit=3)
