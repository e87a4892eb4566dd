"""The native path's directing nodes without ComfyUI: Prompt Travel (CONDITIONING) gives one row per
frame blended between the keyframes' own encodings (a stand-in CLIP with the core CLIP's two
calls), and bad inputs name the node input. Inside a real ComfyUI: tests/test_comfyui_host.py."""

from importlib import import_module

import pytest
import torch

from model.travel.interpolate import same_length

TOKENS, WIDTH, POOLED = 77, 16, 8


class StandInClip:
    """The two calls CLIP Text Encode makes on a core CLIP: tokenize, encode_from_tokens_scheduled.
    Each prompt gets its own random states; a prompt with "long" in it takes two 77-token chunks."""

    def __init__(self):
        self.encoded = []

    def tokenize(self, text):
        return {"text": text}

    def encode_from_tokens_scheduled(self, tokens):
        text = tokens["text"]
        self.encoded.append(text)
        generator = torch.Generator().manual_seed(sum(map(ord, text)))
        chunks = 2 if "long" in text else 1
        cond = torch.randn(1, TOKENS * chunks, WIDTH, generator=generator)
        return [[cond, {"pooled_output": torch.randn(1, POOLED, generator=generator)}]]


@pytest.fixture(scope="module")
def node(pack):
    return pack.NODE_CLASS_MAPPINGS["HotshotXLNativePromptTravel"]()


def encode(node, keyframes, frames=8, interpolation="linear", latent=None, clip=None):
    clip = clip or StandInClip()
    ((cond, extra),) = node.encode(clip, keyframes, frames, interpolation, latent)[0]
    return cond, extra["pooled_output"], clip


def alone(prompt):
    ((cond, extra),) = StandInClip().encode_from_tokens_scheduled({"text": prompt})
    return cond, extra["pooled_output"]


def test_one_keyframe_is_the_clip_encoding_for_every_frame(node):
    cond, pooled, clip = encode(node, "0: a (cat:1.2) in a garden", frames=5)
    plain_cond, plain_pooled = alone("a (cat:1.2) in a garden")  # weights reach the CLIP's own encode as written
    assert clip.encoded == ["a (cat:1.2) in a garden"]
    assert cond.shape == (5, TOKENS, WIDTH) and pooled.shape == (5, POOLED)
    assert all(torch.equal(cond[i:i + 1], plain_cond) and torch.equal(pooled[i:i + 1], plain_pooled) for i in range(5))


def test_two_keyframes_blend_per_frame(node):
    cond, pooled, _ = encode(node, "1: a cat\n5: a dog", frames=8)
    cat, dog = alone("a cat"), alone("a dog")
    assert torch.equal(cond[0:1], cat[0]) and torch.equal(cond[1:2], cat[0])  # before the first: held
    assert torch.equal(cond[5:6], dog[0]) and torch.equal(cond[7:8], dog[0])  # at and after the last
    assert torch.equal(pooled[1:2], cat[1]) and torch.equal(pooled[7:8], dog[1])
    assert torch.allclose(cond[3:4], (cat[0] + dog[0]) / 2, atol=1e-6)  # half way: frame 3 of 1..5
    assert torch.allclose(pooled[2:3], cat[1] * 0.75 + dog[1] * 0.25, atol=1e-6)

    spherical, spherical_pooled, _ = encode(node, "1: a cat\n5: a dog", frames=8, interpolation="slerp")
    assert torch.equal(spherical[1:2], cat[0]) and torch.equal(spherical[5:6], dog[0])
    middle_norm = (cat[0].norm(dim=-1) + dog[0].norm(dim=-1)) / 2
    assert torch.allclose(spherical[3:4].norm(dim=-1), middle_norm, atol=1e-5)  # lengths blend linearly
    assert not torch.allclose(spherical[3:4], cond[3:4], atol=1e-3)


def test_prompts_of_different_lengths_blend_over_repeated_tokens(node):
    cond, _, _ = encode(node, "0: a cat\n4: a long prompt", frames=5)
    cat, long = alone("a cat"), alone("a long prompt")
    assert cond.shape == (5, 2 * TOKENS, WIDTH)
    assert torch.equal(cond[0:1], cat[0].repeat(1, 2, 1)) and torch.equal(cond[4:5], long[0])


def test_repeating_the_tokens_leaves_cross_attention_as_it_was():
    short, longer = torch.randn(1, 3, 8), torch.randn(1, 6, 8)
    made = same_length([short, longer])
    assert [m.shape[1] for m in made] == [6, 6] and made[1] is longer
    query = torch.randn(1, 4, 8)
    attend = torch.nn.functional.scaled_dot_product_attention
    assert torch.allclose(attend(query, made[0], made[0]), attend(query, short, short), atol=1e-6)


def test_frame_count_from_the_latent(node):
    cond, pooled, _ = encode(node, "0: a cat\n11: a dog", frames=1, latent={"samples": torch.zeros(12, 4, 8, 8)})
    assert cond.shape[0] == pooled.shape[0] == 12


@pytest.mark.parametrize("inputs, message", [
    ({"keyframes": "0: a cat\n40: a dog"}, "keyframes: line 2: frame 40 is past the last frame of a 8-frame video"),
    ({"keyframes": "3: a cat\n1: a dog"}, "keyframes: line 2: frame 1 comes after frame 3"),
    ({"keyframes": "0: a cat\n4:   "}, "keyframes: line 2: empty prompt"),
    ({"keyframes": "0 a cat"}, "keyframes: line 1: expected `frame: prompt`"),
    ({"frames": 0}, "frames: must be a whole number from 1 to 4096"),
    ({"latent": {"samples": torch.zeros(4, 8, 8)}}, "latent: expected a LATENT"),
    ({"interpolation": "cubic"}, "interpolation: must be one of linear, slerp"),
    ({"clip": None}, "clip: no CLIP"),
])
def test_bad_inputs_name_the_node_input(pack, node, inputs, message):
    InputError = import_module(f"{pack.__name__}.model.errors").InputError
    arguments = {"clip": StandInClip(), "keyframes": "0: a cat", "frames": 8, "interpolation": "linear",
                 "latent": None, **inputs}
    with pytest.raises(InputError) as error:
        node.encode(**arguments)
    assert str(error.value).startswith(message)
    if arguments["clip"] is not None:
        assert arguments["clip"].encoded == []  # refused before any encoding


@pytest.mark.parametrize("inputs, message", [
    ({"motion_scale": float("nan")}, "motion_scale: the scale: must be a finite number"),
    ({"motion_scale": -1.0}, "motion_scale: the scale: must be zero or more"),
    ({"keyframes": "0: 1.0\n8: fast"}, "keyframes: line 2: expected a number, got 'fast'"),
    ({"keyframes": "4: 1.0\n2: 0.5"}, "keyframes: line 2: frame 2 comes after frame 4"),
])
def test_motion_scale_bad_inputs_name_the_node_input(pack, inputs, message):
    InputError = import_module(f"{pack.__name__}.model.errors").InputError
    node = pack.NODE_CLASS_MAPPINGS["HotshotXLNativeMotionScale"]()
    with pytest.raises(InputError) as error:
        node.scale(**{"model": object(), "motion_scale": 1.0, "keyframes": "", **inputs})
    assert str(error.value).startswith(message)


class EpsSampling:
    """ComfyUI's EPS noise scaling: the sampler starts from latent + noise * (sqrt(1 + sigma^2) or sigma)."""

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * ((1 + sigma ** 2) ** 0.5 if max_denoise else sigma)


class RecordingSampler:
    """A SAMPLER_SAMPLE executor: records the noise of each call, returns a fixed result plus the call count."""

    def __init__(self, result):
        self.result, self.noises = result, []
        self.class_obj = type("Sampler", (), {"max_denoise": staticmethod(lambda guider, sigmas: True)})()

    def __call__(self, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar):
        self.noises.append(noise.clone())
        return self.result + len(self.noises)


def test_native_freeinit_starts_each_pass_from_the_previous_results_low_frequencies(pack):
    freeinit = import_module(f"{pack.__name__}.nodes.native.freeinit")
    travel_freeinit = import_module(f"{pack.__name__}.model.travel.freeinit")
    options = travel_freeinit.FreeInitOptions(2, "gaussian", 0.25)
    guider = type("Guider", (), {"inner_model": type("Inner", (), {"model_sampling": EpsSampling()})()})()
    torch.manual_seed(0)
    noise, result = torch.randn(8, 4, 6, 6), torch.randn(8, 4, 6, 6)  # (frames, channels, h, w)
    sigmas = torch.tensor([14.6, 3.0, 0.0])
    sampler = RecordingSampler(result)
    out = freeinit.sample_with_freeinit(sampler, guider, sigmas, {"seed": 5}, None, noise, torch.zeros_like(noise),
                                        options=options)
    assert len(sampler.noises) == 2 and torch.equal(sampler.noises[0], noise) and torch.equal(out, result + 2)

    scale = (1 + 14.6 ** 2) ** 0.5
    fresh = torch.randn(noise.shape, generator=torch.Generator().manual_seed(6))  # seed + iteration
    spectrum = lambda t: torch.fft.fftn(t.movedim(0, 1), dim=(-3, -2, -1))  # over frames, height, width
    gains = travel_freeinit.low_pass((8, 6, 6), options)
    expected = spectrum(result + 1 + 14.6 * noise) * gains + spectrum(scale * fresh) * (1 - gains)
    started = spectrum(sampler.noises[1] * scale)  # where the sampler starts the second pass
    assert torch.allclose(started, expected, rtol=1e-4, atol=1e-3 * expected.abs().max())

    one = RecordingSampler(result)  # one iteration: the sampler's call once, as it is
    assert torch.equal(freeinit.sample_with_freeinit(one, guider, sigmas, {"seed": 5}, None, noise, None,
                                                     options=travel_freeinit.FreeInitOptions(1)), result + 1)
    assert len(one.noises) == 1


@pytest.mark.parametrize("inputs, message", [({"iterations": 0}, "iterations: "), ({"cutoff": float("nan")}, "cutoff: "),
                                             ({"filter": "box"}, "filter: ")])
def test_native_freeinit_bad_inputs_name_the_node_input(pack, inputs, message):
    InputError = import_module(f"{pack.__name__}.model.errors").InputError
    node = pack.NODE_CLASS_MAPPINGS["HotshotXLNativeFreeInit"]()
    with pytest.raises(InputError) as error:
        node.apply(**{"model": object(), "iterations": 2, "filter": "butterworth", "cutoff": 0.25, **inputs})
    assert str(error.value).startswith(message)
