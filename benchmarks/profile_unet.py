"""Where a UNet step's time goes: per block, per layer kind and per op kind, with torch.profiler.

    python benchmarks/profile_unet.py --config mid --frames 8 --size 256 --dtype fp32
    python benchmarks/profile_unet.py --config mid --frames 8 --size 256 --dtype bf16 --trace bf16.json

One CFG-sized step (batch 2) of our UNet with bench.py's seeded random weights, after `--warmup`
untimed steps (oneDNN's first calls pick and cache kernels). Three tables:
- blocks: conv_in and the time embedding, each down block, the mid block, each up block, the output
  layers (inclusive time);
- layer kinds: resnets, spatial transformers, temporal layers, down/upsamplers (inclusive);
- op kinds: every aten op's own time (exclusive, so the rows add up to the step) grouped into
  convolutions, matrix multiplies, attention kernels, norms, casts and copies, element-wise ops
  and the rest; then the most expensive ops with their input shapes.
`--trace` also writes a Chrome trace (chrome://tracing, Perfetto). The profiler's own overhead
inflates many-small-op code more than big kernels: compare shares, not absolute times, with bench.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402

# aten op name (without "aten::") -> kind: the name itself, or a name starting with one of the
# longer entries (kernel variants: _scaled_dot_product_flash_attention_for_cpu, ...); first wins.
OP_KINDS = [
    ("conv", ("convolution", "_convolution", "mkldnn_convolution", "conv2d", "_slow_conv2d", "thnn_conv2d",
              "_nnpack_spatial_convolution", "conv_depthwise2d")),
    ("attention kernels", ("scaled_dot_product", "_scaled_dot_product", "_flash_attention", "_efficient_attention")),
    ("matmul (linear layers)", ("addmm", "mm", "bmm", "matmul", "linear", "baddbmm", "_addmm_activation")),
    ("norms", ("native_group_norm", "group_norm", "native_layer_norm", "layer_norm", "native_batch_norm",
               "batch_norm", "var_mean", "var", "mean", "rsqrt", "std")),
    ("casts and copies", ("to", "_to_copy", "copy_", "clone", "contiguous", "empty_like", "_copy_from",
                          "cat", "stack", "index_select", "repeat_interleave", "repeat", "upsample_nearest2d")),
    ("element-wise", ("add", "add_", "mul", "mul_", "div", "div_", "sub", "silu", "silu_", "gelu", "gelu_",
                      "addcmul", "sin", "cos", "exp", "neg", "fill_", "zero_")),
]
VIEWS = ("view", "reshape", "permute", "transpose", "unflatten", "flatten", "slice", "select", "as_strided",
         "expand", "chunk", "split", "narrow", "squeeze", "unsqueeze", "t", "_unsafe_view", "alias", "detach",
         "empty", "empty_strided", "resize_", "lift_fresh", "unbind")


def op_kind(name: str) -> str:
    op = name.split("::", 1)[-1]
    for kind, names in OP_KINDS:
        if op in names or any(op.startswith(name) for name in names if len(name) > 6):
            return kind
    if op in VIEWS:
        return "views and allocations"
    return "other"


def label_modules(unet) -> list:
    """Forward hooks putting each block and each layer in a profiler range of its own name."""
    import torch

    from model.network.blocks import Downsample, ResnetBlock, SpatialTransformer, Upsample
    from model.network.temporal import TransformerTemporal

    kinds = {ResnetBlock: "resnets", SpatialTransformer: "spatial transformers",
             TransformerTemporal: "temporal layers", Downsample: "down/upsamplers", Upsample: "down/upsamplers"}
    targets = [(f"block: {name}", module) for name, module in (
        ("conv_in", unet.conv_in), ("time embedding", unet.time_embedding), ("add embedding", unet.add_embedding),
        *((f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)), ("mid_block", unet.mid_block),
        *((f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)), ("conv_out", unet.conv_out))]
    targets += [(f"layer: {kinds[type(m)]}", m) for m in unet.modules() if type(m) in kinds]
    handles = []
    for label, module in targets:
        ranges = []

        def enter(module, args, label=label, ranges=ranges):
            ranges.append(torch.profiler.record_function(label))
            ranges[-1].__enter__()

        def leave(module, args, output, ranges=ranges):
            ranges.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="mid", choices=["tiny", "mid", "full"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch", type=int, default=2, help="2: a CFG step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top", type=int, default=15, help="most expensive ops listed")
    parser.add_argument("--trace", help="write a Chrome trace here")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from model.network.config import UNetConfig
    from model.memory.precision import resolve_dtype
    from model.network.unet import HotshotXLUNet

    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    config = _common.diffusers_config(args.config)
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(unet, dtype)
    inputs = _common.unet_inputs(config, args.frames, args.size, batch=args.batch)
    inputs = {k: (v.to(dtype) if v.is_floating_point() and k not in ("timestep", "time_ids") else v)
              for k, v in inputs.items()}

    def step():
        return unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"], inputs["text_embeds"],
                    inputs["time_ids"])

    print("machine:", _common.describe(_common.machine()))
    print(f"config {args.config}, {args.dtype}, batch {args.batch} x {args.frames} frames at {args.size}x{args.size}")
    for _ in range(args.warmup):
        started = time.perf_counter()
        step()
        print(f"warm-up step: {time.perf_counter() - started:.2f} s (no profiler)")
    handles = label_modules(unet)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        started = time.perf_counter()
        step()
        wall = time.perf_counter() - started
    for handle in handles:
        handle.remove()
    events = prof.key_averages()
    print(f"profiled step: {wall:.2f} s wall (with the profiler's overhead)\n")

    ranges = {e.key: e.cpu_time_total / 1e6 for e in events if e.key.startswith(("block: ", "layer: "))}
    total_self = sum(e.self_cpu_time_total for e in events) / 1e6
    for prefix, title in (("block: ", "block"), ("layer: ", "layer kind")):
        print(f"| {title} | s | share of step |\n| --- | --- | --- |")
        rows = [(k[len(prefix):], v) for k, v in ranges.items() if k.startswith(prefix)]
        order = sorted(rows, key=lambda r: -r[1]) if prefix == "layer: " else rows
        for name, seconds in order:
            print(f"| {name} | {seconds:.2f} | {seconds / wall:.1%} |")
        print()

    by_kind = defaultdict(float)
    for event in events:
        kind = "between ops (Python, in blocks)" if event.key.startswith(("block: ", "layer: ")) else op_kind(event.key)
        by_kind[kind] += event.self_cpu_time_total / 1e6
    others = sorted((e for e in events if op_kind(e.key) == "other" and not e.key.startswith(("block", "layer"))),
                    key=lambda e: -e.self_cpu_time_total)[:6]
    print("| op kind (own time) | s | share |\n| --- | --- | --- |")
    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {seconds:.2f} | {seconds / total_self:.1%} |")
    print("other, largest:", ", ".join(f"{e.key} {e.self_cpu_time_total / 1e6:.2f} s" for e in others))

    print(f"\n| op (by own time) | calls | s | share | input shapes (first seen) |\n| --- | --- | --- | --- | --- |")
    shaped = defaultdict(list)
    for event in prof.key_averages(group_by_input_shape=True):
        shaped[event.key].append(event)
    for event in sorted((e for e in events if not e.key.startswith(("block: ", "layer: "))),
                        key=lambda e: -e.self_cpu_time_total)[:args.top]:
        example = max(shaped[event.key], key=lambda e: e.self_cpu_time_total)
        shapes = str(example.input_shapes)[:90]
        print(f"| {event.key} | {event.count} | {event.self_cpu_time_total / 1e6:.2f} | "
              f"{event.self_cpu_time_total / 1e6 / total_self:.1%} | {shapes} |")
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"\ntrace written to {args.trace}")


if __name__ == "__main__":
    main()
