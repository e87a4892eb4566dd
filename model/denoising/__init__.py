"""The denoising loop: the guided predictor, initial noise and the step loop (`loop.py`), context windows and
FreeNoise for videos longer than the model's window (`context.py`), and the diffusers schedulers the loop steps
with (`schedulers.py`); step caching, which reuses the UNet's deep features between steps (`step_cache.py`).
"""
