"""Checks of the native path that need ComfyUI's Python objects, not just its HTTP API (no test
functions here). tests/test_comfyui_host.py runs this file with COMFYUI_PYTHON inside COMFYUI_PATH:

    python tests/native_checks.py <check> <pack folder> <fixtures folder>

and reads the one JSON line it prints last. The pack is imported as ComfyUI imports a custom node.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from pathlib import Path


def _comfy():
    sys.path.insert(0, os.getcwd())
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True
    import folder_paths  # noqa: F401  (the pack sees ComfyUI as its host)
    import comfy.model_management  # noqa: F401


def _pack(folder: str):
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from pack_import import comfyui_style_import

    scope = {}
    exec(textwrap.dedent(comfyui_style_import(folder)), scope)
    return scope["pack"]


def _module(pack, name):
    return importlib.import_module(f"{pack.__name__}.{name}")


def golden_eps(model, golden, chunks, videos, control=None):
    """eps from `model` (a ModelPatcher) for the golden videos `videos`, in one apply_model call
    whose batch ComfyUI would have labelled `chunks` (its cond_or_uncond); `control`: a core
    ControlNet (with its hint set), asked for its residuals as calc_cond_batch asks it."""
    import torch

    base = model.model
    frames = golden["sample"].shape[2]
    sample = golden["sample"][videos]  # (videos, 4, frames, h, w)
    x = sample.transpose(1, 2).flatten(0, 1)  # (videos*frames, 4, h, w): frames are the batch
    sigma = base.model_sampling.sigma(golden["timestep"][videos].float()).repeat_interleave(frames)
    x = x * (sigma[:, None, None, None] ** 2 + 1) ** 0.5  # so that calculate_input gives the golden sample
    time_ids = golden["time_ids"][videos]
    micro = base.embedder(time_ids.flatten()).reshape(len(videos), -1)
    y = torch.cat([golden["text_embeds"][videos], micro], dim=1).repeat_interleave(frames, 0)
    context = golden["encoder_hidden_states"][videos].repeat_interleave(frames, 0)
    options = {**model.model_options["transformer_options"], "cond_or_uncond": list(chunks)}
    with torch.no_grad():
        residuals = None
        if control is not None:
            residuals = control.get_control(x, sigma, {"c_crossattn": context, "y": y}, len(chunks), options)
        x0 = base.apply_model(x, sigma, c_crossattn=context, y=y, control=residuals, transformer_options=options)
    eps = (x - x0) / sigma[:, None, None, None]
    return eps.unflatten(0, (len(videos), frames)).transpose(1, 2)  # (videos, 4, frames, h, w)


def check_exactness(pack, fixtures: Path) -> dict:
    import comfy.model_management as mm
    import torch
    from safetensors.torch import load_file

    loader = _module(pack, "nodes.native.loader")
    patch = _module(pack, "nodes.native.patch")
    stack = _module(pack, "model.files.temporal_layers")
    golden = load_file(str(fixtures / "unet_golden.safetensors"))
    base = loader.load_unet(fixtures / "hotshot-xl-tiny", torch.float32)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    temporal = fixtures / "hsxl_temporal_layers_tiny.safetensors"
    patched = patch.with_temporal_layers(base, stack.read_temporal_layers(temporal))
    results = {}
    mm.load_models_gpu([patched])
    out = golden["out"]
    results["cond_uncond"] = (golden_eps(patched, golden, [0, 1], [0, 1]) - out).abs().max().item()
    results["two_videos_one_chunk_kind"] = (golden_eps(patched, golden, [0, 0], [0, 1]) - out).abs().max().item()
    results["each_alone"] = max((golden_eps(patched, golden, [1], [v]) - out[v:v + 1]).abs().max().item()
                                for v in (0, 1))
    temporal_bytes = sum(t.numel() * t.element_size() for k, t in load_file(str(
        fixtures / "hsxl_temporal_layers_tiny.safetensors")).items() if "positional_encoding" not in k)  # (buffers)
    results["size_added_is_temporal_weights"] = patched.model_size() - base.model_size() == temporal_bytes
    # The node applied again on its own output replaces the layers (not a second stack).
    again = patch.with_temporal_layers(patched, stack.read_temporal_layers(temporal))
    mm.load_models_gpu([again])
    results["applied_twice"] = (golden_eps(again, golden, [0, 1], [0, 1]) - out).abs().max().item()
    results["applied_twice_size"] = again.model_size() == patched.model_size()
    # A partial (--lowvram) load: ComfyUI casts every offloadable weight at use, our norms included.
    mm.unload_all_models()
    again.patch_model(device_to=torch.device("cpu"), lowvram_model_memory=1)
    results["lowvram_partial_load"] = again.model.model_lowvram
    results["lowvram"] = (golden_eps(again, golden, [0, 1], [0, 1]) - out).abs().max().item()
    again.unpatch_model(torch.device("cpu"))
    # The same call on the unpatched MODEL is an SDXL image model: far from the video golden.
    mm.load_models_gpu([base])
    results["unpatched"] = (golden_eps(base, golden, [0, 1], [0, 1]) - out).abs().max().item()
    single = golden["out_single_frame_no_temporal"]
    one_frame = {k: (v[:, :, :1] if k == "sample" else v) for k, v in golden.items()}
    results["unpatched_single_frame"] = (golden_eps(base, one_frame, [0, 1], [0, 1]) - single).abs().max().item()
    mm.unload_all_models()
    after = base.model.state_dict()
    results["base_unchanged"] = set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    results["input_untouched"] = not base.object_patches and not base.model_options["transformer_options"]
    return results


def _error(function) -> str:
    try:
        function()
    except Exception as error:  # the message a user would see in ComfyUI
        return f"{type(error).__name__}: {error}"
    return "no error"


def check_refusals(pack, fixtures: Path) -> dict:
    """Bad inputs to the Apply node: each message, and the input MODEL unchanged after all of them."""
    import tempfile

    import comfy.supported_models
    import torch
    from comfy.model_patcher import ModelPatcher
    from safetensors.torch import save_file

    nodes = _module(pack, "nodes.native.nodes")
    loader = _module(pack, "nodes.native.loader")
    apply = nodes.HotshotXLApplyTemporalLayers().apply
    temporal = fixtures / "hsxl_temporal_layers_tiny.safetensors"
    sdxl = loader.load_unet(fixtures / "hotshot-xl-tiny", torch.float32)
    scratch = Path(tempfile.mkdtemp())
    motion_module = scratch / "mm_sd_v15_v2.safetensors"
    save_file({"down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(320, 320)},
              str(motion_module))
    truncated = scratch / "hsxl_truncated.safetensors"
    truncated.write_bytes(temporal.read_bytes()[: temporal.stat().st_size // 2])
    pickle = scratch / "hsxl_temporal_layers.ckpt"
    pickle.write_bytes(b"not read")
    sd15_config = {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
                   "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 32,
                   "num_res_blocks": [1, 1], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
                   "channel_mult": [1, 2], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
                   "context_dim": 768, "use_temporal_resblock": False, "use_temporal_attention": False}
    sd15 = ModelPatcher(comfy.supported_models.SD15(sd15_config).get_model({}), torch.device("cpu"),
                        torch.device("cpu"))
    results = {
        "sd15_model": _error(lambda: apply(sd15, str(temporal))),
        "motion_module": _error(lambda: apply(sdxl, str(motion_module))),
        "truncated": _error(lambda: apply(sdxl, str(truncated))),
        "pickle": _error(lambda: apply(sdxl, str(pickle))),
        "spatial_only": _error(lambda: apply(sdxl, str(fixtures / "sdxl-tiny-single-file.safetensors"))),
        "tiny_vae": _error(lambda: nodes.HotshotXLNativeLoader().load(str(fixtures / "hotshot-xl-tiny"), "fp32")),
    }
    (patched,) = apply(sdxl, str(temporal))
    import comfy.model_management as mm

    mm.load_models_gpu([patched])  # object patches apply when the model loads
    golden = dict(load_golden(fixtures))
    golden["sample"] = golden["sample"][:, :, :7]  # 7 frames per video: 14 latents
    results["uneven_batch"] = _error(lambda: golden_eps(patched, golden, [0, 1, 1], [0, 1]))
    results["input_untouched"] = (not sdxl.object_patches and not sdxl.model_options["transformer_options"]
                                  and not any(sdxl.wrappers.values()))
    return results


def check_controlnet(pack, fixtures: Path) -> dict:
    """A core ControlNet (random weights at the tiny UNet's sizes: ComfyUI's ControlNet loader cannot
    build the tiny fixture ControlNet) with an IMAGE batch of 8 control frames on the patched MODEL:
    changing control frame k changes frame k of every video most."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_management as mm
    import comfy.ops
    import torch

    loader = _module(pack, "nodes.native.loader")
    tiny = fixtures / "hotshot-xl-tiny"
    config = _module(pack, "model.network.config").UNetConfig.from_file(tiny / "unet" / "config.json")
    (patched,) = _module(pack, "nodes.native.nodes").HotshotXLApplyTemporalLayers().apply(
        loader.load_unet(tiny, torch.float32), str(fixtures / "hsxl_temporal_layers_tiny.safetensors"))
    mm.load_models_gpu([patched])
    settings = {k: v for k, v in loader.comfy_unet_config(config).items() if k not in ("out_channels",
                "use_temporal_resblock", "use_temporal_attention")}
    torch.manual_seed(0)
    net = comfy.cldm.cldm.ControlNet(**settings, hint_channels=3, dtype=torch.float32, device="cpu",
                                     operations=comfy.ops.disable_weight_init)
    for parameter in net.parameters():  # ComfyUI's ops skip initialisation; the zero convolutions too
        parameter.data.normal_(0, 0.1)
    control = comfy.controlnet.ControlNet(net, load_device=torch.device("cpu"))
    hints = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (frames, rgb, h, w)
    golden = load_golden(fixtures)

    def eps(frames):
        c = control.copy().set_cond_hint(frames, 1.0, (0.0, 1.0))
        c.pre_run(patched.model, lambda percent: patched.model.model_sampling.percent_to_sigma(percent))
        return golden_eps(patched, golden, [0, 1], [0, 1], control=c)

    reference = eps(hints)
    results = {"control_changes_output": (reference - golden["out"]).abs().max().item(), "most_changed": []}
    for k in range(8):
        changed = hints.clone()
        changed[k] = 1 - changed[k]
        per_frame = (eps(changed) - reference).abs().amax(dim=(1, 3, 4))  # (videos, frames)
        results["most_changed"].append(per_frame.argmax(dim=1).tolist())
    return results


def write_motion_lora(path: Path, temporal_file: Path) -> None:
    """A rank-2 motion LoRA in the trainer's format on every temporal attention's to_q and to_out."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(3)
    tensors = {}
    with safe_open(str(temporal_file), "pt") as file:
        for key in file.keys():
            if key.endswith(("to_q.weight", "to_out.0.weight")):
                module = key[: -len(".weight")]
                out_features, in_features = file.get_slice(key).get_shape()
                tensors[f"unet.{module}.lora_A.weight"] = torch.randn(2, in_features, generator=generator) * 0.3
                tensors[f"unet.{module}.lora_B.weight"] = torch.randn(out_features, 2, generator=generator) * 0.3
                tensors[f"unet.{module}.alpha"] = torch.tensor(2.0)
    save_file(tensors, str(path), metadata={"format": "hotshot-xl-motion-lora"})


def check_motion_lora(pack, fixtures: Path) -> dict:
    """The Apply node's motion LoRA against the library's own LoRA merge on its own UNet."""
    import tempfile

    import comfy.model_management as mm
    import torch

    loader = _module(pack, "nodes.native.loader")
    apply = _module(pack, "nodes.native.nodes").HotshotXLApplyTemporalLayers().apply
    temporal = fixtures / "hsxl_temporal_layers_tiny.safetensors"
    lora_file = Path(tempfile.mkdtemp()) / "motion_lora.safetensors"
    write_motion_lora(lora_file, temporal)
    base = loader.load_unet(fixtures / "hotshot-xl-tiny", torch.float32)
    golden = load_golden(fixtures)

    def native_eps(strength):
        (patched,) = apply(base, str(temporal), str(lora_file), strength)
        mm.load_models_gpu([patched])
        return golden_eps(patched, golden, [0, 1], [0, 1])

    ours = _module(pack, "model.files.loading").load_unet(fixtures / "hotshot-xl-tiny", dtype="fp32", device="cpu")
    stack = _module(pack, "model.lora.apply").LoRAStack()
    stack.add(_module(pack, "model.lora.formats").read_lora(lora_file), {"unet": ours}, {"unet": 0.7})
    library = ours(golden["sample"], golden["timestep"], golden["encoder_hidden_states"], golden["text_embeds"],
                   golden["time_ids"])
    with_lora = native_eps(0.7)
    return {
        "vs_library": (with_lora - library).abs().max().item(),
        "changes_output": (with_lora - golden["out"]).abs().max().item(),
        "strength_zero": (native_eps(0.0) - golden["out"]).abs().max().item(),
        "sdxl_lora": _error(lambda: apply(base, str(temporal), str(fixtures / "lora_tiny_kohya.safetensors"), 1.0)),
    }


def check_dtypes(pack, fixtures: Path) -> dict:
    """bf16 and fp8 MODELs: the temporal weights stored in the model's dtype, computed in ComfyUI's."""
    import comfy.model_management as mm
    import torch

    loader = _module(pack, "nodes.native.loader")
    apply = _module(pack, "nodes.native.nodes").HotshotXLApplyTemporalLayers().apply
    golden = load_golden(fixtures)
    results = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp8", torch.float8_e4m3fn)):
        base = loader.load_unet(fixtures / "hotshot-xl-tiny", dtype)
        (patched,) = apply(base, str(fixtures / "hsxl_temporal_layers_tiny.safetensors"))
        mm.load_models_gpu([patched])
        stored = {str(p.dtype) for p in patched.model.diffusion_model.input_blocks[1].temporal.parameters()}
        error = (golden_eps(patched, golden, [0, 1], [0, 1]).float() - golden["out"]).abs().max().item()
        results[name] = {"stored": sorted(stored), "error": error}
        mm.unload_all_models()
    return results


def check_full_size_layout(pack, fixtures: Path) -> dict:
    """The released full-size layout on ComfyUI's SDXL, without weights (meta device): the native
    loader's UNet config is the one ComfyUI detects as SDXL, and the release's 420 temporal tensors fit
    the UNet ComfyUI builds for it, position by position and channel by channel."""
    import comfy.supported_models
    import torch
    from comfy.model_patcher import ModelPatcher

    loader = _module(pack, "nodes.native.loader")
    patch = _module(pack, "nodes.native.patch")
    layers_module = _module(pack, "model.files.temporal_layers")
    released = json.loads((fixtures / "hotshot_xl_unet_keys.json").read_text())
    config = _module(pack, "model.network.config").UNetConfig.from_dict(released["config"])
    unet_config = loader.comfy_unet_config(config)
    model_config = comfy.supported_models.SDXL(unet_config)
    model_config.set_inference_dtype(torch.bfloat16, None)
    meta = torch.device("meta")
    model = ModelPatcher(model_config.get_model({}, "", device=meta), meta, meta)
    temporal_keys = {k: v for k, v in released["keys"].items() if layers_module._KEY.match(k)}
    layers = {}
    with meta:
        for key, shape in temporal_keys.items():
            kind, block, layer, rest = layers_module._KEY.match(key).groups()
            if rest == "proj_in.weight":
                layers[layers_module.Position(kind, int(block), int(layer))] = \
                    _module(pack, "model.network.temporal").TransformerTemporal(shape[0], 8, 24)
    built = {f"{p.kind}_blocks.{p.block}.temporal_attentions.{p.layer}.{k}": list(v.shape)
             for p, m in layers.items() for k, v in m.state_dict().items()}
    patched = patch.with_temporal_layers(model, layers, source="hotshot_xl_unet_keys.json")
    return {
        "sdxl_detected": comfy.supported_models.SDXL.matches(unet_config),
        "temporal_tensors": len(temporal_keys),
        "module_layout_is_released": built == temporal_keys,
        "patched_blocks": len(patched.object_patches),
    }


def check_prompt_weights(pack, fixtures: Path) -> dict:
    """The pack's text encoding against ComfyUI's CLIP Text Encode (tokenize + encode_from_tokens) on
    the tiny model's encoders, loaded by the native loader: plain and weighted prompts."""
    import torch
    from comfy.cli_args import args

    args.fp32_text_enc = True  # ComfyUI keeps text encoders in fp16 by default, even on the CPU
    loader = _module(pack, "nodes.native.loader")
    components = _module(pack, "model.files.components")
    tokenizers = _module(pack, "model.text.tokenizers")
    folder = fixtures / "hotshot-xl-tiny"
    clip = loader.load_clip(folder)
    text = components.load_text_encoders(folder, tokenizers.load_tokenizers(folder), torch.float32,
                                         torch.device("cpu"))
    results = {}
    for prompt, unweighted in PROMPTS_WITH_WEIGHTS.items():
        cond, pooled = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True)
        ours = text.encode(prompt)
        results[prompt] = {"context": (cond.float() - ours.context).abs().max().item() if cond.shape ==
                           ours.context.shape else f"shapes {tuple(cond.shape)} and {tuple(ours.context.shape)}",
                           "scale": ours.context.abs().max().item(),
                           "pooled": (pooled.float() - ours.pooled).abs().max().item(),
                           "chunks": ours.chunks,
                           "vs_unweighted": None if unweighted is None else
                           (ours.context - text.encode(unweighted).context).abs().max().item()}
    return results


# Prompt -> the same runs at weight 1 (None: no weights), to show that the weights change the states.
PROMPTS_WITH_WEIGHTS = {
    "a cat on a sofa": None,
    r"a \(cat\) on a sofa": None,
    "a (cat:1.5) on a sofa": "a (cat:1) on a sofa",
    "a ((cat)) on (a sofa:0.5)": "a (cat:1) on (a sofa:1)",
    "(a cat:0) (on (a:2) sofa)": "(a cat:1) (on (a:1) sofa:1)",
    # two chunks: 70 tokens, then a 7-token run that ComfyUI moves whole into the second chunk
    "y " * 70 + "(a big cat:1.3) on a sofa": "y " * 70 + "(a big cat:1) on a sofa",
}


def load_golden(fixtures: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(fixtures / "unet_golden.safetensors"))


CHECKS = {"exactness": check_exactness, "refusals": check_refusals, "controlnet": check_controlnet,
          "motion_lora": check_motion_lora, "dtypes": check_dtypes,
          "full_size_layout": check_full_size_layout, "prompt_weights": check_prompt_weights}

if __name__ == "__main__":
    check, folder, fixtures = sys.argv[1:4]
    _comfy()
    result = CHECKS[check](_pack(folder), Path(fixtures))
    print(json.dumps(result))
