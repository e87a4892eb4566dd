"""Keyframes `{frame: value}`: parsing and checks, shared by the CLI, Python and the nodes.

Imports nothing heavy (the CLI checks its flags before torch loads). A keyframe remembers where
it came from (`line 3` of a file, or `keyframe 16`) so that every error can point at it.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..text.weights import parse_weights

from .choices import INTERPOLATIONS  # noqa: F401 (re-exported)
INLINE_SEPARATOR = "|"


@dataclass(frozen=True)
class Keyframe:
    frame: int
    value: object  # a prompt (str) or a number (motion scale)
    where: str  # "line 3", "keyframe 16": how errors point at it


def _frame_of(key, name: str, where: str) -> int:
    if isinstance(key, bool):
        raise InputError(name, f"{where}: the frame must be a whole number, got {key!r}")
    if isinstance(key, numbers.Integral):
        return int(key)
    text = str(key).strip()
    try:
        return int(text)
    except ValueError:
        raise InputError(name, f"{where}: the frame must be a whole number, got {text!r}") from None


def _prompt_of(value, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(name, f"{where}: expected a prompt (text), got {type(value).__name__}")
    if not value.strip():
        raise InputError(name, f"{where}: empty prompt; give the text the video should show from this frame")
    try:
        parse_weights(value.strip(), name)  # `(words:1.2)` well formed
    except InputError as error:
        raise InputError(name, f"{where}: {error.problem}") from None
    return value.strip()


def _scale_of(value, name: str, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(name, f"{where}: expected a number, got {value.strip()!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(name, f"{where}: must be a finite number, got {value!r}")
    if value < 0:
        raise InputError(name, f"{where}: must be zero or more (0: no motion, 1: as released), got {value!r}")
    return float(value)


def _ordered(keyframes: list[Keyframe], name: str) -> tuple[Keyframe, ...]:
    if not keyframes:
        raise InputError(name, "no keyframes: give at least one `frame: value`")
    for before, after in zip(keyframes, keyframes[1:]):
        if after.frame == before.frame:
            raise InputError(name, f"{after.where}: frame {after.frame} is given twice (also at {before.where})")
        if after.frame < before.frame:
            raise InputError(name, f"{after.where}: frame {after.frame} comes after frame {before.frame} "
                             f"({before.where}); list keyframes in ascending order")
    for keyframe in keyframes:
        if keyframe.frame < 0:
            raise InputError(name, f"{keyframe.where}: frame {keyframe.frame} is negative; frames count from 0")
    return tuple(keyframes)


def _pairs_from_lines(text: str, name: str, source: str = "") -> list[tuple[object, str, str]]:
    """(frame text, value text, where) of `frame: value` lines; blank and `#` lines are skipped."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}line {number}"
        frame, colon, value = stripped.partition(":")
        if not colon:
            raise InputError(name, f"{where}: expected `frame: prompt`, got {stripped!r}")
        pairs.append((frame, value, where))
    return pairs


def _pairs_from_json(text: str, name: str, source: str) -> list[tuple[object, object, str]]:
    def no_repeats(items):  # JSON objects may repeat a key; json.loads would keep the last silently
        seen = {}
        for key, value in items:
            if key in seen:
                raise InputError(name, f"{source}keyframe {key}: frame {key} is given twice")
            seen[key] = value
        return items

    try:
        items = json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as error:
        raise InputError(name, f"{source}line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(items, list) or not all(isinstance(item, tuple) for item in items):
        raise InputError(name, f"{source}expected a JSON object {{\"frame\": \"prompt\", ...}}")
    return [(key, value, f"{source}keyframe {key}") for key, value in items]


def _pairs_from_text(text: str, name: str, source: str = "") -> list[tuple[object, object, str]]:
    """A JSON object, or `frame: value` lines; `source` (a file name and ", ") starts each location."""
    if text.lstrip().startswith("{"):
        return _pairs_from_json(text, name, source)
    return _pairs_from_lines(text, name, source)


def _pairs_inline(text: str, name: str) -> list[tuple[object, object, str]]:
    pairs = []
    for number, part in enumerate(text.split(INLINE_SEPARATOR), 1):
        frame, colon, value = part.strip().partition(":")
        where = f"keyframe {number} ({part.strip()!r})"
        if not colon:
            raise InputError(name, f"{where}: expected `frame: prompt`, keyframes separated by "
                             f"{INLINE_SEPARATOR!r}")
        pairs.append((frame, value, where))
    return pairs


def _pairs(source, name: str) -> list[tuple[object, object, str]]:
    if isinstance(source, dict):
        return [(key, value, f"keyframe {key}") for key, value in source.items()]
    if isinstance(source, (list, tuple)):
        pairs = []
        for item in source:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise InputError(name, f"expected (frame, value) pairs, got {item!r}")
            pairs.append((item[0], item[1], f"keyframe {item[0]}"))
        return pairs
    if isinstance(source, str):
        return _pairs_from_text(source, name)
    raise InputError(name, f"expected keyframes {{frame: value}} or `frame: value` lines, got {type(source).__name__}")


def prompt_keyframes(source, name: str = "prompts") -> tuple[Keyframe, ...]:
    """Prompt keyframes from a dict `{frame: prompt}`, (frame, prompt) pairs, or text (a JSON object
    or `frame: prompt` lines); InputError naming `name` and the line or keyframe."""
    if isinstance(source, (list, tuple)) and source and all(isinstance(k, Keyframe) for k in source):
        return _ordered([Keyframe(k.frame, _prompt_of(k.value, name, k.where), k.where) for k in source], name)
    return _ordered([Keyframe(_frame_of(f, name, w), _prompt_of(v, name, w), w) for f, v, w in _pairs(source, name)],
                    name)


def scale_keyframes(source, name: str = "motion_scale") -> tuple[Keyframe, ...]:
    """Motion scale keyframes from a number (for every frame), a dict `{frame: scale}`, pairs or text."""
    if isinstance(source, (numbers.Real, str)) and not isinstance(source, bool):
        text = str(source)
        if ":" not in text:
            return (Keyframe(0, _scale_of(source, name, "the scale"), "the scale"),)
        pairs = _pairs_from_lines(text, name) if "\n" in text else _pairs_inline(text, name)
    else:
        pairs = _pairs(source, name)
    return _ordered([Keyframe(_frame_of(f, name, w), _scale_of(v, name, w), w) for f, v, w in pairs], name)


def read_prompt_travel(argument: str, name: str = "--prompt-travel") -> tuple[Keyframe, ...]:
    """The CLI's --prompt-travel: a file (JSON object or `frame: prompt` lines) or the inline form
    `0: a tree in spring | 64: a tree in winter`."""
    path = Path(argument).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(name, f"cannot read {path}: {error}") from None
        return _ordered([Keyframe(_frame_of(f, name, w), _prompt_of(v, name, w), w)
                         for f, v, w in _pairs_from_text(text, name, f"{path}, ")], name)
    if ":" not in argument:
        raise InputError(name, f"{argument!r} is neither a file nor keyframes like `0: a tree in spring "
                         f"{INLINE_SEPARATOR} 64: a tree in winter`")
    return _ordered([Keyframe(_frame_of(f, name, w), _prompt_of(v, name, w), w)
                     for f, v, w in _pairs_inline(argument, name)], name)


def check_in_range(keyframes, frames: int, name: str) -> None:
    """InputError naming `name` and the keyframe if one lies past the video's last frame."""
    for keyframe in keyframes:
        if keyframe.frame >= frames:
            raise InputError(name, f"{keyframe.where}: frame {keyframe.frame} is past the last frame of a "
                             f"{frames}-frame video (frames count from 0 to {frames - 1})")


def check_interpolation(value, name: str = "interpolation") -> str:
    if value not in INTERPOLATIONS:
        raise InputError(name, f"must be one of {', '.join(INTERPOLATIONS)}, got {value!r}")
    return value
