"""The `--lora PATH[:STRENGTH]` flag (repeatable): parsing and checking, before any model is loaded.

No torch import at module level: `--help` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

FLAG = "--lora"


@dataclass(frozen=True)
class LoRAChoice:
    path: Path
    strength: float  # for the UNet and both text encoders


def add_lora_arguments(parser) -> None:
    group = parser.add_argument_group("LoRA")
    group.add_argument(FLAG, action="append", default=[], metavar="PATH[:STRENGTH]",
                       help="an SDXL LoRA (.safetensors: kohya, diffusers or PEFT layout, LyCORIS/LoCon, or a "
                       "Hotshot-XL motion LoRA) merged into the UNet and both text encoders at STRENGTH (default 1; "
                       "0 leaves it out); repeat to stack several")


def parse_lora(value: str) -> LoRAChoice:
    """'path.safetensors' or 'path.safetensors:0.8' (the last colon splits, so C:\\... paths work)."""
    path, strength = value, 1.0
    head, sep, tail = value.rpartition(":")
    if sep and head and not tail.startswith(("\\", "/")):
        try:
            strength = float(tail)
        except ValueError:
            raise InputError(FLAG, f"{value!r}: the strength after ':' must be a number, got {tail!r}") from None
        path = head
    if not math.isfinite(strength):
        raise InputError(FLAG, f"{value!r}: the strength must be a finite number, got {strength}")
    return LoRAChoice(Path(path).expanduser(), strength)


def loras_from_args(args) -> list[LoRAChoice]:
    """The parsed `--lora` flags; InputError naming the flag for a malformed one."""
    return [parse_lora(value) for value in getattr(args, "lora", None) or []]


def read_chosen(choices: list[LoRAChoice], layers_per_block: int = 2):
    """Read each chosen file (ModelFileError naming it: missing, pickle, truncated, no LoRA keys)."""
    from .formats import read_lora

    return [(read_lora(choice.path, layers_per_block), choice.strength) for choice in choices]
