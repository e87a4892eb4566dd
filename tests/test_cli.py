"""`python -m model.sample`: golden frames through the CLI, every output format, and bad input."""

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from model.sample import run
from model.video import read_video

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_cli_png_frames_match_golden(tiny_model_dir, fixtures_dir, tmp_path, capsys):
    case = json.loads((fixtures_dir / "pipeline_golden.json").read_text())[0]
    out = tmp_path / "frames/"
    code = run(["--model", str(tiny_model_dir), "--prompt", case["prompt"],
                "--negative-prompt", case["negative_prompt"], "--width", str(case["width"]),
                "--height", str(case["height"]), "--frames", str(case["video_length"]),
                "--steps", str(case["steps"]), "--seed", str(case["seed"]),
                "--guidance", str(case["guidance_scale"]), "--scheduler", case["scheduler"],
                "--original-size", *map(str, case["og"]), "--target-size", *map(str, case["target"]),
                "--dtype", "fp32", "--device", "cpu", "--out", str(out) + "/"])
    assert code == 0
    summary = capsys.readouterr().out
    assert f"{case['video_length']} frames, {case['width']}x{case['height']}, 8 fps" in summary
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == case["video_length"]
    pixels = np.stack([read_video(f)[0][0].numpy() for f in frames]).astype(np.float32) / 255
    expected = load_file(fixtures_dir / "pipeline_golden.safetensors")[case["name"]].numpy()
    assert np.abs(pixels - expected).max() <= 2 / 255 + 1e-6


@pytest.mark.parametrize("name, fps", [("clip.mp4", 8), ("clip.webm", 12), ("clip.gif", 8), ("clip.webp", 10)])
def test_cli_writes_each_format(tmp_path, name, fps):
    out = tmp_path / name
    code = run(["--model", "tiny-random", "--width", "64", "--height", "48", "--frames", "5", "--steps", "1",
                "--fps", str(fps), "--dtype", "fp32", "--device", "cpu", "--out", str(out)])
    assert code == 0
    frames, rate = read_video(out)
    assert tuple(frames.shape) == (5, 48, 64, 3)
    assert rate == Fraction(fps)
    assert not [p for p in tmp_path.iterdir() if p.name != name]  # no temporary files left


def test_module_entry_point_runs(tmp_path):
    out = tmp_path / "demo.mp4"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "model.sample", "--model", "tiny-random", "--width", "64",
                             "--height", "64", "--frames", "2", "--steps", "1", "--device", "cpu",
                             "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tiny-random: random weights" in result.stderr
    assert result.stdout.startswith(f"wrote {out}: 2 frames, 64x64, 8 fps")
    assert read_video(out)[0].shape[0] == 2


@pytest.mark.parametrize("flags, message", [
    (["--width", "65"], "--width: must be a positive multiple of 8, got 65"),
    (["--frames", "0"], "--frames: must be a positive whole number, got 0"),
    (["--steps", "0"], "--steps: must be a positive whole number, got 0"),
    (["--fps", "0"], "fps: "),
    (["--context-overlap", "8"], "--context-overlap: must be 0 to 7 (less than the window length 8), got 8"),
    (["--context-length", "25"], "--context-length: must be 1 to 24 frames"),
    (["--context-stride", "3"], "--context-stride: must be a power of two (1, 2, 4, ...), got 3"),
    (["--compile", "--offload", "sequential"], "--compile: cannot be combined with sequential offload"),
])
def test_bad_flags_fail_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "out.mp4"
    assert run(["--model", "tiny-random", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unknown_scheduler_and_extension(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["--model", "tiny-random", "--scheduler", "heun", "--out", str(tmp_path / "a.mp4")])
    assert exit_info.value.code == 2
    assert run(["--model", "tiny-random", "--out", str(tmp_path / "a.mkv")]) == 2
    assert "unknown video type '.mkv'" in capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"my own file")
    assert run(["--model", "tiny-random", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"my own file"
    assert run(["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "2", "--steps", "1",
                "--out", str(out), "--overwrite"]) == 0
    assert read_video(out)[0].shape == (2, 64, 64, 3)


def test_missing_output_folder(tmp_path, capsys):
    assert run(["--model", "tiny-random", "--out", str(tmp_path / "no" / "such" / "a.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_no_model_says_where_to_get_weights(tmp_path, capsys):
    assert run(["--out", str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err
    assert "huggingface.co/hotshotco/Hotshot-XL" in err and "--model tiny-random" in err


def test_model_folder_missing_a_component(tiny_model_dir, tmp_path, capsys):
    broken = tmp_path / "Hotshot-XL"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "vae")
    assert run(["--model", str(broken), "--out", str(tmp_path / "a.mp4")]) == 2
    assert f"{broken}: model folder lacks vae" in capsys.readouterr().err
    assert not (tmp_path / "a.mp4").exists()


def test_missing_model_path(tmp_path, capsys):
    assert run(["--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.mp4")]) == 2
    assert "nowhere: expected a Hotshot-XL model folder" in capsys.readouterr().err


def test_long_prompt_is_reported(tmp_path, capsys):
    prompt = "a corgi running on a beach, " * 8
    assert run(["--model", "tiny-random", "--prompt", prompt, "--width", "64", "--height", "64", "--frames", "2",
                "--steps", "1", "--out", str(tmp_path / "a.gif")]) == 0
    assert "--prompt is" in capsys.readouterr().err


def test_long_video_switches_windows_on_and_says_so(tmp_path, capsys):
    out = tmp_path / "long.gif"
    assert run(["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "30", "--steps", "1",
                "--out", str(out)]) == 0
    assert "--frames 30: more than the 24 frames" in capsys.readouterr().err
    assert read_video(out)[0].shape[0] == 30


def test_context_flags_reach_the_pipeline(tmp_path, capsys, monkeypatch):
    import torch

    from model.context import ContextOptions
    from model.pipeline import HotshotXLPipeline, load_pipeline

    seen = {}
    sample, decode = HotshotXLPipeline.sample, HotshotXLPipeline.decode

    def spy_sample(self, conditions, settings, *args, **kwargs):
        seen["settings"] = settings
        return sample(self, conditions, settings, *args, **kwargs)

    def spy_decode(self, latents, frames_per_chunk=4, tiled=False, *args, **kwargs):
        seen["tiled"] = tiled
        return decode(self, latents, frames_per_chunk, tiled, *args, **kwargs)

    monkeypatch.setattr(HotshotXLPipeline, "sample", spy_sample)
    monkeypatch.setattr(HotshotXLPipeline, "decode", spy_decode)
    out = tmp_path / "frames/"
    assert run(["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "12", "--steps", "1",
                "--dtype", "fp32", "--device", "cpu", "--context-length", "6", "--context-overlap", "2",
                "--context-stride", "2", "--context-schedule", "static", "--context-weighting", "flat",
                "--context-loop", "--noise", "freenoise", "--vae-tiling", "on", "--out", str(out) + "/"]) == 0
    assert "more than the 24 frames" not in capsys.readouterr().err
    options = ContextOptions(length=6, overlap=2, stride=2, schedule="static", weighting="flat", loop=True)
    assert seen["settings"].context == options and seen["settings"].noise == "freenoise" and seen["tiled"] == "on"
    # Only the flags given change: --context-length alone keeps the other defaults (the overlap at
    # most half the window).
    assert run(["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "4", "--steps", "1",
                "--context-length", "3", "--out", str(tmp_path / "short.gif")]) == 0
    assert seen["settings"].context == ContextOptions(length=3, overlap=1)
    assert seen["settings"].noise == "independent" and seen["tiled"] == "auto"

    monkeypatch.undo()
    pixels = torch.stack([read_video(f)[0][0] for f in sorted(out.glob("frame_*.png"))]).float() / 255
    expected = load_pipeline("tiny-random", dtype="fp32", device="cpu")(
        "a bulldog in the captains chair of a spaceship, hd, high quality", "blurry", width=64, height=64,
        frames=12, steps=1, noise="freenoise", vae_tiling="on", context=options)
    assert pixels.shape == expected.shape == (12, 64, 64, 3)
    assert (pixels - expected).abs().max() <= 0.5 / 255 + 1e-5


def test_scheduler_flags_reach_the_pipeline(tmp_path, monkeypatch):
    from model.pipeline import HotshotXLPipeline
    from model.schedulers import SchedulerOptions

    seen = []
    sample = HotshotXLPipeline.sample
    monkeypatch.setattr(HotshotXLPipeline, "sample", lambda self, conditions, settings, *args, **kwargs: seen.append(
        settings.scheduler) or sample(self, conditions, settings, *args, **kwargs))
    common = ["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "2", "--steps", "1"]
    assert run(common + ["--scheduler", "euler", "--timestep-spacing", "trailing", "--prediction-type", "v_prediction",
                         "--zero-terminal-snr", "--out", str(tmp_path / "tuned.gif")]) == 0
    assert run(common + ["--out", str(tmp_path / "plain.gif")]) == 0
    assert seen == [SchedulerOptions("euler", "trailing", "v_prediction", True), SchedulerOptions()]


def test_dtype_offload_and_compile_flags_reach_the_pipeline(tmp_path, capsys, monkeypatch):
    from model.fp8 import FLOAT8
    from model.pipeline import HotshotXLPipeline

    compiled, used = [], []
    # Recorded, not run: compiling takes minutes on a CPU (see test_perf_features).
    monkeypatch.setattr(HotshotXLPipeline, "compile_unet", lambda self, **options: compiled.append(self) or self)
    sample = HotshotXLPipeline.sample
    monkeypatch.setattr(HotshotXLPipeline, "sample", lambda self, *args, **kwargs: used.append(self) or sample(
        self, *args, **kwargs))
    small = ["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "2", "--steps", "1",
             "--device", "cpu"]
    assert run([*small, "--dtype", "fp8", "--offload", "sequential", "--out", str(tmp_path / "a.gif")]) == 0
    pipe = used[-1]
    assert pipe.offload == "sequential" and compiled == []
    assert pipe.unet.down_blocks[1].attentions[0].proj_in.weight.dtype == FLOAT8
    assert run([*small, "--offload", "model", "--compile", "--out", str(tmp_path / "b.gif")]) == 0
    assert used[-1].offload == "model" and compiled == [used[-1]]
    assert used[-1].unet.down_blocks[1].attentions[0].proj_in.weight.dtype != FLOAT8  # --dtype auto
    for flag, value in (("--offload", "gpu"), ("--dtype", "fp4")):
        with pytest.raises(SystemExit) as exit_info:
            run([*small, flag, value, "--out", str(tmp_path / "c.gif")])
        assert exit_info.value.code == 2 and f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "c.gif").exists()
