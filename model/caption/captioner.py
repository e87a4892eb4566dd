"""Captions from a local BLIP model (transformers' BlipForConditionalGeneration), never downloaded.

A clip is shown as several frames spread over it: BLIP writes one caption per frame, then every
candidate is scored (mean log-probability of its tokens) against every shown frame, and the caption
that fits the frames best on average is kept. That favours what stays true over the whole clip
(the subject, the scene) over what one frame alone shows.

Why BLIP: it is native in transformers (no remote code), small (the large captioning model has
0.47 B parameters) and writes short, literal, subject-first captions, close to what Hotshot-XL's
CLIP encoders were conditioned on. Florence-2 and SmolVLM2
caption well too but are larger; video-native models describe motion better at several times the
cost. Any BLIP captioning folder works (e.g. Salesforce/blip-image-captioning-large, fetched by
the user beforehand).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ModelFileError

ARCHITECTURE = "BlipForConditionalGeneration"


def check_captioner(folder) -> Path:
    """The folder, if it holds a BLIP captioning model with its processor; else ModelFileError."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ModelFileError(path, "not a folder: expected a local BLIP captioning model (config.json, "
                             "model.safetensors, processor and tokenizer files)")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(path / "config.json", f"not a readable model config ({error})") from None
    architectures = config.get("architectures") or []
    if config.get("model_type") != "blip" or ARCHITECTURE not in architectures:
        kind = ", ".join(architectures) or config.get("model_type", "unknown")
        raise ModelFileError(path, f"is a {kind} model, not a vision-language captioner; expected a BLIP captioning "
                             f"model ({ARCHITECTURE}, e.g. Salesforce/blip-image-captioning-large)")
    if not any((path / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise ModelFileError(path, "lacks the image processor (preprocessor_config.json): save the processor "
                             "with the model")
    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise ModelFileError(path, "lacks the tokenizer (tokenizer.json or vocab.txt)")
    return path


def shown_frames(count: int, shown: int) -> list[int]:
    """`shown` frame indices spread evenly over `count` frames (each at the middle of its share)."""
    shown = max(1, min(shown, count))
    return sorted({min(count - 1, int((i + 0.5) * count / shown)) for i in range(shown)})


class Captioner:
    def __init__(self, folder, device="auto", max_new_tokens: int = 40, frames_shown: int = 3):
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor
        from transformers.utils import logging

        from ..memory.precision import resolve_device

        logging.disable_progress_bar()
        path = check_captioner(folder)
        self.device = resolve_device(device)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        try:
            self.processor = BlipProcessor.from_pretrained(path, local_files_only=True)
            self.model = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as error:
            raise ModelFileError(path, f"could not load the captioner ({error})") from None
        self.model.to(self.device).eval()
        self.max_new_tokens, self.frames_shown = max_new_tokens, frames_shown

    def caption(self, frames) -> str:
        """frames: uint8 (count, height, width, 3). The best-fitting of the per-frame captions."""
        import torch

        images = [frames[i] for i in shown_frames(len(frames), self.frames_shown)]
        pixels = self.processor(images=images,
                                return_tensors="pt")["pixel_values"].to(self.device, self.model.dtype)
        with torch.no_grad():
            ids = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens, do_sample=False)
            texts = [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
            if len(images) == 1 or len(set(texts)) == 1:
                return texts[0]
            pad = self.processor.tokenizer.pad_token_id
            candidates, shown = ids.shape[0], pixels.shape[0]
            # every (candidate, frame) pair: (candidates*shown, tokens)
            pair_ids = ids.repeat_interleave(shown, dim=0)
            pair_pixels = pixels.repeat(candidates, 1, 1, 1)
            logits = self.model(pixel_values=pair_pixels, input_ids=pair_ids).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, pair_ids[:, 1:, None])[..., 0]
            mask = (pair_ids[:, 1:] != pad).float()
            score = ((logp * mask).sum(1) / mask.sum(1).clamp(min=1)).view(candidates, shown).mean(1)
        return texts[int(score.argmax())]


def caption_sources(sources, folder, device="auto", log=print, prefix: str = "", frames_shown: int = 3,
                    max_new_tokens: int = 40) -> dict[Path, str]:
    """Write a caption for each source that has no caption file (existing captions are never
    touched, an empty one included: it is the user's, see media/clips.py missing_captions).

    Returns {source path: caption written}. Unreadable clips are logged and skipped.
    """
    from ..media.clips import read_frames

    todo = [s for s in sources if s.caption is None]
    if not todo:
        return {}
    captioner = Captioner(folder, device, max_new_tokens, frames_shown)
    written = {}
    for source in todo:
        try:
            pixels, _ = read_frames(source)
        except Exception as error:
            log(f"unreadable, not captioned: {source.path} ({error})")
            continue
        text = (prefix + " " if prefix else "") + captioner.caption(pixels)
        text = text.strip()
        if not text:
            log(f"the captioner wrote nothing for {source.path}; caption it by hand")
            continue
        if source.caption_file.exists():
            continue  # written meanwhile by someone else: theirs stays
        temporary = source.caption_file.with_name(f".{source.caption_file.name}.partial")
        temporary.write_text(text + "\n", encoding="utf-8")
        os.replace(temporary, source.caption_file)
        written[source.path] = text
        log(f"{source.caption_file}: {text}")
    return written
