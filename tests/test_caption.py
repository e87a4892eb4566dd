"""python -m model.caption: a tiny random BLIP, built and saved here, captions clips that lack one."""

import json

import pytest
import torch

from model.caption.captioner import Captioner, check_captioner, shown_frames
from model.caption.cli import run
from model.errors import ModelFileError
from model.media.video import write_video


def build_tiny_blip(folder):
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *"abcdefghijklmnopqrstuvwxyz"]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    text = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, encoder_hidden_size=32, max_position_embeddings=64,
                bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=vocab.index("[SEP]"))
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text, projection_dim=32))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


def write_clip(path, seed, frames=8):
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(32, 48, 3, generator=generator)
    write_video(torch.stack([base.roll(2 * k, dims=1) for k in range(frames)]), path, fps=8)


def test_caption_cli_captions_only_the_clips_without_captions(blip, tmp_path):
    write_clip(tmp_path / "a.mp4", 0)
    write_clip(tmp_path / "b.gif", 1)
    write_clip(tmp_path / "c.mp4", 2)
    (tmp_path / "c.txt").write_text("my own caption")
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image
    for i in range(4):
        Image.new("RGB", (40, 24), (60 * i, 20, 200)).save(folder / f"{i:03d}.png")

    assert run([str(tmp_path), "--captioner", str(blip), "--prefix", "zzq", "--device", "cpu"]) == 0
    for caption in (tmp_path / "a.txt", tmp_path / "b.txt", folder / "prompt.txt"):
        text = caption.read_text().strip()
        assert text.startswith("zzq ") and len(text) > 4, caption
    assert (tmp_path / "c.txt").read_text() == "my own caption"  # never touched
    before = (tmp_path / "a.txt").read_text()
    assert run([str(tmp_path), "--captioner", str(blip)]) == 0  # nothing left to do
    assert (tmp_path / "a.txt").read_text() == before


def test_the_caption_is_the_candidate_that_fits_the_shown_frames_best(blip):
    captioner = Captioner(blip, "cpu", max_new_tokens=6, frames_shown=3)
    generator = torch.Generator().manual_seed(3)
    frames = (torch.rand(9, 32, 32, 3, generator=generator) * 255).to(torch.uint8).numpy()
    per_frame = {captioner.processor.batch_decode(captioner.model.generate(
        **captioner.processor(images=[frames[i]], return_tensors="pt"), max_new_tokens=6),
        skip_special_tokens=True)[0].strip() for i in shown_frames(9, 3)}
    assert captioner.caption(frames) in per_frame
    assert shown_frames(9, 3) == [1, 4, 7] and shown_frames(2, 3) == [0, 1]


def test_a_folder_that_is_not_a_captioner_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ModelFileError, match="not a vision-language captioner") as error:
        check_captioner(tiny_model_dir / "text_encoder")
    assert "text_encoder" in str(error.value)
    with pytest.raises(ModelFileError, match="not a folder"):
        check_captioner(tmp_path / "nowhere")
    write_clip(tmp_path / "a.mp4", 0)
    assert run([str(tmp_path), "--captioner", str(tiny_model_dir / "vae")]) == 2
    assert not (tmp_path / "a.txt").exists()


def test_the_captioner_must_bring_its_processor(blip, tmp_path):
    partial = tmp_path / "blip"
    partial.mkdir()
    (partial / "config.json").write_text((blip / "config.json").read_text())
    with pytest.raises(ModelFileError, match="image processor"):
        check_captioner(partial)
    assert json.loads((blip / "config.json").read_text())["model_type"] == "blip"


def test_the_trainer_captions_missing_clips_first(blip, tiny_model_dir, tmp_path):
    from model.train import cli

    write_clip(tmp_path / "a.mp4", 0)
    write_clip(tmp_path / "b.mp4", 1)
    (tmp_path / "b.txt").write_text("kept as written")
    argv = ["--model", str(tiny_model_dir), "--data", str(tmp_path), "--output", str(tmp_path / "o.safetensors"),
            "--caption-missing", "--captioner", str(blip), "--device", "cpu"]
    options = cli.options_from_args(cli.build_parser().parse_args(argv))
    clips = cli.prepare_clips(options, lambda message: None)
    captions = {clip.source.path.name: clip.caption for clip in clips}
    assert captions["b.mp4"] == "kept as written"
    assert captions["a.mp4"] and captions["a.mp4"] == (tmp_path / "a.txt").read_text().strip()


def _empty_caption_is_kept(folder):
    write_clip(folder / "a.mp4", 0)
    write_clip(folder / "b.mp4", 1)
    (folder / "b.txt").write_text(" \n")
    return 0, ["1 clip with an empty caption, kept as written", "captioned 1 clip;"], {"b.txt": " \n"}


def _nothing_readable(folder):
    (folder / "a.mp4").write_bytes(b"not a video")
    (folder / "b.mp4").write_bytes(b"nor this")
    return 2, ["unreadable, not captioned", "none of the 2 clips without a caption could be captioned"], {}


def _all_captioned_already(folder):
    write_clip(folder / "a.mp4", 0)
    (folder / "a.txt").write_text("mine")
    return 0, ["captioned 0 clips; 1 already had captions"], {"a.txt": "mine"}


@pytest.mark.parametrize("case", [_empty_caption_is_kept, _nothing_readable, _all_captioned_already],
                         ids=lambda case: case.__name__.strip("_"))
def test_caption_slips(case, blip, tmp_path, capsys):
    code, messages, untouched = case(tmp_path)
    assert run([str(tmp_path), "--captioner", str(blip), "--device", "cpu"]) == code
    printed = capsys.readouterr()
    assert all(m in printed.out + printed.err for m in messages), printed
    assert all((tmp_path / name).read_text() == text for name, text in untouched.items())
    assert not list(tmp_path.glob(".*.partial"))
