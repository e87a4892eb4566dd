"""`--cache-dir DIR`: clips' VAE encodings and captions' text embeddings on disk, written once and
streamed during training, so a dataset far larger than memory trains in bounded memory.

Layout of DIR:
- `latents-*.safetensors`: shards of `<key>.mean`, `<key>.std` (4, frames, h, w) float32 — the VAE's
  latent distribution, so a fresh latent is still sampled each step — and `<key>.time_ids` (6,);
  the key hashes the encoder's identity, the clip's source content, its frames and its bucket;
- `text-*.safetensors`: shards of `<key>.context` and `<key>.pooled`, the key hashing the text
  encoders' identity and the caption;
- `content-hashes.json`: each source's content hash, remembered by (path, size, mtime), so a later
  run does not read every video again to find its keys.
An encoder's identity is a hash of its weights, dtype and tokenizers: other weights never see
these entries. Shards are written under a temporary name and renamed when complete (a killed run
leaves nothing half-written that is read), and every run, and every rank, adds what is missing:
under torchrun each rank encodes its share of the missing entries, then all ranks read them all.

Memory: the index maps keys to shard files (one short string each); tensors are read one entry at
a time from memory-mapped shards, at most OPEN_SHARDS of them open at once (least recently used
closed first), and a shard being written holds at most SHARD_BYTES. Nothing grows with the dataset
but the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import OrderedDict
from pathlib import Path

import torch

from ..media.clips import FRAME_SUFFIXES, Source, plural, read_frames
from ..media.frames import natural_order
from .data import Clip

SHARD_BYTES = 256 << 20
OPEN_SHARDS = 4
HASHES = "content-hashes.json"
ENCODING_VERSION = "moments-v1"  # bump when what an entry holds changes


def _blake(*parts) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def module_identity(*modules, extra=()) -> str:
    """A hash of the modules' weights (names, dtypes, shapes, bytes) and `extra`."""
    digest = hashlib.blake2b(digest_size=20)
    for module in modules:
        for name, tensor in module.state_dict().items():
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    for item in extra:
        digest.update(str(item).encode())
    return digest.hexdigest()


def _files_of(source: Source) -> list[Path]:
    if not source.is_folder:
        return [source.path]
    return sorted((p for p in source.path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=natural_order)


def source_stamp(source: Source) -> list:
    """What changes when a source's content may have: sizes and modification times of its files."""
    stats = [p.stat() for p in _files_of(source)]
    return [len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


def content_hash(source: Source) -> str:
    digest = hashlib.blake2b(digest_size=20)
    for file in _files_of(source):
        digest.update(file.name.encode() if source.is_folder else b"")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ShardWriter:
    """Entries gathered into shards of about `shard_bytes`, each written whole or not at all."""

    def __init__(self, folder: Path, kind: str, shard_bytes: int = SHARD_BYTES):
        self.folder, self.kind, self.shard_bytes = folder, kind, shard_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.size = 0
        self.written: list[Path] = []

    def add(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            tensor = tensor.detach().cpu().contiguous()
            self.pending[f"{key}.{name}"] = tensor
            self.size += tensor.numel() * tensor.element_size()
        if self.size >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        from safetensors.torch import save_file

        name = f"{self.kind}-{uuid.uuid4().hex}.safetensors"
        temporary = self.folder / f".{name}.partial"
        save_file(self.pending, temporary)
        os.replace(temporary, self.folder / name)
        self.written.append(self.folder / name)
        self.pending, self.size = {}, 0


class ShardReader:
    """Entries by key from the shards in a folder, at most `open_shards` memory-mapped at once."""

    def __init__(self, folder: Path, kind: str, open_shards: int = OPEN_SHARDS):
        self.folder, self.kind, self.open_shards = folder, kind, open_shards
        self._open: OrderedDict[Path, object] = OrderedDict()
        self.index: dict[str, Path] = {}
        self._scanned: set[Path] = set()
        self.rescan()

    def rescan(self) -> None:
        """Index the shards written since the last scan (by this run's ranks, or another run)."""
        from safetensors import safe_open

        for shard in sorted(self.folder.glob(f"{self.kind}-*.safetensors")):
            if shard in self._scanned:
                continue
            self._scanned.add(shard)
            with safe_open(str(shard), "pt") as handle:  # reads the header only
                for name in handle.keys():
                    self.index.setdefault(name.rsplit(".", 1)[0], shard)
        self._open.clear()

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def get(self, key: str, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
        from safetensors import safe_open

        shard = self.index[key]
        handle = self._open.pop(shard, None)
        if handle is None:
            handle = safe_open(str(shard), "pt")
            while len(self._open) >= self.open_shards:
                self._open.popitem(last=False)  # its memory map goes with the last reference
        self._open[shard] = handle
        return tuple(handle.get_tensor(f"{key}.{name}") for name in names)


LATENT_NAMES = ("mean", "std", "time_ids")
TEXT_NAMES = ("context", "pooled")


class EncodingStore:
    """The trainer's view of a cache folder: `moments(clip)` and `text(caption)` as the encoders give them."""

    def __init__(self, folder, latent_keys: dict[str, str], text_keys: dict[str, str],
                 open_shards: int = OPEN_SHARDS):
        self.folder = Path(folder)
        self.latent_keys, self.text_keys = latent_keys, text_keys  # clip_id(clip) / caption -> entry key
        self.latents = ShardReader(self.folder, "latents", open_shards)
        self.texts = ShardReader(self.folder, "text", open_shards)

    def moments(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.latents.get(self.latent_keys[clip_id(clip)], LATENT_NAMES)

    def text(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.texts.get(self.text_keys[caption], TEXT_NAMES)

    @classmethod
    def prepare(cls, trainer, shard_bytes: int = SHARD_BYTES) -> "EncodingStore":
        """Keys for every clip and caption of the run; what the folder lacks encoded (each rank its
        share) and written; then the store every rank reads from."""
        folder = Path(trainer.options.cache_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        pipe, rank, world, log = trainer.pipe, trainer.rank, trainer.world, trainer.log
        vae_id = module_identity(pipe.vae, extra=(ENCODING_VERSION, pipe.vae.dtype, trainer.device.type))
        text = pipe.text
        text_id = module_identity(text.text_encoder, text.text_encoder_2, extra=(
            ENCODING_VERSION, "chunks=1", _vocabulary(text.tokenizer), _vocabulary(text.tokenizer_2)))

        unique = {clip_id(clip): clip for clip in trainer.clips}
        contents = _content_hashes(folder, [c.source for c in unique.values()], rank, world)
        latent_keys = {k: _blake(vae_id, contents[c.source.path], c.frame_indices, c.bucket, c.source_size)
                       for k, c in unique.items()}
        captions = {c.caption for c in unique.values()}
        if any(c.caption_dropout > 0 for c in unique.values()):
            captions.add("")
        text_keys = {caption: _blake(text_id, caption) for caption in sorted(captions)}

        store = cls(folder, latent_keys, text_keys)
        todo_clips = [unique[k] for k in sorted(unique) if latent_keys[k] not in store.latents]
        todo_captions = [c for c in sorted(captions) if text_keys[c] not in store.texts]
        if rank == 0:
            log(f"cache {folder}: {plural(len(unique) - len(todo_clips), 'clip')} and "
                f"{plural(len(captions) - len(todo_captions), 'caption')} found; encoding "
                f"{plural(len(todo_clips), 'clip')} and {plural(len(todo_captions), 'caption')}"
                + (f" over {world} processes" if world > 1 and (todo_clips or todo_captions) else ""))
        mine = todo_clips[rank::world]
        writer = ShardWriter(folder, "latents", shard_bytes)
        by_source: dict[Path, list[Clip]] = {}
        for clip in mine:
            by_source.setdefault(clip.source.path, []).append(clip)
        for clips in by_source.values():
            pixels, _ = read_frames(clips[0].source)  # decoded once for all its clips
            for clip in clips:
                mean, std, time_ids = trainer.encode_clip(clip, pixels)
                writer.add(latent_keys[clip_id(clip)], {"mean": mean, "std": std, "time_ids": time_ids})
        writer.flush()
        writer = ShardWriter(folder, "text", shard_bytes)
        for caption in todo_captions[rank::world]:
            context, pooled = trainer.encode_caption(caption)
            writer.add(text_keys[caption], {"context": context, "pooled": pooled})
        writer.flush()
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
        store.latents.rescan()
        store.texts.rescan()
        return store


def clip_id(clip: Clip) -> str:
    """A clip within a run: its source and first frame, and its bucket (a dataset config may list
    one folder twice with different sizes)."""
    return f"{clip.key}@{clip.bucket[0]}x{clip.bucket[1]}"


def _vocabulary(tokenizer) -> str:
    return _blake(json.dumps(sorted(tokenizer.get_vocab().items())), getattr(tokenizer, "model_max_length", ""))


def _content_hashes(folder: Path, sources: list[Source], rank: int, world: int) -> dict[Path, str]:
    """Each source's content hash: remembered ones whose files are unchanged, the rest read (each
    rank its share under torchrun) and remembered by rank 0."""
    memo_file = folder / HASHES
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    found, todo = {}, []
    for source in {s.path: s for s in sources}.values():
        name, stamp = str(source.path.resolve()), source_stamp(source)
        entry = memo.get(name)
        if entry and entry[0] == stamp:
            found[source.path] = entry[1]
        else:
            todo.append((source, name, stamp))
    mine = {name: [stamp, content_hash(source)] for source, name, stamp in todo[rank::world]}
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        mine = {k: v for part in gathered for k, v in part.items()}
    for source, name, _ in todo:
        found[source.path] = mine[name][1]
    if rank == 0 and mine:
        memo.update(mine)
        temporary = memo_file.with_name(f".{HASHES}.{uuid.uuid4().hex[:8]}.partial")
        temporary.write_text(json.dumps(memo))
        os.replace(temporary, memo_file)
    return found
