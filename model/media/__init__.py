"""Media: VAE decoding of latents to frames (`decode.py`), video and frame-sequence files read and written
(`video.py`), the output formats table (`formats.py`), reading a clip or image folder as frames once (`frames.py`)
for ControlNet, video-to-video, the trainer and the captioner, and the folder of captioned clips those two share
(`clips.py`).
"""
