"""File suffixes the readers tell apart, without importing torch (the LoRA reader and the node lists use them)."""

# Pickled checkpoints: never unpickled (unpickling runs arbitrary code), refused with a pointer to safetensors.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
