"""A released Hotshot-XL folder as ComfyUI's own MODEL, CLIP and VAE.

ComfyUI detects SDXL only at full size; this builds the same classes (`comfy.supported_models.SDXL`,
`comfy.sd.CLIP`, `comfy.sd.VAE`) from the folder's configs, so any SDXL-shaped folder (the
release, or the tiny test model) becomes a core MODEL. The MODEL is plain SDXL: the temporal
layers come on with the Apply Temporal Layers node, as on any other SDXL MODEL.
"""

from __future__ import annotations

from pathlib import Path

import torch

import comfy.model_management as mm
import comfy.supported_models
import comfy.utils
from comfy.ldm.modules.diffusionmodules.openaimodel import Timestep
from comfy.model_patcher import ModelPatcher

from ...model.network.config import UNetConfig
from ...model.errors import ModelFileError
from ...model.files.loading import is_temporal_key
from ...model.files.weights import component_weight_files, read_safetensors


def comfy_unet_config(config: UNetConfig) -> dict:
    """ComfyUI's UNetModel arguments for the spatial part of a Hotshot-XL UNet config."""
    channels = config.block_out_channels
    levels, layers = config.num_blocks, config.layers_per_block
    depth = config.transformer_layers_per_block
    head_dims = {channels[level] // config.attention_heads[level] for level in range(levels)
                 if config.down_cross_attention[level] or config.up_cross_attention[levels - 1 - level]}
    head_dims.add(channels[-1] // config.attention_heads[-1])  # the mid block's
    if len(head_dims) != 1 or any(c % channels[0] for c in channels):
        raise ValueError(f"ComfyUI's UNet needs one head width and channel multiples; this config has head widths "
                         f"{sorted(head_dims)} and channels {channels}")
    return {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "num_classes": "sequential", "adm_in_channels": config.projection_class_embeddings_input_dim,
        "in_channels": config.in_channels, "out_channels": config.out_channels, "model_channels": channels[0],
        "num_res_blocks": [layers] * levels,
        "transformer_depth": [d if config.down_cross_attention[level] else 0
                              for level, d in enumerate(depth) for _ in range(layers)],
        # Popped from the end, deepest level first; level l mirrors up block levels-1-l.
        "transformer_depth_output": [d if config.up_cross_attention[levels - 1 - level] else 0
                                     for level, d in enumerate(depth) for _ in range(layers + 1)],
        "channel_mult": [c // channels[0] for c in channels], "transformer_depth_middle": depth[-1],
        "use_linear_in_transformer": config.use_linear_projection, "context_dim": config.cross_attention_dim,
        "use_temporal_resblock": False, "use_temporal_attention": False,
        "num_heads": -1, "num_head_channels": head_dims.pop(),
    }


def load_unet(folder: Path, dtype: torch.dtype | None) -> ModelPatcher:
    """The folder's UNet without its temporal layers, as a core SDXL MODEL (ModelPatcher)."""
    unet_folder = folder / "unet"
    config = UNetConfig.from_file(unet_folder / "config.json")
    try:
        unet_config = comfy_unet_config(config)
    except ValueError as error:
        raise ModelFileError(unet_folder / "config.json", str(error)) from None
    state = {}
    for file in component_weight_files(unet_folder, prefer_half=dtype not in (None, torch.float32)):
        state.update(read_safetensors(file, keep=lambda key: not is_temporal_key(key)))
    # diffusers name -> ComfyUI name (with alternatives, e.g. class_embedding for add_embedding)
    names = comfy.utils.unet_to_diffusers(unet_config)
    unexpected = sorted(set(state) - set(names))
    if unexpected:
        raise ModelFileError(unet_folder, f"not the SDXL UNet its config describes: {len(unexpected)} unexpected "
                             f"tensors (e.g. {unexpected[:2]})")
    comfy_state = {names[key]: tensor for key, tensor in state.items()}

    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    model_config = comfy.supported_models.SDXL(unet_config)
    model_config.unet_config["num_head_channels"] = unet_config["num_head_channels"]  # SDXL's preset says 64
    if dtype is None:
        dtype = mm.unet_dtype(model_params=sum(t.numel() for t in comfy_state.values()),
                              supported_dtypes=list(model_config.supported_inference_dtypes))
    manual_cast = mm.unet_manual_cast(dtype, load_device, model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(dtype, manual_cast)
    model = model_config.get_model({}, "")
    # SDXL's size/crop embedding is 256 wide per number in the release; smaller UNets use their own width.
    model.embedder = Timestep(config.addition_time_embed_dim)
    model = model.to(offload_device)
    expected = set(model.diffusion_model.state_dict())
    if expected != set(comfy_state):
        raise ModelFileError(unet_folder, f"does not fit ComfyUI's SDXL UNet built from its config (missing or "
                             f"unexpected: {sorted(expected ^ set(comfy_state))[:3]})")
    model.load_model_weights(comfy_state, "")
    return ModelPatcher(model, load_device=load_device, offload_device=offload_device)


CLIP_VOCABULARY = 49408  # comfy.clip_model's fixed token table size


def _clip_classes(folder: Path):
    """ComfyUI's SDXL CLIP model and tokenizer classes, sized by the folder's text encoder configs
    and using its tokenizers (ComfyUI's own SDXL classes hard-code the released sizes)."""
    import comfy.sd1_clip as sd1_clip
    from comfy.sdxl_clip import SDXLClipModel, SDXLTokenizer

    configs = [_read_config(folder / name / "config.json") for name in ("text_encoder", "text_encoder_2")]
    # The special tokens are the tokenizers' own: CLIP text encoder configs carry placeholder ids
    # (bos 0, eos 2, pad 1, in the released SDXL's too), and ComfyUI finds the end of a prompt (the
    # pooled embedding's position), pads and builds the empty prompt (for weights) with these.
    specials = [_special_tokens(folder / name) for name in ("tokenizer", "tokenizer_2")]

    class FolderClipModel(SDXLClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            # As SDXL: both encoders' penultimate hidden states, the second's projected pooled output.
            self.clip_l = sd1_clip.SDClipModel(device=device, dtype=dtype, layer="hidden", layer_idx=-2,
                                               textmodel_json_config=configs[0], special_tokens=specials[0],
                                               layer_norm_hidden_state=False, model_options=model_options)
            self.clip_g = sd1_clip.SDClipModel(device=device, dtype=dtype, layer="hidden", layer_idx=-2,
                                               textmodel_json_config=configs[1], special_tokens=specials[1],
                                               layer_norm_hidden_state=False, return_projected_pooled=True,
                                               model_options={**model_options, "model_name": "clip_g"})
            self.dtypes = {dtype}

    class FolderTokenizer(SDXLTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            self.clip_l = sd1_clip.SDTokenizer(str(folder / "tokenizer"), embedding_directory=embedding_directory,
                                               embedding_size=configs[0]["hidden_size"], embedding_key="clip_l",
                                               tokenizer_data=tokenizer_data)
            self.clip_g = sd1_clip.SDTokenizer(str(folder / "tokenizer_2"), pad_with_end=False,
                                               pad_token=specials[1]["pad"], embedding_directory=embedding_directory,
                                               embedding_size=configs[1]["hidden_size"], embedding_key="clip_g",
                                               tokenizer_data=tokenizer_data)

    return FolderClipModel, FolderTokenizer


def _special_tokens(folder: Path) -> dict:
    """{"start", "end", "pad"} token ids of a tokenizer folder (vocab.json, special_tokens_map.json)."""
    from transformers import CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelFileError(folder, f"not a readable CLIP tokenizer ({error})") from None
    return {"start": tokenizer.bos_token_id, "end": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}


def _read_config(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(path, f"not a readable JSON config ({error})") from None


def load_clip(folder: Path):
    """Both text encoders as one core SDXL CLIP."""
    import comfy.sd
    import comfy.supported_models_base

    clip_class, tokenizer_class = _clip_classes(folder)
    target = comfy.supported_models_base.ClipTarget(tokenizer_class, clip_class)
    states = []
    for name in ("text_encoder", "text_encoder_2"):
        # transformers' file names: model.safetensors, model.fp16.safetensors, or shards
        files = sorted((folder / name).glob("model*.safetensors"))
        full = [f for f in files if ".fp16." not in f.name]
        if not files:
            raise ModelFileError(folder / name, "no weights found: expected model.safetensors")
        state = {}
        for file in full or files:
            state.update(read_safetensors(file))
        embedding = state.get("text_model.embeddings.token_embedding.weight")
        if embedding is not None and embedding.shape[0] < CLIP_VOCABULARY:
            # ComfyUI's CLIP has CLIP's vocabulary size built in; a smaller vocabulary's table is padded
            # with rows its tokenizer never asks for.
            state["text_model.embeddings.token_embedding.weight"] = torch.cat(
                [embedding, embedding.new_zeros(CLIP_VOCABULARY - embedding.shape[0], embedding.shape[1])])
        states.append(state)
    clip = comfy.sd.CLIP(target, parameters=sum(t.numel() for s in states for t in s.values()))
    for encoder, state, name in zip((clip.cond_stage_model.clip_l, clip.cond_stage_model.clip_g), states,
                                    ("text_encoder", "text_encoder_2")):
        missing, _ = encoder.load_sd(state)
        if name == "text_encoder":  # CLIP-L's projection is not used (SDXL takes its hidden states only)
            missing = [key for key in missing if not key.startswith("text_projection")]
        if missing:
            raise ModelFileError(folder / name, f"does not fit its config: {len(missing)} tensors missing, "
                                 f"e.g. {sorted(missing)[:2]}")
    return clip


def load_vae(folder: Path):
    """The folder's VAE as a core VAE (ComfyUI builds SDXL's VAE shape only: 32 norm groups)."""
    import comfy.sd

    config = _read_config(folder / "vae" / "config.json")
    if config.get("norm_num_groups", 32) != 32 or len(config.get("block_out_channels", ())) != 4:
        raise ModelFileError(folder / "vae", "ComfyUI's VAE classes build only SDXL's VAE shape (4 blocks, "
                             f"32 norm groups); this one has {config.get('block_out_channels')} channels and "
                             f"{config.get('norm_num_groups')} groups")
    state = {}
    for file in component_weight_files(folder / "vae"):
        state.update(read_safetensors(file))
    return comfy.sd.VAE(sd=state)
