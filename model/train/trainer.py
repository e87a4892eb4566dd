"""The training loop: temporal layers (or a motion LoRA) of a frozen SDXL, on clips from a folder.

Determinism: the batches of step s come from a permutation seeded by (seed, epoch) and each clip's
noise, timestep and latent sample from a generator seeded by (seed, micro-batch, position in the
global batch). So resuming at step s repeats an unbroken run exactly (CPU, fp32: bit for bit), and
R ranks of batch b see what one rank of batch R*b sees: DDP's gradient average over ranks equals
the single rank's mean over its batch.

Precision: "bf16" computes the whole UNet in bfloat16 and keeps float32 master copies of the
trained parameters; gradients are accumulated, clipped and applied in float32 and the result is
copied back into the bfloat16 module. "fp32" trains in float32 throughout.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InputError, ModelFileError
from ..files.loading import is_temporal_key
from ..memory.precision import resolve_dtype, training_dtype
from . import checkpoint as checkpoints
from .data import Clip, epoch_batches, load_clip
from ..network.unet import set_gradient_checkpointing
from .logs import Smoothed, TrainingLog
from .lora import MotionLoRA
from .objective import Objective
from .provenance import at_step, run_settings


@dataclass
class TrainOptions:
    """Everything a run needs; the CLI fills it from its flags (see cli.py for their meaning)."""

    model: str | None = None
    temporal_layers: str | None = None
    sdxl: str | None = None
    tokenizer: str | None = None
    data: str = ""  # --data, or the --dataset-config file
    folders: list = None  # dataset_config.Folder per clip folder (default: --data alone)
    dataset_config: str | None = None
    output: str = ""
    log_dir: str | None = None  # metrics.csv and TensorBoard events; None: no log
    log_every: int = 1
    cache_dir: str | None = None
    steps: int = 100
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-5
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    optimizer: str = "auto"  # auto: 8-bit AdamW when bitsandbytes is importable on CUDA, else AdamW
    max_grad_norm: float = 1.0
    seed: int = 111
    frames: int = 8
    fps: float = 8.0
    width: int | None = None
    height: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    noise_offset: float = 0.05
    snr_gamma: float | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    gradient_checkpointing: bool = False
    cache_latents: bool = False
    cache_text: bool = False
    save_every: int = 0
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 3
    resume: bool | str = False  # True, or "auto": only if there is a checkpoint
    validate_every: int = 0
    validation_prompt: str | None = None
    validation_steps: int = 20
    save_dtype: str = "fp32"
    overwrite: bool = False
    caption_missing: bool = False
    captioner: str | None = None
    progress: bool = True

    def __post_init__(self):
        if self.folders is None:
            from .dataset_config import Folder

            self.folders = [Folder(self.data)]


def distributed(device: torch.device | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank): under torchrun (WORLD_SIZE > 1) the process group is joined
    through distributed/group.py's `join` (nccl on CUDA, gloo on CPU; with its collective timeout), as
    sampling joins it; else (0, 1, 0)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 or (dist.is_available() and dist.is_initialized()):
        from ..distributed.group import join

        ranks = join(backend="nccl" if device is not None and device.type == "cuda" else "gloo", device=device)
        return ranks.rank, ranks.size, int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _clip_generator(seed: int, micro_batch: int, position: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_batch) * 10_007 + position)


class Trainer:
    def __init__(self, options: TrainOptions, clips: list[Clip], log=print):
        from ..pipeline import load_pipeline
        from ..memory.precision import resolve_device

        self.options, self.clips, self.log = options, clips, log
        device = resolve_device(options.device)
        self.rank, self.world, local_rank = distributed(device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.dtype = self._compute_dtype(options.dtype, device)

        self.pipe = load_pipeline(options.model, temporal_layers=options.temporal_layers, sdxl=options.sdxl,
                                  tokenizer=options.tokenizer, dtype=self.dtype, device=device)
        unet = self.unet = self.pipe.unet
        unet.requires_grad_(False)
        self.pipe.vae.requires_grad_(False)
        if options.lora_rank:
            torch.manual_seed(options.seed)  # the adapters' initial A
            self.lora = MotionLoRA(unet, options.lora_rank, options.lora_alpha).to(device, self.dtype)
            named = {f"{name}.{key}": p for name, adapter in zip(self.lora.names, self.lora.adapters)
                     for key, p in adapter.named_parameters()}
        else:
            self.lora = None
            named = {name: p for name, p in unet.named_parameters() if is_temporal_key(name)}
        for p in named.values():
            p.requires_grad_(True)
        self.params = named  # the module's (compute-dtype) trained parameters
        # float32 masters in bf16 (the optimizer's view), the parameters themselves in fp32
        self.masters = ({n: p.detach().float().clone().requires_grad_(True) for n, p in named.items()}
                        if self.dtype != torch.float32 else named)
        set_gradient_checkpointing(unet, options.gradient_checkpointing)
        unet.train()

        self.model = _Wrapped(unet, self.lora)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda" else None)
        self.objective = Objective(self.pipe.scheduler_config, options.noise_offset, options.snr_gamma)
        self.optimizer = self._optimizer()
        from diffusers.optimization import get_scheduler

        self.schedule = get_scheduler(options.lr_scheduler, optimizer=self.optimizer,
                                      num_warmup_steps=options.warmup_steps, num_training_steps=options.steps)
        self.scaling = self.pipe.vae.config.scaling_factor
        self.latent_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.step = 0
        self.global_batch = options.batch_size * self.world
        self.smoothed = Smoothed()
        self.last_grad_norm = float("nan")
        # what every written file records of this run (rank 0 writes them; the base files hashed once)
        self.provenance = (run_settings(options, clips, type(self.optimizer).__name__, self.dtype, self.world)
                           if self.rank == 0 else {})
        self.store = None  # --cache-dir: encodings streamed from disk (cache.py)
        if options.cache_dir:
            from .cache import EncodingStore

            self.store = EncodingStore.prepare(self)
        self.epoch_length = len(epoch_batches(clips, self.global_batch, options.seed, 0))

    @staticmethod
    def _compute_dtype(name: str, device: torch.device) -> torch.dtype:
        return training_dtype(name, device, "--dtype")  # the one dtype policy, memory/precision.py

    def _optimizer(self):
        o = self.options
        params = list(self.masters.values())
        kwargs = dict(lr=o.lr, betas=tuple(o.adam_betas), eps=o.adam_eps, weight_decay=o.weight_decay)
        if o.optimizer in ("auto", "adamw8bit") and self.device.type == "cuda":
            try:
                import bitsandbytes

                return bitsandbytes.optim.AdamW8bit(params, **kwargs)
            except ImportError:
                if o.optimizer == "adamw8bit":
                    raise InputError("--optimizer", "adamw8bit needs bitsandbytes (pip install bitsandbytes)")
        return torch.optim.AdamW(params, **kwargs)

    # -- identity of a run, for checkpoints --------------------------------------------------------
    def run_identity(self) -> dict:
        o = self.options
        shapes = sorted((n, list(p.shape)) for n, p in self.params.items())
        return {"model": [str(Path(p).resolve()) for p in (o.model, o.temporal_layers, o.sdxl) if p],
                "trained": f"lora rank {o.lora_rank}" if o.lora_rank else "temporal layers",
                "trained_tensors": len(shapes), "trained_shapes_digest": _digest(shapes),
                "data": _digest([c.key for c in self.clips]), "global_batch": self.global_batch,
                "grad_accum": o.grad_accum, "seed": o.seed, "frames": o.frames, "fps": o.fps,
                "lr": o.lr, "lr_scheduler": o.lr_scheduler, "warmup_steps": o.warmup_steps,
                "dtype": str(self.dtype), **self._dataset_identity()}  # not --steps: it may be raised

    def _dataset_identity(self) -> dict:
        """With --dataset-config: its prefixes and dropouts too (repeats already change the clip list)."""
        if not self.options.dataset_config:
            return {}
        folders = self.options.folders
        return {"dataset": _digest([[f.path, f.repeats, f.prefix, f.caption_dropout, f.size] for f in folders])}

    # -- inputs --------------------------------------------------------------------------------------
    @torch.no_grad()
    def _moments(self, clip: Clip, pixels=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The VAE's latent mean and std (4, frames, h, w), float32, and the time ids (6,)."""
        if self.store is not None:
            return self.store.moments(clip)
        key = (clip.key, clip.bucket)  # a dataset config may list one folder twice, at two sizes
        if self.options.cache_latents and key in self.latent_cache:
            return self.latent_cache[key]
        result = self.encode_clip(clip, pixels)
        if self.options.cache_latents:
            self.latent_cache[key] = result
        return result

    @torch.no_grad()
    def encode_clip(self, clip: Clip, pixels=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """_moments without any cache: the VAE's encoding of the clip."""
        frames, time_ids = load_clip(clip, pixels)
        dist_ = self.pipe.vae.encode(frames.to(self.device, self.pipe.vae.dtype)).latent_dist
        # (frames, 4, h, w) -> (4, frames, h, w)
        return dist_.mean.float().transpose(0, 1).cpu(), dist_.std.float().transpose(0, 1).cpu(), time_ids

    @torch.no_grad()
    def _text(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.store is not None:
            return self.store.text(caption)
        if caption in self.text_cache:
            return self.text_cache[caption]
        result = self.encode_caption(caption)
        if self.options.cache_text:
            self.text_cache[caption] = result
        return result

    @torch.no_grad()
    def encode_caption(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        """_text without any cache: the text encoders' context (77, 2048) and pooled embedding."""
        # 77 tokens, as the original truncates; a caption's parentheses are its text, not weights
        cond = self.pipe.text.encode(caption, chunks=1, weighted=False)
        return cond.context[0].cpu(), cond.pooled[0].cpu()

    def batch_for(self, micro_batch: int) -> list[int]:
        """This rank's clip indices for a micro-batch (the global batch sliced by rank)."""
        epoch, index = divmod(micro_batch, self.epoch_length)
        batch = epoch_batches(self.clips, self.global_batch, self.options.seed, epoch)[index]
        b = self.options.batch_size
        return batch[self.rank * b:(self.rank + 1) * b]

    def inputs(self, micro_batch: int) -> dict[str, torch.Tensor]:
        latents, contexts, pooled, time_ids, noises, timesteps = [], [], [], [], [], []
        for offset, index in enumerate(self.batch_for(micro_batch)):
            clip = self.clips[index]
            generator = _clip_generator(self.options.seed, micro_batch, self.rank * self.options.batch_size + offset)
            mean, std, ids = self._moments(clip)
            latent = (mean + std * torch.randn(mean.shape, generator=generator)) * self.scaling
            noise, timestep = self.objective.draw(latent[None], [generator])
            caption = clip.caption
            if clip.caption_dropout > 0:  # its own generator: the noise above is drawn as without dropout
                draw = _clip_generator(self.options.seed + 1, micro_batch, self.rank * self.options.batch_size + offset)
                caption = "" if torch.rand((), generator=draw).item() < clip.caption_dropout else caption
            context, pool = self._text(caption)
            latents.append(latent), noises.append(noise[0]), timesteps.append(timestep)
            contexts.append(context), pooled.append(pool), time_ids.append(ids)
        to = dict(device=self.device)
        return {"latents": torch.stack(latents).to(**to), "noise": torch.stack(noises).to(**to),
                "timesteps": torch.cat(timesteps).to(**to), "context": torch.stack(contexts).to(**to),
                "pooled": torch.stack(pooled).to(**to), "time_ids": torch.stack(time_ids).to(**to)}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        noisy = self.objective.add_noise(batch["latents"], batch["noise"], batch["timesteps"])
        prediction = self.model(noisy.to(self.dtype), batch["timesteps"], batch["context"].to(self.dtype),
                                batch["pooled"].to(self.dtype), batch["time_ids"])
        return self.objective.loss(prediction, batch["latents"], batch["noise"], batch["timesteps"])

    # -- one optimisation step ----------------------------------------------------------------------
    def gradients(self, step: int) -> float:
        """Accumulate the step's gradients into the masters' .grad (averaged over ranks); the loss."""
        from contextlib import nullcontext

        accum = self.options.grad_accum
        for master in self.masters.values():
            master.grad = None
        total = 0.0
        for micro in range(accum):
            batch = self.inputs(step * accum + micro)
            sync = micro == accum - 1 or self.world == 1
            with nullcontext() if sync else self.model.no_sync():
                loss = self.loss(batch) / accum
                loss.backward()
            total += loss.item()
            # bf16: into the float32 masters after each micro-batch; under DDP only once the
            # gradients are averaged (no_sync micro-batches accumulate in the module's .grad).
            if self.masters is not self.params and (self.world == 1 or sync):
                for name, p in self.params.items():
                    if p.grad is not None:
                        m = self.masters[name]
                        m.grad = p.grad.float() if m.grad is None else m.grad + p.grad.float()
                        p.grad = None
        return total

    def optimise(self, step: int) -> float:
        loss = self.gradients(step)
        if self.options.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(list(self.masters.values()), self.options.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([m.grad for m in self.masters.values() if m.grad is not None])
        self.last_grad_norm = float(norm)  # before clipping, as clip_grad_norm_ reports it
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.masters is not self.params:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(self.masters[name])
        return loss

    # -- state -----------------------------------------------------------------------------------------
    def state(self) -> dict:
        micro_batch = self.step * self.options.grad_accum  # the next one this run would read
        epoch, batch = divmod(micro_batch, self.epoch_length)
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "data_position": {"micro_batch": micro_batch, "epoch": epoch, "batch_in_epoch": batch},
                "loss_smoothing": self.smoothed.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": list(random.getstate()[1]),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def restore(self, folder: Path) -> None:
        trained, state, step = checkpoints.load(folder, self.run_identity())
        if trained.keys() != self.masters.keys():
            raise ModelFileError(folder, "holds other tensors than this run trains")
        with torch.no_grad():
            for name, master in self.masters.items():
                master.copy_(trained[name])
                if self.masters is not self.params:
                    self.params[name].copy_(trained[name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if step > self.options.steps:
            raise InputError("--steps", f"{folder} is at step {step}, past --steps {self.options.steps}")
        if "loss_smoothing" in state:
            self.smoothed.load_state_dict(state["loss_smoothing"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate((3, tuple(state["python_rng"]), None))
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = step

    def save_checkpoint(self) -> Path | None:
        if self.rank != 0:
            return None
        return checkpoints.save(Path(self.options.checkpoint_dir), self.step,
                                {n: m for n, m in self.masters.items()}, self.state(), self.run_identity(),
                                self.options.keep_checkpoints, metadata=at_step(self.provenance, self.step))

    def output_state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The output file's tensors and metadata: the temporal layers in the released layout (all
        420 tensors, position tables included), or the motion LoRA."""
        dtype = resolve_dtype(self.options.save_dtype, self.device, "--save-dtype")
        if self.lora is not None:
            from .lora import FORMAT

            state = {}
            for name, adapter in zip(self.lora.names, self.lora.adapters):
                state[f"unet.{name}.lora_A.weight"] = self.masters[f"{name}.lora_A.weight"].detach()
                state[f"unet.{name}.lora_B.weight"] = self.masters[f"{name}.lora_B.weight"].detach()
                state[f"unet.{name}.alpha"] = torch.tensor(adapter.alpha)
            return ({k: v.float().cpu().contiguous() for k, v in state.items()},
                    {"format": FORMAT, **at_step(self.provenance, self.step)})
        state = {k: v for k, v in self.unet.state_dict().items() if is_temporal_key(k)}
        state.update({k: m.detach() for k, m in self.masters.items()})
        if self.dtype != torch.float32:  # the position tables as the source file holds them, not bf16-rounded
            state.update(self._source_position_tables())
        return ({k: v.to(dtype).cpu().contiguous() for k, v in state.items()},
                {"format": "pt", **at_step(self.provenance, self.step)})

    def _source_position_tables(self) -> dict[str, torch.Tensor]:
        from ..files.loading import _pick_sources, classify
        from ..files.weights import read_safetensors

        o = self.options
        _, temporal = _pick_sources([classify(p) for p in (o.model, o.sdxl, o.temporal_layers) if p])
        tables = {}
        for file in temporal.files:
            tables.update(read_safetensors(file, None, keep=lambda key: key.endswith("pos_encoder.positional_encoding")
                                           and is_temporal_key(key)))
        return tables

    def validation_path(self, step: int) -> Path:
        return Path(self.options.checkpoint_dir) / f"validation-step-{step:08d}.mp4"

    def validate(self, training_log: TrainingLog | None = None) -> Path | None:
        o = self.options
        if self.rank != 0 or not o.validation_prompt:
            return None
        import os

        from ..media.video import write_video

        width, height = o.width or self.clips[0].bucket[0], o.height or self.clips[0].bucket[1]
        target = self.validation_path(self.step)
        self.log(f"validation video at step {self.step}: {o.validation_steps} sampling steps, {width}x{height} ...")
        self.unet.eval()
        try:
            frames = self.pipe(o.validation_prompt, width=width, height=height, frames=o.frames,
                               steps=o.validation_steps, seed=o.seed)
        finally:
            self.unet.train()
        target.parent.mkdir(parents=True, exist_ok=True)
        # under a temporary name until complete: a kill while writing leaves no video that looks done
        temporary = target.with_name(f".partial-{target.name}")
        write_video(frames, temporary, fps=o.fps, overwrite=True)
        os.replace(temporary, target)
        if training_log is not None:
            training_log.validation(self.step, frames)
        self.log(f"wrote {target}")
        return target

    def redo_lost_validation(self, training_log: TrainingLog | None = None) -> Path | None:
        """After a resume: the video of the checkpoint's own step, if the kill came before it was
        written (checkpoints are saved before validating, so the weights are the ones it would show)."""
        o = self.options
        if (o.validate_every and self.step and self.step % o.validate_every == 0
                and not self.validation_path(self.step).is_file()):
            return self.validate(training_log)
        return None

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self) -> float | None:
        o = self.options
        started, first = time.perf_counter(), self.step
        loss = None
        from tqdm.auto import tqdm

        training_log = (TrainingLog(o.log_dir, o.log_every, self.step, self.log)
                        if self.rank == 0 and o.log_dir and o.log_every else None)
        self.redo_lost_validation(training_log)  # resumed at a step whose video a kill prevented
        if self.world > 1 and o.validate_every:
            dist.barrier()
        bar = tqdm(total=o.steps, initial=self.step, desc="training", unit="step", file=sys.stderr,
                   disable=not o.progress or self.rank != 0, dynamic_ncols=True)
        try:
            while self.step < o.steps:
                step_started = time.perf_counter()
                loss = self.optimise(self.step)
                if self.world > 1:  # the loss of the whole global batch, as the gradients are
                    total = torch.tensor([loss], dtype=torch.float64, device=self.device)
                    dist.all_reduce(total)
                    loss = total.item() / self.world
                if not math.isfinite(loss):
                    raise InputError("--lr", f"the loss became {loss} at step {self.step + 1}; lower --lr or use "
                                     "--dtype fp32")
                self.step += 1
                seconds = time.perf_counter() - step_started
                smoothed = self.smoothed.update(loss)
                lr = self.schedule.get_last_lr()[0]
                rate = (self.step - first) / (time.perf_counter() - started)
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", steps_s=f"{rate:.2f}")
                if training_log is not None and training_log.wants(self.step):
                    training_log.record(self.step, loss=loss, loss_smoothed=smoothed, lr=lr,
                                        grad_norm=self.last_grad_norm, step_seconds=seconds,
                                        clips_per_second=self.global_batch * o.grad_accum / seconds)
                # the last step too: a longer run (--resume --steps more) continues from it
                if o.save_every and (self.step % o.save_every == 0 or self.step == o.steps):
                    self.save_checkpoint()
                if o.validate_every and self.step % o.validate_every == 0:
                    self.validate(training_log)
                if self.world > 1 and (o.save_every or o.validate_every):
                    dist.barrier()
        finally:
            bar.close()
            if training_log is not None:
                training_log.close()
        return loss


class _Wrapped(nn.Module):
    """The UNet and its adapters as one module, which DDP can wrap."""

    def __init__(self, unet, lora):
        super().__init__()
        self.unet = unet
        self.lora = lora

    def forward(self, *args):
        return self.unet(*args)


def _digest(value) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]

