"""Loading alone, ours against ComfyUI's: an SDXL single file plus the temporal layers, inside ComfyUI.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfy-venv/bin/python \\
    python benchmarks/load_vs_comfy.py --checkpoint sd_xl_base_1.0.safetensors \\
        --temporal-layers hsxl_temporal_layers.safetensors --rounds 3

Each load runs in a fresh process of ComfyUI's interpreter that first imports what a running server
has imported (comfy.sd, nodes), then:
- ours: the Hotshot-XL Loader (SDXL checkpoint + temporal layers) node's load, fp32 (the UNet with
  its temporal layers, the VAE, both text encoders);
- ComfyUI: `comfy.sd.load_checkpoint_guess_config` (CheckpointLoaderSimple's call: UNet, CLIP, VAE,
  fp32 on a CPU), then the temporal layers read with `comfy.utils.load_torch_file` and converted to
  fp32, standing in for AnimateDiff-Evolved's motion-model loader (which reads them the same way and
  copies them into fp32 parameters).
After one untimed load of each, the two alternate (ours first in odd rounds, ComfyUI first in even
ones). Printed per load: wall seconds, the process's user and system CPU seconds and minor page faults
during the load, and its peak resident memory (which counts the checkpoint's pages ComfyUI keeps
mapped). Linux only. On a machine whose memory is not much larger than the weights plus the file, most
of a load is page faults: run it with nothing else on the machine, and read the ratio of one run rather
than seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def worker(which: str, checkpoint: str, temporal: str, comfyui: str) -> dict:
    import importlib.util
    import resource
    import time

    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, comfyui)
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.sd  # noqa: F401 (what a running server has imported)
    import comfy.utils
    import nodes  # noqa: F401
    import torch

    if which == "ours":
        spec = importlib.util.spec_from_file_location("hotshot_xl_pack", REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pack
        spec.loader.exec_module(pack)
        from hotshot_xl_pack.nodes.loaders import _load

    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if which == "ours":
        loaded = _load("benchmark", {}, sdxl=checkpoint, temporal_layers=temporal, dtype="fp32")
    else:
        motion = comfy.utils.load_torch_file(temporal)
        loaded = (comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=True, output_clip=True),
                  {key: value.to(torch.float32) for key, value in motion.items()})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    del loaded
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt, "peak_gib": after.ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--checkpoint", required=True, help="an SDXL single-file checkpoint (.safetensors)")
    parser.add_argument("--temporal-layers", required=True, help="the Hotshot-XL temporal layers (.safetensors)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=("ours", "comfy"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        parser.error("set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON to its interpreter)")
    for flag, path in (("--checkpoint", args.checkpoint), ("--temporal-layers", args.temporal_layers)):
        if not Path(path).is_file():
            parser.error(f"{flag}: {path} is not a file")
    if args.rounds < 1:
        parser.error("--rounds: expected 1 or more")
    if args.worker:
        print(json.dumps(worker(args.worker, args.checkpoint, args.temporal_layers, comfyui)))
        return

    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    machine = subprocess.run([python, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import _common; "
                              "print(_common.describe(_common.machine()))"], check=True, capture_output=True,
                             text=True).stdout.strip()
    print(f"machine: {machine}")
    print(f"{Path(args.checkpoint).name} + {Path(args.temporal_layers).name}, fp32, ComfyUI {comfyui}", flush=True)

    def load(which: str) -> dict:
        out = subprocess.run([python, __file__, "--worker", which, "--checkpoint", args.checkpoint,
                              "--temporal-layers", args.temporal_layers], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"the {which} load failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    # Untimed, one of each: the first large load after a while idle pays for the machine's memory
    # (on a virtual machine the host may have taken free pages back) and would favour the second.
    for which in ("ours", "comfy"):
        load(which)
    results = {"ours": [], "comfy": []}
    for round_number in range(1, args.rounds + 1):
        for which in (("ours", "comfy") if round_number % 2 else ("comfy", "ours")):
            result = load(which)
            results[which].append(result)
            print(f"round {round_number}, {which}: {result['wall']:.1f} s wall, {result['user']:.1f} user + "
                  f"{result['sys']:.1f} system CPU-s, {result['faults']:,} page faults, "
                  f"peak {result['peak_gib']:.1f} GiB", flush=True)
    print("\n| load (fp32) | wall, median | fastest | system CPU-s, median | peak resident |")
    print("| --- | --- | --- | --- | --- |")
    for which, label in (("ours", "ours (Hotshot-XL Loader)"), ("comfy", "ComfyUI (checkpoint + motion file)")):
        runs = results[which]
        print(f"| {label} | {statistics.median(r['wall'] for r in runs):.1f} s | {min(r['wall'] for r in runs):.1f} s "
              f"| {statistics.median(r['sys'] for r in runs):.1f} | {max(r['peak_gib'] for r in runs):.1f} GiB |")
    ratio = (statistics.median(r["wall"] for r in results["ours"])
             / statistics.median(r["wall"] for r in results["comfy"]))
    print(f"\nours / ComfyUI: {ratio:.2f}x the wall time (medians)")


if __name__ == "__main__":
    main()
