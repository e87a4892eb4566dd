"""ComfyUI entry point of the Hotshot-XL node pack.

ComfyUI imports this folder as a package named after the folder, whatever the user called it;
everything below is imported relatively so the name never matters. Importing loads no weights,
starts no threads and touches no network.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
