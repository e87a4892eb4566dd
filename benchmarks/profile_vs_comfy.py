"""One CFG UNet step of ours next to ComfyUI's own SDXL UNet, per op kind, in one process (one torch):

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfyui-venv/bin/python benchmarks/profile_vs_comfy.py \
        --config full --frames 8 --size 128 --dtype fp32

ComfyUI's side is `comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel` built from ComfyUI's own SDXL
config (spatial layers only: ComfyUI has no temporal layers of its own); ours runs with its temporal layers
off (the same arithmetic as SDXL) and on. Both get seeded random weights of the same scale (by their own
tensor names, so the values differ; the shapes and the work do not). One model is in memory at a time
(a full-size fp32 UNet is 10 GiB): each is built, warmed up, timed without the profiler, profiled, freed.
The op-kind table is profile_unet.py's; `--rounds` timed steps per side, alternating sides when both fit
(`--keep-both`).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402
from bench_native import comfyui  # noqa: E402
from profile_unet import op_kind  # noqa: E402


def comfy_sdxl_config(config: dict, dtype) -> dict:
    """ComfyUI's SDXL UNetModel arguments for a diffusers-style config (full: ComfyUI's own SDXL entry)."""
    depth = list(config["transformer_layers_per_block"])
    cross = [name.startswith("CrossAttn") for name in config["down_block_types"]]
    down = [d if c else 0 for d, c in zip(depth, cross)]
    return {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
            "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "dtype": dtype, "in_channels": 4,
            "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [x for d in down for x in (d, d)],
            "channel_mult": [1, 2, 4], "transformer_depth_middle": depth[-1], "use_linear_in_transformer": True,
            "context_dim": 2048, "num_head_channels": 64,
            "transformer_depth_output": [x for d in down for x in (d, d, d)],  # popped from the end
            "use_temporal_attention": False, "use_temporal_resblock": False}


def profile_step(step, label: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    events = prof.key_averages()
    kinds = defaultdict(float)
    for event in events:
        kinds[op_kind(event.key)] += event.self_cpu_time_total / 1e6
    shaped = prof.key_averages(group_by_input_shape=True)
    top = sorted(shaped, key=lambda e: -e.self_cpu_time_total)[:12]
    print(f"\n[{label}] top ops by own time (input shapes):")
    for e in top:
        print(f"  {e.key:45} {e.count:5d} calls {e.self_cpu_time_total / 1e6:7.2f} s  {str(e.input_shapes)[:110]}")
    del prof
    return dict(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="full", choices=["mid", "full"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sides", default="ours,ours-spatial,comfy",
                        help="comma list of ours, ours-spatial (temporal layers off), comfy")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()

    comfyui()
    import torch

    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    from model.network.config import UNetConfig
    from model.network.unet import HotshotXLUNet

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    config = _common.diffusers_config(args.config)
    inputs = _common.unet_inputs(config, args.frames, args.size)
    frames = args.frames
    print("machine:", _common.describe(_common.machine()))
    print(f"config {args.config}, {args.dtype}, cond+uncond x {frames} frames at {args.size}x{args.size}")

    def build(side):
        started = time.perf_counter()
        if side.startswith("ours"):
            with torch.device("meta"):
                model = HotshotXLUNet(UNetConfig.from_dict(config))
            model = model.to_empty(device="cpu").eval().requires_grad_(False)
        else:
            with torch.device("meta"):
                model = UNetModel(**comfy_sdxl_config(config, dtype), operations=comfy.ops.disable_weight_init)
            model = model.to_empty(device="cpu").eval().requires_grad_(False)
        _common.fill_randomly(model, dtype)
        print(f"{side}: built in {time.perf_counter() - started:.0f} s, {_common.state_mib(model) / 1024:.1f} GiB")
        return model

    def stepper(side, model):
        if side.startswith("ours"):
            temporal = side == "ours"
            sample = inputs["sample"].to(dtype)

            def step():
                return model(sample, inputs["timestep"], inputs["encoder_hidden_states"].to(dtype),
                             inputs["text_embeds"].to(dtype), inputs["time_ids"], temporal=temporal)
            return step
        x = inputs["sample"].transpose(1, 2).flatten(0, 1).to(dtype)  # (2*frames, 4, h, w)
        t = inputs["timestep"].reshape(1).expand(x.shape[0]).float()
        context = inputs["encoder_hidden_states"].repeat_interleave(frames, 0).to(dtype)
        y = torch.randn(x.shape[0], 2816).to(dtype)
        options = {"cond_or_uncond": [0, 1]}

        @torch.no_grad()
        def step():
            return model(x, t, context=context, y=y, transformer_options=dict(options))
        return step

    results = {}
    for side in args.sides.split(","):
        model = build(side)
        step = stepper(side, model)
        started = time.perf_counter()
        step()
        print(f"{side}: warm-up step {time.perf_counter() - started:.1f} s")
        times = []
        for _ in range(args.rounds):
            with _common.Timed() as timed:
                step()
            times.append((timed.seconds, timed.cpu_seconds, timed.others_cores))
            print(f"{side}: step {timed.seconds:.2f} s wall, {timed.cpu_seconds:.2f} CPU-s, "
                  f"others used {timed.others_cores:.2f} cores")
        kinds = {} if args.no_profile else profile_step(step, side)
        results[side] = (min(t[0] for t in times), kinds)
        del model, step
        gc.collect()

    names = list(results)
    print("\n| own time by op kind (s) | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    all_kinds = sorted({k for _, kinds in results.values() for k in kinds},
                       key=lambda k: -max(kinds.get(k, 0) for _, kinds in results.values()))
    for kind in all_kinds:
        print(f"| {kind} | " + " | ".join(f"{results[n][1].get(kind, 0):.2f}" for n in names) + " |")
    print("| step wall (no profiler, best) | " + " | ".join(f"{results[n][0]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
