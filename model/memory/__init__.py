"""Precision and memory: the one dtype and device policy (`precision.py`), float8 weight storage (`fp8.py`)
and moving UNet parts between CPU and GPU while sampling (`offload.py`).
"""
