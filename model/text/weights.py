"""Prompt weights as ComfyUI writes them, and as its CLIP Text Encode reads them.

    (words:1.2)   `words` at weight 1.2 (the number replaces any weight from outer parentheses)
    (words)       the enclosing weight times 1.1, so ((words)) is 1.21
    \\( and \\)     literal parentheses, no weight

A group whose text after its last colon is not a number is a plain (x1.1) group that keeps the
colon: `(time: noon)` is "time: noon" at 1.1, as in ComfyUI. Each run of text between parentheses
is tokenized on its own, as ComfyUI does. Unlike ComfyUI, which reads an unbalanced parenthesis as
text, an unbalanced parenthesis, a non-finite weight or one outside +-MAX_WEIGHT is an error naming
the prompt and the character (1-based): such a prompt is almost always a typo.

How a weight acts (ComfyUI's rule, applied in `encoders.py`): a token's hidden states move away
from those of the empty prompt at the same position by the weight, (states - empty) * w + empty;
tokens at weight 1 and the pooled embedding are not touched.
"""

from __future__ import annotations

import math

from ..errors import InputError

BARE_GROUP = 1.1  # what (words) multiplies the enclosing weight by
MAX_WEIGHT = 10.0  # beyond this a weight is taken for a typo ((cat:12) for (cat:1.2))
OPEN, CLOSE = object(), object()  # structural parentheses; escaped ones stay characters

Segment = tuple[str, float]  # a run of text and its weight


def has_weights(prompt: str) -> bool:
    """Whether `prompt` has any parenthesis (weighted or escaped): if not, it is one plain segment."""
    return "(" in prompt or ")" in prompt


def parse_weights(prompt: str, name: str = "prompt") -> list[Segment]:
    """(text, weight) runs of `prompt` in order, text unescaped; InputError naming `name` if malformed.

    A prompt without parentheses is [(prompt, 1.0)], exactly; empty runs are left out.
    """
    if not has_weights(prompt):
        return [(prompt, 1.0)] if prompt else []
    items, positions = _scan(prompt, name)
    segments: list[Segment] = []
    _read(items, positions, 0, len(items), 1.0, segments, prompt, name)
    return [(text, weight) for text, weight in segments if text]


def _scan(prompt: str, name: str) -> tuple[list, list[int]]:
    """Characters with structural parentheses as OPEN/CLOSE, and each item's 1-based position;
    InputError for an unbalanced parenthesis."""
    items, positions, opened = [], [], []
    index = 0
    while index < len(prompt):
        char = prompt[index]
        if char == "\\" and prompt[index + 1:index + 2] in ("(", ")"):
            items.append(prompt[index + 1])  # an escaped parenthesis is text
            positions.append(index + 1)
            index += 2
            continue
        if char == "(":
            opened.append(index)
            items.append(OPEN)
        elif char == ")":
            if not opened:
                raise InputError(name, f"unbalanced ')' at character {index + 1} ({_around(prompt, index)}); "
                                 r"write \) for a literal parenthesis")
            opened.pop()
            items.append(CLOSE)
        else:
            items.append(char)
        positions.append(index + 1)
        index += 1
    if opened:
        raise InputError(name, f"unclosed '(' at character {opened[-1] + 1} ({_around(prompt, opened[-1])}); "
                         r"close it, or write \( for a literal parenthesis")
    return items, positions


def _read(items, positions, start, end, weight, out, prompt, name) -> None:
    """Append the segments of items[start:end] (balanced) at `weight` to `out`."""
    text, index = [], start
    while index < end:
        item = items[index]
        if item is not OPEN:
            text.append(item)
            index += 1
            continue
        close = _matching(items, index)
        if text:
            out.append(("".join(text), weight))
            text = []
        inner_start, inner_end = index + 1, close
        group_weight = weight * BARE_GROUP
        colon = _last_colon(items, inner_start, inner_end)
        if colon is not None:
            number = _number(items[colon + 1:inner_end])
            if number is not None:
                group_weight = _checked(number, items[colon + 1:inner_end], positions[colon + 1] if colon + 1 <
                                        inner_end else positions[colon], prompt, name)
                inner_end = colon
        if not math.isfinite(group_weight) or abs(group_weight) > MAX_WEIGHT:
            raise InputError(name, f"the parentheses opened at character {positions[index]} nest to weight "
                             f"{group_weight:g}, beyond {MAX_WEIGHT:g} ({_around(prompt, positions[index] - 1)})")
        _read(items, positions, inner_start, inner_end, group_weight, out, prompt, name)
        index = close + 1
    if text:
        out.append(("".join(text), weight))


def _matching(items, open_index: int) -> int:
    depth = 0
    for index in range(open_index, len(items)):
        if items[index] is OPEN:
            depth += 1
        elif items[index] is CLOSE:
            depth -= 1
            if depth == 0:
                return index
    raise AssertionError("unbalanced items after _scan")  # _scan refuses these


def _last_colon(items, start: int, end: int) -> int | None:
    """The last ':' in the group (nested groups included, as ComfyUI searches the group's whole text),
    unless it is the group's first character."""
    for index in range(end - 1, start, -1):
        if items[index] == ":":
            return index
    return None


def _number(tail) -> float | None:
    """The weight a group's text after its colon gives, or None when it is text (ComfyUI's rule:
    whatever Python's float() reads, so ' 1.2', '1e-1' and 'inf' are numbers)."""
    if any(not isinstance(item, str) for item in tail):
        return None  # a parenthesis in it: text
    try:
        return float("".join(tail))
    except ValueError:
        return None


def _checked(number: float, tail, position: int, prompt: str, name: str) -> float:
    if not math.isfinite(number) or abs(number) > MAX_WEIGHT:
        kind = "not a finite number" if not math.isfinite(number) else f"outside -{MAX_WEIGHT:g}..{MAX_WEIGHT:g}"
        raise InputError(name, f"weight {''.join(tail).strip()!r} at character {position} is {kind} "
                         f"({_around(prompt, position - 1)})")
    return number


def _around(prompt: str, index: int, width: int = 12) -> str:
    """A short excerpt of `prompt` around `index`, for errors."""
    start, end = max(0, index - width), min(len(prompt), index + width + 1)
    return f"{'...' if start else ''}{prompt[start:end]}{'...' if end < len(prompt) else ''}"
