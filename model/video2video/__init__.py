"""Video-to-video and image-to-video: start the denoise from an input instead of pure noise.

- `inputs.py`: the input video or image read and fitted to the video's size (sizes and frame
  count follow the input unless given).
- `encode.py`: frames to latents through the VAE, a few frames at a time and in tiles (as media/decode.py).
- `strength.py`: the latents noised to the step `strength` selects, diffusers' image-to-image
  convention: about strength x steps steps run.
- `cli.py`: the command-line flags (no heavy imports at module top).
"""
