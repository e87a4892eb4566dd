"""What the ComfyUI benchmarks (bench_vs_ade.py, prove_full_native.py) share: the text-to-video graphs they
queue, the pack's and core's, and reading a server process's CPU time and memory from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

PROMPT, NEGATIVE = "a corgi running on a beach, hd, high quality", "blurry"


def pack_graph(checkpoint: str, temporal: str, dtype: str, steps: int, seed: int, size: int, frames: int,
               cfg: float, output: dict) -> dict:
    """Hotshot-XL Loader (SDXL checkpoint + temporal layers) -> Text Encode -> Sampler (euler_a) at node "3",
    then `output`: nodes that read the sampler's LATENT as ["3", 0]."""
    model = ["1", 0]
    return {
        "1": {"class_type": "HotshotXLCheckpointLoader",
              "inputs": {"ckpt_name": checkpoint, "temporal_layers": temporal, "dtype": dtype}},
        "2": {"class_type": "HotshotXLTextEncode",
              "inputs": {"model": model, "prompt": PROMPT, "negative_prompt": NEGATIVE, "original_width": 1920,
                         "original_height": 1080, "target_width": size, "target_height": size}},
        "3": {"class_type": "HotshotXLSampler",
              "inputs": {"model": model, "conditioning": ["2", 0], "seed": seed, "steps": steps, "cfg": cfg,
                         "scheduler": "euler_a", "frames": frames, "width": size, "height": size}},
        **output,
    }


def core_graph(checkpoint: str, motion: dict, steps: int, seed: int, size: int, frames: int, cfg: float,
               output: dict) -> dict:
    """CheckpointLoaderSimple -> `motion` (a node taking its MODEL as ["1", 0]) at node "2" -> KSampler
    (euler_ancestral, normal) on `frames` latents at node "6", then `output` (reading ["6", 0])."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": motion,
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": PROMPT}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": NEGATIVE}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": frames}},
        "6": {"class_type": "KSampler",
              "inputs": {"model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0],
                         "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler_ancestral",
                         "scheduler": "normal", "denoise": 1.0}},
        **output,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def status_mib(pid: int, field: str) -> float:
    """A memory field of /proc/<pid>/status (VmHWM, VmRSS, RssAnon, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
