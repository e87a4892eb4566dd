"""One UNet-step measurement of the ORIGINAL Hotshot-XL, run by bench.py in the original's own Python.

    /path/to/original-venv/bin/python benchmarks/_original_worker.py --original /path/to/Hotshot-XL \
        --config mid --frames 8 --size 256 --dtype fp32

Builds the original's UNet3DConditionModel from the same config as ours, fills it with the same
deterministic random weights (same keys, same values: `_common.random_tensor`), and prints one JSON
line with the same figures as our worker, serving timed steps to bench.py (`_common.serve_steps`). Imports nothing from this repository's `model` package.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import _common  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--original", required=True, help="the original Hotshot-XL checkout")
    parser.add_argument("--config", default="mid")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--flops", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(args.original).resolve()))
    from hotshot_xl.models.unet import UNet3DConditionModel

    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    config = _common.diffusers_config(args.config)
    started = time.perf_counter()
    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(config)
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(unet, dtype)
    unet.to(device)
    build_s = time.perf_counter() - started

    inputs = {k: (v.to(device, dtype) if v.is_floating_point() and k != "timestep" else v.to(device))
              for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    added = {"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]}

    @torch.no_grad()
    def step():
        out = unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"],
                   added_cond_kwargs=added, return_dict=False)[0]
        assert torch.isfinite(out).all()

    info = {"impl": "original", "weights_mib": _common.state_mib(unet), "build_s": build_s}
    if args.flops:
        info["flops"] = _common.count_flops(step)
    _common.serve_steps(step, info, sync=torch.cuda.synchronize if device.type == "cuda" else None)


if __name__ == "__main__":
    main()
