"""Speed and memory of a UNet step and of a whole text-to-video call, ours and the original's.

    python benchmarks/bench.py unet --config mid --frames 8 --size 256 --dtype fp32 \
        --original /path/to/Hotshot-XL --original-python /path/to/original-venv/bin/python
    python benchmarks/bench.py pipeline --config tiny --frames 8 --size 256 --steps 4

`unet` times one denoising step with classifier-free guidance (the UNet on a batch of 2) at a named
configuration, with random weights seeded by tensor name (so the original, given the same config,
gets exactly the same weights): `tiny` = the test fixture's config, `mid` = the released widths
(320/640/1280, cross-attention 2048) with one transformer layer per block, `full` = the release.
Each implementation runs in its own process (`--original-python` names the original's virtual
environment: it needs its own diffusers 0.21.4), and steps alternate between them round by round,
so a shared machine's drifts hit both alike. The table gives seconds per step (median of the
rounds during which other processes used under a quarter of a core, when there are any), peak
resident memory above the weights, and our/original ratios, also per round. `--flops` also counts the step's
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

def our_unet_worker(args) -> None:
    import torch

    from model.network.config import UNetConfig
    from model.memory.precision import resolve_dtype
    from model.network.unet import HotshotXLUNet

    device = torch.device(args.device)
    dtype = resolve_dtype("bf16" if args.dtype == "fp8" else args.dtype, device)
    config = _common.diffusers_config(args.config)
    started = time.perf_counter()
    with torch.device("meta"):
        unet = HotshotXLUNet(UNetConfig.from_dict(config))
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(unet, dtype)
    if args.dtype == "fp8":
        from model.files.loading import store_fp8  # the loader's own conversion

        store_fp8(unet)
    unet.to(device)
    if args.channels_last:
        unet.to(memory_format=torch.channels_last)
    if args.piece_budget != "auto":
        unet.set_piece_budget(None if args.piece_budget == "none" else int(args.piece_budget))
    build_s = time.perf_counter() - started
    inputs = {k: (v.to(device, dtype) if v.is_floating_point() and k != "timestep" else v.to(device))
              for k, v in _common.unet_inputs(config, args.frames, args.size).items()}
    step_fn = torch.compile(unet) if args.compile else unet

    @torch.no_grad()
    def step():
        out = step_fn(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"],
                      inputs["text_embeds"], inputs["time_ids"])
        assert torch.isfinite(out).all()

    info = {"impl": "ours", "weights_mib": _common.state_mib(unet), "build_s": build_s}
    if args.flops:
        info["flops"] = _common.count_flops(step)
    _common.serve_steps(step, info, sync=torch.cuda.synchronize if device.type == "cuda" else None)


def pipeline_worker(args) -> dict:
    import torch

    from model.pipeline import Settings
    from model.media.video import write_video

    device = torch.device(args.device)
    started = time.perf_counter()
    # With offload the weights are built on the CPU, where they rest between their stages.
    pipe = build_pipeline(args.config, args.dtype, device if args.offload == "none" else torch.device("cpu"))
    pipe.enable_offload(args.offload, device)
    load_s = time.perf_counter() - started
    weights = {name: _common.state_mib(*modules) for name, modules in
               (("unet", [pipe.unet]), ("vae", [pipe.vae]),
                ("text encoders", [pipe.text.text_encoder, pipe.text.text_encoder_2]))}
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
              "steps": args.steps, "weights_mib": weights}
    if cuda:
        result["peak_device_mib"] = torch.cuda.max_memory_allocated() / _common.MiB
    return result


def build_pipeline(config_name: str, dtype: str, device):
    """The fixture folder for `tiny`; random weights of the named size (shipped configs) otherwise."""
    import torch

    from model.pipeline import load_pipeline

    if config_name == "tiny":
        return load_pipeline(_common.fixtures() / "hotshot-xl-tiny", dtype=dtype, device=device)
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from model.network.config import UNetConfig
    from model.pipeline import HotshotXLPipeline
    from model.memory.precision import resolve_dtype
    from model.files.sdxl_configs import shipped_config
    from model.text.encoders import TextEncoders
    from model.text.tokenizers import byte_level_tokenizers
    from model.network.unet import HotshotXLUNet

    torch_dtype = resolve_dtype("bf16" if dtype == "fp8" else dtype, device)

    def random_module(cls, *config, meta=True):
        # On the meta device nothing is initialised, which is quick; but non-persistent buffers
        # (CLIP's position_ids) are not in the state dict that fill_randomly fills, so text
        # encoders are built for real.
        with torch.device("meta" if meta else "cpu"):
            module = cls(*config)
        module = (module.to_empty(device="cpu") if meta else module).eval().requires_grad_(False)
        _common.fill_randomly(module, torch_dtype)
        return module.to(device)

    def text_config(name):
        config = {k: v for k, v in shipped_config(name).items() if k != "architectures"}
        return CLIPTextConfig(**{**config, "vocab_size": 514, "bos_token_id": 512, "eos_token_id": 513})

    unet = random_module(HotshotXLUNet, UNetConfig.from_dict(_common.diffusers_config(config_name)))
    if dtype == "fp8":
        from model.files.loading import store_fp8  # the loader's own conversion

        store_fp8(unet)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(shipped_config("vae"))
    vae = vae.to_empty(device="cpu").eval().requires_grad_(False)
    _common.fill_randomly(vae, torch_dtype)
    text = TextEncoders(*byte_level_tokenizers(),
                        random_module(CLIPTextModel, text_config("text_encoder"), meta=False),
                        random_module(CLIPTextModelWithProjection, text_config("text_encoder_2"), meta=False))
    return HotshotXLPipeline(unet, vae.to(device), text, shipped_config("scheduler"), name=config_name)


# --- the driver --------------------------------------------------------------------------------

def run_worker(command: list[str]) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"benchmark worker failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class StepServer:
    """A worker process holding one UNet, running a step whenever asked (see _common.serve_steps)."""

    def __init__(self, command: list[str]):
        self.command = command
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.info = self._read()
        self.runs: list[dict] = []

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.kill()
            raise SystemExit(f"benchmark worker failed: {' '.join(self.command)}\n{self.process.stderr.read()[-3000:]}")
        return json.loads(line)

    def step(self) -> dict:
        self.process.stdin.write("step\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure_unets(servers: dict[str, StepServer], rounds: int, min_clean: int, max_rounds: int,
                  clean_threshold: float = 0.25) -> dict[str, dict]:
    """Alternate steps between the servers, round by round, after one warm-up round.

    A round is clean when, during each of its steps, other processes used under `clean_threshold`
    cores. Rounds continue until `rounds` rounds with `min_clean` clean ones, or `max_rounds`.
    """
    first = {name: server.step() for name, server in servers.items()}  # warm-up: peak counted, time not
    clean_rounds = done = 0
    while done < max_rounds and not (done >= rounds and clean_rounds >= min_clean):
        results = {name: server.step() for name, server in servers.items()}
        for name, result in results.items():
            servers[name].runs.append(result)
        clean_rounds += all(r["others_cores"] < clean_threshold for r in results.values())
        done += 1
    figures = {}
    for name, server in servers.items():
        peak = max([first[name]["peak_rss_mib"]] + [r["peak_rss_mib"] for r in server.runs])
        figures[name] = {**server.info, **_common.summarise(server.runs, clean_threshold),
                         "runs": server.runs, "first_call_s": first[name]["seconds"],
                         "peak_above_weights_mib": peak - server.info["rss_weights_mib"]}
        device_peaks = [r["peak_device_mib"] for r in [first[name], *server.runs] if "peak_device_mib" in r]
        if device_peaks:
            figures[name]["peak_device_mib"] = max(device_peaks)
        server.close()
    return figures


def worker_flags(args) -> list[str]:
    return ["--config", args.config, "--frames", str(args.frames), "--size", str(args.size),
            "--dtype", args.dtype, "--device", args.device] + (["--flops"] if args.flops else [])


def unet_table(args) -> None:
    servers = {"ours": StepServer(
        [sys.executable, __file__, "worker-unet", *worker_flags(args), "--piece-budget", args.piece_budget]
        + (["--channels-last"] if args.channels_last else []) + (["--compile"] if args.compile else []))}
    if args.original:
        servers["original"] = StepServer([args.original_python, str(HERE / "_original_worker.py"),
                                          "--original", args.original, *worker_flags(args)])
    figures = measure_unets(servers, args.runs, args.min_clean, args.max_runs)
    rows = list(figures.items())
    info = _common.machine()
    peak = _common.matmul_peak_gflops() if args.flops and args.device == "cpu" else None
    print(f"machine: {_common.describe(info)}")
    print(f"UNet step with CFG (batch 2): {args.config} config, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.dtype}, {args.device}" + (", steps alternating between the two" if len(rows) == 2 else ""))
    if peak:
        print(f"fp32 matmul peak of this machine (4096x4096 torch.mm, best of 8): {peak:.0f} GFLOP/s")
    header = f"{'':10}{'s/step':>9}{'(clean runs)':>13}{'min s':>8}{'weights MiB':>13}{'peak above weights MiB':>24}"
    if args.flops:
        header += f"{'GFLOP':>9}{'GFLOP/s':>9}" + (f"{'of peak':>9}" if peak else "")
    print(header)
    both_clean = all(r["clean_median_s"] is not None for _, r in rows)
    pick = (lambda r: r["clean_median_s"] if both_clean else r["median_s"])
    for name, r in rows:
        line = (f"{name:10}{pick(r):9.2f}{r['clean_runs']:>7}/{len(r['runs']):<5}{r['min_s']:8.2f}"
                f"{r['weights_mib']:13.0f}{r['peak_above_weights_mib']:24.0f}")
        if args.flops:
            rate = r["flops"] / 1e9 / pick(r)
            line += f"{r['flops'] / 1e9:9.0f}{rate:9.0f}" + (f"{rate / peak:9.2f}" if peak else "")
        print(line)
    if len(rows) == 2:
        (_, a), (_, b) = rows
        ratios = sorted(x["seconds"] / y["seconds"] for x, y in zip(a["runs"], b["runs"]))
        print(f"ours/original: time {pick(a) / pick(b):.2f}x (per round: {', '.join(f'{q:.2f}' for q in ratios)}), "
              f"peak memory above weights {a['peak_above_weights_mib'] / b['peak_above_weights_mib']:.2f}x")


def pipeline_table(args) -> None:
    r = run_worker([sys.executable, __file__, "worker-pipeline", "--config", args.config, "--frames",
                    str(args.frames), "--size", str(args.size), "--dtype", args.dtype, "--device", args.device,
                    "--steps", str(args.steps), "--offload", args.offload])
    print(f"machine: {_common.describe(_common.machine())}")
    print(f"text to video: {args.config} config, {args.frames} frames at {args.size}x{args.size}, "
          f"{args.steps} steps, {args.dtype}, {args.device}, offload {args.offload} "
          f"(loading took {r['load_s']:.1f} s)")
    if args.offload != "none" and args.device == "cpu":
        print("  (offload moves weights to the compute device: with --device cpu they never leave the CPU)")
    print("  weights: " + ", ".join(f"{name} {mib:.1f} MiB" for name, mib in r["weights_mib"].items()))
    for stage, seconds in r["stages_s"].items():
        print(f"  {stage:15}{seconds:9.2f} s")
    print(f"  {'total':15}{sum(r['stages_s'].values()):9.2f} s, peak host memory above the loaded "
          f"pipeline {r['peak_above_loaded_mib']:.0f} MiB"
          + (f", peak device memory {r['peak_device_mib']:.0f} MiB" if "peak_device_mib" in r else ""))


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["unet", "pipeline", "worker-unet", "worker-pipeline"])
    parser.add_argument("--config", choices=["tiny", "mid", "full"], default="mid")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="square frame size in pixels")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="pipeline mode: sampling steps")
    parser.add_argument("--offload", choices=["none", "model", "sequential"], default="none",
                        help="pipeline mode: weights rest on the CPU (see model/offload.py)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (one step of each implementation)")
    parser.add_argument("--min-clean", type=int, default=2, help="rounds wanted with the machine otherwise idle")
    parser.add_argument("--max-runs", type=int, default=6, help="most rounds")
    parser.add_argument("--flops", action="store_true", help="count FLOPs and compare with the matmul peak")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile our UNet")
    parser.add_argument("--piece-budget", default="auto", help="auto, none, or bytes (see model/pieces.py)")
    parser.add_argument("--original", help="checkout of the original Hotshot-XL, to measure it too")
    parser.add_argument("--original-python", default=sys.executable,
                        help="Python of the original's environment (diffusers 0.21.4)")
    args = parser.parse_args()
    if args.mode == "worker-unet":
        our_unet_worker(args)
    elif args.mode == "worker-pipeline":
        print(json.dumps(pipeline_worker(args)))
    elif args.mode == "unet":
        unet_table(args)
    else:
        pipeline_table(args)


if __name__ == "__main__":
    main()
