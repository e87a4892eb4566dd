"""Command line: `python -m model.train --model FOLDER --data CLIPS --output motion.safetensors`.

Every flag is checked before anything heavy is imported or loaded; errors are one line naming the
flag or file, with a non-zero exit. Under `torchrun --nproc-per-node N` it trains data-parallel.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..choices import SAVE_DTYPES, TRAIN_DTYPES
from ..errors import HotshotError, InputError, ModelFileError

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="Hotshot-XL model folder (hotshotco/Hotshot-XL layout)")
    model.add_argument("--temporal-layers", help="hsxl_temporal_layers*.safetensors to start from, with --sdxl")
    model.add_argument("--sdxl", help="SDXL checkpoint (single file or diffusers folder): the frozen spatial "
                       "weights, VAE and text encoders")
    model.add_argument("--tokenizer", help="folder with tokenizer/ and tokenizer_2/ (single files carry none)")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (under torchrun: each rank's GPU)")
    model.add_argument("--dtype", default="auto", choices=TRAIN_DTYPES,
                       help="compute precision; bf16 keeps float32 copies of the trained weights; auto: bf16 on "
                       "GPUs that have it, else fp32")

    data = parser.add_argument_group("data")
    data.add_argument("--data", help="folder of clips: videos (.mp4 .webm .mov .gif) each with a "
                      "same-name .txt caption, or sub-folders of frames with prompt.txt")
    data.add_argument("--dataset-config", help="TOML or JSON file listing clip folders with their own repeats, "
                      "caption prefix (trigger word) and caption dropout, instead of --data (see README)")
    data.add_argument("--frames", type=int, default=8, help="frames per training clip")
    data.add_argument("--fps", type=float, default=8.0, help="frame rate the clips are sampled at")
    data.add_argument("--width", type=int, help="train at this size (with --height); default: each clip in the "
                      "release's nearest aspect bucket")
    data.add_argument("--height", type=int)
    data.add_argument("--caption-missing", action="store_true",
                      help="caption clips that have no caption with --captioner first (existing captions are kept)")
    data.add_argument("--captioner", help="local vision-language model folder for --caption-missing (BLIP)")
    data.add_argument("--cache-latents", action="store_true",
                      help="keep each clip's VAE encoding in memory: epochs after the first skip the VAE")
    data.add_argument("--cache-text", action="store_true",
                      help="keep each caption's text embeddings: epochs after the first skip the text encoders")
    data.add_argument("--cache-dir", help="folder of encoded clips and captions (sharded safetensors keyed by "
                      "content and encoder): written once, shared by ranks and later runs; training streams from "
                      "it with bounded memory (--cache-latents/--cache-text are then not needed)")

    train = parser.add_argument_group("training")
    train.add_argument("--output", help="the trained file (.safetensors): the temporal layers "
                       "in the released layout, or with --lora-rank a motion LoRA")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    train.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    train.add_argument("--batch-size", type=int, default=1, help="clips per step (per GPU under torchrun)")
    train.add_argument("--grad-accum", type=int, default=1, help="micro-batches accumulated per step")
    train.add_argument("--lr", type=float, default=1e-5, help="learning rate (the original: 5e-6)")
    train.add_argument("--lr-scheduler", default="constant", choices=LR_SCHEDULERS)
    train.add_argument("--warmup-steps", type=int, default=0)
    train.add_argument("--optimizer", default="auto", choices=["auto", "adamw", "adamw8bit"],
                       help="auto: bitsandbytes' 8-bit AdamW on CUDA when it is installed, else AdamW")
    train.add_argument("--weight-decay", type=float, default=1e-2)
    train.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the gradient norm; 0: off")
    train.add_argument("--seed", type=int, default=111)
    train.add_argument("--noise-offset", type=float, default=0.05, help="offset noise scale (the original's 0.05)")
    train.add_argument("--snr-gamma", type=float, help="Min-SNR loss weighting with this gamma (5 is usual)")
    train.add_argument("--lora-rank", type=int, help="train a motion LoRA of this rank instead of the layers")
    train.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: the rank, i.e. scale 1)")
    train.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute each UNet block in the backward pass: much less memory, ~30%% slower")
    train.add_argument("--save-dtype", default="fp32", choices=SAVE_DTYPES,
                       help="precision of the written temporal layers (a LoRA is always float32)")

    runs = parser.add_argument_group("long runs")
    runs.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: never)")
    runs.add_argument("--checkpoint-dir", help="where checkpoints and validation videos go (default: "
                      "OUTPUT's name + .checkpoints beside it)")
    runs.add_argument("--keep-checkpoints", type=int, default=3, help="newest checkpoints kept (0: all)")
    runs.add_argument("--resume", nargs="?", const=True, default=False, metavar="auto",
                      help="continue from the newest complete checkpoint (an error if there is none); "
                      "--resume auto: from the newest if there is one, else from step 0")
    runs.add_argument("--validate-every", type=int, default=0, help="write a validation video every N steps")
    runs.add_argument("--validation-prompt", help="prompt of the validation videos")
    runs.add_argument("--validation-steps", type=int, default=20, help="sampling steps of a validation video")
    runs.add_argument("--no-progress", action="store_true", help="no progress bar")
    runs.add_argument("--log-dir", help="where the training log goes: metrics.csv and TensorBoard event files "
                      "(default: the checkpoint folder)")
    runs.add_argument("--log-every", type=int, default=1, help="log every N steps (0: no log)")
    parser.add_argument("--inspect", metavar="FILE", help="print the training settings stored in a trained file "
                        "or checkpoint, and exit (no other flag needed)")


def _positive(name: str, value, allow_zero: bool = False) -> None:
    ok = value is not None and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InputError(name, f"must be {'zero or more' if allow_zero else 'positive'}, got {value!r}")


def options_from_args(args):
    """TrainOptions from parsed flags, every flag checked (no file is read, nothing imported)."""
    if (args.data is None) == (args.dataset_config is None):
        raise InputError("--data", "give a folder of clips with --data, or a --dataset-config file (not both)")
    if args.output is None:
        raise InputError("--output", "give the file to write (.safetensors)")
    if args.resume not in (False, True, "auto"):
        raise InputError("--resume", f"takes no value, or `auto`; got {args.resume!r}")
    if args.log_every < 0:
        raise InputError("--log-every", f"must be zero or more, got {args.log_every}")
    if args.cache_dir is not None and Path(args.cache_dir).exists() and not Path(args.cache_dir).is_dir():
        raise InputError("--cache-dir", f"{args.cache_dir} is a file, expected a folder")
    if args.log_dir is not None and Path(args.log_dir).exists() and not Path(args.log_dir).is_dir():
        raise InputError("--log-dir", f"{args.log_dir} is a file, expected a folder")
    from .dataset_config import Folder, read_dataset_config

    folders = read_dataset_config(args.dataset_config) if args.dataset_config else [Folder(args.data)]
    if args.model is None and (args.temporal_layers is None or args.sdxl is None):
        raise InputError("--model", "give a Hotshot-XL model folder, or --temporal-layers with --sdxl")
    for flag in ("model", "temporal_layers", "sdxl", "tokenizer", "captioner"):
        value = getattr(args, flag)
        if value is not None and not Path(value).expanduser().exists():
            raise ModelFileError(value, f"not found (--{flag.replace('_', '-')})")
    output = Path(args.output).expanduser()
    if output.suffix.lower() != ".safetensors":
        raise InputError("--output", f"must be a .safetensors file, got {output}")
    if not output.parent.is_dir():
        raise InputError("--output", f"folder {output.parent} does not exist")
    if output.exists() and not args.overwrite:
        raise InputError("--output", f"{output} exists; pass --overwrite to replace it")
    for name in ("steps", "batch_size", "grad_accum", "frames"):
        value = getattr(args, name)
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')}", f"must be a positive whole number, got {value}")
    if args.frames > 24:
        raise InputError("--frames", f"the temporal layers hold 24 positions, got {args.frames}")
    for name in ("fps", "lr"):
        _positive(f"--{name}", getattr(args, name))
    for name in ("noise_offset", "max_grad_norm", "weight_decay"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name), allow_zero=True)
    for name in ("warmup_steps", "save_every", "validate_every", "keep_checkpoints"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')}", f"must be zero or more, got {getattr(args, name)}")
    if args.validation_steps < 1:
        raise InputError("--validation-steps", f"must be positive, got {args.validation_steps}")
    if args.snr_gamma is not None:
        _positive("--snr-gamma", args.snr_gamma)
    if args.lora_rank is not None and args.lora_rank < 1:
        raise InputError("--lora-rank", f"must be a positive whole number, got {args.lora_rank}")
    if args.lora_alpha is not None:
        if args.lora_rank is None:
            raise InputError("--lora-alpha", "only applies with --lora-rank")
        _positive("--lora-alpha", args.lora_alpha)
    if (args.width is None) != (args.height is None):
        raise InputError("--width" if args.width is None else "--height", "give --width and --height together")
    for name in ("width", "height"):
        value = getattr(args, name)
        if value is not None and (value < 8 or value % 8):
            raise InputError(f"--{name}", f"must be a positive multiple of 8, got {value}")
    if args.validate_every and not args.validation_prompt:
        raise InputError("--validate-every", "needs --validation-prompt")
    if args.caption_missing and not args.captioner:
        raise InputError("--caption-missing", "needs --captioner FOLDER (a local BLIP model)")
    checkpoint_dir = args.checkpoint_dir or str(output.with_name(output.stem + ".checkpoints"))
    if Path(checkpoint_dir).exists() and not Path(checkpoint_dir).is_dir():
        raise InputError("--checkpoint-dir", f"{checkpoint_dir} is a file, expected a folder")

    from .trainer import TrainOptions

    return TrainOptions(
        model=args.model, temporal_layers=args.temporal_layers, sdxl=args.sdxl, tokenizer=args.tokenizer,
        data=args.data or args.dataset_config, folders=folders, dataset_config=args.dataset_config,
        output=str(output), log_dir=args.log_dir or checkpoint_dir, log_every=args.log_every,
        cache_dir=args.cache_dir, steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        lr=args.lr, lr_scheduler=args.lr_scheduler, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
        optimizer=args.optimizer, max_grad_norm=args.max_grad_norm, seed=args.seed, frames=args.frames, fps=args.fps,
        width=args.width, height=args.height, device=args.device, dtype=args.dtype, noise_offset=args.noise_offset,
        snr_gamma=args.snr_gamma, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        gradient_checkpointing=args.gradient_checkpointing, cache_latents=args.cache_latents,
        cache_text=args.cache_text, save_every=args.save_every, checkpoint_dir=checkpoint_dir,
        keep_checkpoints=args.keep_checkpoints, resume=args.resume, validate_every=args.validate_every,
        validation_prompt=args.validation_prompt, validation_steps=args.validation_steps, save_dtype=args.save_dtype,
        overwrite=args.overwrite, caption_missing=args.caption_missing, captioner=args.captioner,
        progress=not args.no_progress)


# How the user started us: the module in a checkout, or the installed console script.
PROG = "python -m model.train" if __package__ == "model.train" else "hotshot-xl-train"


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: --fram 3 is an error, not --frames 3
    parser = argparse.ArgumentParser(prog=PROG, description="Fine-tune Hotshot-XL's temporal "
                                     "layers (or a motion LoRA) on a folder of clips.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    add_train_arguments(parser)
    return parser


def prepare_clips(options, log):
    """Sources found, captions checked (or written), clips cut, each folder's repeats, caption prefix
    and dropout applied: a list of Clip, or an InputError."""
    from dataclasses import replace

    from ..pipeline import ASPECT_BUCKETS
    from ..media.clips import empty_captions, find_sources, missing_captions, plural
    from .data import scan

    flag = "--dataset-config" if options.dataset_config else "--data"
    sources = [(folder, find_sources(folder.path, flag)) for folder in options.folders]
    every = [source for _, found in sources for source in found]
    missing = missing_captions(every)
    if missing and not options.caption_missing:
        names = ", ".join(str(s.caption_file) for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        verb = "has" if len(missing) == 1 else "have"
        raise InputError(flag, f"{plural(len(missing), 'clip')} {verb} no caption: {names}; write them, or pass "
                         "--caption-missing --captioner FOLDER")
    empty = empty_captions(every)
    if empty:
        log(f"{plural(len(empty), 'clip')} with an empty caption (trained unconditionally): "
            + ", ".join(str(s.caption_file) for s in empty[:5]) + (" ..." if len(empty) > 5 else ""))
    if missing:
        from ..caption.captioner import caption_sources, check_captioner
        from .trainer import distributed

        from ..memory.precision import resolve_device

        check_captioner(options.captioner)
        rank, world, _ = distributed(resolve_device(options.device))  # the backend the trainer needs
        if rank == 0:
            caption_sources(missing, options.captioner, device=options.device, log=log)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    buckets = [(options.width, options.height)] if options.width else ASPECT_BUCKETS
    clips = []
    for folder, found_sources in sources:
        found = scan(found_sources, options.frames, options.fps, [folder.size] if folder.size else buckets)
        if found.too_short:
            log(f"{plural(len(found.too_short), 'clip')} shorter than {options.frames} frames at {options.fps:g} "
                "fps, skipped: " + ", ".join(str(p) for p in found.too_short))
        for path, why in found.unreadable:
            log(f"unreadable, skipped: {path} ({why})")
        cut = [replace(clip, caption=folder.caption(clip.caption), caption_dropout=folder.caption_dropout)
               for clip in found.clips]
        clips.extend(cut * folder.repeats)
    if not clips:
        where = options.data if len(options.folders) == 1 else ", ".join(f.path for f in options.folders)
        raise InputError(flag, f"no usable clip in {where}: every clip is shorter than "
                         f"{options.frames} frames at {options.fps:g} fps or unreadable")
    return clips


def write_output(state, metadata, output: Path, overwrite: bool) -> None:
    import os

    from safetensors.torch import save_file

    if output.exists() and not overwrite:
        raise InputError("--output", f"{output} appeared during training; pass --overwrite to replace it")
    temporary = output.with_name(f".{output.name}.partial")
    save_file(state, temporary, metadata=metadata)
    os.replace(temporary, output)


def checkpoint_to_resume(options):
    """The checkpoint `--resume` continues from; None to start at step 0 (no --resume, or --resume
    auto with none there). --resume without one is an error: a mistyped --output or --checkpoint-dir
    must not silently restart a long run."""
    from .checkpoint import newest

    if not options.resume:
        return None
    found = newest(Path(options.checkpoint_dir))
    if found is None and options.resume != "auto":
        raise InputError("--resume", f"no complete checkpoint in {options.checkpoint_dir} (check --output and "
                         "--checkpoint-dir; --resume auto starts from step 0 when there is none)")
    return found


def run(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--inspect" or a.startswith("--inspect=") for a in argv):
        from .provenance import inspect_main

        return inspect_main(argv)
    args = build_parser().parse_args(argv)

    def log(message):
        print(message, file=sys.stderr)

    try:
        options = options_from_args(args)
        found = checkpoint_to_resume(options)
        clips = prepare_clips(options, log)
        from ..media.clips import plural
        from .trainer import Trainer

        trainer = Trainer(options, clips, log)
        if options.resume and found is None:
            log(f"--resume auto: no complete checkpoint in {options.checkpoint_dir}; starting from step 0")
        elif found is not None:
            trainer.restore(found)
            log(f"resumed from {found} (step {trainer.step} of {options.steps})")
        if trainer.rank == 0:
            log(f"training on {plural(len(clips), 'clip')}, {trainer.world} process(es), global batch "
                f"{trainer.global_batch * options.grad_accum}, {trainer.dtype} on {trainer.device}")
        loss = trainer.fit()
        if trainer.rank == 0:
            state, metadata = trainer.output_state()
            write_output(state, metadata, Path(options.output), options.overwrite)
            print(f"wrote {options.output}: {len(state)} tensors after {options.steps} steps"
                  + (f", last loss {loss:.4f}" if loss is not None else ""))
    except HotshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; --resume continues from it", file=sys.stderr)
        return 130
    finally:
        if "torch.distributed" in sys.modules:  # under torchrun: leave the process group cleanly
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return 0


def main() -> None:
    sys.exit(run())
