"""LoRA cost: a UNet step with and without a merged LoRA, and the time and memory of applying one.

    python benchmarks/bench_lora.py step --config mid --frames 8 --size 256 --dtype fp32 --rounds 3
    python benchmarks/bench_lora.py apply --config full --dtype bf16 --rank 32

The LoRA is synthetic: rank `--rank` on every attention projection of the spatial transformers
(to_q, to_k, to_v, to_out.0 of attn1 and attn2: in the full-size UNet 70 transformer blocks, 560
layers), seeded random values, written as a PEFT-layout safetensors file in fp16, as LoRAs are shipped.

`step` builds the named configuration with random weights (benchmarks/_common.py, as bench.py
does), then alternates rounds: a step on the base weights, the LoRA merged, a step with it, the
LoRA removed. A merged LoRA leaves every layer's shape and dtype as they were, so the two should
take the same time; the table shows both medians and the per-round ratios.

`apply` builds the UNet on the meta device and allocates it (zeros: a merge's time does not depend
on the values), then times reading the file (`read_lora`), merging it (`LoRAStack.add`: match,
backup of each touched layer to the CPU, W0 + scale * up @ down, written in place) and removing it
(`restore`), with the resident memory each stage adds (Linux: /proc). On CUDA the UNet sits on the
GPU and peak device memory is reported too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _common  # noqa: E402

ATTENTION = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
             "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")


def attention_lora_file(unet, rank: int, folder: Path) -> tuple[Path, int]:
    """A PEFT-layout fp16 LoRA of `rank` on every spatial attention projection; (path, layers)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, module in unet.named_modules():
        if ".temporal_attentions." in name or not name.endswith(ATTENTION):
            continue
        out_features, in_features = module.weight.shape
        tensors[f"unet.{name}.lora_A.weight"] = (torch.randn(rank, in_features, generator=generator)
                                                 / in_features ** 0.5).half()
        tensors[f"unet.{name}.lora_B.weight"] = (torch.randn(out_features, rank, generator=generator) * 0.01).half()
        tensors[f"unet.{name}.alpha"] = torch.tensor(float(rank))
    path = folder / f"attention_rank{rank}.safetensors"
    save_file(tensors, str(path))
    return path, len(tensors) // 3


def build_unet(config_name: str, dtype: str, device, fill: bool):
    import torch

    from model.network.config import UNetConfig
    from model.memory.precision import resolve_dtype
    from model.network.unet import HotshotXLUNet

    torch_dtype = resolve_dtype("bf16" if dtype == "fp8" else dtype, device)
    config = _common.diffusers_config(config_name)
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    if fill:
        _common.fill_randomly(unet, torch_dtype)
    else:
        unet.to(torch_dtype)
        with torch.no_grad():
            for tensor in unet.state_dict().values():
                tensor.zero_()
    if dtype == "fp8":
        from model.files.loading import store_fp8

        store_fp8(unet)
    return unet.to(device), config


def step_table(args) -> None:
    import torch

    from model.lora.apply import LoRAStack
    from model.lora.formats import read_lora

    device = torch.device(args.device)
    unet, config = build_unet(args.config, args.dtype, device, fill=True)
    torch_dtype = next(unet.parameters()).dtype if args.dtype != "fp8" else torch.bfloat16
    inputs = {k: (v.to(device, torch_dtype) if v.is_floating_point() and k != "timestep" else v.to(device))
              for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @torch.no_grad()
    def step() -> float:
        started = time.perf_counter()
        out = unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"], inputs["text_embeds"],
                   inputs["time_ids"])
        sync()
        assert torch.isfinite(out).all()
        return time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        path, layers = attention_lora_file(unet, args.rank, Path(folder))
        lora = read_lora(path)
    stack = LoRAStack()
    step()  # warm-up, both ways
    stack.add(lora, {"unet": unet}, {"unet": 1.0})
    step()
    stack.restore()
    base, with_lora = [], []
    for _ in range(args.rounds):
        base.append(step())
        stack.add(lora, {"unet": unet}, {"unet": 1.0})
        with_lora.append(step())
        stack.restore()
    ratios = [b / a for a, b in zip(base, with_lora)]
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"UNet step ({args.config} config, {args.dtype}, {args.frames} frames at {args.size} px, batch 2), "
          f"LoRA rank {args.rank} on {layers} attention layers, merged; {args.rounds} alternating rounds")
    print("| weights | median s/step | min s/step |")
    print("| --- | --- | --- |")
    for label, times in (("base", base), ("with LoRA", with_lora)):
        print(f"| {label} | {statistics.median(times):.3f} | {min(times):.3f} |")
    print(f"with/without per round: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")


def apply_table(args) -> None:
    import torch

    from model.lora.apply import LoRAStack
    from model.lora.formats import read_lora

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    unet, _ = build_unet(args.config, args.dtype, device, fill=False)
    weights_mib = _common.state_mib(unet)
    with tempfile.TemporaryDirectory() as folder:
        path, layers = attention_lora_file(unet, args.rank, Path(folder))
        file_mib = path.stat().st_size / _common.MiB
        rows = []
        base = _common.settle()
        with _common.PeakRss() as rss, _common.Timed() as timed:
            lora = read_lora(path)
        rows.append(("read the file", timed.seconds, rss.peak - base, _common.settle() - base))
        stack = LoRAStack()
        sample = unet.get_submodule("mid_block.attentions.0.transformer_blocks.0.attn2.to_k")
        original = sample.weight.detach().clone()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            device_base = torch.cuda.memory_allocated()
        base = _common.settle()
        with _common.PeakRss() as rss, _common.Timed() as timed:
            stack.add(lora, {"unet": unet}, {"unet": 1.0})
            if cuda:
                torch.cuda.synchronize()
        rows.append(("merge (match, back up, merge)", timed.seconds, rss.peak - base, _common.settle() - base))
        device_peak = (torch.cuda.max_memory_allocated() - device_base) / _common.MiB if cuda else None
        backup_mib = stack.backup_bytes() / _common.MiB
        base = _common.settle()
        with _common.PeakRss() as rss, _common.Timed() as timed:
            stack.restore()
            if cuda:
                torch.cuda.synchronize()
        rows.append(("remove (copy the backups back)", timed.seconds, rss.peak - base, _common.settle() - base))
        assert torch.equal(sample.weight, original)
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"{args.config} UNet in {args.dtype} ({weights_mib:,.0f} MiB of weights) on {device}; "
          f"LoRA rank {args.rank} on "
          f"{layers} attention layers ({file_mib:,.0f} MiB file, fp16); backups {backup_mib:,.0f} MiB on the CPU")
    print("| stage | seconds | peak RSS +MiB | RSS after +MiB |")
    print("| --- | --- | --- | --- |")
    for label, seconds, peak, after in rows:
        print(f"| {label} | {seconds:.2f} | {peak:,.0f} | {after:,.0f} |")
    if device_peak is not None:
        print(f"peak device memory above the UNet while merging: {device_peak:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["step", "apply"])
    parser.add_argument("--config", choices=["tiny", "mid", "full"])
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16", "fp8"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "step":
        args.config, args.dtype = args.config or "mid", args.dtype or "fp32"
        step_table(args)
    else:
        args.config, args.dtype = args.config or "full", args.dtype or "bf16"
        apply_table(args)


if __name__ == "__main__":
    main()
