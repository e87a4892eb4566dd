"""Fine-tuning Hotshot-XL's temporal layers (in full, or as a motion LoRA) on a folder of clips.

- data.py: clips and captions from a folder, cut to frames at a frame rate, in aspect buckets;
- objective.py: the original fine_tune.py's noise-prediction loss (DDPM noising, noise offset, SNR-gamma);
- lora.py: low-rank adapters on the temporal layers' Linear modules, and the motion-LoRA file;
- checkpoint.py: atomic training checkpoints and resuming from the newest complete one;
- dataset_config.py: a TOML/JSON file of clip folders with repeats, caption prefix and dropout;
- cache.py: `--cache-dir`: encodings on disk in shards keyed by content and encoder, streamed;
- logs.py: metrics.csv and TensorBoard event files (rank 0);
- provenance.py: the run's settings as safetensors metadata (`ss_*`), and `--inspect`;
- trainer.py: the training loop (mixed precision, accumulation, clipping, schedule, DDP); the UNet's
  differentiable forward, used in train mode, is each block's `train_forward` (model/network/);
- cli.py: `python -m model.train`.
"""
