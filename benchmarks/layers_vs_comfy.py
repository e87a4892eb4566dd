"""Single layers of the UNet, ours next to ComfyUI's SDXL layers, at one CFG step's shapes, alternating:

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfyui-venv/bin/python benchmarks/layers_vs_comfy.py \
        --size 256 --frames 8 --dtype fp32 --rounds 3

A full-size UNet step is tens of seconds on a CPU; its layers take a fraction of a second each, so
alternating them a few times in one process (one torch) gives ratios that a shared machine's drifts hit
alike. Layers (cond+uncond batch, 2 x frames images): the spatial transformers of the 640- and 1280-wide
levels (2 and 10 blocks deep), resnets at each level (an up block's with its skip connection), our
temporal layers at each level; ours also with whole tensors (`ours-whole`, piece budget None) or a
given piece budget (`ours@32`: 32 MiB) to show what the pieces cost. Random weights of the same scale on
both sides. Prints the median CPU seconds per call (process time, all threads) and wall seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
from bench_native import comfyui  # noqa: E402


def fill(module, dtype):
    import torch

    module.to(dtype)
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(_common.random_tensor(key, tensor.shape, dtype))
    return module.eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma list of layer names to run")
    parser.add_argument("--sides", default="ours,ours-whole,comfy",
                        help="comma list of ours (piece budget auto), ours-whole, ours@MIB, comfy")
    args = parser.parse_args()

    comfyui()
    import torch

    import comfy.ops
    from comfy.ldm.modules.attention import SpatialTransformer as ComfyTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock as ComfyResBlock

    from model.network.blocks import ResnetBlock, SpatialTransformer
    from model.network.config import UNetConfig
    from model.network.temporal import TransformerTemporal

    ops = comfy.ops.disable_weight_init
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    frames, images = args.frames, 2 * args.frames
    latent = args.size // 8
    config = UNetConfig()
    gen = torch.Generator().manual_seed(0)
    context_ours = torch.randn(2, 77, 2048, generator=gen).to(dtype)
    context_comfy = context_ours.repeat_interleave(frames, 0)
    temb = torch.randn(2, 1280, generator=gen).to(dtype)
    emb_comfy = temb.repeat_interleave(frames, 0)

    def x(channels, scale):
        return torch.randn(images, channels, latent // scale, latent // scale, generator=gen).to(dtype)

    layers = {}  # name -> {side: callable}
    for channels, scale, heads, depth in ((640, 2, 10, 2), (1280, 4, 20, 10)):
        ours = fill(SpatialTransformer(channels, heads, depth, config), dtype)
        theirs = fill(ComfyTransformer(channels, heads, 64, depth=depth, context_dim=2048, use_linear=True,
                                       use_checkpoint=False, operations=ops), dtype)
        inp = x(channels, scale)
        layers[f"spatial {channels} x{depth}"] = {
            "ours": lambda m=ours, i=inp: m(i, context_ours, frames),
            "comfy": lambda m=theirs, i=inp: m(i, context=context_comfy, transformer_options={}),
            "module": ours}
    for name, c_in, c_skip, c_out, scale in (("resnet 320", 320, 0, 320, 1), ("resnet up 640+320", 640, 320, 320, 1),
                                             ("resnet 640", 640, 0, 640, 2), ("resnet up 1280+640", 1280, 640, 640, 2),
                                             ("resnet 1280", 1280, 0, 1280, 4), ("resnet up 1280+1280", 1280, 1280, 1280, 4)):
        ours = fill(ResnetBlock(c_in + c_skip, c_out, 1280, 32, 1e-5), dtype)
        theirs = fill(ComfyResBlock(c_in + c_skip, 1280, 0.0, out_channels=c_out, use_scale_shift_norm=False,
                                    operations=ops), dtype)
        inp, skip = x(c_in, scale), (x(c_skip, scale) if c_skip else None)
        whole = inp if skip is None else torch.cat([inp, skip], 1)
        layers[name] = {"ours": lambda m=ours, i=inp, s=skip: m(i, temb, frames, skip=s),
                        "comfy": lambda m=theirs, w=whole: m(w, emb_comfy), "module": ours}
    for channels, scale in ((320, 1), (640, 2), (1280, 4)):
        ours = fill(TransformerTemporal(channels, 8, 24), dtype)
        inp = x(channels, scale)
        layers[f"temporal {channels}"] = {"ours": lambda m=ours, i=inp: m(i, frames), "module": ours}

    only = [n.strip() for n in args.only.split(",") if n.strip()]
    print("machine:", _common.describe(_common.machine()))
    print(f"{args.dtype}, {images} images at {latent}x{latent} latents (CFG x {frames} frames at {args.size}px)")
    print("| layer | " + " | ".join(f"{s} CPU-s | {s} wall" for s in args.sides.split(",")) + " |")
    for name, sides in layers.items():
        if only and not any(o in name for o in only):
            continue
        runs = {}
        calls = []
        for side in args.sides.split(","):
            if side == "ours-whole":
                calls.append((side, sides["ours"], None))
            elif side.startswith("ours@"):  # ours@32: pieces of 32 MiB
                calls.append((side, sides["ours"], int(side[5:]) * 2**20))
            elif side in sides:
                calls.append((side, sides[side], "auto"))
        module = sides["module"]
        with torch.no_grad():
            for side, call, budget in calls:  # warm-up: oneDNN picks and caches kernels
                if side.startswith("ours"):
                    for m in module.modules():
                        if hasattr(m, "piece_budget"):
                            m.piece_budget = budget
                call()
            for _ in range(args.rounds):
                for side, call, budget in calls:
                    if side.startswith("ours"):
                        for m in module.modules():
                            if hasattr(m, "piece_budget"):
                                m.piece_budget = budget
                    cpu, wall = time.process_time(), time.perf_counter()
                    call()
                    runs.setdefault(side, []).append((time.process_time() - cpu, time.perf_counter() - wall))
        cells = []
        for side in args.sides.split(","):
            if side in runs:
                cells.append(f"{statistics.median(r[0] for r in runs[side]):.3f} | "
                             f"{statistics.median(r[1] for r in runs[side]):.3f}")
            else:
                cells.append("- | -")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
