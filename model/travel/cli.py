"""The directing flags of `python -m model.sample`: --prompt-travel, --motion-scale, --freeinit.

Checked before any weights are read; errors name the flag and the line or keyframe. No torch
import at module level: `--help` stays fast.
"""

from __future__ import annotations

import sys

from ..errors import InputError
from .choices import FREEINIT_CUTOFF, FREEINIT_FILTERS, INTERPOLATIONS

FLAGS = {"motion_scale": "--motion-scale", "freeinit": "--freeinit", "freeinit_filter": "--freeinit-filter",
         "freeinit_cutoff": "--freeinit-cutoff", "interpolation": "--prompt-interpolation"}


def add_travel_arguments(parser) -> None:
    group = parser.add_argument_group(
        "directing", "Prompt travel, motion strength and FreeInit (see README: Directing a video).")
    group.add_argument("--prompt-travel", metavar="FILE|KEYFRAMES",
                       help="prompts by frame instead of --prompt: a file (a JSON object {\"0\": \"...\", \"64\": "
                       "\"...\"} or `frame: prompt` lines) or inline, \"0: a tree in spring | 64: a tree in "
                       "winter\"; each frame's text blends between the keyframes around it")
    group.add_argument("--prompt-interpolation", default="linear", choices=INTERPOLATIONS,
                       help="how text blends between keyframes: linear, or slerp (spherical)")
    group.add_argument("--motion-scale", default="1", metavar="S|KEYFRAMES",
                       help="strength of the temporal layers' update: 0 = the SDXL image model frame by frame, "
                       "1 = as released, above 1 stronger; or keyframes \"0: 1 | 32: 0.5\"")
    group.add_argument("--freeinit", type=int, default=1, metavar="N",
                       help="FreeInit: sample N times, each from the previous result's low frequencies (N times "
                       "the time; 1 = plain sampling)")
    group.add_argument("--freeinit-filter", default=FREEINIT_FILTERS[0], choices=FREEINIT_FILTERS,
                       help="FreeInit's low-pass filter over frames, height and width")
    group.add_argument("--freeinit-cutoff", type=float, default=FREEINIT_CUTOFF,
                       help="FreeInit's stop frequency, a fraction (0, 1] of the highest")


def direction_from_args(args, given: set[str], settings):
    """(settings with motion scale and FreeInit, prompt keyframes or None), checked against the
    video's frames; InputError naming the flag."""
    import dataclasses

    from .keyframes import check_in_range, read_prompt_travel

    keyframes = None
    if args.prompt_travel is not None:
        if "prompt" in given:
            raise InputError("--prompt-travel", "give either --prompt or --prompt-travel, not both")
        if getattr(args, "prompts", None) is not None:
            raise InputError("--prompt-travel", "cannot be combined with --prompts (a batch of single prompts)")
        keyframes = read_prompt_travel(args.prompt_travel, "--prompt-travel")
        check_in_range(keyframes, settings.frames, "--prompt-travel")
    from .freeinit import FreeInitOptions

    try:
        freeinit = FreeInitOptions(args.freeinit, args.freeinit_filter, args.freeinit_cutoff)
        settings = dataclasses.replace(settings, motion_scale=args.motion_scale, freeinit=freeinit)
        settings.check()
    except InputError as error:
        raise InputError(FLAGS.get(error.name, error.name), error.problem) from None
    if freeinit.iterations > 1:
        from .freeinit import cost_line

        print(cost_line(freeinit, settings.steps), file=sys.stderr)
    return settings, keyframes
