"""Training clips from a folder: videos with same-name captions, or the original's frame folders.

Layouts (both may be mixed in one folder):
- `clip.mp4` (or .webm, .mov, .gif) with its caption in `clip.txt`;
- the original fine_tune.py's: a sub-folder of frames (`*.png`, `*.jpg`, sorted by name) with
  its caption in `prompt.txt`.
Each video is cut into consecutive clips of `frames` frames sampled at `fps` (frames dropped or
repeated to reach that rate); a frame folder has no timing, so its frames are taken as they are,
`frames` at a time. Videos too short for one clip are skipped and counted; unreadable ones listed.

Each clip goes to the aspect bucket (width, height) closest to its shape (the release's buckets,
or one size given by the user), is scaled to cover it and centre-cropped, like the original's
`scale_aspect_fill`. SDXL's size conditioning records the source size and the crop, as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..media.clips import Source, plural, read_frames  # the folder of clips, shared with the captioner


@dataclass(frozen=True)
class Clip:
    source: Source
    frame_indices: tuple[int, ...]  # into the source's decoded frames
    caption: str
    source_size: tuple[int, int]  # width, height
    bucket: tuple[int, int]  # width, height trained at
    caption_dropout: float = 0.0  # share of draws trained with an empty caption (dataset config)

    @property
    def key(self) -> str:
        """Names the clip in caches and checkpoints: its file and first frame."""
        return f"{self.source.path}#{self.frame_indices[0]}"


@dataclass
class Scan:
    clips: list[Clip] = field(default_factory=list)
    too_short: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def report(self) -> str:
        lines = [plural(len(self.clips), "clip")]
        if self.too_short:
            lines.append(f"{len(self.too_short)} too short and skipped: " + ", ".join(str(p) for p in self.too_short))
        for path, why in self.unreadable:
            lines.append(f"unreadable, skipped: {path} ({why})")
        return "\n".join(lines)


def clip_indices(count: int, rate: float | None, frames: int, fps: float) -> list[tuple[int, ...]]:
    """Consecutive clips of `frames` frames at `fps` from `count` frames at `rate` (None: as they are)."""
    step = 1.0 if rate is None else rate / fps  # source frames per trained frame
    available = count if rate is None else math.floor((count - 1) / step + 1e-9) + 1
    picks = [min(count - 1, math.floor(k * step + 1e-9)) for k in range(available)]
    return [tuple(picks[i:i + frames]) for i in range(0, available - frames + 1, frames)]


def nearest_bucket(width: int, height: int, buckets) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - ratio))


def scan(sources: list[Source], frames: int, fps: float, buckets, captions: dict[Path, str] | None = None) -> Scan:
    """Decode each source once to cut it into clips. `captions` overrides the caption files."""
    result = Scan()
    for source in sources:
        try:
            pixels, rate = read_frames(source)
        except Exception as error:  # a broken file must not end a run over hundreds of clips
            result.unreadable.append((source.path, str(error).splitlines()[0] if str(error) else type(error).__name__))
            continue
        caption = (captions or {}).get(source.path) or source.caption or ""
        height, width = pixels.shape[1:3]
        cuts = clip_indices(len(pixels), rate, frames, fps)
        if not cuts:
            result.too_short.append(source.path)
        bucket = nearest_bucket(width, height, buckets)
        result.clips.extend(Clip(source, cut, caption, (width, height), bucket) for cut in cuts)
    return result


def fit_to_bucket(pixels: np.ndarray, bucket: tuple[int, int]) -> tuple[torch.Tensor, tuple[float, float]]:
    """uint8 (frames, h, w, 3) -> float (frames, 3, H, W) in -1..1 covering the bucket, centre-cropped;
    and the crop's top-left corner (left, top) in the scaled frame, as the original computes it."""
    target_w, target_h = bucket
    frames = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
    height, width = frames.shape[-2:]
    if target_w / width > target_h / height:
        size = (round(height * target_w / width), target_w)
    else:
        size = (target_h, round(width * target_h / height))
    if size != (height, width):
        frames = F.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False)
    left, top = (size[1] - target_w) / 2, (size[0] - target_h) / 2
    frames = frames[:, :, int(top):int(top) + target_h, int(left):int(left) + target_w]
    return (frames.clamp(0, 1) * 2 - 1).contiguous(), (left, top)


def load_clip(clip: Clip, pixels: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The clip's frames (frames, 3, H, W) in -1..1 and its SDXL time ids (6,)."""
    if pixels is None:
        pixels, _ = read_frames(clip.source)
    frames, (left, top) = fit_to_bucket(pixels[list(clip.frame_indices)], clip.bucket)
    time_ids = torch.tensor([*clip.source_size, left, top, *clip.bucket], dtype=torch.float32)
    return frames, time_ids


def epoch_batches(clips: list[Clip], batch: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch as global batches of clip indices, each from one bucket, shuffled by (seed, epoch).

    A bucket's last partial batch is topped up from its start, so every batch is full; the order
    depends only on the seed and the epoch, not on the number of ranks (see Trainer).
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(clips), generator=generator).tolist()
    by_bucket: dict[tuple[int, int], list[int]] = {}
    for index in order:
        by_bucket.setdefault(clips[index].bucket, []).append(index)
    batches = []
    for bucket in sorted(by_bucket):
        members = by_bucket[bucket]
        count = math.ceil(len(members) / batch)
        padded = [members[i % len(members)] for i in range(count * batch)]
        batches.extend(padded[i:i + batch] for i in range(0, len(padded), batch))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]
