"""Directing a video: prompt travel, motion strength and FreeInit.

- `keyframes.py`: `{frame: value}` keyframes from Python, a file (JSON or `frame: prompt` lines) or
  the inline `0: a | 16: b` form, checked (in range, ascending, no empty prompt) with errors naming
  the flag or input and the line or keyframe; choices that import nothing heavy.
- `interpolate.py`: per-frame blending between keyframes (linear or spherical).
- `prompts.py`: `PromptTravel`, keyframed text states (both encoders' states and the pooled
  embedding) that give each frame its own conditioning, and the per-call batch the guided
  predictor hands the UNet (frames folded into the batch, so each frame has its own text).
- `motion.py`: the motion scale, a number or keyframes, as the UNet takes it per call.
- `freeinit.py`: FreeInit (arXiv:2312.07537): sampling N times, each time starting from the
  previous result's low space-time frequencies (noised back) and fresh high frequencies.

The UNet's hooks are small: per-image text states and time embeddings (unet.py, blocks.py), and a
scale on the temporal layers' residual (temporal.py). One prompt, scale 1 and one FreeInit
iteration take exactly the plain code path.
"""
