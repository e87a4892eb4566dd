"""Hotshot-XL text-to-video, headless. Never imports ComfyUI.

Public surface (kept small, shared by the CLI, the ComfyUI nodes and the tests) is re-exported here.
"""

from .config import UNetConfig
from .errors import HotshotError, InputError, ModelFileError
from .loading import load_unet
from .unet import HotshotXLUNet

__all__ = ["HotshotError", "HotshotXLUNet", "InputError", "ModelFileError", "UNetConfig", "load_unet"]
