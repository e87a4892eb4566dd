"""Speed and memory of a UNet step and of a whole text-to-video call, ours and the original's.

    python benchmarks/bench.py unet --config mid --frames 8 --size 256 --dtype fp32 \
        --original /path/to/Hotshot-XL --original-python /path/to/original-venv/bin/python
    python benchmarks/bench.py pipeline --config tiny --frames 8 --size 256 --steps 4

`unet` times one denoising step with classifier-free guidance (the UNet on a batch of 2) at a named
configuration, with random weights seeded by tensor name (so the original, given the same config,
gets exactly the same weights): `tiny` = the test fixture's config, `mid` = the released widths
(320/640/1280, cross-attention 2048) with one transformer layer per block, `full` = the release.
Each implementation runs in a fresh process (`--original-python` names the original's virtual
environment: it needs its own diffusers 0.21.4); the table gives seconds per step (median of the
runs during which other processes used under a quarter of a core, when there are any), peak
resident memory above the weights, and our/original ratios. `--flops` also counts the step's
FLOPs and prints the fraction of this machine's fp32 matmul peak (a large torch.mm, measured here).

`pipeline` times a whole call split into text encoding, sampling, decoding and writing a video
(`tiny` uses the fixture folder; `mid`/`full` random weights with the shipped VAE and text
encoder configs). On CUDA, peak device memory is reported too. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import _common  # noqa: E402

DTYPES = ("fp32", "bf16", "fp16", "fp8")


# --- workers: one measurement each, in a fresh process --------------------------------------------

def our_unet_worker(args) -> dict:
    import torch

    from model.config import UNetConfig
    from model.precision import resolve_dtype
    from model.unet import HotshotXLUNet

    device = torch.device(args.device)
    dtype = resolve_dtype("bf16" if args.dtype == "fp8" else args.dtype, device)
    config = _common.diffusers_config(args.config)
    started = time.perf_counter()
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(unet, dtype)
    if args.dtype == "fp8":
        from model.loading import store_fp8  # the loader's own conversion

        store_fp8(unet)
    unet.to(device)
    if args.channels_last:
        unet.to(memory_format=torch.channels_last)
    if args.piece_budget != "auto":
        unet.set_piece_budget(None if args.piece_budget == "none" else int(args.piece_budget))
    build_s = time.perf_counter() - started
    weights = sum(t.numel() * t.element_size() for t in unet.state_dict().values())
    inputs = {k: (v.to(device, dtype) if v.is_floating_point() and k != "timestep" else v.to(device))
              for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    step_fn = torch.compile(unet) if args.compile else unet

    @torch.no_grad()
    def step():
        out = step_fn(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"],
                      inputs["text_embeds"], inputs["time_ids"])
        assert torch.isfinite(out).all()

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = _common.time_unet_step(step, args.runs, args.min_clean, args.max_runs,
                                    sync=torch.cuda.synchronize if cuda else None)
    result.update({"impl": "ours", "weights_mib": weights / _common.MiB, "build_s": build_s})
    if cuda:
        result["peak_device_mib"] = torch.cuda.max_memory_allocated() / _common.MiB
    if args.flops:
        result["flops"] = _common.count_flops(step)
    return result


def pipeline_worker(args) -> dict:
    import torch

    from model.pipeline import Settings
    from model.video import write_video

    device = torch.device(args.device)
    started = time.perf_counter()
    pipe = build_pipeline(args.config, args.dtype, device)
    load_s = time.perf_counter() - started
    settings = Settings(width=args.size, height=args.size, frames=args.frames, steps=args.steps)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base = _common.settle()
    stages = {}
    with _common.PeakRss() as rss:
        with _common.Timed() as timed:
            conditions = pipe.encode("a corgi running on a beach, hd", "blurry")
        stages["text encoding"] = timed.seconds
        with _common.Timed() as timed:
            latents = pipe.sample(conditions, settings)
        stages["sampling"] = timed.seconds
        with _common.Timed() as timed:
            frames = pipe.decode(latents)
        stages["decoding"] = timed.seconds
        with tempfile.TemporaryDirectory() as folder, _common.Timed() as timed:
            write_video(frames, Path(folder) / "video.mp4")
        stages["writing"] = timed.seconds
    result = {"impl": "ours", "load_s": load_s, "stages_s": stages, "peak_above_loaded_mib": rss.peak - base,
              "steps": args.steps}
    if cuda:
        result["peak_device_mib"] = torch.cuda.max_memory_allocated() / _common.MiB
    return result


def build_pipeline(config_name: str, dtype: str, device):
    """The fixture folder for `tiny`; random weights of the named size (shipped configs) otherwise."""
    import torch

    from model.pipeline import load_pipeline

    if config_name == "tiny":
        return load_pipeline(_common.FIXTURES / "hotshot-xl-tiny", dtype=dtype, device=device)
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from model.config import UNetConfig
    from model.pipeline import HotshotXLPipeline
    from model.precision import resolve_dtype
    from model.sdxl_configs import shipped_config
    from model.text import TextEncoders
    from model.tokenizers import byte_level_tokenizers
    from model.unet import HotshotXLUNet

    torch_dtype = resolve_dtype(dtype, device)

    def random_module(cls, *config):
        with torch.device("meta"):
            module = cls(*config)
        module = module.to_empty(device="cpu").eval().requires_grad_(False)
        _common.fill_randomly(module, torch_dtype)
        return module.to(device)

    def text_config(name):
        config = {k: v for k, v in shipped_config(name).items() if k != "architectures"}
        return CLIPTextConfig(**{**config, "vocab_size": 514, "bos_token_id": 512, "eos_token_id": 513})

    unet = random_module(HotshotXLUNet, UNetConfig.from_dict(_common.diffusers_config(config_name)))
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(shipped_config("vae"))
    vae = vae.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(vae, torch_dtype)
    text = TextEncoders(*byte_level_tokenizers(), random_module(CLIPTextModel, text_config("text_encoder")),
                        random_module(CLIPTextModelWithProjection, text_config("text_encoder_2")))
    return HotshotXLPipeline(unet, vae.to(device), text, shipped_config("scheduler"), name=config_name)


# --- the driver --------------------------------------------------------------------------------

def run_worker(command: list[str]) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"benchmark worker failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def worker_flags(args) -> list[str]:
    return ["--config", args.config, "--frames", str(args.frames), "--size", str(args.size),
            "--dtype", args.dtype, "--device", args.device, "--runs", str(args.runs),
            "--min-clean", str(args.min_clean), "--max-runs", str(args.max_runs)] + (["--flops"] if args.flops else [])


def unet_table(args) -> None:
    ours = run_worker([sys.executable, __file__, "worker-unet", *worker_flags(args),
                       "--piece-budget", args.piece_budget] + (["--channels-last"] if args.channels_last else [])
                      + (["--compile"] if args.compile else []))
    rows = [("ours", ours)]
    if args.original:
        original = run_worker([args.original_python, str(HERE / "_original_worker.py"), "--original", args.original,
                               *worker_flags(args)])
        rows.append(("original", original))
    info = _common.machine()
    peak = _common.matmul_peak_gflops() if args.flops and args.device == "cpu" else None
    print(f"machine: {_common.describe(info)}")
    print(f"UNet step with CFG (batch 2): {args.config} config, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.dtype}, {args.device}")
    if peak:
        print(f"fp32 matmul peak of this machine (4096x4096 torch.mm, best of 8): {peak:.0f} GFLOP/s")
    header = f"{'':10}{'s/step':>9}{'(clean runs)':>13}{'min s':>8}{'weights MiB':>13}{'peak above weights MiB':>24}"
    if args.flops:
        header += f"{'GFLOP':>9}{'GFLOP/s':>9}" + (f"{'of peak':>9}" if peak else "")
    if args.device != "cpu":
        header += f"{'peak device MiB':>17}"
    print(header)
    for name, r in rows:
        seconds = r["clean_median_s"] if r["clean_median_s"] is not None else r["median_s"]
        line = (f"{name:10}{seconds:9.2f}{r['clean_runs']:>7}/{len(r['runs']):<5}{r['min_s']:8.2f}"
                f"{r['weights_mib']:13.0f}{r['peak_above_weights_mib']:24.0f}")
        if args.flops:
            rate = r["flops"] / 1e9 / seconds
            line += f"{r['flops'] / 1e9:9.0f}{rate:9.0f}" + (f"{rate / peak:9.2f}" if peak else "")
        if "peak_device_mib" in r:
            line += f"{r['peak_device_mib']:17.0f}"
        print(line)
    if len(rows) == 2:
        (_, a), (_, b) = rows
        pick = (lambda r: r["clean_median_s"] if a["clean_median_s"] and b["clean_median_s"] else r["median_s"])
        print(f"ours/original: time {pick(a) / pick(b):.2f}x, "
              f"peak memory above weights {a['peak_above_weights_mib'] / b['peak_above_weights_mib']:.2f}x")


def pipeline_table(args) -> None:
    r = run_worker([sys.executable, __file__, "worker-pipeline", "--config", args.config, "--frames",
                    str(args.frames), "--size", str(args.size), "--dtype", args.dtype, "--device", args.device,
                    "--steps", str(args.steps)])
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"text to video: {args.config} config, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.steps} steps, {args.dtype}, {args.device} (loading took {r['load_s']:.1f} s)")
    for stage, seconds in r["stages_s"].items():
        print(f"  {stage:15}{seconds:9.2f} s")
    print(f"  {'total':15}{sum(r['stages_s'].values()):9.2f} s, peak host memory above the loaded "
          f"pipeline {r['peak_above_loaded_mib']:.0f} MiB"
          + (f", peak device memory {r['peak_device_mib']:.0f} MiB" if "peak_device_mib" in r else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["unet", "pipeline", "worker-unet", "worker-pipeline"])
    parser.add_argument("--config", choices=["tiny", "mid", "full"], default="mid")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="square frame size in pixels")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="pipeline mode: sampling steps")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--min-clean", type=int, default=2, help="runs wanted with the machine otherwise idle")
    parser.add_argument("--max-runs", type=int, default=6)
    parser.add_argument("--flops", action="store_true", help="count FLOPs and compare with the matmul peak")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile our UNet")
    parser.add_argument("--piece-budget", default="auto", help="auto, none, or bytes (see model/pieces.py)")
    parser.add_argument("--original", help="checkout of the original Hotshot-XL, to measure it too")
    parser.add_argument("--original-python", default=sys.executable,
                        help="Python of the original's environment (diffusers 0.21.4)")
    args = parser.parse_args()
    if args.mode == "worker-unet":
        print(json.dumps(our_unet_worker(args)))
    elif args.mode == "worker-pipeline":
        print(json.dumps(pipeline_worker(args)))
    elif args.mode == "unet":
        unet_table(args)
    else:
        pipeline_table(args)


if __name__ == "__main__":
    main()
