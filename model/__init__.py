"""Hotshot-XL text-to-video, headless. Never imports ComfyUI.

Public surface, shared by the CLI, the ComfyUI nodes and the tests:

    load_pipeline(model, ...)   -> HotshotXLPipeline, a callable giving (frames, height, width, 3) in 0..1
    load_unet(path, dtype=...)  -> HotshotXLUNet
    write_video(frames, path, fps=8, ...)
    check_output(path, frames, ...)  -> what write_video would refuse, raised before any frame exists

Names are imported on first use, so `import model` (or the ComfyUI pack importing it) stays cheap
and never pulls in torch, diffusers or transformers by itself.
"""

from importlib import import_module

from .errors import HotshotError, InputError, ModelFileError

_LAZY = {
    "ContextOptions": ".denoising.context",
    "HotshotXLPipeline": ".pipeline",
    "HotshotXLUNet": ".network.unet",
    "SchedulerOptions": ".denoising.schedulers",
    "Settings": ".pipeline",
    "UNetConfig": ".network.config",
    "check_output": ".media.video",
    "load_pipeline": ".pipeline",
    "load_unet": ".files.loading",
    "read_video": ".media.video",
    "write_video": ".media.video",
}

__all__ = ["HotshotError", "InputError", "ModelFileError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
