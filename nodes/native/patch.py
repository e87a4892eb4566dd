"""Hotshot-XL's motion on a core SDXL MODEL, through ComfyUI's extension points only.

`with_temporal_layers(model, layers)` returns a clone of the ModelPatcher; nothing outside the
clone changes. The clone carries
- object patches replacing each of the UNet's blocks (`input_blocks.N`, `middle_block`,
  `output_blocks.N`) by a `HotshotBlock`: the same layers under the same names (so weight patches,
  LoRAs included, still find them), plus the block's temporal layer registered as `temporal`, so
  ComfyUI loads, offloads and counts it with the model. Object patches are applied while the model
  is loaded and undone when it is unloaded or another clone of it loads;
- an object patch of `out`, whose GroupNorm is then applied by the last output block (it needs the
  frame count, which only the blocks' patch receives);
- one `forward_timestep_embed_patch` handler: `forward_timestep_embed` hands it the frame-aware
  layers a HotshotBlock yields, with `transformer_options`, from which the frame count comes:
  F = batch / len(cond_or_uncond). The resnets and the final norm take their GroupNorm statistics
  over all F frames of each video (the original's 5-D GroupNorm); the temporal layers attend across
  them.
Nothing global is replaced: a branch of the graph without this clone runs ComfyUI's blocks as they are.

`with_motion_scale(model, scale)` clones such a MODEL with a motion scale in its
transformer_options: the handler scales the temporal layers' update by it (per frame when
keyframed; inside core context windows by the window's frames), and at 0 runs ComfyUI's own
resnets and output norm frame by frame with the temporal layers skipped: the SDXL image model.
"""

from __future__ import annotations

import copy
import functools
import itertools

import torch
from torch import nn

import comfy.model_base
import comfy.ops
import comfy.patcher_extension
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import (Downsample, ResBlock, TimestepEmbedSequential, Upsample,
                                                            UNetModel)

from ...model.errors import InputError
from ...model.files.temporal_layers import Position
from ...model.network.norms import frame_group_norm
from ...model.travel.keyframes import check_in_range
from ...model.travel.motion import MotionScale, unet_motion_scale

PATCH = "forward_timestep_embed_patch"
OPTIONS_KEY = "hotshot_xl"  # transformer_options entry: what the clone carries (for checks and tests)


def _norm_weights(norm: nn.GroupNorm, x: torch.Tensor):
    """The norm's weight and bias on x's device and dtype, as ComfyUI's own GroupNorm gets them
    (offloaded weights under --lowvram, weight patches applied lazily)."""
    if getattr(norm, "comfy_cast_weights", False) or getattr(norm, "weight_function", None) or \
            getattr(norm, "bias_function", None):
        weight, bias, stream = comfy.ops.cast_bias_weight(norm, x, offloadable=True)
        return weight, bias, lambda: comfy.ops.uncast_bias_weight(norm, weight, bias, stream)
    return norm.weight, norm.bias, lambda: None


def _frame_norm(norm: nn.GroupNorm, x: torch.Tensor, frames: int) -> torch.Tensor:
    weight, bias, release = _norm_weights(norm, x)
    out = frame_group_norm(x, frames, norm.num_groups, weight, bias, norm.eps)
    release()
    return out


class FrameLayer:
    """What a HotshotBlock yields where a layer needs the frame count. Not a module: the layer it
    runs stays registered where it was."""

    def run(self, x: torch.Tensor, emb: torch.Tensor, frames: int, motion=None) -> torch.Tensor:
        """The layer on a batch of videos of `frames` frames; `motion`: the temporal update's scale
        (None: as released; a number, or one per image (batch*frames, 1, 1, 1))."""
        raise NotImplementedError

    def image(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The layer as the SDXL image model runs it (motion scale 0): ComfyUI's own, frame by frame."""
        raise NotImplementedError

    def __call__(self, *args):
        # forward_timestep_embed calls what no patch claims: the handler is missing from the call's
        # transformer_options (a caller dropped the MODEL's model_options).
        raise RuntimeError("a Hotshot-XL block ran without the MODEL's forward_timestep_embed_patch; call the model "
                           "with its model_options['transformer_options']")


class FrameResnet(FrameLayer):
    """ComfyUI's SDXL ResBlock with both GroupNorms spanning the frames of each video."""

    def __init__(self, block: ResBlock):
        self.block = block

    def run(self, x, emb, frames, motion=None):
        block = self.block
        h = _frame_norm(block.in_layers[0], x, frames)
        h = block.in_layers[2](block.in_layers[1](h))  # SiLU, conv
        h = h + block.emb_layers(emb).type(h.dtype)[:, :, None, None]
        h = _frame_norm(block.out_layers[0], h, frames)
        for layer in block.out_layers[1:]:  # SiLU, dropout, conv
            h = layer(h)
        return block.skip_connection(x) + h

    def image(self, x, emb):
        return self.block(x, emb)  # as forward_timestep_embed calls a ResBlock


class TemporalRun(FrameLayer):
    """A Hotshot-XL temporal layer, in the activations' device and dtype."""

    def __init__(self, module: nn.Module):
        self.module = module

    def run(self, x, emb, frames, motion=None):
        module = self.module
        max_frames = module.transformer_blocks[0].attention_blocks[0].pos_encoder.positional_encoding.shape[1]
        if frames > max_frames:
            raise InputError("model", f"{frames} frames in one model call, but Hotshot-XL's temporal layers know "
                             f"{max_frames} positions: add Context Windows (Manual) (dim 0, context_length "
                             f"<= {max_frames}) before the sampler for longer videos")
        tensors = itertools.chain(module.parameters(), module.buffers())
        if any(t.device != x.device or t.dtype != x.dtype for t in tensors):
            # Partly or wholly offloaded (--lowvram: ComfyUI moves leaf modules one by one, and the
            # position table not at all), or stored in a narrower dtype (fp8): run a copy where x is.
            module = copy.deepcopy(module).to(device=x.device, dtype=x.dtype)
        return module(x, frames) if motion is None else module(x, frames, motion=motion)

    def image(self, x, emb):
        return x  # skipped


class FinalNorm(FrameLayer):
    """The UNet's output GroupNorm (`out.0`), spanning the frames, run at the end of the last block."""

    def __init__(self, norm: nn.GroupNorm):
        self.norm = norm

    def run(self, x, emb, frames, motion=None):
        return _frame_norm(self.norm, x, frames)

    def image(self, x, emb):
        return self.norm(x)  # as `out` would have applied it


class HotshotBlock(TimestepEmbedSequential):
    """One of the UNet's blocks: its own layers under their own names, the temporal layer (if any)
    after the resnet and spatial transformer, before a down/upsampler."""

    def __init__(self, layers: list[nn.Module], temporal: nn.Module | None = None, final_norm=None):
        super().__init__(*layers)
        run = [FrameResnet(layer) if isinstance(layer, ResBlock) else layer for layer in layers]
        if temporal is not None:
            self.add_module("temporal", temporal)
            resampler = next((i for i, layer in enumerate(layers) if isinstance(layer, (Upsample, Downsample))),
                             len(layers))
            run.insert(resampler, TemporalRun(temporal))
        if final_norm is not None:
            run.append(FinalNorm(final_norm))
        self.run_order = run  # a plain list: the layers are registered above, not here

    def __iter__(self):
        return iter(self.run_order)


class OutWithoutNorm(nn.Sequential):
    """`out` (GroupNorm, SiLU, conv) under the same names, skipping the norm the last block applied."""

    def forward(self, x):
        for layer in list(self)[1:]:
            x = layer(x)
        return x


def run_frame_layer(layer, x, emb, context, transformer_options, *unused):
    """The forward_timestep_embed_patch handler: the frame count from the batch as ComfyUI built it."""
    chunks = len(transformer_options.get("cond_or_uncond") or [0])
    if x.shape[0] % chunks:
        raise InputError("model", f"a batch of {x.shape[0]} latents cannot be split into {chunks} equal "
                         "cond/uncond chunks of frames")
    frames = x.shape[0] // chunks
    motion: MotionScale | None = transformer_options.get(OPTIONS_KEY, {}).get("motion_scale")
    if motion is None:
        return layer.run(x, emb, frames)
    window = transformer_options.get("context_window")  # core context windows: which frames of the video
    indices = getattr(window, "index_list", None)
    if indices is None or len(indices) != frames:
        indices = range(frames)
    on, scale = unet_motion_scale(motion.for_frames(indices), chunks, frames, x.device, x.dtype)
    return layer.run(x, emb, frames, scale) if on else layer.image(x, emb)


def refuse_long_videos(executor, noise, latent_image, *args, max_frames: int, **kwargs):
    """OUTER_SAMPLE wrapper: a video longer than the temporal layers' positions needs context
    windows; per-frame conditioning and motion-scale keyframes must fit the video. Said before the
    first step rather than in the middle of it."""
    guider = executor.class_obj
    frames = noise.shape[0]
    for kind, conds in (getattr(guider, "conds", None) or {}).items():
        for cond in conds:
            rows = getattr(cond.get("cross_attn"), "shape", (1,))[0]
            if rows not in (1, frames):
                raise InputError(kind, f"the conditioning has {rows} rows, one per frame (Hotshot-XL Prompt Travel "
                                 f"(CONDITIONING)), but the latent batch is a {frames}-frame video: give the node "
                                 f"the same frame count, or connect its latent input")
    motion = guider.model_options.get("transformer_options", {}).get(OPTIONS_KEY, {}).get("motion_scale")
    if motion is not None:
        check_in_range(motion.keyframes, frames, "keyframes (Hotshot-XL Motion Scale)")
    if noise.shape[0] > max_frames and guider.model_options.get("context_handler") is None:
        raise InputError("latent_image", f"a batch of {noise.shape[0]} latents is one {noise.shape[0]}-frame video "
                         f"for Hotshot-XL, whose temporal layers know {max_frames} positions: add Context Windows "
                         f"(Manual) to the MODEL (dim 0, context_length <= {max_frames}), or sample at most "
                         f"{max_frames} frames")
    return executor(noise, latent_image, *args, **kwargs)


# ------------------------------------------------------------------------------- checks and layout

def check_sdxl(model, input_name: str = "model") -> UNetModel:
    """The UNet of a core SDXL MODEL; InputError naming the input for anything else."""
    base = getattr(model, "model", None)
    unet = getattr(base, "diffusion_model", None)
    if not isinstance(base, comfy.model_base.SDXL) or not isinstance(unet, UNetModel):
        kind = type(base).__name__ if base is not None else type(model).__name__
        raise InputError(input_name, f"expected an SDXL MODEL (Hotshot-XL's temporal layers are made for SDXL), "
                         f"got a {kind} model")
    return unet


def _own_layers(block) -> list[nn.Module]:
    """A block's own layers in order, without a temporal layer we added (the model may be ours)."""
    return [module for key, module in block._modules.items() if key != "temporal"]


def _original(model, name: str) -> list[nn.Module]:
    """The layers of a block as ComfyUI built it, whether or not our object patch is applied now."""
    return _own_layers(model.get_model_object(name))


def temporal_positions(model) -> dict[str, Position]:
    """Block name -> the temporal layer's position in the checkpoint, for the UNet of `model`."""
    unet = model.model.diffusion_model
    positions = {}
    level, layer = 0, 0
    for index in range(1, len(unet.input_blocks)):
        layers = _original(model, f"diffusion_model.input_blocks.{index}")
        if isinstance(layers[0], Downsample):
            level, layer = level + 1, 0
            continue
        positions[f"diffusion_model.input_blocks.{index}"] = Position("down", level, layer)
        layer += 1
    level, layer = 0, 0
    for index in range(len(unet.output_blocks)):
        layers = _original(model, f"diffusion_model.output_blocks.{index}")
        positions[f"diffusion_model.output_blocks.{index}"] = Position("up", level, layer)
        layer += 1
        if any(isinstance(m, Upsample) for m in layers):
            level, layer = level + 1, 0
    return positions


def _resnet_channels(layers) -> int:
    return next(layer.out_channels for layer in layers if isinstance(layer, ResBlock))


def with_temporal_layers(model, layers: dict[Position, nn.Module], input_name: str = "temporal_layers",
                         source: str = ""):
    """A clone of `model` (an SDXL ModelPatcher) denoising each cond/uncond chunk as one video.

    `layers` come from model.files.temporal_layers.read_temporal_layers; they become the clone's (moved to
    the model's dtype). Checks everything before cloning: on an error the input model is untouched.
    """
    check_sdxl(model)
    positions = temporal_positions(model)
    wanted = set(positions.values())
    if set(layers) != wanted:
        missing = sorted(f"{p.kind}_blocks.{p.block}.temporal_attentions.{p.layer}" for p in wanted - set(layers))
        extra = sorted(f"{p.kind}_blocks.{p.block}.temporal_attentions.{p.layer}" for p in set(layers) - wanted)
        raise InputError(input_name, f"{source}: its temporal layers do not fit this MODEL's UNet (missing: "
                         f"{missing[:3] or 'none'}, extra: {extra[:3] or 'none'}); Hotshot-XL's layers fit SDXL")
    blocks = {}
    for name, position in positions.items():
        own = _original(model, name)
        channels = _resnet_channels(own)
        temporal = layers[position]
        if temporal.proj_in.in_features != channels:
            raise InputError(input_name, f"{source}: {position.kind}_blocks.{position.block}.temporal_attentions."
                             f"{position.layer} has {temporal.proj_in.in_features} channels where this MODEL's "
                             f"UNet has {channels}; Hotshot-XL's layers fit SDXL")
        blocks[name] = own

    dtype = model.model.get_dtype()
    patched = model.clone()
    added_bytes = 0
    unet = model.model.diffusion_model
    last_output = f"diffusion_model.output_blocks.{len(unet.output_blocks) - 1}"
    out = _original(model, "diffusion_model.out")
    for name, own in blocks.items():
        temporal = layers[positions[name]]
        temporal = _stored_in(temporal, dtype, model.offload_device)
        added_bytes += sum(p.numel() * p.element_size() for p in temporal.parameters())
        final_norm = out[0] if name == last_output else None
        patched.add_object_patch(name, HotshotBlock(own, temporal, final_norm))
    patched.add_object_patch("diffusion_model.middle_block",
                             HotshotBlock(_original(model, "diffusion_model.middle_block")))
    patched.add_object_patch("diffusion_model.out", OutWithoutNorm(*out))
    options = patched.model_options["transformer_options"]
    handlers = [h for h in options.get("patches", {}).get(PATCH, []) if h[0] is not FrameLayer]
    options.setdefault("patches", {})[PATCH] = handlers + [(FrameLayer, run_frame_layer)]
    max_frames = min(t.transformer_blocks[0].attention_blocks[0].pos_encoder.positional_encoding.shape[1]
                     for t in layers.values())
    previous = options.get(OPTIONS_KEY, {})  # temporal layers this node replaces; a motion scale set on them stays
    previous_bytes = previous.get("bytes", 0)
    options[OPTIONS_KEY] = {"source": source, "layers": len(blocks), "max_frames": max_frames, "bytes": added_bytes,
                            "motion_scale": previous.get("motion_scale")}
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, OPTIONS_KEY)  # re-applied
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, OPTIONS_KEY,
                                 functools.partial(refuse_long_videos, max_frames=max_frames))
    # ComfyUI's memory accounting counts the new weights (size is the clone's own field).
    patched.size = model.model_size() - previous_bytes + added_bytes
    return patched


def with_motion_scale(model, scale: MotionScale | None):
    """A clone of `model` (a MODEL from with_temporal_layers) whose temporal layers' update is scaled
    by `scale` (None: as released). Carried in the clone's transformer_options; the input is unchanged."""
    if OPTIONS_KEY not in model.model_options.get("transformer_options", {}):
        raise InputError("model", "this MODEL has no Hotshot-XL temporal layers: connect the MODEL from Hotshot-XL "
                         "Apply Temporal Layers")
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    options[OPTIONS_KEY] = {**options[OPTIONS_KEY], "motion_scale": scale}  # a new dict: the input's stays as it is
    return patched


def with_freeinit(model, options):
    """A clone of `model` (a MODEL from with_temporal_layers) sampled `options.iterations` times by
    FreeInit (freeinit.py), through a SAMPLER_SAMPLE wrapper; 1 iteration: no wrapper, plain sampling."""
    from .freeinit import WRAPPER_KEY, sample_with_freeinit

    if OPTIONS_KEY not in model.model_options.get("transformer_options", {}):
        raise InputError("model", "this MODEL has no Hotshot-XL temporal layers: connect the MODEL from Hotshot-XL "
                         "Apply Temporal Layers")
    patched = model.clone()
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY)
    if options.iterations > 1:
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY,
                                     functools.partial(sample_with_freeinit, options=options))
    return patched


def _stored_in(module: nn.Module, dtype: torch.dtype, device) -> nn.Module:
    """The layer's parameters in the model's storage dtype; its position table stays in a dtype that
    computes (an fp8 table would lose the positions)."""
    module = copy.deepcopy(module)
    for parameter in module.parameters():
        parameter.data = parameter.data.to(device=device, dtype=dtype)
    buffer_dtype = dtype if dtype.is_floating_point and dtype.itemsize >= 2 else torch.bfloat16
    for buffer in module.buffers():
        buffer.data = buffer.data.to(device=device, dtype=buffer_dtype)
    return module.requires_grad_(False)
