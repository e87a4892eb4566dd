"""ComfyUI nodes of the pack: thin adapters from ComfyUI inputs to `model/` calls."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
