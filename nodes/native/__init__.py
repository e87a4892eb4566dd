"""The native path: Hotshot-XL's motion on ComfyUI's own MODEL, so core samplers and nodes use it.

`nodes.py` holds the nodes, `travel.py` the directing ones (per-frame CONDITIONING for prompt travel,
the motion scale); `patch.py` (how the temporal layers go onto a ModelPatcher clone) and
`loader.py` (a released folder as core MODEL/CLIP/VAE) import ComfyUI and are imported only when a
node runs, so the pack imports without ComfyUI.
"""
