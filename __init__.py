"""ComfyUI entry point of the Hotshot-XL node pack.

ComfyUI imports this folder as a package named after the folder, whatever the user called it;
everything below is imported relatively so the name never matters. Importing loads no weights,
starts no threads and touches no network.
"""

if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # Loaded as a lone file, outside any package: pytest's importlib mode does this to the root
    # folder's __init__.py (looking for setup_module) when the folder's name is not a Python
    # identifier, as in a clone named "ComfyUI-Hotshot-XL". There are no nodes to register then.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
