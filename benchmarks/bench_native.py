"""One denoising step of the native path (a core ComfyUI MODEL with Hotshot-XL Apply Temporal
Layers) next to the pack's own UNet, same weights, same size, in one process:

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfyui-venv/bin/python benchmarks/bench_native.py \
        --config mid --frames 8 --size 256 --rounds 5

Configurations as in bench.py (`tiny`, `mid`, `full`), random weights seeded by tensor name. The
weights are written once as a released-layout folder in a temporary directory; our UNet loads it
with the library's loader, the native MODEL with the pack's native loader and Apply node (what a
graph does). A step is the UNet on a cond+uncond batch (classifier-free guidance): ours takes
(2, 4, F, h, w), the native MODEL 2F latents through `BaseModel.apply_model`, as KSampler calls it.
Rounds alternate between the two, so a shared machine's drifts hit both alike; the table gives the
median seconds per step (and of the rounds where other processes used under a quarter of a core),
the peak resident memory above the weights, and the largest difference of the two predictions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402


def comfyui() -> None:
    """Import ComfyUI from $COMFYUI_PATH (CPU unless a GPU is there), as custom nodes see it."""
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (and run with its Python)")
    sys.path.insert(0, path)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import torch
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()
    import folder_paths  # noqa: F401
    import comfy.model_management  # noqa: F401


def import_pack():
    sys.path.insert(0, str(REPO / "tests"))
    from pack_import import comfyui_style_import

    scope = {}
    exec(textwrap.dedent(comfyui_style_import(str(REPO))), scope)
    return scope["pack"]


def write_folder(pack, config: dict, dtype, folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    unet_module = importlib.import_module(f"{pack.__name__}.model.network.unet")
    config_module = importlib.import_module(f"{pack.__name__}.model.network.config")
    with torch.device("meta"):
        unet = unet_module.HotshotXLUNet(config_module.UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu")
    _common.fill_randomly(unet, dtype)
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "_class_name": "UNet3DConditionModel"}))
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()},
              str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", choices=("tiny", "mid", "full"))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    comfyui()
    import torch

    import comfy.model_management as mm

    pack = import_pack()
    loading = importlib.import_module(f"{pack.__name__}.model.files.loading")
    native_loader = importlib.import_module(f"{pack.__name__}.nodes.native.loader")
    nodes = importlib.import_module(f"{pack.__name__}.nodes.native.nodes")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = mm.get_torch_device()
    config = _common.diffusers_config(args.config)
    info = _common.machine()
    print(f"machine: {_common.describe(info)}; ComfyUI device: {device}")
    print(f"config {args.config}, {args.frames} frames at {args.size}x{args.size}, {args.dtype}, cond+uncond batch")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "hotshot-xl-bench"
        write_folder(pack, config, dtype, folder)
        ours = loading.load_unet(folder, dtype=dtype, device=device)
        base = native_loader.load_unet(folder, dtype)
        (native,) = nodes.HotshotXLApplyTemporalLayers().apply(base, str(folder / "unet"))
        mm.load_models_gpu([native])

    inputs = {k: v.to(device) for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    frames = args.frames
    timesteps = inputs["timestep"].reshape(-1).expand(2).float().cpu()  # one per video
    sigma = native.model.model_sampling.sigma(timesteps).to(device)
    sigma = sigma.repeat_interleave(frames)
    x_native = inputs["sample"].transpose(1, 2).flatten(0, 1) * (sigma[:, None, None, None] ** 2 + 1) ** 0.5
    micro = native.model.embedder(inputs["time_ids"].flatten().cpu()).reshape(2, -1).to(device)
    y = torch.cat([inputs["text_embeds"], micro], 1).repeat_interleave(frames, 0)
    context = inputs["encoder_hidden_states"].repeat_interleave(frames, 0)
    options = {**native.model_options["transformer_options"], "cond_or_uncond": [0, 1]}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @torch.no_grad()
    def step_ours():
        return ours(inputs["sample"].to(dtype), inputs["timestep"], inputs["encoder_hidden_states"].to(dtype),
                    inputs["text_embeds"].to(dtype), inputs["time_ids"])

    @torch.no_grad()
    def step_native():
        x0 = native.model.apply_model(x_native.to(dtype), sigma, c_crossattn=context.to(dtype), y=y.to(dtype),
                                      transformer_options=dict(options))
        eps = (x_native - x0.float()) / sigma[:, None, None, None]
        return eps.unflatten(0, (2, frames)).transpose(1, 2)

    difference = (step_ours().float() - step_native().float()).abs().max().item()  # also a warm-up
    runs = {"ours": [], "native": []}
    for _ in range(args.rounds):
        for name, step in (("ours", step_ours), ("native", step_native)):
            resident = _common.settle()
            with _common.PeakRss() as rss, _common.Timed() as timed:
                step()
                sync()
            runs[name].append({"seconds": timed.seconds, "cpu_seconds": timed.cpu_seconds,
                               "others_cores": timed.others_cores, "peak_mib": rss.peak - resident})
    print(f"{'':8} {'median s/step':>14} {'clean median':>13} {'peak MiB above':>15}")
    for name, found in runs.items():
        summary = _common.summarise(found)
        clean = f"{summary['clean_median_s']:.3f}" if summary["clean_median_s"] is not None else "-"
        peak = max(r["peak_mib"] for r in found)
        print(f"{name:8} {summary['median_s']:14.3f} {clean:>13} {peak:15.0f}")
    ratio = _common.summarise(runs["native"])["median_s"] / _common.summarise(runs["ours"])["median_s"]
    print(f"native/ours time: {ratio:.2f}; largest eps difference: {difference:.2e}")


if __name__ == "__main__":
    main()
