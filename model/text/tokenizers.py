"""SDXL's two CLIP tokenizers, found on this machine: never downloaded.

A single-file SDXL checkpoint carries no tokenizer. Both SDXL tokenizers use OpenAI's CLIP BPE
vocabulary (49,408 tokens) and 77-token prompts; they differ only in padding: the first (for CLIP
ViT-L) pads with `<|endoftext|>`, the second (for OpenCLIP bigG) with `!` (id 0).

`load_tokenizers(source)` takes the vocabulary from, in order:
  (a) `source`, when given: a model folder with tokenizer/ (and tokenizer_2/), one tokenizer folder
      (vocab.json + merges.txt), or a `bpe_simple_vocab_16e6.txt.gz` file;
  (b) ComfyUI's own `comfy/sd1_tokenizer/`, when the `comfy` package can be found;
  (c) OpenAI's `bpe_simple_vocab_16e6.txt.gz` as shipped inside the open_clip or clip packages.
Packages are located with importlib.util.find_spec, which does not import them.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from ..errors import HotshotError, ModelFileError

MODEL_MAX_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKENS = (EOS_TOKEN, "!")  # tokenizer (CLIP ViT-L), tokenizer_2 (OpenCLIP bigG)
# CLIP keeps the first 48,894 merges of the BPE file: 512 byte tokens + 48,894 merges + 2 specials = 49,408.
CLIP_MERGES = 49408 - 512 - 2
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# (package, file or folder inside it) searched when no source is given, in order.
SEARCH = (("comfy", "sd1_tokenizer"), ("open_clip", BPE_FILE), ("clip", BPE_FILE))

NOT_FOUND = (
    "no CLIP tokenizer vocabulary found (an SDXL single-file checkpoint holds no tokenizer, and nothing is "
    "downloaded). Either point --tokenizer (the node's tokenizer input) at a folder with vocab.json and "
    "merges.txt, e.g. the tokenizer/ folder of a downloaded hotshotco/Hotshot-XL or any SDXL diffusers "
    "model (or that model folder itself); or `pip install open_clip_torch`, which ships OpenAI's "
    f"{BPE_FILE}, used automatically; inside ComfyUI its comfy/sd1_tokenizer is used automatically. "
    "Searched: {searched}"
)


class VocabularyNotFound(HotshotError):
    """No CLIP vocabulary anywhere: `searched` lists the places looked in (the nodes name their own input)."""

    def __init__(self, searched: str):
        self.searched = searched
        super().__init__(NOT_FOUND.format(searched=searched))


def load_tokenizers(source: str | Path | None = None):
    """(tokenizer, tokenizer_2): transformers CLIPTokenizers for SDXL's two text encoders.

    `source` is a model folder (tokenizer/ and tokenizer_2/), a tokenizer folder (vocab.json +
    merges.txt), a bpe_simple_vocab_16e6.txt.gz file, or None to search ComfyUI and installed
    packages. Raises ModelFileError for an unusable source, HotshotError when nothing is found.
    """
    if source is None:
        source = find_vocabulary()
        if source is None:
            searched = ", ".join(f"{package}/{inner}" for package, inner in SEARCH)
            raise VocabularyNotFound(searched)
    source = Path(source).expanduser()
    if not source.exists():
        raise ModelFileError(source, "tokenizer source not found")
    if source.is_file():
        if not source.name.endswith(".gz"):
            raise ModelFileError(source, f"expected a tokenizer folder or a gzipped CLIP BPE file ({BPE_FILE})")
        vocab, merges = clip_vocabulary_from_bpe(source)
        return _build(vocab, merges, PAD_TOKENS[0], source), _build(vocab, merges, PAD_TOKENS[1], source)
    if (source / "tokenizer").is_dir():  # a model folder
        first = _read_folder(source / "tokenizer")
        second = _read_folder(source / "tokenizer_2") if (source / "tokenizer_2").is_dir() else first
        return _build(*first, PAD_TOKENS[0], source / "tokenizer"), _build(*second, PAD_TOKENS[1], source)
    if (source / BPE_FILE).is_file():
        return load_tokenizers(source / BPE_FILE)
    vocab, merges = _read_folder(source)
    return _build(vocab, merges, PAD_TOKENS[0], source), _build(vocab, merges, PAD_TOKENS[1], source)


def find_vocabulary() -> Path | None:
    """The first CLIP vocabulary found: ComfyUI's sd1_tokenizer folder, else a packaged BPE file."""
    for package, inner in SEARCH:
        for folder in _package_dirs(package):
            candidate = folder / inner
            if candidate.is_file() or ((candidate / "vocab.json").is_file() and (candidate / "merges.txt").is_file()):
                return candidate
    return None


def _package_dirs(name: str) -> list[Path]:
    """Folders of an installed or imported package, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # ValueError: imported with __spec__ None
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def _byte_symbols() -> list[str]:
    """The 256 single-character symbols that byte-level BPE (GPT-2, CLIP) gives the bytes, in vocab order.

    Printable bytes stand for themselves; the others (controls, space, ...) are shifted to chr(256 + n).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + len(symbols) - len(printable))
    return list(symbols.values())


def clip_vocabulary_from_bpe(path: str | Path) -> tuple[dict[str, int], list[str]]:
    """CLIP's vocab (token -> id) and merges ("a b" lines) from OpenAI's gzipped BPE file.

    The file is a version line, then merges, best first. The vocab is the 256 byte symbols, the same
    with `</w>` (end of word), each of the first CLIP_MERGES merges joined, then the two specials.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as file:
            lines = file.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ModelFileError(path, f"not a readable gzipped CLIP BPE file ({error})") from None
    merges = [line for line in lines[1:1 + CLIP_MERGES] if line]
    for number, merge in enumerate(merges, start=2):
        if len(merge.split()) != 2:
            raise ModelFileError(path, f"line {number} is {merge!r}; expected two symbols separated by a space")
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + [merge.replace(" ", "") for merge in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelFileError(path, "merges produce duplicate tokens; not a CLIP BPE file")
    return vocab, merges


def byte_level_tokenizers():
    """Tokenizers over the 256 byte symbols alone (no merges), as the test fixtures' tiny model has.

    For the in-memory `tiny-random` model: no vocabulary file is needed.
    """
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    source = Path("<byte-level vocabulary>")
    return _build(vocab, [], PAD_TOKENS[0], source), _build(vocab, [], PAD_TOKENS[1], source)


def _read_folder(folder: Path) -> tuple[dict[str, int], list[str]]:
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if not (vocab_file.is_file() and merges_file.is_file()):
        raise ModelFileError(folder, "expected a tokenizer folder with vocab.json and merges.txt (e.g. a "
                             "Hotshot-XL or SDXL model's tokenizer/), a model folder holding tokenizer/ and "
                             f"tokenizer_2/, or {BPE_FILE}")
    try:
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        lines = merges_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(folder, f"unreadable vocab.json or merges.txt ({error})") from None
    if not isinstance(vocab, dict):
        raise ModelFileError(vocab_file, "expected a JSON object of token -> id")
    merges = [line for line in lines if line and not line.startswith("#version")]
    return vocab, merges


def _build(vocab: dict[str, int], merges: list[str], pad_token: str, source: Path):
    """A CLIPTokenizer from a vocab and merges, 77 tokens long, padding with `pad_token`."""
    from transformers import CLIPTokenizer

    for token in (BOS_TOKEN, EOS_TOKEN, pad_token):
        if token not in vocab:
            raise ModelFileError(source, f"the vocabulary has no {token!r} token; not a CLIP vocabulary")
    # Written out as vocab.json + merges.txt and read back: the one constructor that every
    # supported transformers version (slow or fast CLIPTokenizer) shares.
    folder = Path(tempfile.mkdtemp(prefix="hotshot-xl-tokenizer-"))
    try:
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8")
        return CLIPTokenizer.from_pretrained(folder, pad_token=pad_token, model_max_length=MODEL_MAX_LENGTH,
                                             local_files_only=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
