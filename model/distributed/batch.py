"""Batches of prompts: one video per line of a prompts file, shared out among the ranks.

A prompts file holds one prompt a line, or a JSON object a line with per-line settings:
    a corgi running on a beach, hd
    {"prompt": "waves at night", "frames": 16, "guidance": 7.5, "negative_prompt": null}
Blank lines are skipped; the others are the lines 0, 1, 2, ... of the batch. Line i runs with
seed + i (unless it sets "seed" itself) and writes `pattern.format(index=i)`, for example
out/{index:04d}.mp4, or out/{index:04d}/ for a folder of PNG frames per line.

Each output is written once, under a temporary name renamed into place when complete, and a
line whose output exists is skipped: a batch that stopped half-way finishes where it stopped.
Under several ranks rank 0 lists the lines still to do and the list is shared out round robin;
every rank renders its lines alone (nothing is exchanged while rendering).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError
from ..text.weights import parse_weights
from ..pipeline import Settings
from ..denoising.schedulers import SchedulerOptions
from ..media.video import DEFAULT_FPS, check_fps, check_output, frame_rate, sequence_files, video_format, write_video
from .group import RankGroup

# What a JSON line may set besides "prompt" (Settings fields that are plain values).
LINE_SETTINGS = ("seed", "width", "height", "frames", "steps", "guidance", "scheduler", "noise", "decode_chunk",
                 "vae_tiling")
LINE_KEYS = ("prompt", "negative_prompt", *LINE_SETTINGS)


@dataclass(frozen=True)
class PromptLine:
    """One video of a batch."""

    index: int  # place among the file's prompts, from 0: its seed offset and {index}
    line_number: int  # in the file, from 1, for messages
    prompt: str
    negative_prompt: str | None  # None: the all-zero negative embedding
    settings: Settings
    output: str  # where its video goes: the pattern with {index} filled in


def output_for(pattern: str, index: int, name: str = "out") -> str:
    """`pattern` with {index} (any format spec: {index:04d}) filled in; InputError naming `name` if it has none."""
    try:
        filled = pattern.format(index=index)
        other = pattern.format(index=index + 1)
    except (KeyError, IndexError, ValueError) as error:
        raise InputError(name, f"{pattern!r} is not a pattern with {{index}} ({error}); for example "
                         "out/{index:04d}.mp4, or out/{index:04d}/ for PNG frames") from None
    if filled == other:
        raise InputError(name, f"{pattern!r} has no {{index}}, so every line would write the same file; for "
                         "example out/{index:04d}.mp4, or out/{index:04d}/ for PNG frames")
    return filled


def read_prompts(path, settings: Settings, negative_prompt: str | None = "blurry",
                 out: str = "out/{index:04d}.mp4") -> list[PromptLine]:
    """The batch in prompts file `path`: `settings` and `negative_prompt` for every line, with
    each JSON line's own settings over them; line i gets seed + i and output `out` with {index}=i.

    Every line is checked here (InputError naming the file and line), before any weights are read.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(file), "no such prompts file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(str(file), f"cannot be read as UTF-8 text: {error}") from None
    lines: list[PromptLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{file} line {number}"
        index = len(lines)
        values = _line_values(raw.strip(), where)
        _check_weights(values, where)
        try:
            line_settings = _line_settings(settings, values, index)
            line_settings.check()
        except InputError as error:
            raise InputError(where, f"{error.name}: {error.problem}") from None
        lines.append(PromptLine(index, number, values["prompt"], values.get("negative_prompt", negative_prompt),
                                line_settings, output_for(out, index)))
    if not lines:
        raise InputError(str(file), "holds no prompts (one a line, or a JSON object a line)")
    return lines


def _line_values(raw: str, where: str) -> dict:
    if not raw.startswith("{"):
        return {"prompt": raw}
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InputError(where, f"starts with {{ but is not a JSON object: {error.msg} at column {error.colno}") \
            from None
    if not isinstance(values, dict):
        raise InputError(where, "expected a JSON object")
    unknown = sorted(set(values) - set(LINE_KEYS))
    if unknown:
        raise InputError(where, f"unknown keys {', '.join(map(repr, unknown))}; a line may set {', '.join(LINE_KEYS)}")
    if not isinstance(values.get("prompt"), str) or not values["prompt"].strip():
        raise InputError(where, "needs \"prompt\": a non-empty string")
    negative = values.get("negative_prompt", "")
    if negative is not None and not isinstance(negative, str):
        raise InputError(where, f"\"negative_prompt\" must be a string or null, got {negative!r}")
    return values


def _check_weights(values: dict, where: str) -> None:
    """InputError naming the line unless the prompts' weights, `(words:1.2)`, are well formed."""
    for key in ("prompt", "negative_prompt"):
        if isinstance(values.get(key), str):
            try:
                parse_weights(values[key], key)
            except InputError as error:
                raise InputError(where, f"{key}: {error.problem}") from None


def _line_settings(settings: Settings, values: dict, index: int) -> Settings:
    given = {key: values[key] for key in LINE_SETTINGS if key in values}
    for key, value in given.items():  # JSON's true/false would pass as 1/0, and null as "unset": refused
        if isinstance(value, bool) or value is None:
            raise InputError(key, f"expected a number or name, got {value!r}")
    if "scheduler" in given:
        if not isinstance(given["scheduler"], str):
            raise InputError("scheduler", f"expected a scheduler name, got {given['scheduler']!r}")
        base = settings.scheduler
        given["scheduler"] = (replace(base, name=given["scheduler"]) if isinstance(base, SchedulerOptions)
                              else SchedulerOptions(given["scheduler"]))
    given.setdefault("seed", settings.seed + index)
    return replace(settings, **given)


def check_outputs(lines: list[PromptLine], fps=DEFAULT_FPS, loop: int = 0) -> None:
    """Raise what writing any line's video would refuse (bad type, missing folder), and outputs
    that two lines share; existing outputs are fine (those lines are skipped or overwritten)."""
    seen: dict[Path, PromptLine] = {}
    for line in lines:
        if _FRAME_NUMBER_HINT in line.output or (sequence_files(line.output, 1) and not _is_folder(line.output)):
            raise InputError("out", f"{line.output!r}: in a batch, PNG frames go in a folder per line, ending in "
                             "'/': for example out/{index:04d}/")
        target = Path(line.output).resolve()
        if target in seen:
            raise InputError("out", f"lines {seen[target].line_number} and {line.line_number} would both write "
                             f"{line.output}")
        seen[target] = line
        parent = Path(line.output).parent
        if not parent.exists():  # made when the line is written: only where it can be
            ancestor = next(folder for folder in parent.parents if folder.exists())
            if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
                raise InputError("out", f"{line.output}: folder {parent} cannot be made: {ancestor} is not a "
                                 "writable folder")
        if _is_folder(line.output) and not Path(line.output).exists():
            continue
        if not parent.exists():
            fmt = video_format(line.output)
            check_fps(fmt, frame_rate(fps), fps)
            continue
        check_output(line.output, line.settings.frames, fps, loop, overwrite=True)


_FRAME_NUMBER_HINT = "%0"  # a printf frame pattern (%05d); %d alone is caught by sequence_files


def _is_folder(output: str) -> bool:
    return output.endswith(("/", os.sep))


def is_done(line: PromptLine) -> bool:
    """Whether the line's output is all there (a video file, or every PNG frame of its folder)."""
    files = sequence_files(line.output, line.settings.frames) or [Path(line.output)]
    return all(file.is_file() for file in files)


def lines_to_do(lines: list[PromptLine], overwrite: bool = False) -> list[int]:
    """Indices (into `lines`) of the lines to render: all with `overwrite`, else those not done."""
    return [number for number, line in enumerate(lines) if overwrite or not is_done(line)]


def write_line(frames, line: PromptLine, fps=DEFAULT_FPS, loop: int = 0, overwrite: bool = False) -> list[Path]:
    """Write one line's frames, all at once: a new PNG folder is filled under a temporary name and
    renamed into place; a video file is renamed into place by write_video itself."""
    folder = Path(line.output)
    if not _is_folder(line.output) or folder.exists():
        return write_video(frames, line.output, fps=fps, loop=loop, overwrite=overwrite)
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        written = write_video(frames, f"{staging}/", fps=fps, loop=loop)
        os.rename(staging, folder)  # atomic; fails if the folder appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [folder / file.name for file in written]


def render_prompts(pipe, lines: list[PromptLine], ranks: RankGroup | None = None, fps=DEFAULT_FPS, loop: int = 0,
                   overwrite: bool = False, log=None) -> list[PromptLine]:
    """Render and write every line not done yet; with `ranks`, this rank's share of them.

    Every rank of `ranks` must call it with the same lines. Rank 0 lists what is left to do (so
    all ranks agree even while outputs appear), the list is shared out round robin, and each rank
    renders its lines alone with `pipe` (its windows not shared). At the end the ranks wait for
    each other, for the group's timeout plus this rank's longest line (on a gloo group; NCCL's
    barrier waits its group's timeout), so a rank that hangs fails the batch instead of holding
    it forever. `log(text)` hears of each line written.
    Returns the lines this rank wrote.
    """
    check_outputs(lines, fps, loop)
    todo = lines_to_do(lines, overwrite)
    if ranks is not None:
        todo = ranks.broadcast_object(todo)
        todo = todo[ranks.rank::ranks.size]
    written, longest = [], 0.0
    shared, pipe.distributed = getattr(pipe, "distributed", None), None  # each line on this rank alone
    try:
        for number in todo:
            line = lines[number]
            started = time.perf_counter()
            settings = line.settings
            conditions = pipe.encode(line.prompt, line.negative_prompt, settings.original_size, settings.target_size)
            latents = pipe.sample(conditions, settings)
            frames = pipe.decode(latents, settings.decode_chunk, settings.vae_tiling)
            Path(line.output).parent.mkdir(parents=True, exist_ok=True)  # out/{index:04d}.mp4 on a fresh machine
            files = write_line(frames, line, fps, loop, overwrite)
            seconds = time.perf_counter() - started
            longest = max(longest, seconds)
            written.append(line)
            if log is not None:
                where = files[0] if len(files) == 1 else f"{files[0].parent}/ ({len(files)} PNG files)"
                log(f"line {line.index} (file line {line.line_number}): wrote {where}, {seconds:.1f} s")
    except KeyboardInterrupt as interruption:  # the CLI says which outputs were written before it
        interruption.written = [line.output for line in written]
        raise
    finally:
        pipe.distributed = shared
    if ranks is not None:
        ranks.barrier(ranks.timeout_s + longest)
    return written
