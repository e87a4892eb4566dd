"""Media: VAE decoding of latents to frames (`decode.py`), video and frame-sequence files read and written
(`video.py`), the output formats table (`formats.py`), reading a clip or image folder as frames once (`frames.py`)
for ControlNet, video-to-video, the trainer and the captioner, the folder of captioned clips those two share
(`clips.py`), and what goes into a written file beside the frames: text tags such as ComfyUI's prompt and
workflow (`metadata.py`), a sound track (`audio.py`) and the CLI's record of how a video was made (`run_record.py`).
"""
