"""ComfyUI nodes of the pack: thin adapters from ComfyUI inputs to `model/` calls.

Importing this registers the `hotshot_xl` and `animatediff_models` model folders with ComfyUI (when it
is the host) and nothing else: no weights, no threads, no torch/diffusers imports until a node runs.
"""

from . import host
from .controlnet import HotshotXLApplyControlNet, HotshotXLControlNetLoader, HotshotXLEncode
from .loaders import HotshotXLCheckpointLoader, HotshotXLModelLoader
from .lora import HotshotXLLoRA
from .native.nodes import HotshotXLApplyTemporalLayers, HotshotXLNativeLoader
from .native.travel import HotshotXLNativeFreeInit, HotshotXLNativeMotionScale, HotshotXLNativePromptTravel
from .sampling import HotshotXLContextOptions, HotshotXLSampler, HotshotXLScheduler, HotshotXLTextEncode
from .travel import HotshotXLFreeInit, HotshotXLPromptTravel
from .video import HotshotXLDecode, HotshotXLSaveVideo

host.register_model_folders()

NODE_CLASS_MAPPINGS = {
    "HotshotXLModelLoader": HotshotXLModelLoader,
    "HotshotXLCheckpointLoader": HotshotXLCheckpointLoader,
    "HotshotXLTextEncode": HotshotXLTextEncode,
    "HotshotXLSampler": HotshotXLSampler,
    "HotshotXLScheduler": HotshotXLScheduler,
    "HotshotXLDecode": HotshotXLDecode,
    "HotshotXLSaveVideo": HotshotXLSaveVideo,
    "HotshotXLContextOptions": HotshotXLContextOptions,
    "HotshotXLLoRA": HotshotXLLoRA,
    "HotshotXLControlNetLoader": HotshotXLControlNetLoader,
    "HotshotXLApplyControlNet": HotshotXLApplyControlNet,
    "HotshotXLEncode": HotshotXLEncode,
    "HotshotXLApplyTemporalLayers": HotshotXLApplyTemporalLayers,
    "HotshotXLNativeLoader": HotshotXLNativeLoader,
    "HotshotXLPromptTravel": HotshotXLPromptTravel,
    "HotshotXLFreeInit": HotshotXLFreeInit,
    "HotshotXLNativePromptTravel": HotshotXLNativePromptTravel,
    "HotshotXLNativeMotionScale": HotshotXLNativeMotionScale,
    "HotshotXLNativeFreeInit": HotshotXLNativeFreeInit,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "HotshotXLModelLoader": "Hotshot-XL Loader (model folder)",
    "HotshotXLCheckpointLoader": "Hotshot-XL Loader (SDXL checkpoint + temporal layers)",
    "HotshotXLTextEncode": "Hotshot-XL Text Encode",
    "HotshotXLSampler": "Hotshot-XL Sampler",
    "HotshotXLScheduler": "Hotshot-XL Scheduler",
    "HotshotXLDecode": "Hotshot-XL Decode",
    "HotshotXLSaveVideo": "Hotshot-XL Save Video",
    "HotshotXLContextOptions": "Hotshot-XL Context Options",
    "HotshotXLLoRA": "Hotshot-XL LoRA",
    "HotshotXLControlNetLoader": "Hotshot-XL ControlNet Loader",
    "HotshotXLApplyControlNet": "Hotshot-XL Apply ControlNet",
    "HotshotXLEncode": "Hotshot-XL Encode (video to latent)",
    "HotshotXLApplyTemporalLayers": "Hotshot-XL Apply Temporal Layers",
    "HotshotXLNativeLoader": "Hotshot-XL Loader (native MODEL/CLIP/VAE)",
    "HotshotXLPromptTravel": "Hotshot-XL Prompt Travel",
    "HotshotXLFreeInit": "Hotshot-XL FreeInit",
    "HotshotXLNativePromptTravel": "Hotshot-XL Prompt Travel (CONDITIONING)",
    "HotshotXLNativeMotionScale": "Hotshot-XL Motion Scale (native MODEL)",
    "HotshotXLNativeFreeInit": "Hotshot-XL FreeInit (native MODEL)",
}
