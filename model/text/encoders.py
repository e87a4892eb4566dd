"""Prompt encoding with SDXL's two CLIP text encoders.

The UNet's cross-attention context is the penultimate hidden states of both encoders concatenated
(768 + 1280 = 2048 channels for SDXL); its pooled input is the second encoder's projected pooling.
Prompts longer than CLIP's 77 tokens are encoded in chunks of 75 tokens (each wrapped in start and
end tokens) and concatenated along the token axis, instead of being cut off; a prompt that fits
in one chunk is tokenized exactly as the original pipeline did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CHUNK_TOKENS = 75  # CLIP's 77 positions minus the start and end tokens


@dataclass
class Conditioning:
    """Text conditioning of one prompt."""

    context: torch.Tensor  # (1, 77 * chunks, 2048): cross-attention states
    pooled: torch.Tensor  # (1, 1280): second encoder's projected pooled output
    tokens: int  # prompt length in tokens, without start/end tokens

    @property
    def chunks(self) -> int:
        return self.context.shape[1] // (CHUNK_TOKENS + 2)


def _token_chunks(tokenizer, prompt: str, chunks: int | None = None) -> tuple[torch.Tensor, int]:
    """(chunks, 77) token ids: start, up to 75 prompt tokens, end, then padding."""
    ids = tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False).input_ids
    count = max(1, math.ceil(len(ids) / CHUNK_TOKENS)) if chunks is None else chunks
    rows = []
    for index in range(count):
        part = ids[index * CHUNK_TOKENS:(index + 1) * CHUNK_TOKENS]
        row = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id]
        rows.append(row + [tokenizer.pad_token_id] * (CHUNK_TOKENS + 2 - len(row)))
    return torch.tensor(rows), len(ids)


class TextEncoders:
    """Both tokenizers and encoders of an SDXL model, and the model's empty-negative rule."""

    def __init__(self, tokenizer, tokenizer_2, text_encoder, text_encoder_2, force_zeros_for_empty_prompt=True):
        self.tokenizer = tokenizer
        self.tokenizer_2 = tokenizer_2
        self.text_encoder = text_encoder
        self.text_encoder_2 = text_encoder_2
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt

    @property
    def device(self) -> torch.device:
        return self.text_encoder_2.device

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False).input_ids)

    @torch.no_grad()
    def encode(self, prompt: str, chunks: int | None = None) -> Conditioning:
        ids_1, tokens = _token_chunks(self.tokenizer, prompt, chunks)
        ids_2, _ = _token_chunks(self.tokenizer_2, prompt, ids_1.shape[0])
        out_1 = self.text_encoder(ids_1.to(self.device), output_hidden_states=True)
        out_2 = self.text_encoder_2(ids_2.to(self.device), output_hidden_states=True)
        # (chunks, 77, 768) and (chunks, 77, 1280) -> (1, chunks*77, 2048)
        context = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
        context = context.reshape(1, -1, context.shape[-1])
        pooled = out_2.text_embeds[:1]  # the first chunk's pooling, as single-chunk SDXL does
        return Conditioning(context.float(), pooled.float(), tokens)

    def encode_pair(self, prompt: str, negative_prompt: str | None) -> tuple[Conditioning, Conditioning]:
        """Prompt and negative prompt with the same number of chunks, so they batch together.

        As in the original pipeline, no negative prompt (None) becomes the all-zero embedding when
        the model asks for it (`force_zeros_for_empty_prompt`, as Hotshot-XL and SDXL do), while
        an empty string is encoded like any other prompt (the reference goldens rely on this).
        """
        chunks = max(
            self._chunks_for(prompt),
            self._chunks_for(negative_prompt) if negative_prompt else 1,
        )
        positive = self.encode(prompt, chunks)
        if negative_prompt is None and self.force_zeros_for_empty_prompt:
            zeros = Conditioning(torch.zeros_like(positive.context), torch.zeros_like(positive.pooled), 0)
            return positive, zeros
        return positive, self.encode(negative_prompt or "", chunks)

    def _chunks_for(self, prompt: str) -> int:
        return max(1, math.ceil(self.prompt_tokens(prompt) / CHUNK_TOKENS))
