"""One training-step measurement of the ORIGINAL Hotshot-XL UNet, run by bench_train.py in the original's
own Python (its diffusers 0.21.4):

    /path/to/original-venv/bin/python benchmarks/_original_train_worker.py --original /path/to/Hotshot-XL \
        --config mid --frames 8 --size 256 --dtype fp32 [--checkpointing]

Same config, same deterministic random weights and the same batch as ours (`_common`); temporal
parameters trainable, the rest frozen, as fine_tune.py sets them up, with its own gradient
checkpointing (`enable_gradient_checkpointing`, which needs an input that requires grad, as
fine_tune.py arranges). A step is forward, MSE against the noise, backward. Imports nothing from `model`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import _common  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--original", required=True)
    parser.add_argument("--config", default="mid")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpointing", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(args.original).resolve()))
    from hotshot_xl.models.unet import UNet3DConditionModel

    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    config = _common.diffusers_config(args.config)
    started = time.perf_counter()
    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(config)
    unet = unet.to_empty(device="cpu")
    _common.fill_randomly(unet, dtype)
    unet.to(device).train().requires_grad_(False)
    for p in unet.temporal_parameters():
        p.requires_grad_(True)
    if args.checkpointing:
        unet.enable_gradient_checkpointing()
    build_s = time.perf_counter() - started

    inputs = {k: (v.to(device, dtype) if v.is_floating_point() and k != "timestep" else v.to(device))
              for k, v in _common.unet_inputs(config, args.frames, args.size, batch=args.batch).items()}
    noise = torch.randn(inputs["sample"].shape, generator=torch.Generator().manual_seed(1)).to(device)
    added = {"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]}

    def step():
        sample = inputs["sample"].clone().requires_grad_(True)  # fine_tune.py: noisy_latents.requires_grad
        out = unet(sample, torch.full((args.batch,), 500, device=device),
                   encoder_hidden_states=inputs["encoder_hidden_states"], added_cond_kwargs=added,
                   return_dict=False)[0]
        F.mse_loss(out.float(), noise).backward()
        unet.zero_grad(set_to_none=True)

    trained = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    info = {"impl": "original", "weights_mib": _common.state_mib(unet), "build_s": build_s, "trained": trained}
    if device.type == "cuda":  # the base bench_train.py measures the peak above, as for ours
        torch.cuda.synchronize()
        info["device_weights_mib"] = torch.cuda.memory_allocated() / _common.MiB
    _common.serve_steps(step, info, sync=torch.cuda.synchronize if device.type == "cuda" else None)


if __name__ == "__main__":
    main()
