"""SDXL ControlNets steering Hotshot-XL frame by frame.

- `layouts.py`: a ControlNet file's layout and diffusers config, read from its safetensors header alone.
- `loading.py`: `load_controlnet(path)`: diffusers folders, bare `.safetensors` (config beside it, given,
  or recognised), original-layout `control_model.*` single files; any dtype the UNet takes, fp8 too.
- `frames.py`: control frames from a video, an image folder or one image, resized to the video,
  optionally through a canny edge detector.
- `apply.py`: `Control` (a ControlNet with its frames, strength, start and end) and the residuals it
  adds to the UNet's skips and mid block.
- `cli.py`: the command-line flags (no heavy imports at module top).
"""
