"""Command line: `python -m model.caption CLIPS --captioner BLIP_FOLDER`: a caption for every clip
without one (videos get `name.txt`, frame folders `prompt.txt`); existing captions are kept."""

from __future__ import annotations

import argparse
import sys

from ..errors import HotshotError, InputError

# How the user started us: the module in a checkout, or the installed console script.
PROG = "python -m model.caption" if __package__ == "model.caption" else "hotshot-xl-caption"


def add_caption_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="folder of clips, as for python -m model.train --data")
    parser.add_argument("--captioner", required=True, help="local BLIP captioning model folder "
                        "(e.g. a download of Salesforce/blip-image-captioning-large)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--frames-shown", type=int, default=3, help="frames of each clip shown to the captioner")
    parser.add_argument("--max-tokens", type=int, default=40, help="longest caption, in tokens")
    parser.add_argument("--prefix", default="", help="text put before every caption (e.g. a trigger word)")


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, allow_abbrev=False,  # --max 3 is no flag
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_caption_arguments(parser)
    args = parser.parse_args(argv)
    try:
        for name in ("frames_shown", "max_tokens"):
            if getattr(args, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}", f"must be positive, got {getattr(args, name)}")
        from ..media.clips import empty_captions, find_sources, missing_captions, plural
        from .captioner import caption_sources, check_captioner

        check_captioner(args.captioner)
        sources = find_sources(args.data, flag="data")
        missing = missing_captions(sources)
        empty = empty_captions(sources)
        if empty:
            print(f"{plural(len(empty), 'clip')} with an empty caption, kept as written (an empty caption trains "
                  "unconditionally; delete the file to have it captioned): "
                  + ", ".join(str(s.caption_file) for s in empty[:5]) + (" ..." if len(empty) > 5 else ""),
                  file=sys.stderr)
        written = caption_sources(missing, args.captioner, args.device, prefix=args.prefix,
                                  frames_shown=args.frames_shown, max_new_tokens=args.max_tokens,
                                  log=lambda m: print(m, file=sys.stderr))
        if missing and not written:
            raise InputError("data", f"none of the {plural(len(missing), 'clip')} without a caption could be "
                             "captioned (unreadable, or the captioner wrote nothing: see above)")
    except HotshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"captioned {plural(len(written), 'clip')}; {len(sources) - len(missing)} already had captions"
          + (f"; {len(missing) - len(written)} not captioned" if len(missing) > len(written) else ""))
    return 0


def main() -> None:
    sys.exit(run())
