"""How a trained file was made, in its safetensors metadata, and `python -m model.train --inspect FILE`.

The keys follow kohya sd-scripts' `ss_*` names where one exists (ss_learning_rate, ss_network_dim,
ss_max_train_steps, ...), so tools that show LoRA metadata show ours; the rest say Hotshot's own
settings (frames, fps, the clip folders). Metadata values are strings; lists and tables are JSON.

Base model files are identified by a fast hash: SHA-256 over the file's size and three 1 MiB
samples (its start, middle and end), whole files up to 3 MiB. It tells released files apart
instantly, not a full-file checksum (a change confined elsewhere in a large file goes unseen).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HASH_METHOD = "sha256 of the size and three 1 MiB samples (start, middle, end); whole file up to 3 MiB"
SAMPLE = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
TRAINER = "hotshot-xl model.train"


def fast_hash(path) -> str:
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= 3 * SAMPLE:
            digest.update(handle.read())
        else:
            for offset in (0, (size - SAMPLE) // 2, size - SAMPLE):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE))
    return digest.hexdigest()


def weight_files(path) -> list[dict]:
    """[{file, bytes, hash}] for a weights file, or for every weights file under a model folder."""
    root = Path(path).expanduser().resolve()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                 and p.suffix.lower() in WEIGHT_SUFFIXES)
    return [{"file": str(p), "bytes": p.stat().st_size, "hash": fast_hash(p)} for p in files]


def trainer_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("comfyui-hotshot-xl")
    except (ImportError, PackageNotFoundError):
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # a checkout: model/train/ -> repo root
    try:
        import tomllib

        return tomllib.loads(pyproject.read_text())["project"]["version"]
    except (OSError, ValueError, KeyError, ImportError):
        return "unknown"


def run_settings(options, clips, optimizer: str, dtype, world: int) -> dict[str, str]:
    """The metadata of every file a run writes, less the step (see `at_step`). Hashes the base files."""
    from collections import Counter

    per_folder = Counter(str(Path(c.source.path).resolve().parent) for c in clips)
    folders = [{"path": str(Path(f.path).expanduser().resolve()), "repeats": f.repeats, "prefix": f.prefix,
                "caption_dropout": f.caption_dropout, "size": list(f.size) if f.size else None,
                "clips": per_folder.get(str(Path(f.path).expanduser().resolve()), 0) // f.repeats}
               for f in options.folders]
    base = {name: str(Path(value).expanduser().resolve()) for name, value in
            (("model", options.model), ("temporal_layers", options.temporal_layers), ("sdxl", options.sdxl)) if value}
    files = [entry for value in base.values() for entry in weight_files(value)]
    lora = options.lora_rank is not None
    settings = {
        "ss_trainer": TRAINER, "ss_trainer_version": trainer_version(),
        "ss_output": "motion lora" if lora else "temporal layers",
        "ss_base_model": json.dumps(base), "ss_base_model_files": json.dumps(files), "ss_hash_method": HASH_METHOD,
        "ss_dataset_dirs": json.dumps(folders), "ss_dataset_config": options.dataset_config or "",
        "ss_num_train_clips": str(len(clips)), "ss_max_train_steps": str(options.steps),
        "ss_learning_rate": repr(options.lr), "ss_lr_scheduler": options.lr_scheduler,
        "ss_lr_warmup_steps": str(options.warmup_steps), "ss_optimizer": optimizer,
        "ss_weight_decay": repr(options.weight_decay), "ss_max_grad_norm": repr(options.max_grad_norm),
        "ss_batch_size_per_device": str(options.batch_size), "ss_num_processes": str(world),
        "ss_gradient_accumulation_steps": str(options.grad_accum),
        "ss_total_batch_size": str(options.batch_size * world * options.grad_accum),
        "ss_mixed_precision": str(dtype).replace("torch.", ""), "ss_save_precision": "fp32" if lora
        else options.save_dtype, "ss_seed": str(options.seed), "ss_frames": str(options.frames),
        "ss_fps": repr(options.fps),
        "ss_resolution": f"{options.width}x{options.height}" if options.width else "aspect buckets",
        "ss_noise_offset": repr(options.noise_offset), "ss_snr_gamma": repr(options.snr_gamma),
        "ss_gradient_checkpointing": str(options.gradient_checkpointing),
    }
    if lora:
        settings["ss_network_dim"] = str(options.lora_rank)
        settings["ss_network_alpha"] = repr(float(options.lora_alpha if options.lora_alpha is not None
                                                  else options.lora_rank))
    return settings


def at_step(settings: dict[str, str], step: int) -> dict[str, str]:
    from datetime import datetime, timezone

    return {**settings, "ss_steps": str(step), "ss_saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def read_metadata(file) -> dict[str, str]:
    """A safetensors file's metadata; a checkpoint folder's trained.safetensors'. ModelFileError if unreadable."""
    from safetensors import safe_open

    from ..errors import ModelFileError

    path = Path(file).expanduser()
    if path.is_dir():
        path = path / "trained.safetensors"
    if not path.is_file():
        raise ModelFileError(path, "not found (--inspect: a trained .safetensors file or a checkpoint folder)")
    try:
        with safe_open(str(path), "pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ModelFileError(path, f"not a readable safetensors file ({error})") from None


def describe(metadata: dict[str, str]) -> str:
    """One line per key, JSON values spelled out, base files one per line."""
    if not any(k.startswith("ss_") for k in metadata):
        return "\n".join([f"{k}: {v}" for k, v in sorted(metadata.items())]
                         + ["(no training settings: not written by this trainer, or by an older one)"])
    lines = []
    for key in sorted(metadata):
        value = metadata[key]
        try:
            parsed = json.loads(value) if value[:1] in "[{" else None
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(p, dict) for p in parsed):
            lines.append(f"{key}:")
            lines.extend("  " + ", ".join(f"{k}={v}" for k, v in item.items()) for item in parsed)
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def inspect_main(argv) -> int:
    import argparse

    from ..errors import HotshotError

    command = "python -m model.train" if __package__ == "model.train" else "hotshot-xl-train"  # as cli.PROG
    parser = argparse.ArgumentParser(prog=f"{command} --inspect", allow_abbrev=False)
    parser.add_argument("--inspect", required=True, metavar="FILE")
    args, _ = parser.parse_known_args(argv)
    try:
        print(describe(read_metadata(args.inspect)))
    except HotshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
