"""bf16 against fp32 on this CPU, with oneDNN limited to each x86 instruction set in turn.

    python benchmarks/bench_cpu_dtypes.py

The basis of `dtype="auto"` on CPUs (model/memory/precision.py `cpu_bf16_is_fast`). bf16 matmuls and
convolutions run in oneDNN, which picks its kernels by the CPU's instruction sets; `ONEDNN_MAX_CPU_ISA`
caps them, so one CPU with AMX stands in for three kinds of CPU:
- AMX (Sapphire Rapids and later Xeons): `ALL`;
- AVX-512 BF16 without AMX (Cooper Lake, AMD Zen 4/5): `AVX512_CORE_BF16`;
- AVX-512 without BF16 (Skylake-SP to Ice Lake), where oneDNN converts bf16 to fp32 in registers:
  `AVX512_CORE`.
fp32 matmuls go to MKL, which the cap does not touch. Each kind runs in a fresh process (oneDNN reads the
cap once), and prints GFLOP/s (best of `--repeats`) of a large square matmul and of two layers of a
UNet step at 256x256x8 (batch 2 x 8 frames): a 3x3 convolution at 320 channels on 32x32 latents and a
feed-forward Linear (320 -> 2560) over the same positions. The machine is printed; on a shared machine
best-of figures are the ones to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

KINDS = {"AMX": "ALL", "AVX-512 BF16 (no AMX)": "AVX512_CORE_BF16", "AVX-512 (no BF16)": "AVX512_CORE"}


def best_gflops(fn, flops: float, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def worker(repeats: int) -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        n = 2048
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        x = torch.randn(16, 320, 32, 32, dtype=dtype)
        w = torch.randn(320, 320, 3, 3, dtype=dtype) * 0.02
        tokens = torch.randn(16 * 32 * 32, 320, dtype=dtype)
        proj = torch.randn(2560, 320, dtype=dtype) * 0.05
        with torch.no_grad():
            results[name] = {
                "matmul 2048^2": best_gflops(lambda: torch.mm(a, b), 2 * n**3, repeats),
                "conv 3x3 320ch 32x32 x16": best_gflops(lambda: F.conv2d(x, w, padding=1),
                                                        2 * 16 * 32 * 32 * 320 * 320 * 9, repeats),
                "linear 320->2560 x16384": best_gflops(lambda: F.linear(tokens, proj),
                                                       2 * tokens.shape[0] * 320 * 2560, repeats),
            }
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.repeats)
        return

    import _common

    print(f"machine: {_common.describe(_common.machine())}; load average {os.getloadavg()[0]:.1f}")
    for kind, isa in KINDS.items():
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "DNNL_MAX_CPU_ISA": isa}
        done = subprocess.run([sys.executable, __file__, "--worker", "--repeats", str(args.repeats)], env=env,
                              capture_output=True, text=True, check=True)
        results = json.loads(done.stdout.strip().splitlines()[-1])
        cells = [f"{op}: fp32 {results['fp32'][op]:.0f}, bf16 {results['bf16'][op]:.0f} GFLOP/s "
                 f"(bf16/fp32 {results['bf16'][op] / results['fp32'][op]:.2f}x)" for op in results["fp32"]]
        print(f"{kind} [ONEDNN_MAX_CPU_ISA={isa}]: " + "; ".join(cells))
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
