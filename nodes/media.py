"""ComfyUI's VIDEO and AUDIO values and the prompt/workflow tags, as the save and decode nodes use them.

Inside ComfyUI a VIDEO is core's `VideoFromComponents` (what core CreateVideo makes), so core
SaveVideo, GetVideoComponents and others take ours; outside ComfyUI (tests, scripts) a small
stand-in with the same `get_components()` is used. Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace

from . import host
from ..model.errors import InputError


@dataclass(frozen=True)
class FramesVideo:
    """A VIDEO outside ComfyUI: frames (IMAGE batch), frame rate and optional AUDIO dict."""

    images: object
    frame_rate: Fraction
    audio: dict | None = None

    def get_components(self):
        return SimpleNamespace(images=self.images, frame_rate=self.frame_rate, audio=self.audio, metadata=None)

    def get_dimensions(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[1])


def frame_rate(fps) -> Fraction:
    """A float fps as the Fraction core's VIDEO carries (NTSC rates stay exact)."""
    return Fraction(float(fps)).limit_denominator(1001)


def make_video(images, fps, audio: dict | None = None):
    """A VIDEO of `images` at `fps` (core's type inside ComfyUI)."""
    if host.in_comfyui():
        from comfy_api.latest import InputImpl, Types

        return InputImpl.VideoFromComponents(Types.VideoComponents(images=images, frame_rate=frame_rate(fps),
                                                                   audio=audio))
    return FramesVideo(images, frame_rate(fps), audio)


def video_parts(video, input_name: str = "video"):
    """(images, frames per second as a Fraction, AUDIO dict or None) of a VIDEO; InputError if it is none."""
    if not callable(getattr(video, "get_components", None)):
        raise InputError(input_name, f"expected a VIDEO (from Create Video, Load Video or Hotshot-XL Decode), "
                                     f"got {type(video).__name__}")
    parts = video.get_components()
    return parts.images, Fraction(parts.frame_rate), getattr(parts, "audio", None)


def to_audio(audio: dict | None, input_name: str = "video"):
    """ComfyUI's AUDIO ({"waveform": (batch, channels, samples), "sample_rate"}) as the library's Audio
    (the first item of the batch), or None."""
    if audio is None:
        return None
    from ..model.media.audio import Audio

    waveform = audio.get("waveform") if isinstance(audio, dict) else None
    if waveform is None or getattr(waveform, "ndim", 0) != 3 or waveform.shape[0] < 1:
        raise InputError(input_name, "its audio is not an AUDIO waveform (batch, channels, samples)")
    return Audio(waveform[0].detach().float().cpu().numpy(), int(audio.get("sample_rate", 0)))


def workflow_tags(prompt, extra_pnginfo) -> dict[str, str] | None:
    """The prompt and workflow as core's save nodes store them ({key: JSON text}); None when
    ComfyUI runs with --disable-metadata or there is nothing to store."""
    if host.metadata_disabled():
        return None
    tags = {}
    if prompt is not None:
        tags["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        tags[key] = json.dumps(value)
    return tags or None
