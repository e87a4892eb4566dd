"""Memory and time estimates before any heavy work (model/budget.py): what cannot fit is refused up
front, naming the flags or arguments that size it; a very long CPU run is announced; the state kept
per frame grows with the frames, never faster."""

import time

import pytest
import torch

import model.budget as budget
from model.errors import InputError
from model.pipeline import Settings
from model.sample import run
from model.tiny import TINY_UNET

GIB = 1024**3


def test_per_frame_state_is_proportional_and_100000_frames_at_64x64_bounded():
    started = time.perf_counter()
    sizes = {frames: budget.check_settings(TINY_UNET, Settings(width=64, height=64, frames=frames, steps=4),
                                           torch.float32, torch.device("cpu"), warn=lambda _: None)
             for frames in (100_000, 200_000)}
    assert time.perf_counter() - started < 5
    assert sizes[200_000].per_frame == 2 * sizes[100_000].per_frame
    assert sizes[200_000].activations == sizes[100_000].activations  # one window at a time
    # 17 bytes a pixel of frames and latents: the float32 frames, their 8-bit copy, the latents.
    assert 6 * GIB < sizes[100_000].peak < 8 * GIB


def test_windows_blend_in_memory_linear_in_the_frames():
    from model.denoising.context import ContextOptions, blend_weights, context_windows

    windows = context_windows(100_000, ContextOptions(), torch.tensor(999))
    shares = blend_weights(100_000, windows, "pyramid")
    assert shares.shape == (len(windows), 8)  # not (windows, frames): that was 10 GB


@pytest.fixture
def nothing_loads(monkeypatch):
    import model.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(model.pipeline, "load_pipeline", refuse)


@pytest.mark.parametrize("flags, memory, flag", [
    (["--width", "64", "--height", "64", "--frames", "100000"], 2 * GIB, "--frames 100000"),
    (["--width", "16384", "--height", "16384", "--frames", "1"], 8 * GIB, "--width 16384"),
])
def test_cli_refuses_what_cannot_fit_within_seconds(monkeypatch, nothing_loads, tmp_path, capsys, flags, memory,
                                                    flag):
    monkeypatch.setattr(budget, "device_memory", lambda device: memory)
    out = tmp_path / "video.mp4"
    started = time.perf_counter()
    code = run(["--model", "tiny-random", *flags, "--out", str(out)])
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {flag.split()[0]}: {flag}") and "GB" in err[0] and "the cpu has" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_warns_on_stderr_before_a_very_long_cpu_run(monkeypatch, nothing_loads, tmp_path, capsys):
    monkeypatch.setattr(budget, "device_memory", lambda device: 1024 * GIB)
    with pytest.raises(AssertionError, match="weights were loaded"):  # warned, then went on to load
        run(["--model", "tiny-random", "--width", "16384", "--height", "16384", "--frames", "1",
             "--out", str(tmp_path / "video.mp4")])
    warning = capsys.readouterr().err.splitlines()[0]
    assert warning.startswith("warning: --width 16384 --height 16384 --frames 1 --steps 4 will take about")
    assert "on this CPU" in warning and ("days" in warning or "hours" in warning)


def test_python_api_refuses_before_any_work(monkeypatch):
    from model.pipeline import load_pipeline

    pipe = load_pipeline("tiny-random", dtype="fp32", device="cpu")
    monkeypatch.setattr(budget, "device_memory", lambda device: 2 * GIB)
    monkeypatch.setattr(pipe, "encode", lambda *a, **k: pytest.fail("encoded before refusing"))
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"^frames: `frames=100000` `width=64` `height=64` needs about") as error:
        pipe("a cat", width=64, height=64, frames=100_000, steps=2)
    assert error.value.name == "frames" and time.perf_counter() - started < 5
