"""Blending between keyframes, frame by frame.

A frame between two keyframes takes `t` of the way from the earlier to the later one's value
(t = 0 at the earlier keyframe); frames before the first keyframe hold it, frames after the last
hold that. At a keyframe the value is the keyframe's own, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Below this angle (radians) between two vectors spherical interpolation is numerically the
# linear one, and sin(angle) in its denominator would amplify rounding: blend linearly there.
SLERP_MIN_ANGLE = 1e-4


def segments(keyframe_frames: Sequence[int], frames: Sequence[int]) -> list[tuple[int, int, float]]:
    """(earlier keyframe index, later keyframe index, t) for each of `frames`."""
    out = []
    last = len(keyframe_frames) - 1
    for frame in frames:
        later = next((i for i, k in enumerate(keyframe_frames) if k >= frame), None)
        if later is None:
            out.append((last, last, 0.0))
        elif keyframe_frames[later] == frame or later == 0:
            out.append((later, later, 0.0))
        else:
            start, end = keyframe_frames[later - 1], keyframe_frames[later]
            out.append((later - 1, later, (frame - start) / (end - start)))
    return out


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of each vector along the last axis: its direction turns along the
    great circle from a's to b's at constant speed, its length blends linearly."""
    a_norm, b_norm = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    a_unit, b_unit = a / a_norm.clamp_min(1e-12), b / b_norm.clamp_min(1e-12)
    angle = torch.arccos((a_unit * b_unit).sum(-1, keepdim=True).clamp(-1, 1))
    sin = torch.sin(angle)
    straight = angle < SLERP_MIN_ANGLE
    safe_sin = torch.where(straight, torch.ones_like(sin), sin)
    wa = torch.where(straight, torch.full_like(sin, 1 - t), torch.sin((1 - t) * angle) / safe_sin)
    wb = torch.where(straight, torch.full_like(sin, t), torch.sin(t * angle) / safe_sin)
    direction = wa * a_unit + wb * b_unit
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction * lerp(a_norm, b_norm, t)


def same_length(states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Token sequences (1, tokens, dim) of different lengths, each repeated along its tokens to the
    least common multiple of the lengths, so that they blend token by token. Repeating a whole
    sequence leaves cross-attention's result as it was (each key appears as often as before,
    relative to the others): ComfyUI batches conds of different lengths the same way."""
    length = math.lcm(*(state.shape[1] for state in states))
    return [state if state.shape[1] == length else state.repeat(1, length // state.shape[1], 1) for state in states]


def blend(values: Sequence[torch.Tensor], keyframe_frames: Sequence[int], frames: Sequence[int],
          mode: str = "linear") -> torch.Tensor:
    """(len(frames), *value shape): each frame's value; `values[i]` is keyframe i's (1, ...) tensor."""
    mix = slerp if mode == "slerp" else lerp
    rows = []
    for earlier, later, t in segments(keyframe_frames, frames):
        rows.append(values[earlier] if t == 0.0 else mix(values[earlier], values[later], t))
    return torch.cat(rows)
