"""The ComfyUI type names of the pack's links and its menu category, in one place: node files import
their names from here, not from each other."""

CATEGORY = "Hotshot-XL"
MODEL = "HOTSHOT_XL_MODEL"
CONDITIONING = "HOTSHOT_XL_CONDITIONING"
CONTEXT_OPTIONS = "HOTSHOT_XL_CONTEXT_OPTIONS"
SCHEDULER = "HOTSHOT_XL_SCHEDULER"
CONTROLNET = "HOTSHOT_XL_CONTROLNET"
FREEINIT = "HOTSHOT_XL_FREEINIT"  # FreeInit options (nodes/travel.py) for the sampler
