"""model.media.video: every format round-trips through PyAV (Pillow for WebP), nothing is overwritten or
left half-written, and bad inputs are refused before anything is encoded."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from model.media import video
from model.errors import InputError
from model.media.video import pad_to_even, read_video, write_video


def make_clip(frames=5, height=48, width=64) -> torch.Tensor:
    """Smooth gradients (what lossy codecs and a GIF palette handle well), a different mean level
    per frame so a swapped or dropped frame shows."""
    y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    clip = [torch.stack([x, y, torch.full_like(x, (i + 1) / (frames + 1))], dim=-1) * 0.8 + 0.1 * (i % 2)
            for i in range(frames)]
    return torch.stack(clip)  # (frames, height, width, 3) float 0..1, like a ComfyUI IMAGE


def as_uint8(clip: torch.Tensor) -> np.ndarray:
    return (clip * 255).round().to(torch.uint8).numpy()


def assert_frames_match(decoded: torch.Tensor, clip: torch.Tensor, tolerance: float):
    """Each decoded frame is close to its own source frame and nearer to it than to any other."""
    source = torch.from_numpy(as_uint8(clip)).float()
    height, width = source.shape[1:3]
    decoded = decoded[:, :height, :width].float()
    errors = (decoded[:, None] - source[None]).abs().mean(dim=(2, 3, 4))  # (decoded, source)
    assert errors.diagonal().max() < tolerance, errors.diagonal()
    assert torch.equal(errors.argmin(dim=1), torch.arange(len(source)))


def pyav_timestamps(path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.pts * stream.time_base for frame in container.decode(stream)]


# --- every format round-trips ---------------------------------------------------------------------

@pytest.mark.parametrize("ext, size, stored_size, tolerance", [
    (".mp4", (48, 64), (48, 64), 6),
    (".mp4", (47, 63), (48, 64), 6),  # H.264 needs even sizes: padded, never cropped
    (".webm", (48, 64), (48, 64), 6),
    (".webm", (47, 63), (47, 63), 6),  # VP9 takes odd sizes as they are
    (".webp", (48, 64), (48, 64), 6),
    (".webp", (47, 63), (47, 63), 6),
    (".gif", (48, 64), (48, 64), 10),  # 256 colours, dithered: per-pixel error is larger
])
def test_video_round_trip(tmp_path, ext, size, stored_size, tolerance):
    clip = make_clip(5, *size)
    [written] = write_video(clip, tmp_path / f"clip{ext}")
    assert written == tmp_path / f"clip{ext}"
    assert os.listdir(tmp_path) == [f"clip{ext}"]  # no temporary left beside it

    frames, fps = read_video(written)
    assert frames.dtype == torch.uint8
    assert tuple(frames.shape) == (5, *stored_size, 3)
    assert fps == 8
    assert_frames_match(frames, clip, tolerance)


def test_pad_to_even_repeats_the_last_row_and_column():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 3), dtype=np.uint8)
    padded = pad_to_even(pixels)
    assert padded.shape == (2, 4, 6, 3)
    assert np.array_equal(padded[:, :3, :5], pixels)
    assert np.array_equal(padded[:, 3, :5], pixels[:, 2])
    assert np.array_equal(padded[:, :, 5], padded[:, :, 4])
    assert np.array_equal(pad_to_even(padded), padded)  # already even: unchanged


def test_mp4_keeps_a_fractional_rate_exactly(tmp_path):
    [written] = write_video(make_clip(4), tmp_path / "ntsc.mp4", fps=30000 / 1001)  # a float
    assert read_video(written)[1] == Fraction(30000, 1001)
    assert pyav_timestamps(written) == [Fraction(1001 * i, 30000) for i in range(4)]


def test_gif_timing_and_loop(tmp_path):
    [written] = write_video(make_clip(5), tmp_path / "clip.gif", fps=8, loop=3)
    # GIF delays are whole 1/100 s: 8 fps alternates 12 and 13 but stays on the 1/8 s grid.
    times = pyav_timestamps(written)
    assert all((time * 100).denominator == 1 for time in times)
    assert all(abs(time - Fraction(i, 8)) <= Fraction(1, 200) for i, time in enumerate(times)), times
    with Image.open(written) as image:
        assert image.info["loop"] == 3


def test_rounded_timestamps_read_back_as_the_written_rate(tmp_path):
    # 8 frames at 8 fps in 1/100 s GIF steps end at 88/100 s, which measures 7.95 fps.
    [gif] = write_video(make_clip(8, 16, 16), tmp_path / "clip.gif")
    assert pyav_timestamps(gif)[-1] == Fraction(88, 100)
    assert read_video(gif)[1] == 8
    # WebM keeps milliseconds; over 100 frames 30000/1001 is told apart from 30.
    [webm] = write_video(make_clip(100, 16, 16), tmp_path / "ntsc.webm", fps=Fraction(30000, 1001))
    assert read_video(webm)[1] == Fraction(30000, 1001)
    [webm] = write_video(make_clip(5, 16, 16), tmp_path / "odd.webm", fps=12.5)
    assert read_video(webm)[1] == Fraction(25, 2)


def test_gif_palette_comes_from_the_clip(tmp_path):
    # The GIF encoder's fixed 3-3-2 bit palette (rgb8) is off by ~14 levels per pixel on these
    # gradients; a palette made from the clip by ~7.5.
    clip = make_clip(3)
    [written] = write_video(clip, tmp_path / "clip.gif")
    frames, _ = read_video(written)
    error = (frames.float() - torch.from_numpy(as_uint8(clip)).float()).abs().mean()
    assert error < 9


def test_webp_timing_and_loop(tmp_path):
    [written] = write_video(make_clip(5), tmp_path / "clip.webp", fps=10, loop=2)
    with Image.open(written) as image:
        assert image.info["loop"] == 2
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            image.load()
            durations.append(image.info["duration"])
    assert durations == [100] * 5
    assert read_video(written)[1] == 10


def test_gif_and_webp_loop_forever_by_default(tmp_path):
    for name in ("clip.gif", "clip.webp"):
        [written] = write_video(make_clip(2), tmp_path / name)
        with Image.open(written) as image:
            assert image.info["loop"] == 0, name


def test_quality_changes_the_encoding(tmp_path):
    clip = make_clip(4)
    source = torch.from_numpy(as_uint8(clip)).float()
    [low] = write_video(clip, tmp_path / "low.mp4", quality=10)
    [high] = write_video(clip, tmp_path / "high.mp4", quality=95)
    low_error = (read_video(low)[0].float() - source).abs().mean()
    high_error = (read_video(high)[0].float() - source).abs().mean()
    assert os.path.getsize(high) > os.path.getsize(low)
    assert high_error < low_error / 2


# --- PNG sequences ---------------------------------------------------------------------------------

def read_png(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_png_folder_is_created_and_lossless(tmp_path):
    clip = make_clip(5, 47, 63)
    files = write_video(clip, f"{tmp_path}/frames/")
    assert files == [tmp_path / "frames" / f"frame_{i:05d}.png" for i in range(5)]
    assert sorted(os.listdir(tmp_path / "frames")) == [file.name for file in files]  # no staging left
    expected = as_uint8(clip)
    for index, file in enumerate(files):
        assert np.array_equal(read_png(file), expected[index])


def test_png_pattern_takes_uint8_numpy(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    files = write_video(pixels, tmp_path / "shot_%d.png")
    assert [file.name for file in files] == ["shot_0.png", "shot_1.png", "shot_2.png"]
    for index, file in enumerate(files):
        assert np.array_equal(read_png(file), pixels[index])


def test_existing_folder_without_slash_is_a_png_folder(tmp_path):
    files = write_video(make_clip(2), tmp_path)
    assert [file.name for file in files] == ["frame_00000.png", "frame_00001.png"]


# --- overwriting -----------------------------------------------------------------------------------

def test_existing_file_is_kept_without_overwrite(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(InputError, match="clip.mp4.*already exists.*overwrite=True"):
        write_video(make_clip(3), target)
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_overwrite_replaces_the_file(tmp_path):
    target = tmp_path / "clip.webm"
    write_video(make_clip(3), target)
    write_video(make_clip(5), target, overwrite=True)
    assert read_video(target)[0].shape[0] == 5
    assert os.listdir(tmp_path) == ["clip.webm"]


def test_png_sequence_refuses_if_any_frame_exists(tmp_path):
    (tmp_path / "frame_00002.png").write_bytes(b"old")
    with pytest.raises(InputError, match="frame_00002.png.*already exists"):
        write_video(make_clip(4), f"{tmp_path}/")
    assert os.listdir(tmp_path) == ["frame_00002.png"]
    assert (tmp_path / "frame_00002.png").read_bytes() == b"old"

    files = write_video(make_clip(4), f"{tmp_path}/", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == [file.name for file in files]
    assert np.array_equal(read_png(files[2]), as_uint8(make_clip(4))[2])


# --- failures leave nothing behind -----------------------------------------------------------------

def failing_after(count: int, error: BaseException):
    """A stand-in for video._rgb_frames that yields `count` real frames, then raises `error`."""
    real = video._rgb_frames

    def frames(pixels, rate):
        for index, frame in enumerate(real(pixels, rate)):
            if index == count:
                raise error
            yield frame
    return frames


@pytest.mark.parametrize("name", ["clip.mp4", "clip.gif", "clip.webp"])
def test_encoder_failure_leaves_no_file(tmp_path, monkeypatch, name):
    monkeypatch.setattr(video, "_rgb_frames", failing_after(2, RuntimeError("disk on fire")))
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_video(make_clip(4), tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_interrupt_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous take")
    monkeypatch.setattr(video, "_rgb_frames", failing_after(2, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_video(make_clip(4), target, overwrite=True)
    assert target.read_bytes() == b"previous take"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_png_failure_leaves_no_partial_sequence(tmp_path, monkeypatch):
    (tmp_path / "keep.txt").write_text("unrelated")
    monkeypatch.setattr(video, "_rgb_frames", failing_after(3, RuntimeError("disk on fire")))
    with pytest.raises(RuntimeError):
        write_video(make_clip(5), f"{tmp_path}/new_folder/")
    with pytest.raises(RuntimeError):
        write_video(make_clip(5), tmp_path / "f_%03d.png")
    assert os.listdir(tmp_path) == ["keep.txt"]


# --- bad inputs are refused before anything is written ---------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"path": "clip.avi"}, r"clip\.avi: unknown video type '\.avi'; supported: \.mp4, \.webm, \.gif, \.webp"),
    ({"path": "clip"}, r"unknown video type '\(no extension\)'"),
    ({"path": "still.png"}, r"still\.png: a PNG sequence needs a folder .* frame_%05d\.png"),
    ({"path": "f_%05d.jpg"}, r"must end in \.png"),
    ({"path": "f_%d_%d.png"}, r"exactly once"),
    ({"path": "missing/clip.mp4"}, r"clip\.mp4: folder .*missing does not exist"),
    ({"path": "missing/deeper/"}, r"folder .*missing does not exist"),
    ({"fps": 0}, r"fps: must be a positive number, got 0"),
    ({"fps": -8}, r"fps: must be a positive number"),
    ({"fps": float("nan")}, r"fps: must be a positive number, got nan"),
    ({"fps": "8"}, r"fps: expected a number of frames per second, got '8'"),
    ({"loop": -1}, r"loop: expected a whole number from 0 \(forever\) to 65535, got -1"),
    ({"loop": 1.5}, r"loop: expected a whole number"),
    ({"quality": 101}, r"quality: expected None or a number from 0 to 100, got 101"),
    ({"frames": torch.zeros(0, 48, 64, 3)}, r"frames: is empty: shape \(0, 48, 64, 3\)"),
    ({"frames": torch.zeros(48, 64, 3)}, r"frames: expected shape \(frames, height, width, 3\), got \(48, 64, 3\)"),
    ({"frames": torch.zeros(2, 48, 64, 4)}, r"got \(2, 48, 64, 4\)"),
    ({"frames": torch.zeros(2, 8, 8, 3, dtype=torch.int64)}, r"frames: expected float values .* got torch\.int64"),
    ({"frames": np.zeros((2, 8, 8, 3), dtype=np.int16)}, r"frames: expected float values .* got int16"),
    ({"frames": torch.full((2, 8, 8, 3), float("nan"))}, r"frames: contains NaN or infinite values"),
    ({"frames": [[0.5]]}, r"frames: expected a torch tensor or numpy array, got list"),
])
def test_bad_input_is_refused(tmp_path, change, message):
    arguments = {"frames": make_clip(2), "path": "clip.mp4", **change}
    arguments["path"] = tmp_path / arguments["path"] if not arguments["path"].endswith("/") \
        else f"{tmp_path}/{arguments['path']}"
    with pytest.raises(InputError, match=message):
        write_video(**arguments)
    assert os.listdir(tmp_path) == []


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(video.os, "access", lambda path, mode: False)  # root can write anywhere
    with pytest.raises(InputError, match=r"clip\.gif: folder .* is not writable"):
        write_video(make_clip(2), tmp_path / "clip.gif")


def test_missing_encoder_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(video.av, "codecs_available", frozenset())
    with pytest.raises(InputError, match=r"clip\.mp4: this PyAV build has no H\.264 in MP4 encoder"):
        write_video(make_clip(2), tmp_path / "clip.mp4")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, fps", [("one.mp4", 8), ("one.webm", 8), ("one.webp", None)])
def test_single_frame_reads_back(tmp_path, name, fps):
    [written] = write_video(make_clip(1, 8, 8), tmp_path / name)
    frames, rate = read_video(written)
    assert frames.shape == (1, 8, 8, 3)
    assert rate == fps  # a one-frame WebP is a still image: it stores no timing


def test_read_video_names_a_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.mp4: no such video file"):
        read_video(tmp_path / "nothing.mp4")
