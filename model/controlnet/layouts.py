"""What a ControlNet file holds, from its safetensors header alone (names and shapes, no data).

The released SDXL ControlNets (diffusers/controlnet-*-sdxl-1.0 and their "mid" and "small"
variants) differ only in how many transformer layers their down and mid blocks keep, so their
diffusers config follows from the tensors present: the block widths from the resnets, the
transformer depth from the `transformer_blocks.N` indices, the conditioning embedding from its
convolutions. That is done for full-size SDXL ControlNets only (320/640/1280 channels, heads of 64
channels as SDXL has them); any other size needs its config.json.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from ..errors import ModelFileError

ORIGINAL_PREFIX = "control_model."  # the original (ldm) layout's single files
SDXL_CHANNELS = (320, 640, 1280)
SDXL_HEAD_CHANNELS = 64
SDXL_CONTEXT_DIM = 2048
SDXL_ADDED_DIM = 2816  # pooled text (1280) + six size numbers x 256
SDXL_TIME_EMBED_DIM = 256


def read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the file's JSON header (the data is not read, need not exist)."""
    try:
        with open(path, "rb") as file:
            (size,) = struct.unpack("<Q", file.read(8))
            if size > 100_000_000:
                raise ValueError("header size out of range")
            header = json.loads(file.read(size))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(path, f"not a readable safetensors file ({error})") from None
    return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


def layout_name(config: dict) -> str:
    """standard, mid or small (the released SDXL variants, by transformer depth), else custom."""
    depth = tuple(config["transformer_layers_per_block"])
    if depth[1:] == (2, 10):
        return "standard"
    if depth[-1] == 1:
        return "mid"
    if not any(depth):
        return "small"
    return "custom"


def _indices(shapes, pattern: str) -> set[int]:
    regex = re.compile(pattern)
    return {int(m.group(1)) for key in shapes for m in [regex.match(key)] if m}


def describe_base(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why these diffusers-layout ControlNet tensors are not for SDXL, or None if they may be."""
    blocks = _indices(shapes, r"down_blocks\.(\d+)\.")
    if "add_embedding.linear_1.weight" not in shapes:
        cross = [shape[1] for key, shape in shapes.items() if key.endswith("attn2.to_k.weight")]
        base = {768: "SD 1.5", 1024: "SD 2.x"}.get(cross[0] if cross else None, "a model without SDXL's size "
                                                                                  "conditioning")
        return f"a ControlNet for {base} ({len(blocks)} down blocks, no add_embedding); Hotshot-XL needs an SDXL one"
    return None


def config_from_header(shapes: dict[str, tuple[int, ...]], path: Path) -> dict:
    """The diffusers ControlNetModel config of a full-size SDXL ControlNet in diffusers layout."""
    problem = describe_base(shapes)
    if problem:
        raise ModelFileError(path, problem)
    blocks = sorted(_indices(shapes, r"down_blocks\.(\d+)\."))
    try:
        channels = tuple(shapes[f"down_blocks.{i}.resnets.0.conv1.weight"][0] for i in blocks)
        layers = len(_indices(shapes, r"down_blocks\.0\.resnets\.(\d+)\."))
        embedding = [shapes["controlnet_cond_embedding.conv_in.weight"]]
        embedding += [shapes[f"controlnet_cond_embedding.blocks.{i}.weight"]
                      for i in sorted(_indices(shapes, r"controlnet_cond_embedding\.blocks\.(\d+)\.weight"))]
        in_channels = shapes["conv_in.weight"][1]
    except KeyError as missing:
        raise ModelFileError(path, f"not a diffusers ControlNet: no tensor {missing}") from None
    if channels != SDXL_CHANNELS:
        raise ModelFileError(path, f"a ControlNet with block widths {channels}: only full-size SDXL ControlNets "
                             f"{SDXL_CHANNELS} are recognised without a config; give its config.json")
    types, depth = [], []
    for i in blocks:
        attention = any(key.startswith(f"down_blocks.{i}.attentions.") for key in shapes)
        types.append("CrossAttnDownBlock2D" if attention else "DownBlock2D")
        depth.append(len(_indices(shapes, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.")))
    mid_attention = any(key.startswith("mid_block.attentions.") for key in shapes)
    mid_depth = len(_indices(shapes, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\."))
    if mid_attention and mid_depth != depth[-1]:
        raise ModelFileError(path, f"mid block has {mid_depth} transformer layers, the last down block {depth[-1]}: "
                             "not a layout diffusers builds; give its config.json")
    added = shapes["add_embedding.linear_1.weight"][1]
    return {
        "_class_name": "ControlNetModel",
        "in_channels": in_channels,
        "conditioning_channels": embedding[0][1],
        "conditioning_embedding_out_channels": [embedding[0][0]] + [shape[0] for shape in embedding[2::2]],
        "block_out_channels": list(channels),
        "down_block_types": types,
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_attention else "UNetMidBlock2D",
        "layers_per_block": layers,
        "transformer_layers_per_block": depth,
        "attention_head_dim": [c // SDXL_HEAD_CHANNELS for c in channels],  # diffusers' name for head counts
        "cross_attention_dim": SDXL_CONTEXT_DIM,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": SDXL_TIME_EMBED_DIM,
        "projection_class_embeddings_input_dim": added,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }
