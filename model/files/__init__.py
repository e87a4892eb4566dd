"""Reading model files: safetensors reading and pickle refusal (`weights.py`, with the suffixes it tells
apart in `suffixes.py`), single-file checkpoints (`single_file.py`), the UNet loader (`loading.py`), the
temporal layers alone for a host's UNet (`temporal_layers.py`), the other diffusers components
(`components.py`) and the configs of the released components shipped as package data (`configs/`, read by
`sdxl_configs.py`).
"""
