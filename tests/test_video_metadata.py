"""Prompt/workflow tags and sound in written videos, read back with PyAV and Pillow (the fields
ComfyUI's editor reads), and the format options of write_video."""

import json
import struct

import av
import numpy as np
import pytest
import torch
from PIL import Image

from model.errors import InputError
from model.media.video import check_output, read_video, write_video
from model.media.audio import Audio
from model.media.metadata import read_gif_comment

TAGS = {"prompt": json.dumps({"3": {"class_type": "HotshotXLSampler", "inputs": {"seed": 455}}}),
        "workflow": json.dumps({"nodes": [{"id": 3, "type": "HotshotXLSampler", "title": "caf\u00e9 \u732b"}]})}


def frames(count=3, height=33, width=47):
    return torch.rand(count, height, width, 3, generator=torch.Generator().manual_seed(0))


def webp_chunks(path):
    data = path.read_bytes()
    position, chunks = 12, []
    while position < len(data):
        kind, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        chunks.append((kind, size))
        position += 8 + size  # as the editor's reader walks them: no padding skipped
    return chunks, data


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_container_tags_hold_prompt_and_workflow(tmp_path, suffix):
    path = write_video(frames(), tmp_path / f"v{suffix}", metadata=TAGS)[0]
    with av.open(str(path)) as container:
        found = {key.lower(): value for key, value in container.metadata.items()}  # Matroska upper-cases keys
    assert json.loads(found["prompt"]) == json.loads(TAGS["prompt"])
    assert json.loads(found["workflow"]) == json.loads(TAGS["workflow"])
    assert read_video(path)[0].shape[0] == 3


def test_webp_exif_as_core_saves_it_and_the_editor_finds_it(tmp_path):
    path = write_video(frames(), tmp_path / "v.webp", metadata=TAGS)[0]
    with Image.open(path) as image:
        assert image.n_frames == 3
        exif = image.getexif()
    assert exif[0x0110] == "prompt:" + TAGS["prompt"] and exif[0x010F] == "workflow:" + TAGS["workflow"]
    chunks, data = webp_chunks(path)
    assert [k for k, _ in chunks][-1] == b"EXIF" and all(size % 2 == 0 for _, size in chunks[:-1])
    assert data[20] & 0x08  # VP8X says EXIF is present
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8


def test_png_frames_carry_text_chunks(tmp_path):
    files = write_video(frames(), f"{tmp_path}/frames/", metadata=TAGS)
    for file in files:
        with Image.open(file) as image:
            assert image.text == TAGS
    assert not list((tmp_path / "frames").glob(".*"))


def test_gif_comment_holds_the_tags(tmp_path):
    path = write_video(frames(), tmp_path / "v.gif", metadata=TAGS)[0]
    assert read_gif_comment(path) == TAGS
    assert read_video(path)[0].shape[0] == 3


def test_no_metadata_writes_no_tags(tmp_path):
    path = write_video(frames(), tmp_path / "v.webp")[0]
    assert b"EXIF" not in path.read_bytes()
    assert read_gif_comment(write_video(frames(), tmp_path / "v.gif")[0]) == {}


def test_bad_tags_are_refused_before_writing(tmp_path):
    with pytest.raises(InputError, match="metadata"):
        write_video(frames(), tmp_path / "v.mp4", metadata={"prompt": {"not": "text"}})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix,codec", [(".mp4", "aac"), (".webm", "opus")])
def test_audio_is_muxed_and_cut_to_the_video(tmp_path, suffix, codec):
    rate = 16000
    wave = np.sin(np.linspace(0, 800, rate * 3, dtype=np.float32))[None].repeat(2, 0)  # 3 s of stereo
    path = write_video(frames(8), tmp_path / f"v{suffix}", fps=8, audio=Audio(wave, rate))[0]
    with av.open(str(path)) as container:
        (sound,) = container.streams.audio
        assert sound.codec_context.name == codec and sound.codec_context.channels == 2
        decoded = sum(frame.samples / frame.sample_rate for frame in container.decode(sound))
    assert 0.9 < decoded < 1.3  # 8 frames at 8 fps: about one second of the three


def test_audio_in_a_silent_format_is_refused(tmp_path):
    with pytest.raises(InputError, match="audio"):
        write_video(frames(), tmp_path / "v.gif", audio=Audio(np.zeros((1, 100), np.float32), 8000))
    with pytest.raises(InputError, match="NaN"):
        write_video(frames(), tmp_path / "v.mp4", audio=Audio(np.full((1, 100), np.nan, np.float32), 8000))
    assert not list(tmp_path.iterdir())


def test_pixel_format_choice(tmp_path):
    path = write_video(frames(), tmp_path / "v.mp4", pixel_format="yuv444p")[0]
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv444p"
        assert container.streams.video[0].codec_context.width == 47  # no even padding needed at 4:4:4
    with pytest.raises(InputError, match="pixel_format"):
        check_output(tmp_path / "v.gif", 3, pixel_format="yuv444p")


@pytest.mark.parametrize("clip", ["one frame", "frames all alike"])
def test_webp_that_the_encoder_writes_as_a_still_gets_its_tags_too(tmp_path, clip):
    """libwebp writes a simple-format file (no VP8X header) for one frame or identical frames."""
    pixels = frames(1, 32, 48) if clip == "one frame" else torch.full((4, 32, 48, 3), 0.5)
    path = write_video(pixels, tmp_path / "v.webp", metadata=TAGS)[0]
    with Image.open(path) as image:
        assert image.size == (48, 32) and image.getexif()[0x0110] == "prompt:" + TAGS["prompt"]
        decoded = np.asarray(image.convert("RGB"))
    with Image.open(write_video(pixels, tmp_path / "plain.webp")[0]) as plain:
        assert np.array_equal(decoded, np.asarray(plain.convert("RGB")))  # the picture itself is untouched
    chunks, data = webp_chunks(path)
    assert [k for k, _ in chunks][0] == b"VP8X" and [k for k, _ in chunks][-1] == b"EXIF"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
