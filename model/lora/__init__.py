"""LoRA: low-rank weight updates from the files users have, merged into the UNet and the text encoders.

- `formats.py`: reads a safetensors LoRA in any of the common layouts (kohya with SGM or diffusers
  block names, LyCORIS/LoCon convolutions, diffusers' older attention-processor keys, diffusers/PEFT
  `lora_A`/`lora_B`, and this pack's motion LoRAs on the temporal layers) into one layout: per
  component, this model's own module names with (down, up, alpha).
- `apply.py`: matches a read LoRA against the modules, reports what matched, and merges it into the
  weights with a backup of each touched layer, so that removing it restores them bit for bit.
- `cli.py`: the `--lora PATH[:STRENGTH]` flag.

Nothing here imports ComfyUI; `formats` and `cli` import torch only inside functions.
"""
