"""Command-line flags for video-to-video and image-to-video; nothing heavy at module top."""

from __future__ import annotations

import argparse
import sys


def add_video2video_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "video to video", "Start from an input instead of noise. Size and frame count follow the input unless "
        "--width/--height/--frames are given.")
    start = group.add_mutually_exclusive_group()
    unset = argparse.SUPPRESS  # no "(default: None)" in --help
    start.add_argument("--init-video", default=unset, metavar="PATH", help="input video (mp4, webm, gif, webp) or folder of frames")
    start.add_argument("--init-image", default=unset, metavar="PATH", help="one image as the start of every frame (image to video)")
    group.add_argument("--strength", type=float, default=unset, metavar="S",
                       help="0..1: how far from the input (about strength x steps steps run; default 0.75 with "
                       "an input)")


DEFAULT_STRENGTH = 0.75


def _given(argv, flag: str) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def init_from_args(args, argv, settings):
    """(settings, uint8 init frames or None): the input read and fitted; width, height and frames
    follow it unless their flags were given. Errors name the flags."""
    import dataclasses

    from ..errors import InputError

    argv = sys.argv[1:] if argv is None else list(argv)
    init_video, init_image = getattr(args, "init_video", None), getattr(args, "init_image", None)
    given_strength = getattr(args, "strength", None)
    path = init_video or init_image
    if path is None:
        if given_strength is not None:
            raise InputError("--strength", "needs --init-video or --init-image")
        return settings, None
    from .inputs import load_init

    strength = DEFAULT_STRENGTH if given_strength is None else given_strength
    if not 0 <= strength <= 1:
        raise InputError("--strength", f"must be from 0 to 1, got {strength}")
    flag = "--init-video" if init_video else "--init-image"
    width = settings.width if _given(argv, "--width") else None
    height = settings.height if _given(argv, "--height") else None
    frames = settings.frames if _given(argv, "--frames") or init_image else None
    pixels = load_init(path, flag, width, height, frames, image=init_image is not None)
    count = settings.frames if init_image else pixels.shape[0]
    settings = dataclasses.replace(settings, width=pixels.shape[2], height=pixels.shape[1], frames=count,
                                   strength=strength)
    settings.check()
    return settings, pixels
