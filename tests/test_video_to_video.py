"""Video-to-video and image-to-video: strength, determinism, sizes following the input, bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from model.media.frames import read_frames
from model.errors import InputError
from model.pipeline import load_pipeline
from model.sample import run
from model.media.video import read_video


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


@pytest.fixture(scope="module")
def video_dir(fixtures_dir):
    return fixtures_dir / "control_frames_tiny" / "96x64"  # 8 frames, 96x64


@pytest.fixture(scope="module")
def video(video_dir):
    return read_frames(video_dir)  # uint8 (8, 64, 96, 3)


def v2v(pipe, video, strength, **changes):
    settings = dict(width=96, height=64, frames=len(video), steps=4, seed=7, scheduler="euler_a", strength=strength)
    return pipe("a corgi", "blurry", init_frames=video, **{**settings, **changes})


def test_lower_strength_stays_closer_to_the_input(pipe, video):
    video = video[:4]
    round_trip = pipe.decode(pipe.encode_video(video))  # strength 0: the input through the VAE, no step
    assert torch.equal(v2v(pipe, video, 0.0), round_trip)
    distances = [(v2v(pipe, video, s) - round_trip).abs().mean().item() for s in (0.25, 0.5, 1.0)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_deterministic(pipe, video):
    assert torch.equal(v2v(pipe, video[:4], 0.5), v2v(pipe, video[:4], 0.5))


def test_image_to_video_starts_every_frame_from_the_image(pipe, video):
    latents = pipe.encode_video(video[:1], count=5)
    assert latents.shape == (1, 4, 5, 8, 12) and torch.equal(latents[:, :, 0], latents[:, :, 4])
    frames = v2v(pipe, video[:1], 0.5, frames=5)  # one image, five frames
    assert frames.shape == (5, 64, 96, 3)


def cli(tiny_model_dir, out, *flags):
    return run(["--model", str(tiny_model_dir), "--steps", "2", "--dtype", "fp32", "--device", "cpu",
                "--out", str(out), *flags])


def frames_written(folder):
    return np.stack([read_video(f)[0][0].numpy() for f in sorted(folder.glob("frame_*.png"))])


def test_cli_sizes_and_frames_follow_the_input(tmp_path, tiny_model_dir, video_dir):
    assert cli(tiny_model_dir, str(tmp_path / "a") + "/", "--init-video", str(video_dir), "--strength", "0.5") == 0
    assert frames_written(tmp_path / "a").shape == (8, 64, 96, 3)
    # Given flags win: 4 frames at 64x64 (covered and centre-cropped).
    assert cli(tiny_model_dir, str(tmp_path / "b") + "/", "--init-video", str(video_dir) + ".gif", "--frames", "4",
               "--width", "64", "--height", "64") == 0
    assert frames_written(tmp_path / "b").shape == (4, 64, 64, 3)
    assert cli(tiny_model_dir, str(tmp_path / "c") + "/", "--init-image", str(video_dir / "000.png"),
               "--frames", "3") == 0
    assert frames_written(tmp_path / "c").shape == (3, 64, 96, 3)


@pytest.mark.parametrize("make, flags, flag, message", [
    (None, ["--init-video", "{video}", "--strength", "1.5"], "--strength", "0 to 1"),
    (None, ["--strength", "0.5"], "--strength", "needs --init-video"),
    ("small", ["--init-image", "{small}"], "--init-image", "at least 64 px"),
    ("broken", ["--init-video", "{broken}"], "--init-video", "not a readable video"),
    ("empty", ["--init-video", "{empty}"], "--init-video", "no images"),
    (None, ["--init-video", "{video}", "--frames", "12"], "--init-video", "fewer than the 12"),
])
def test_bad_input_one_error_nothing_written(make, flags, flag, message, tmp_path, tiny_model_dir, video_dir,
                                             capsys):
    paths = dict(video=video_dir, small=tmp_path / "small.png", broken=tmp_path / "broken.webm",
                 empty=tmp_path / "empty")
    if make == "small":
        Image.new("RGB", (56, 80)).save(paths["small"])
    elif make == "broken":
        paths["broken"].write_bytes(b"\x1aE\xdf\xa3 truncated")
    elif make == "empty":
        paths["empty"].mkdir()
    out = tmp_path / "out.mp4"
    code = cli(tiny_model_dir, out, *[f.format(**paths) for f in flags])
    error = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert flag in error and message in error and error.count("error:") == 1


def test_python_strength_and_init_checks(pipe, video):
    with pytest.raises(InputError, match="strength"):
        v2v(pipe, video, -0.1)
    with pytest.raises(InputError, match="3 frames for a 8-frame video"):
        v2v(pipe, video[:3], 0.5, frames=8)
    with pytest.raises(InputError, match="the video 64x64"):
        v2v(pipe, video, 0.5, width=64)


def test_freeinit_with_video_to_video(pipe, video, monkeypatch):
    """FreeInit 1 is plain video-to-video bit for bit; with 2, the second iteration starts at the
    strength's noise level from the previous result's low frequencies (noised with the first
    iteration's noise) and the input's high frequencies (noised with fresh noise)."""
    from model.denoising.loop import call_predictor
    from model.denoising.schedulers import make_scheduler
    from model.pipeline import Settings
    from model.travel import freeinit as freeinit_module
    from model.travel.freeinit import FreeInitOptions
    from model.video2video.strength import start_from

    settings = dict(width=96, height=64, frames=4, steps=4, seed=7, strength=0.5)  # 2 of the 4 steps run
    conditions = pipe.encode("a corgi", "blurry")
    init = pipe.encode_video(video[:4])
    plain = pipe.sample(conditions, Settings(**settings), init=init)
    assert torch.equal(pipe.sample(conditions, Settings(**settings, freeinit=1), init=init), plain)

    mixes, inputs = [], []
    mix = freeinit_module.mix_frequencies
    monkeypatch.setattr(freeinit_module, "mix_frequencies",
                        lambda low, high, gains: mixes.append((low, high, gains, mix(low, high, gains))) or
                        mixes[-1][-1])

    def watch(predict):  # records what the guided UNet is given, step by step
        def watched(latents, timestep, **position):
            inputs.append(latents.clone())
            return call_predictor(predict, latents, timestep, **position)
        watched.takes_position = True
        return watched

    twice = pipe.sample(conditions, Settings(**settings, freeinit=FreeInitOptions(2, "butterworth", 0.25)),
                        init=init, watch=watch)
    (first_noise, fresh, gains, noise), (previous, given, _, mixed) = mixes
    assert torch.equal(previous, plain) and torch.equal(given, init)  # the first iteration: plain v2v
    assert torch.equal(first_noise, torch.randn((1, 4, 4, 8, 12), generator=torch.Generator().manual_seed(7)))
    assert len(inputs) == 4  # 2 steps an iteration
    scheduler = make_scheduler("euler_a", pipe.scheduler_config)
    scheduler.set_timesteps(4)
    start, timesteps = start_from(scheduler, mixed, noise, 4, 0.5)
    assert torch.allclose(inputs[2], scheduler.scale_model_input(start, timesteps[0]), atol=1e-6)
    # In frequency terms: the previous result and the input video, each noised to the strength's level.
    low = scheduler.add_noise(plain, first_noise, timesteps[:1])
    high = scheduler.add_noise(init, fresh, timesteps[:1])
    fft = lambda x: torch.fft.fftn(x, dim=(-3, -2, -1))  # noqa: E731
    assert torch.allclose(fft(start), fft(low) * gains + fft(high) * (1 - gains), atol=1e-3)
    assert (fft(start) - fft(high)).abs()[..., 0, 0, 0].min() > 0.1  # zero frequency: the previous result's
    assert not torch.allclose(twice, plain, atol=1e-3) and torch.isfinite(twice).all()
