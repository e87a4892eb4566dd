"""Text: the two CLIP text encoders and the conditioning they give the UNet (`encoders.py`), and the tokenizers
read from a model folder or built offline (`tokenizers.py`).
"""
