"""Fine-tuning Hotshot-XL's temporal layers (in full, or as a motion LoRA) on a folder of clips.

- data.py: clips and captions from a folder, cut to frames at a frame rate, in aspect buckets;
- objective.py: the original fine_tune.py's noise-prediction loss (DDPM noising, noise offset, SNR-gamma);
- lora.py: low-rank adapters on the temporal layers' Linear modules, and the motion-LoRA file;
- checkpoint.py: atomic training checkpoints and resuming from the newest complete one;
- trainer.py: the training loop (mixed precision, accumulation, clipping, schedule, DDP); the UNet's
  differentiable forward, used in train mode, is each block's `train_forward` (model/network/);
- cli.py: `python -m model.train`.
"""
