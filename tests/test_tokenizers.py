"""SDXL tokenizers without a hub: from folders, ComfyUI's files, or OpenAI's BPE file.

The tiny fixture's tokenizers have the byte-level vocabulary and no merges, i.e. exactly what a BPE
file with no merge lines yields, so the generated tokenizer must equal them token for token.
"""

import gzip
import importlib.util
import json
import shutil
import sys

import pytest
from transformers import CLIPTokenizer

import model.text.tokenizers as tokenizers_module
from model.errors import HotshotError, ModelFileError
from model.text.tokenizers import clip_vocabulary_from_bpe, find_vocabulary, load_tokenizers

PROMPTS = [
    "a photo of a cat",
    "",
    "Über-café, 42 dogs!! <|endoftext|> (masterpiece:1.2)\ttabs\nnewlines",
    "a very long prompt " * 30,  # > 77 tokens: truncated
]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return (CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer", local_files_only=True),
            CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer_2", local_files_only=True))


def _ids(tokenizer, prompt):
    # How the pipelines call them: padded to 77, truncated.
    return tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids


def _assert_like_reference(pair, reference):
    for tokenizer, expected in zip(pair, reference):
        assert tokenizer.model_max_length == 77
        assert tokenizer.pad_token == expected.pad_token and tokenizer.pad_token_id == expected.pad_token_id
        for prompt in PROMPTS:
            assert _ids(tokenizer, prompt) == _ids(expected, prompt), prompt


def _write_bpe(path, merges, header="\"bpe_simple_vocab_16e6.txt#version: 0.2"):
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write("\n".join([header, *merges]) + "\n")
    return path


def test_model_folder(tiny_model_dir, reference):
    pair = load_tokenizers(tiny_model_dir)
    _assert_like_reference(pair, reference)
    assert pair[0].pad_token == "<|endoftext|>" and pair[1].pad_token == "!" and pair[1].pad_token_id == 0


def test_single_tokenizer_folder_gives_both(tiny_model_dir, reference):
    _assert_like_reference(load_tokenizers(tiny_model_dir / "tokenizer"), reference)
    _assert_like_reference(load_tokenizers(str(tiny_model_dir / "tokenizer_2")), reference)


def test_bpe_file_without_merges_gives_the_byte_vocabulary(tmp_path, tiny_model_dir, reference):
    path = _write_bpe(tmp_path / "bpe_simple_vocab_16e6.txt.gz", [])
    vocab, merges = clip_vocabulary_from_bpe(path)
    assert merges == []
    assert vocab == json.loads((tiny_model_dir / "tokenizer" / "vocab.json").read_text())
    _assert_like_reference(load_tokenizers(path), reference)
    _assert_like_reference(load_tokenizers(tmp_path), reference)  # a folder holding the BPE file


def test_bpe_vocabulary_layout(tmp_path, monkeypatch):
    path = _write_bpe(tmp_path / "bpe.txt.gz", ["t h", "th e</w>", "c a", "ca t</w>", "o f</w>", "beyond the limit"])
    monkeypatch.setattr(tokenizers_module, "CLIP_MERGES", 5)  # the real file has more lines than CLIP uses
    vocab, merges = clip_vocabulary_from_bpe(path)
    assert merges == ["t h", "th e</w>", "c a", "ca t</w>", "o f</w>"]
    assert len(vocab) == 512 + 5 + 2
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["Ā"] == 188  # byte 0 -> chr(256), after the printable ones
    assert [vocab[t] for t in ("th", "the</w>", "ca", "cat</w>", "of</w>")] == [512, 513, 514, 515, 516]
    assert vocab["<|startoftext|>"] == 517 and vocab["<|endoftext|>"] == 518

    tokenizer, tokenizer_2 = load_tokenizers(path)
    assert tokenizer("the cat of").input_ids == [517, 513, 515, 516, 518]
    assert _ids(tokenizer, "the")[-1] == 518 and _ids(tokenizer_2, "the")[-1] == 0
    assert tokenizer_2.pad_token == "!" and tokenizer.pad_token == "<|endoftext|>"


def test_malformed_bpe_file(tmp_path):
    with pytest.raises(ModelFileError, match="line 2"):
        clip_vocabulary_from_bpe(_write_bpe(tmp_path / "bad.txt.gz", ["abc"]))
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(ModelFileError, match="plain.txt.gz"):
        load_tokenizers(tmp_path / "plain.txt.gz")


def _fake_package(root, name, raising=True):
    package = root / name
    package.mkdir(parents=True)
    # Importing the package would fail: the search must find files without importing.
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n" if raising else "")
    return package


def _skip_if_imported(name):
    if name in sys.modules:  # find_spec would return the imported package, not our fake
        pytest.skip(f"{name} is already imported in this process")


def test_finds_comfyui_tokenizer_without_importing_comfy(tmp_path, monkeypatch, tiny_model_dir, reference):
    _skip_if_imported("comfy")
    package = _fake_package(tmp_path, "comfy")
    shutil.copytree(tiny_model_dir / "tokenizer", package / "sd1_tokenizer")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_vocabulary() == package / "sd1_tokenizer"
    _assert_like_reference(load_tokenizers(), reference)
    assert "comfy" not in sys.modules


@pytest.mark.parametrize("name", ["open_clip", "clip"])
def test_finds_packaged_bpe_file_without_importing(tmp_path, monkeypatch, reference, name):
    _skip_if_imported(name)
    monkeypatch.setattr(tokenizers_module, "SEARCH", tuple(s for s in tokenizers_module.SEARCH if s[0] != "comfy"))
    package = _fake_package(tmp_path, name)
    _write_bpe(package / "bpe_simple_vocab_16e6.txt.gz", [])
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_vocabulary() == package / "bpe_simple_vocab_16e6.txt.gz"
    _assert_like_reference(load_tokenizers(), reference)
    assert name not in sys.modules


def test_nothing_found_says_what_to_do(monkeypatch):
    monkeypatch.setattr(tokenizers_module, "_package_dirs", lambda name: [])
    assert find_vocabulary() is None
    with pytest.raises(HotshotError) as caught:
        load_tokenizers()
    message = str(caught.value)
    for option in ("--tokenizer", "vocab.json", "merges.txt", "hotshotco/Hotshot-XL", "pip install open_clip_torch",
                   "ComfyUI", "comfy/sd1_tokenizer"):
        assert option in message, option
    assert "\n" not in message  # the CLI prints errors on one line


def test_unusable_sources_name_the_path(tmp_path):
    with pytest.raises(ModelFileError, match="not found") as caught:
        load_tokenizers(tmp_path / "missing")
    assert caught.value.path == str(tmp_path / "missing")
    with pytest.raises(ModelFileError, match="vocab.json and merges.txt") as caught:
        load_tokenizers(tmp_path)
    assert caught.value.path == str(tmp_path)
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ModelFileError, match="not a CLIP vocabulary"):
        load_tokenizers(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFileError, match="expected a tokenizer folder"):
        load_tokenizers(tmp_path / "model.safetensors")


def _real_bpe_file():
    for package in ("open_clip", "clip"):
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = tokenizers_module.Path(location) / "bpe_simple_vocab_16e6.txt.gz"
            if candidate.is_file():
                return candidate
    return None


@pytest.mark.skipif(_real_bpe_file() is None, reason="neither open_clip nor clip is installed")
def test_real_openai_bpe_file():
    vocab, merges = clip_vocabulary_from_bpe(_real_bpe_file())
    assert len(vocab) == 49408 and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    tokenizer, tokenizer_2 = load_tokenizers(_real_bpe_file())
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer_2.pad_token_id == 0 and tokenizer.pad_token_id == 49407
