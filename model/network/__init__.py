"""The network: the Hotshot-XL UNet (an SDXL UNet with temporal attention after every spatial transformer).

`config.py` holds the UNet's shape as plain data, `unet.py` the model whose module tree mirrors the
released checkpoint, `blocks.py` its down/mid/up blocks, `temporal.py` the temporal layers, `attention.py`,
`norms.py` the shared attention, feed-forward and per-frame group norm, and `pieces.py` how a batch is
split into pieces that fit a memory budget. Each block has one forward with two paths:
`forward` (inference: in place, piece by piece, no autograd) and `train_forward` beside it (the same arithmetic
with plain autograd operations), which `HotshotXLUNet` runs in train mode (`unet.train()`).
Nothing here reads files or imports the trainer.
"""
