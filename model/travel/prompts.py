"""Prompt travel: keyframed prompts, each frame conditioned on its own blend of their text states.

`encode_travel` encodes every keyframe's prompt (and the single negative prompt) with the same
number of 75-token chunks, so that they blend and batch together. `PromptTravel` holds those
states and hands out any frames' blend: the context states of both encoders and the pooled
embedding are interpolated alike. The UNet folds frames into its batch, so `frame_batch` gives it
one row of text per image: with context windows each window gets its own frames' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..text.encoders import Conditioning, TextEncoders
from .interpolate import blend
from .keyframes import Keyframe, check_in_range, check_interpolation


@dataclass
class PromptTravel:
    """Keyframes' text conditioning (all with the same number of chunks) and how to blend them."""

    keyframes: tuple[Keyframe, ...]  # frame and prompt of each, in order
    states: list[Conditioning]  # one per keyframe: context (1, tokens, dim), pooled (1, dim)
    interpolation: str = "linear"
    name: str = "prompts"  # how errors name the keyframes' source (flag or input)

    @property
    def context(self) -> torch.Tensor:
        """The first keyframe's states: their shape is every keyframe's (for checks of width)."""
        return self.states[0].context

    @property
    def pooled(self) -> torch.Tensor:
        return self.states[0].pooled

    def check(self, frames: int) -> None:
        check_in_range(self.keyframes, frames, self.name)

    def for_frames(self, frames: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(context (len(frames), tokens, dim), pooled (len(frames), dim)) of the video's `frames`."""
        at = [keyframe.frame for keyframe in self.keyframes]
        context = blend([s.context for s in self.states], at, frames, self.interpolation)
        pooled = blend([s.pooled for s in self.states], at, frames, self.interpolation)
        return context, pooled

    def to(self, device=None, dtype=None) -> PromptTravel:
        moved = [Conditioning(s.context.to(device, dtype), s.pooled.to(device, dtype), s.tokens) for s in self.states]
        return PromptTravel(self.keyframes, moved, self.interpolation, self.name)


def encode_travel(text: TextEncoders, keyframes: Sequence[Keyframe], negative_prompt: str | None,
                  interpolation: str = "linear", name: str = "prompts") -> tuple[PromptTravel, Conditioning]:
    """(the keyframes' PromptTravel, the negative prompt's Conditioning), with as many chunks as the
    longest of them needs; the negative follows TextEncoders.encode_pair's rules."""
    check_interpolation(interpolation, "interpolation")
    prompts = [keyframe.value for keyframe in keyframes]
    names = [f"{name} {keyframe.where}" for keyframe in keyframes]  # errors point at the keyframe
    chunks = max(max(text._chunks_for(p, n) for p, n in zip(prompts, names)),
                 text._chunks_for(negative_prompt, "negative_prompt") if negative_prompt else 1)
    states = [text.encode(prompt, chunks, n) for prompt, n in zip(prompts, names)]
    if negative_prompt is None and text.force_zeros_for_empty_prompt:
        negative = Conditioning(torch.zeros_like(states[0].context), torch.zeros_like(states[0].pooled), 0)
    else:
        negative = text.encode(negative_prompt or "", chunks, "negative_prompt")
    return PromptTravel(tuple(keyframes), states, interpolation, name), negative


def frame_batch(conditions, frames: Sequence[int], device, dtype, cfg: bool):
    """(context, pooled, time_ids) for one UNet call on the video's `frames`, one row per image in
    the UNet's folded order (batch entry outer, frame inner): with CFG the negative's rows first."""
    travel: PromptTravel = conditions.positive
    count = len(frames)
    context, pooled = travel.for_frames(frames)
    if cfg:
        negative = conditions.negative
        context = torch.cat([negative.context.to(context).expand(count, -1, -1), context])
        pooled = torch.cat([negative.pooled.to(pooled).expand(count, -1), pooled])
    time_ids = conditions.time_ids.repeat(context.shape[0], 1).to(device)
    return context.to(device, dtype), pooled.to(device, dtype), time_ids


def is_travel(conditioning) -> bool:
    return isinstance(conditioning, PromptTravel)
