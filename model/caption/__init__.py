"""Automatic captions for training clips: a local BLIP model looks at several frames of each clip.

- captioner.py: checking a captioner folder, the Captioner, and writing captions beside clips;
- cli.py: `python -m model.caption DIR --captioner FOLDER`.
"""
