"""Training speed and memory: a fine-tuning step of the UNet, ours and the original's, and the captioner.

    python benchmarks/bench_train.py unet --config mid --frames 8 --size 256 --batch 1 \
        [--original /path/to/Hotshot-XL --original-python /path/to/its-venv/bin/python]
    python benchmarks/bench_train.py caption --clips 8

`unet` times one training step (forward, MSE against noise, backward into the temporal layers, the
rest frozen) at a named configuration (see bench.py: random weights seeded by tensor name, so the
original gets the same ones, and the same batch) in fp32 and bf16, each with and without gradient
checkpointing: ours (train mode; checkpointing per spatial transformer and temporal layer) and, with
--original, the original UNet3DConditionModel with its own checkpointing (per resnet, transformer and
temporal layer). Each variant runs in its own process; steps alternate between implementations round by
round. Peak memory: resident (CPU) or allocated (CUDA: `--device cuda`, the peak of
torch.cuda.max_memory_allocated) memory above the weights. `caption` times the captioner per clip on a tiny random BLIP (built here: no download).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _common  # noqa: E402
from bench import StepServer, measure_unets  # noqa: E402


def our_train_worker(args) -> None:
    import torch
    import torch.nn.functional as F

    from model.network.config import UNetConfig
    from model.files.loading import is_temporal_key
    from model.network.unet import set_gradient_checkpointing
    from model.network.unet import HotshotXLUNet

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    device = torch.device(args.device)
    config = _common.diffusers_config(args.config)
    started = time.perf_counter()
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu")
    _common.fill_randomly(unet, dtype)
    unet.to(device).train().requires_grad_(False)
    trained = [p for name, p in unet.named_parameters() if is_temporal_key(name)]
    for p in trained:
        p.requires_grad_(True)
    set_gradient_checkpointing(unet, args.checkpointing)
    build_s = time.perf_counter() - started
    inputs = {k: (v.to(device, dtype) if v.is_floating_point() and k != "timestep" else v.to(device))
              for k, v in _common.unet_inputs(config, args.frames, args.size, batch=args.batch).items()}
    noise = torch.randn(inputs["sample"].shape, generator=torch.Generator().manual_seed(1)).to(device)

    def step():
        out = unet(inputs["sample"], torch.full((args.batch,), 500, device=device), inputs["encoder_hidden_states"],
                   inputs["text_embeds"], inputs["time_ids"])
        F.mse_loss(out.float(), noise).backward()
        unet.zero_grad(set_to_none=True)

    info = {"impl": "ours", "weights_mib": _common.state_mib(unet), "build_s": build_s,
            "trained": sum(p.numel() for p in trained), **device_weights(device)}
    _common.serve_steps(step, info, sync=torch.cuda.synchronize if device.type == "cuda" else None)


def device_weights(device) -> dict:
    """On a GPU: the device memory allocated once the weights and inputs are in place (the base the peak
    is measured above)."""
    import torch

    if device.type != "cuda":
        return {}
    torch.cuda.synchronize()
    return {"device_weights_mib": torch.cuda.memory_allocated() / _common.MiB}


def unet_table(args) -> None:
    flags = ["--config", args.config, "--frames", str(args.frames), "--size", str(args.size), "--batch",
             str(args.batch), "--device", args.device]
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"training step (forward + backward into the temporal layers): {args.config} config, batch {args.batch}, "
          f"{args.frames} frames at {args.size}x{args.size}, {args.device}; {args.runs} timed rounds after a warm-up")
    where = "peak device above weights MiB" if args.device != "cpu" else "peak above weights MiB"
    print(f"{'':10}{'dtype':>6}{'checkpointing':>15}{'s/step':>9}{'min s':>8}{'weights MiB':>13}{where:>24}")
    results = []
    for dtype in args.dtypes:
        for checkpointing in args.checkpointing:
            extra = ["--dtype", dtype] + (["--checkpointing"] if checkpointing else [])
            servers = {"ours": StepServer([sys.executable, __file__, "worker", *flags, *extra])}
            if args.original:
                servers["original"] = StepServer([args.original_python, str(HERE / "_original_train_worker.py"),
                                                  "--original", args.original, *flags, *extra])
            figures = measure_unets(servers, args.runs, 0, args.runs)
            for name, r in figures.items():
                memory = (r["peak_device_mib"] - r["device_weights_mib"] if "device_weights_mib" in r
                          else r["peak_above_weights_mib"])
                print(f"{name:10}{dtype:>6}{'on' if checkpointing else 'off':>15}{r['median_s']:9.2f}"
                      f"{r['min_s']:8.2f}{r['weights_mib']:13.0f}{memory:24.0f}", flush=True)
                results.append((name, dtype, checkpointing, r["median_s"], memory))
    if args.original:
        for dtype in args.dtypes:
            for checkpointing in args.checkpointing:
                ours, theirs = [next(r for r in results if r[:3] == (name, dtype, checkpointing))
                                for name in ("ours", "original")]
                print(f"ours/original, {dtype}, checkpointing {'on' if checkpointing else 'off'}: time "
                      f"{ours[3] / theirs[3]:.2f}x, memory {ours[4] / theirs[4]:.2f}x")


def caption_table(args) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from test_caption import build_tiny_blip

    from model.caption.captioner import Captioner

    with tempfile.TemporaryDirectory() as folder:
        build_tiny_blip(Path(folder))
        captioner = Captioner(folder, args.device, frames_shown=3)
        generator = torch.Generator().manual_seed(0)
        clips = [(torch.rand(16, 384, 672, 3, generator=generator) * 255).to(torch.uint8).numpy()
                 for _ in range(args.clips)]
        captioner.caption(clips[0])  # warm-up
        with _common.Timed() as timed:
            for clip in clips:
                captioner.caption(np.asarray(clip))
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"captioner (tiny random BLIP, 3 frames shown, 16-frame 672x384 clips, {args.device}): "
          f"{timed.seconds / args.clips * 1000:.1f} ms per clip over {args.clips} clips")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    unet = sub.add_parser("unet")
    unet.add_argument("--config", choices=["tiny", "mid", "full"], default="mid")
    unet.add_argument("--frames", type=int, default=8)
    unet.add_argument("--size", type=int, default=256)
    unet.add_argument("--batch", type=int, default=1)
    unet.add_argument("--device", default="cpu")
    unet.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    unet.add_argument("--runs", type=int, default=2)
    unet.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"],
                      help="gradient checkpointing off, on or both (default)")
    unet.add_argument("--original", help="a checkout of hotshotco/Hotshot-XL")
    unet.add_argument("--original-python", default=sys.executable, help="the original's venv (diffusers 0.21.4)")
    worker = sub.add_parser("worker")
    for flag, kind, default in (("--config", str, "mid"), ("--frames", int, 8), ("--size", int, 256),
                                ("--batch", int, 1), ("--device", str, "cpu"), ("--dtype", str, "fp32")):
        worker.add_argument(flag, type=kind, default=default)
    worker.add_argument("--checkpointing", action="store_true")
    caption = sub.add_parser("caption")
    caption.add_argument("--clips", type=int, default=8)
    caption.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.command == "unet":
        args.checkpointing = [c == "on" for c in args.checkpointing]
    {"unet": unet_table, "worker": our_train_worker, "caption": caption_table}[args.command](args)


if __name__ == "__main__":
    main()
