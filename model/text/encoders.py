"""Prompt encoding with SDXL's two CLIP text encoders.

The UNet's cross-attention context is the penultimate hidden states of both encoders concatenated
(768 + 1280 = 2048 channels for SDXL); its pooled input is the second encoder's projected pooling.
Prompts longer than CLIP's 77 tokens are encoded in chunks of 75 tokens (each wrapped in start and
end tokens) and concatenated along the token axis, instead of being cut off; a prompt that fits
in one chunk is tokenized exactly as the original pipeline did.

Prompts may carry weights as ComfyUI writes them, `(words:1.2)` (see `weights.py`), and are then
chunked as ComfyUI chunks them (`chunk_runs`); a prompt without parentheses is encoded exactly as
before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .weights import parse_weights

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


# ComfyUI's max_word_length: a run of weighted text shorter than this is never split between chunks.
SHORT_RUN = 8

Token = tuple[int, float]  # token id and its weight


def prompt_runs(tokenizer, prompt: str, name: str = "prompt", weighted: bool = True) -> list[list[Token]]:
    """The prompt's runs of text, each as its tokens (no start/end tokens) with the run's weight.

    Each weighted run is tokenized on its own, as ComfyUI does; a prompt without parentheses (or
    `weighted=False`) is one run tokenized whole, as the original pipeline does.
    """
    segments = parse_weights(prompt, name) if weighted else [(prompt, 1.0)]
    runs = []
    for text, weight in segments:
        ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
        runs.append([(token, weight) for token in ids])
    return runs


def chunk_runs(runs: list[list[Token]]) -> list[list[Token]]:
    """The runs' tokens in chunks of at most 75, laid out as ComfyUI lays them out: a run that does not
    fit in the current chunk is split where the chunk fills if it has SHORT_RUN tokens or more, and
    otherwise moved whole into the next chunk (the current one padded). So a prompt without
    parentheses, one run, is split every 75 tokens, as the original pipeline does."""
    chunks: list[list[Token]] = [[]]
    for run in runs:
        rest = run
        while rest:
            room = CHUNK_TOKENS - len(chunks[-1])
            if len(rest) <= room:
                chunks[-1] += rest
                break
            if len(run) >= SHORT_RUN:
                chunks[-1] += rest[:room]
                rest = rest[room:]
            chunks.append([])
    return chunks


def _token_chunks(tokenizer, chunked: list[list[Token]],
                  chunks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(chunks, 77) token ids: start, the chunk's prompt tokens, end, then padding; and their weights
    (1 for the start, end and padding tokens). `chunks` (default: as many as there are) drops the
    chunks past it or adds empty ones."""
    count = len(chunked) if chunks is None else chunks
    rows, row_weights = [], []
    for part in chunked[:count] + [[]] * (count - len(chunked)):
        row = [tokenizer.bos_token_id, *(token for token, _ in part), tokenizer.eos_token_id]
        padding = CHUNK_TOKENS + 2 - len(row)
        rows.append(row + [tokenizer.pad_token_id] * padding)
        row_weights.append([1.0, *(weight for _, weight in part), 1.0] + [1.0] * padding)
    return torch.tensor(rows), torch.tensor(row_weights, dtype=torch.float32)


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

    def prompt_tokens(self, prompt: str, name: str = "prompt", weighted: bool = True) -> int:
        return sum(len(run) for run in prompt_runs(self.tokenizer, prompt, name, weighted))

    @torch.no_grad()
    def encode(self, prompt: str, chunks: int | None = None, name: str = "prompt",
               weighted: bool = True) -> Conditioning:
        """`prompt`'s conditioning in `chunks` chunks (default: as many as it needs).

        Weights in the prompt (see weights.py; with `weighted=False` parentheses are plain text)
        move their tokens' states away from the empty prompt's, per encoder, as ComfyUI does; the
        pooled embedding is the tokens' own, unweighted. InputError naming `name` for a malformed
        weight.
        """
        chunked_1 = chunk_runs(prompt_runs(self.tokenizer, prompt, name, weighted))
        chunked_2 = chunk_runs(prompt_runs(self.tokenizer_2, prompt, name, weighted))
        ids_1, weights_1 = _token_chunks(self.tokenizer, chunked_1, chunks)
        ids_2, weights_2 = _token_chunks(self.tokenizer_2, chunked_2, ids_1.shape[0])
        out_1 = self.text_encoder(ids_1.to(self.device), output_hidden_states=True)
        out_2 = self.text_encoder_2(ids_2.to(self.device), output_hidden_states=True)
        states_1, states_2 = out_1.hidden_states[-2], out_2.hidden_states[-2]  # (chunks, 77, 768 / 1280)
        if bool((weights_1 != 1).any() or (weights_2 != 1).any()):
            # ComfyUI weighs float32 states; the empty prompt is one chunk: start, end, padding
            empty_1 = self.text_encoder(_token_chunks(self.tokenizer, [[]])[0].to(self.device),
                                        output_hidden_states=True).hidden_states[-2]
            empty_2 = self.text_encoder_2(_token_chunks(self.tokenizer_2, [[]])[0].to(self.device),
                                          output_hidden_states=True).hidden_states[-2]
            states_1 = _weighted(states_1.float(), empty_1.float(), weights_1)
            states_2 = _weighted(states_2.float(), empty_2.float(), weights_2)
        # (chunks, 77, 768) and (chunks, 77, 1280) -> (1, chunks*77, 2048)
        context = torch.cat([states_1, states_2], dim=-1)
        context = context.reshape(1, -1, context.shape[-1])
        pooled = out_2.text_embeds[:1]  # the first chunk's pooling, as single-chunk SDXL does
        return Conditioning(context.float(), pooled.float(), sum(len(part) for part in chunked_1))

    def encode_pair(self, prompt: str, negative_prompt: str | None,
                    names: tuple[str, str] = ("prompt", "negative_prompt")) -> tuple[Conditioning, Conditioning]:
        """Prompt and negative prompt with the same number of chunks, so they batch together.

        As in the original pipeline, no negative prompt (None) becomes the all-zero embedding when
        the model asks for it (`force_zeros_for_empty_prompt`, as Hotshot-XL and SDXL do), while
        an empty string is encoded like any other prompt (the reference goldens rely on this).
        `names`: how errors name the two (a malformed weight).
        """
        chunks = max(
            self._chunks_for(prompt, names[0]),
            self._chunks_for(negative_prompt, names[1]) if negative_prompt else 1,
        )
        positive = self.encode(prompt, chunks, names[0])
        if negative_prompt is None and self.force_zeros_for_empty_prompt:
            zeros = Conditioning(torch.zeros_like(positive.context), torch.zeros_like(positive.pooled), 0)
            return positive, zeros
        return positive, self.encode(negative_prompt or "", chunks, names[1])

    def _chunks_for(self, prompt: str, name: str = "prompt") -> int:
        return len(chunk_runs(prompt_runs(self.tokenizer, prompt, name)))


def _weighted(context: torch.Tensor, empty: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ComfyUI's prompt weighting of one encoder's (chunks, 77, dim) states: at each position whose
    weight w is not 1, (states - empty) * w + empty, with `empty` (1, 77, dim) the empty prompt's
    states at that position (the same for every chunk); other positions are kept bit for bit."""
    w = weights[..., None].to(context)  # (chunks, 77, 1)
    return torch.where(w != 1, (context - empty) * w + empty, context)
