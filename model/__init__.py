"""Hotshot-XL text-to-video, headless. Never imports ComfyUI.

Public surface (kept small, shared by the CLI, the ComfyUI nodes and the tests) is re-exported here.
"""

from .errors import HotshotError, InputError, ModelFileError

__all__ = ["HotshotError", "InputError", "ModelFileError"]
