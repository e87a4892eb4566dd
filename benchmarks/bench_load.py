"""Peak host memory of loading the UNet, against the size of the weights it loads.

    python benchmarks/bench_load.py --config full --file-dtype fp16 --dtype bf16

Writes a synthetic model folder in the released layout (random weights, `--workdir`, reused across
runs), then loads it with `load_unet` in a fresh process and reports, from /proc/self/status:
- peak anonymous memory (RssAnon, sampled every 5 ms) above what the process held before loading:
  the memory the load itself needs;
- peak resident memory (VmHWM), which also counts the file's pages while safetensors maps them
  (page cache, given back under memory pressure).
Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import torch

    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def unet_config(name: str):
    from model.network.config import UNetConfig

    fixtures = REPO.parent / "shared" / "fixtures"
    if name == "tiny":
        return UNetConfig.from_file(fixtures / "hotshot-xl-tiny" / "unet" / "config.json")
    full = UNetConfig.from_file(REPO / "model" / "configs" / "unet.json")
    return full if name == "full" else full.with_changes(transformer_layers_per_block=(1, 1, 1))


def write_folder(config_name: str, file_dtype: str, workdir: Path) -> Path:
    """A model folder with random weights in `file_dtype`; reused when it already exists."""
    import torch
    from safetensors.torch import save_file

    from model.network.unet import HotshotXLUNet

    folder = workdir / f"{config_name}-{file_dtype}"
    unet_dir = folder / "unet"
    name = "diffusion_pytorch_model.fp16.safetensors" if file_dtype == "fp16" else "diffusion_pytorch_model.safetensors"
    if (unet_dir / name).is_file():
        return folder
    unet_dir.mkdir(parents=True, exist_ok=True)
    config = unet_config(config_name)
    dtype = torch.float16 if file_dtype == "fp16" else torch.float32
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in HotshotXLUNet(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    weights = {k: (torch.randn(s, generator=generator) * 0.02).to(dtype) for k, s in shapes.items()}
    save_file(weights, unet_dir / name)
    diffusers_config = config.to_diffusers_dict()  # 2D block names: the release's are 3D
    for key in ("down_block_types", "up_block_types"):
        diffusers_config[key] = [name.replace("2D", "3D") for name in diffusers_config[key]]
    (unet_dir / "config.json").write_text(json.dumps(diffusers_config, indent=1))
    return folder


def measure(folder: Path, dtype: str) -> dict:
    """Runs in the child process: load once, report memory in MiB."""
    import torch

    from model.files.loading import load_unet

    peak_anon = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], status_kib("RssAnon"))
            time.sleep(0.005)

    before_anon = status_kib("RssAnon")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    unet = load_unet(folder, dtype=dtype, device="cpu")
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    weights = sum(t.numel() * t.element_size() for t in unet.state_dict().values())
    mib = 1024 * 1024
    return {"weights_mib": weights / mib, "peak_anon_above_start_mib": (peak_anon[0] - before_anon) / 1024,
            "vm_hwm_mib": status_kib("VmHWM") / 1024, "seconds": seconds,
            "params": sum(t.numel() for t in unet.parameters()), "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["tiny", "mid", "full"], default="full")
    parser.add_argument("--file-dtype", choices=["fp16", "fp32"], default="fp16")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hotshot-xl-bench"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.dtype)))
        return
    # Write the folder in its own process, so the measured process starts clean.
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                    f"from benchmarks.bench_load import write_folder; from pathlib import Path; "
                    f"write_folder({args.config!r}, {args.file_dtype!r}, Path({str(args.workdir)!r}))"],
                   check=True, cwd=REPO)
    folder = args.workdir / f"{args.config}-{args.file_dtype}"
    result = subprocess.run([sys.executable, __file__, "--child", str(folder), "--dtype", args.dtype],
                            check=True, capture_output=True, text=True, cwd=REPO)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"machine: {machine()}")
    print(f"load_unet({args.config} config, {figures['params'] / 1e9:.2f} B params, "
          f"{args.file_dtype} file -> {args.dtype}):")
    print(f"  weights in memory           {figures['weights_mib']:9.0f} MiB")
    print(f"  peak anonymous memory added {figures['peak_anon_above_start_mib']:9.0f} MiB "
          f"({figures['peak_anon_above_start_mib'] / figures['weights_mib']:.2f}x the weights)")
    print(f"  peak resident (VmHWM)       {figures['vm_hwm_mib']:9.0f} MiB (includes mapped file pages)")
    print(f"  time                        {figures['seconds']:9.1f} s")


if __name__ == "__main__":
    main()
