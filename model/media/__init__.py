"""Media: VAE decoding of latents to frames (`decode.py`), video and frame-sequence files read and written
(`video.py`), the output formats table (`formats.py`) and reading a clip or image folder as frames (`frames.py`)
for ControlNet, video-to-video and the trainer.
"""
