"""The UNet's configuration as plain, checked data.

The released `unet/config.json` is a diffusers `UNet3DConditionModel` config with many keys that
Hotshot-XL never varies. We read the ones that shape the network into one frozen dataclass, and
refuse the rest when they ask for something the network does not implement, so a wrong file fails
here with its name instead of deep inside a forward pass.

An SDXL `UNet2DConditionModel` config (a fine-tune's diffusers folder) reads the same way: its 2D
block names map onto the 3D ones, since the spatial layers are identical.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import ModelFileError

# Block names of the release and of SDXL's 2D UNet, by whether the block has cross-attention.
_CROSS_ATTN_BLOCKS = {"CrossAttnDownBlock3D", "CrossAttnUpBlock3D", "CrossAttnDownBlock2D", "CrossAttnUpBlock2D"}
_PLAIN_BLOCKS = {"DownBlock3D", "UpBlock3D", "DownBlock2D", "UpBlock2D"}

# Config values we accept only at these settings (what Hotshot-XL and SDXL use); anything else
# would silently build a different network.
_FIXED = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "center_input_sample": False,
    "class_embed_type": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "resnet_time_scale_shift": "default",
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
}


def _per_block(value, count: int, name: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"`{name}` has {len(value)} entries for {count} blocks")
        return tuple(value)
    return (value,) * count


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a Hotshot-XL UNet. Defaults are the released full-size model."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280)
    # Per down block (up blocks mirror them in reverse): does it hold spatial transformers?
    down_cross_attention: tuple[bool, ...] = (False, True, True)
    up_cross_attention: tuple[bool, ...] = (True, True, False)
    layers_per_block: int = 2
    transformer_layers_per_block: tuple[int, ...] = (1, 2, 10)
    # diffusers' historical `attention_head_dim` is really the number of heads per block.
    attention_heads: tuple[int, ...] = (5, 10, 20)
    cross_attention_dim: int = 2048
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    use_linear_projection: bool = True
    upcast_attention: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 2816
    mid_block_scale_factor: float = 1.0
    sample_size: int = 128
    # Temporal layers: not in the diffusers config; fixed by the release.
    temporal_heads: int = 8
    temporal_max_frames: int = 24

    @property
    def num_blocks(self) -> int:
        return len(self.block_out_channels)

    @classmethod
    def from_dict(cls, config: dict, source: str | Path = "<config>") -> "UNetConfig":
        """Read a diffusers UNet config (3D release or 2D SDXL), checking what we cannot build."""
        try:
            return cls._from_dict(config)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(source, f"not a Hotshot-XL/SDXL UNet config: {error}") from None

    @classmethod
    def _from_dict(cls, config: dict) -> "UNetConfig":
        for key, expected in _FIXED.items():
            if key in config and config[key] != expected:
                raise ValueError(f"`{key}` is {config[key]!r}; only {expected!r} is supported")
        if config.get("num_attention_heads") is not None:
            raise ValueError("`num_attention_heads` is set; SDXL configs give heads as `attention_head_dim`")
        if config.get("mid_block_type", "UNetMidBlock3DCrossAttn") not in (
            "UNetMidBlock3DCrossAttn", "UNetMidBlock2DCrossAttn"
        ):
            raise ValueError(f"unsupported `mid_block_type` {config.get('mid_block_type')!r}")

        channels = tuple(int(c) for c in config["block_out_channels"])
        count = len(channels)
        down = tuple(config["down_block_types"])
        up = tuple(config["up_block_types"])
        for name in down + up:
            if name not in _CROSS_ATTN_BLOCKS | _PLAIN_BLOCKS:
                raise ValueError(f"unsupported block type {name!r}")
        if len(down) != count or len(up) != count:
            raise ValueError("`down_block_types`, `up_block_types` and `block_out_channels` differ in length")
        layers = config.get("layers_per_block", 2)
        if isinstance(layers, (list, tuple)):
            if len(set(layers)) != 1:
                raise ValueError("per-block `layers_per_block` is not supported")
            layers = layers[0]
        cross_dim = config["cross_attention_dim"]
        if isinstance(cross_dim, (list, tuple)):
            if len(set(cross_dim)) != 1:
                raise ValueError("per-block `cross_attention_dim` is not supported")
            cross_dim = cross_dim[0]

        return cls(
            in_channels=int(config.get("in_channels", 4)),
            out_channels=int(config.get("out_channels", 4)),
            block_out_channels=channels,
            down_cross_attention=tuple(name in _CROSS_ATTN_BLOCKS for name in down),
            up_cross_attention=tuple(name in _CROSS_ATTN_BLOCKS for name in up),
            layers_per_block=int(layers),
            transformer_layers_per_block=_per_block(
                config.get("transformer_layers_per_block", 1), count, "transformer_layers_per_block"
            ),
            attention_heads=_per_block(config.get("attention_head_dim", 8), count, "attention_head_dim"),
            cross_attention_dim=int(cross_dim),
            norm_num_groups=int(config.get("norm_num_groups", 32)),
            norm_eps=float(config.get("norm_eps", 1e-5)),
            use_linear_projection=bool(config.get("use_linear_projection", False)),
            upcast_attention=bool(config.get("upcast_attention", False)),
            flip_sin_to_cos=bool(config.get("flip_sin_to_cos", True)),
            freq_shift=int(config.get("freq_shift", 0)),
            addition_time_embed_dim=int(config["addition_time_embed_dim"]),
            projection_class_embeddings_input_dim=int(config["projection_class_embeddings_input_dim"]),
            mid_block_scale_factor=float(config.get("mid_block_scale_factor", 1.0)),
            sample_size=int(config.get("sample_size") or 128),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "UNetConfig":
        path = Path(path)
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(path, "config file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelFileError(path, f"not a readable JSON config ({error})") from None
        if not isinstance(config, dict):
            raise ModelFileError(path, "expected a JSON object")
        return cls.from_dict(config, source=path)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_diffusers_dict(self) -> dict:
        """This config in diffusers' UNet2DConditionModel vocabulary (for diffusers' converters)."""
        def block_names(cross: tuple[bool, ...], kind: str) -> list[str]:
            return [f"CrossAttn{kind}Block2D" if c else f"{kind}Block2D" for c in cross]

        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "block_out_channels": list(self.block_out_channels),
            "down_block_types": block_names(self.down_cross_attention, "Down"),
            "up_block_types": block_names(self.up_cross_attention, "Up"),
            "layers_per_block": self.layers_per_block,
            "transformer_layers_per_block": list(self.transformer_layers_per_block),
            "attention_head_dim": list(self.attention_heads),
            "cross_attention_dim": self.cross_attention_dim,
            "norm_num_groups": self.norm_num_groups,
            "norm_eps": self.norm_eps,
            "use_linear_projection": self.use_linear_projection,
            "upcast_attention": self.upcast_attention,
            "flip_sin_to_cos": self.flip_sin_to_cos,
            "freq_shift": self.freq_shift,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": self.addition_time_embed_dim,
            "projection_class_embeddings_input_dim": self.projection_class_embeddings_input_dim,
            "class_embed_type": None,
            "num_class_embeds": None,
            "sample_size": self.sample_size,
        }

    def with_changes(self, **changes) -> "UNetConfig":
        """A copy with some fields changed (benchmarks use it for reduced configs)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown UNetConfig fields: {sorted(unknown)}")
        return replace(self, **changes)
