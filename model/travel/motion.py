"""Motion strength: a scale on the temporal layers' residual update.

0 leaves each frame to the SDXL image model (the temporal layers are skipped), 1 is Hotshot-XL as
released (the plain code path, bit for bit), above 1 strengthens the motion. Keyframed, it blends
linearly from frame to frame like prompts; inside context windows each window takes its frames'.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .interpolate import segments
from .keyframes import Keyframe, check_in_range, scale_keyframes


class MotionScale:
    """Keyframed motion scale; `for_frames` gives the scale of some of the video's frames."""

    def __init__(self, keyframes: tuple[Keyframe, ...]):
        self.keyframes = keyframes

    @property
    def constant(self) -> float | None:
        values = {keyframe.value for keyframe in self.keyframes}
        return values.pop() if len(values) == 1 else None

    def for_frames(self, frames: Sequence[int]) -> float | torch.Tensor:
        """A number when the scale is the same for all of `frames`, else one per frame, (len(frames),)."""
        if self.constant is not None:
            return self.constant
        values = [k.value for k in self.keyframes]
        scales = [values[a] + (values[b] - values[a]) * t
                  for a, b, t in segments([k.frame for k in self.keyframes], frames)]
        return scales[0] if len(set(scales)) == 1 else torch.tensor(scales, dtype=torch.float32)


def motion_scale(value, frames: int | None = None, name: str = "motion_scale") -> MotionScale | None:
    """The MotionScale of `value` (a number, keyframes `{frame: scale}` or their text), None when it
    is 1 everywhere (the plain path); InputError naming `name` and the keyframe if bad."""
    if isinstance(value, MotionScale):
        keyframes = value.keyframes
    else:
        keyframes = scale_keyframes(value, name)
    if frames is not None:
        check_in_range(keyframes, frames, name)
    scale = MotionScale(keyframes)
    return None if scale.constant == 1.0 else scale


def frames_as_images(sample: torch.Tensor, timestep, context: torch.Tensor, pooled: torch.Tensor,
                     time_ids: torch.Tensor) -> tuple:
    """A UNet call's inputs with each frame as a one-frame video of its own (batch*frames videos,
    frame inner, as the UNet folds them): the image model's inputs, text rows per image."""
    batch, channels, frames, height, width = sample.shape
    images = sample.transpose(1, 2).reshape(batch * frames, channels, 1, height, width)

    def per_image(rows: torch.Tensor) -> torch.Tensor:
        return rows if rows.shape[0] == batch * frames else rows.repeat_interleave(frames, 0)

    timestep = torch.as_tensor(timestep)
    if timestep.numel() > 1:
        timestep = per_image(timestep.reshape(-1))
    return images, timestep, per_image(context), per_image(pooled), per_image(time_ids)


def unet_motion_scale(scale, batch: int, frames: int, device, dtype) -> tuple[bool, float | torch.Tensor | None]:
    """For one UNet call: (whether the temporal layers run, the scale their update takes): None for
    1 (the plain path), a number, or (batch*frames, 1, 1, 1) when frames differ."""
    if scale is None:
        return True, None
    if torch.is_tensor(scale):
        if scale.numel() != frames:
            raise ValueError(f"a motion scale per frame needs {frames} values, got {scale.numel()}")
        if bool((scale == scale[0]).all()):
            scale = float(scale[0])
        else:
            return True, scale.to(device, dtype).repeat(batch).view(-1, 1, 1, 1)
    scale = float(scale)
    if scale == 1.0:
        return True, None
    return scale != 0.0, None if scale == 0.0 else scale
