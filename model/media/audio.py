"""A sound track muxed next to the frames (mp4: AAC, webm: Opus), cut to the video's length.

`Audio` is plain data: a float waveform (channels, samples) in -1..1 and its sample rate, what
ComfyUI's AUDIO type holds (its `waveform` is (batch, channels, samples); the node passes batch 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError

# Container (FFmpeg muxer) -> (encoder, sample rate it is given; None: the track's own)
AUDIO_CODECS = {"mp4": ("aac", None), "webm": ("libopus", 48000)}
_LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class Audio:
    waveform: np.ndarray  # float32 (channels, samples)
    sample_rate: int


def check_audio(audio, container: str, path) -> Audio | None:
    """`audio` as an Audio the container can hold; InputError naming what is wrong."""
    if audio is None:
        return None
    if not isinstance(audio, Audio):
        raise InputError("audio", f"expected model.media.audio.Audio, got {type(audio).__name__}")
    if container not in AUDIO_CODECS:
        raise InputError("audio", f"{path}: this format holds no sound; save as "
                                  f"{' or '.join(AUDIO_CODECS)} to keep the audio")
    wave = audio.waveform
    if not isinstance(wave, np.ndarray) or wave.ndim != 2 or wave.shape[0] not in _LAYOUTS or wave.shape[1] < 1:
        shape = getattr(wave, "shape", type(wave).__name__)
        raise InputError("audio", f"expected a waveform (1 or 2 channels, samples), got {shape}")
    if not np.isfinite(wave).all():
        raise InputError("audio", "the waveform contains NaN or infinite values")
    if isinstance(audio.sample_rate, bool) or not isinstance(audio.sample_rate, int) or audio.sample_rate < 1:
        raise InputError("audio", f"sample rate must be a positive whole number, got {audio.sample_rate!r}")
    return audio


def add_audio_stream(output, container: str, audio: Audio):
    encoder, rate = AUDIO_CODECS[container]
    return output.add_stream(encoder, rate=rate or audio.sample_rate, layout=_LAYOUTS[audio.waveform.shape[0]])


def encode_audio(output, stream, audio: Audio, frames: int, frame_rate: Fraction) -> None:
    """Mux the part of `audio` that the video's `frames` span (as core SaveVideo cuts it)."""
    import av

    length = math.ceil(audio.sample_rate * frames / frame_rate)
    wave = np.ascontiguousarray(audio.waveform[:, :length], dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout=_LAYOUTS[wave.shape[0]])
    frame.sample_rate = audio.sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, audio.sample_rate)
    # PyAV resamples to the encoder's format and rate and cuts the encoder's frame size itself.
    output.mux(stream.encode(frame))
    output.mux(stream.encode(None))
