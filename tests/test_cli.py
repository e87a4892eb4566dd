"""`python -m model.sample`: golden frames through the CLI, every output format, and bad input."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from model.sample import run
from model.media.video import read_video
from tests.goldens import PNG_TOLERANCE, assert_close_to_golden

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
    golden = load_file(fixtures_dir / "pipeline_golden.safetensors")
    assert_close_to_golden(pixels, golden[case["name"]], PNG_TOLERANCE, 1e-6, golden.values())


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


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


TINY = ["--model", "tiny-random"]
SINGLE_FILE = "{fixtures}/sdxl-tiny-single-file.safetensors"
TEMPORAL = "{fixtures}/hsxl_temporal_layers_tiny.safetensors"
# Every bad input: the flags (beside `--out {tmp}/out.mp4`, which a later --out replaces) and the start
# of the one line the CLI prints. {tmp} is the test's folder, holding only mine.mp4 (the user's file);
# {fixtures} is tests/fixtures.
BAD_INPUTS = [
    (TINY + ["--width", "65"], "--width: must be a positive multiple of 8, got 65"),
    (TINY + ["--frames", "0"], "--frames: must be a positive whole number, got 0"),
    (TINY + ["--steps", "0"], "--steps: must be a positive whole number, got 0"),
    (TINY + ["--seed", "1180591620717411303424"], "--seed: must be a whole number from 0 to 2**64-1"),
    (TINY + ["--seed", "-1"], "--seed: must be a whole number from 0 to 2**64-1"),
    (TINY + ["--guidance", "inf"], "--guidance: must be a finite number, got inf"),
    (TINY + ["--guidance", "nan"], "--guidance: must be a finite number, got nan"),
    (TINY + ["--guidance", "-1"], "--guidance: must be zero or more, got -1.0"),
    (TINY + ["--guidance", "1e30"], "--guidance: must be at most 100 (ComfyUI's cfg range"),
    (TINY + ["--out", ""], "--out: is empty; expected a video file"),
    (["--model", ""], "--model: is empty; expected a Hotshot-XL model folder"),
    (["--model", SINGLE_FILE], f"--model: {SINGLE_FILE} is a single file; --model takes a Hotshot-XL model folder "
     "(with unet/, vae/, text_encoder/, ...). For an SDXL checkpoint file give it as --sdxl together with the "
     "release's hsxl_temporal_layers.safetensors as --temporal-layers"),
    pytest.param(TINY + ["--device", "cuda"], "--device: cuda asked, but", id="no-cuda",
                 marks=pytest.mark.skipif(_cuda_count() > 0, reason="this machine has a CUDA GPU")),
    (TINY + ["--device", "cuda:99"], "--device: cuda:99 asked, but"),
    pytest.param(TINY + ["--device", "mps"], "--device: mps asked, but Apple's MPS is not available", id="no-mps",
                 marks=pytest.mark.skipif(_mps_available(), reason="this machine has MPS")),
    (TINY + ["--device", "gpu"], "--device: 'gpu' is not a torch device"),
    (TINY + ["--fps", "0"], "--fps: must be a positive number, got 0"),
    (TINY + ["--fps", "inf"], "--fps: must be a positive number, got inf"),
    (TINY + ["--fps", "nan", "--out", "{tmp}/x.gif"], "--fps: must be a positive number, got nan"),
    (TINY + ["--fps", "120", "--out", "{tmp}/x.gif"], "--fps: 120 is out of range for GIF: use 0.0015 to 50"),
    (TINY + ["--fps", "0.001", "--out", "{tmp}/x.gif"], "--fps: 0.001 is out of range for GIF"),
    (TINY + ["--fps", "600", "--out", "{tmp}/x.webm"], "--fps: 600 is out of range for VP9 in WebM: use at most 500"),
    (TINY + ["--fps", "600", "--out", "{tmp}/x.webp"], "--fps: 600 is out of range for animated WebP"),
    (TINY + ["--fps", "100000"], "--fps: 100000 is out of range for H.264 in MP4: use at most 1000"),
    (TINY + ["--loop", "-1", "--out", "{tmp}/x.gif"], "--loop: expected a whole number from 0 (forever) to 65535"),
    (TINY + ["--out", "{tmp}/mine.mp4"], "{tmp}/mine.mp4: already exists; pass --overwrite to replace it"),
    (TINY + ["--out", "{tmp}/a.mkv"], "{tmp}/a.mkv: unknown video type '.mkv'"),
    (TINY + ["--out", "{tmp}/no/such/a.mp4"], "{tmp}/no/such/a.mp4: folder {tmp}/no/such does not exist"),
    (TINY + ["--sdxl", SINGLE_FILE], "--sdxl: cannot be used with --model tiny-random"),
    (TINY + ["--temporal-layers", TEMPORAL], "--temporal-layers: cannot be used with --model tiny-random"),
    (TINY + ["--tokenizer", "{fixtures}/hotshot-xl-tiny"], "--tokenizer: cannot be used with --model tiny-random"),
    (TINY + ["--context-overlap", "8"], "--context-overlap: must be 0 to 7 (less than the window length 8), got 8"),
    (TINY + ["--context-length", "4", "--context-overlap", "4"], "--context-overlap: must be 0 to 3"),
    (TINY + ["--context-length", "25"], "--context-length: must be 1 to 24 frames"),
    (TINY + ["--context-stride", "3"], "--context-stride: must be a power of two (1, 2, 4, ...), got 3"),
    (TINY + ["--cache-interval", "0"], "--cache-interval: must be a whole number from 1 (no caching) to 1000"),
    (TINY + ["--compile", "--offload", "sequential"], "--compile: cannot be combined with sequential offload"),
    (TINY + ["--prompt-travel", "0: a | 9: b"], "--prompt-travel: keyframe 2 ('9: b'): frame 9 is past the last frame "
     "of a 8-frame video (frames count from 0 to 7)"),
    (TINY + ["--prompt-travel", "0: a | 0: b"], "--prompt-travel: keyframe 2 ('0: b'): frame 0 is given twice"),
    (TINY + ["--prompt-travel", "2: a | 1: b"], "--prompt-travel: keyframe 2 ('1: b'): frame 1 comes after frame 2"),
    (TINY + ["--prompt-travel", "0: a | 4:"], "--prompt-travel: keyframe 2 ('4:'): empty prompt"),
    (TINY + ["--prompt-travel", "0: a", "--prompt", "b"], "--prompt-travel: give either --prompt or --prompt-travel"),
    (TINY + ["--prompt-travel", "{tmp}/none.txt"], "--prompt-travel: '{tmp}/none.txt' is neither a file nor keyframes"),
    (TINY + ["--motion-scale", "inf"], "--motion-scale: the scale: must be a finite number, got inf"),
    (TINY + ["--motion-scale", "-1"], "--motion-scale: the scale: must be zero or more"),
    (TINY + ["--motion-scale", "0: 1 | 2: x"], "--motion-scale: keyframe 2 ('2: x'): expected a number, got 'x'"),
    (TINY + ["--freeinit", "0"], "--freeinit: must be a whole number of at least 1 (1: plain sampling), got 0"),
    (TINY + ["--freeinit-cutoff", "nan"], "--freeinit-cutoff: must be a number in (0, 1]"),
    (["--model", "{tmp}/nowhere"], "{tmp}/nowhere: expected a Hotshot-XL model folder"),
    (["--model", "{fixtures}/hotshot-xl-tiny", "--tokenizer", "/nonexistent"], "--tokenizer: /nonexistent does not "
     "exist; expected a model folder with tokenizer/ and tokenizer_2/"),
    (["--temporal-layers", SINGLE_FILE, "--sdxl", TEMPORAL, "--tokenizer", "{fixtures}/hotshot-xl-tiny"],
     f"--temporal-layers: {SINGLE_FILE} is an SDXL checkpoint and {TEMPORAL} holds Hotshot-XL temporal layers: the "
     f"two look swapped; give --temporal-layers {TEMPORAL} and --sdxl {SINGLE_FILE}"),
    (["--temporal-layers", SINGLE_FILE, "--sdxl", SINGLE_FILE], f"--temporal-layers: {SINGLE_FILE} is an SDXL "
     "checkpoint, not Hotshot-XL temporal layers (hsxl_temporal_layers*.safetensors); give it as --sdxl"),
]


@pytest.mark.parametrize("flags, message", BAD_INPUTS)
def test_bad_input_is_one_line_naming_the_flag_and_writes_nothing(tmp_path, fixtures_dir, capsys, monkeypatch,
                                                                  flags, message):
    import model.pipeline
    import model.tiny

    def heavy(*args, **kwargs):
        raise AssertionError("weights were loaded before the bad input was found")

    monkeypatch.setattr(model.pipeline, "load_unet", heavy)
    monkeypatch.setattr(model.tiny, "tiny_random_components", heavy)
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"the user's own file")
    fill = {"tmp": str(tmp_path), "fixtures": str(fixtures_dir)}
    started = time.perf_counter()
    assert run(["--out", str(tmp_path / "out.mp4"), *(flag.format(**fill) for flag in flags)]) == 2
    assert time.perf_counter() - started < 5  # nothing is loaded, so nothing is waited for
    captured = capsys.readouterr()
    assert captured.err.startswith("error: " + message.format(**fill)), captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["mine.mp4"] and mine.read_bytes() == b"the user's own file"


def test_unknown_scheduler_is_refused_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["--model", "tiny-random", "--scheduler", "heun", "--out", str(tmp_path / "a.mp4")])
    assert exit_info.value.code == 2 and "argument --scheduler: invalid choice: 'heun'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_existing_output_is_replaced_with_overwrite(tmp_path):
    out = tmp_path / "mine.mp4"  # without --overwrite it is kept: see BAD_INPUTS
    out.write_bytes(b"my own file")
    assert run(["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "2", "--steps", "1",
                "--out", str(out), "--overwrite"]) == 0
    assert read_video(out)[0].shape == (2, 64, 64, 3)


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

    from model.denoising.context import ContextOptions
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
    from model.denoising.schedulers import SchedulerOptions

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
    from model.memory.fp8 import FLOAT8
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


def _library_calls(fixtures):
    from model import Settings, load_pipeline, write_video

    frames = __import__("torch").zeros(2, 8, 8, 3)
    return [
        (lambda: Settings(guidance=float("inf")).check(), "guidance: must be a finite number, got inf"),
        (lambda: Settings(guidance=float("nan")).check(), "guidance: must be a finite number, got nan"),
        (lambda: Settings(seed=2**64).check(), "seed: must be a whole number from 0 to 2**64-1"),
        (lambda: Settings(seed=1.5).check(), "seed: must be a whole number"),
        (lambda: load_pipeline("tiny-random", sdxl=fixtures / "sdxl-tiny-single-file.safetensors"),
         "sdxl: cannot be used with `model=tiny-random`"),
        (lambda: load_pipeline("tiny-random", device="cuda:99"), "device: cuda:99 asked, but"),
        (lambda: load_pipeline(fixtures / "hotshot-xl-tiny", tokenizer="/nonexistent"),
         "tokenizer: /nonexistent does not exist"),
        (lambda: write_video(frames, fixtures / "README.md"), "unknown video type '.md'"),
        (lambda: write_video(frames, fixtures.parent / "test_cli.py.gif", fps=120),
         "fps: 120 is out of range for GIF"),
    ]


def test_library_names_its_arguments(fixtures_dir, tmp_path):
    from model import InputError, write_video

    for call, message in _library_calls(fixtures_dir):
        with pytest.raises(InputError) as error:
            call()
        assert message in str(error.value)
    mine = tmp_path / "mine.gif"
    mine.write_bytes(b"mine")
    with pytest.raises(InputError, match=r"mine.gif: already exists; pass `overwrite=True` to replace it"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), mine)
    assert mine.read_bytes() == b"mine"


def test_help_is_fast_shows_every_default_and_imports_nothing_heavy():
    code = ("import runpy, sys\nsys.argv = ['model.sample', '--help']\ntry:\n"
            "    runpy.run_module('model.sample', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'av') if m in sys.modules), file=sys.stderr)")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"  # README says about 0.2 s; torch alone takes seconds to import
    assert seconds < 2, f"--help took {seconds:.1f} s"
    assert result.stdout.startswith("usage: python -m model.sample")

    from model.sample import _HelpFormatter, build_parser

    parser = build_parser()
    formatter = _HelpFormatter("x")
    for action in parser._actions:
        if action.default in (None, argparse.SUPPRESS) or action.default is False or not action.option_strings:
            continue
        shown = formatter._expand_help(action) if action.help else ""
        assert f"default: {action.default}" in shown, (action.dest, shown)
    context = {a.dest: a.help for a in parser._actions if a.dest.startswith("context_")}
    assert all("(default " in text or "loop" in text for text in context.values())


def test_choices_without_torch_agree_with_the_modules_that_use_them():
    from model import choices
    from model.denoising.context import ContextOptions
    from model.pipeline import Settings
    from model.sample import build_parser
    from model.denoising.schedulers import SCHEDULERS

    assert tuple(SCHEDULERS) == choices.SCHEDULER_NAMES
    defaults = {a.dest: a.default for a in build_parser()._actions}
    for field in ("width", "height", "frames", "steps", "guidance", "seed", "scheduler", "decode_chunk", "noise",
                  "vae_tiling"):
        assert defaults[field] == getattr(Settings(), field), field
    assert tuple(defaults["original_size"]) == Settings().original_size


def test_tiny_random_is_small_fast_and_says_so(tmp_path, capsys, monkeypatch):
    import torch

    from model.pipeline import HotshotXLPipeline

    seen = []

    def stop(self, conditions, settings, *args, **kwargs):  # what would be sampled, then Ctrl-C
        seen.append((settings, self.unet.dtype))
        raise KeyboardInterrupt

    monkeypatch.setattr(HotshotXLPipeline, "sample", stop)
    out = tmp_path / "demo.mp4"
    assert run(["--model", "tiny-random", "--device", "cpu", "--out", str(out)]) == 130
    settings, dtype = seen[-1]
    assert (settings.width, settings.height, settings.steps, settings.frames) == (256, 256, 4, 8)
    assert dtype == torch.float32  # --dtype auto on a CPU: bf16 is several times slower for this model
    assert "tiny-random: --width 256 --height 256 --steps 4 (an install check" in capsys.readouterr().err
    # What the user gives is kept, and only the rest is said.
    assert run(["--model", "tiny-random", "--device", "cpu", "--steps", "2", "--width=128", "--dtype", "bf16",
                "--out", str(out)]) == 130
    settings, dtype = seen[-1]
    assert (settings.width, settings.height, settings.steps) == (128, 256, 2) and dtype == torch.bfloat16
    assert "tiny-random: --height 256 (an install check" in capsys.readouterr().err
    assert not out.exists()


def test_progress_bars_for_loading_sampling_and_decoding(tiny_model_dir, capsys):
    from model import load_pipeline

    from model.files.weights import reading_progress

    read = []
    with reading_progress(read.append):
        load_pipeline(tiny_model_dir, dtype="fp32", device="cpu", progress=True)
    # Every tensor of the folder's weight files is counted once, in the files' own bytes (headers aside).
    weights = sum(f.stat().st_size for f in tiny_model_dir.rglob("*.safetensors"))
    assert 0.97 * weights < sum(read) <= weights
    assert re.search(r"loading: [\d.]+[kM]B", capsys.readouterr().err)  # bytes read so far, as they grow
    pipe = load_pipeline("tiny-random", device="cpu")
    steps = []
    frames = pipe("a corgi", width=64, height=64, frames=2, steps=2, progress=True,
                  callback=lambda step, total, latents: steps.append((step, total)))
    err = capsys.readouterr().err
    assert "sampling: 100%" in err and "2/2" in err and "decoding: 100%" in err
    assert steps == [(0, 2), (1, 2)] and frames.shape == (2, 64, 64, 3)
    pipe("a corgi", width=64, height=64, frames=2, steps=1)
    assert capsys.readouterr().err == ""  # no bars unless asked


@pytest.mark.parametrize("module, argv, abbreviated, flag", [
    ("model.sample", ["--model", "tiny-random", "--fram", "3", "--out", "x.mp4"], "--fram", "--frames"),
    ("model.train", ["--mod", "m", "--data", "d", "--output", "o.safetensors"], "--mod", "--model"),
    ("model.caption", ["clips", "--caption", "blip"], "--caption", "--captioner")])
def test_abbreviated_flags_are_refused_by_every_parser(module, argv, abbreviated, flag, capsys):
    import importlib

    cli = importlib.import_module(module if module == "model.sample" else f"{module}.cli")
    with pytest.raises(SystemExit) as exit_info:
        cli.run(argv)
    err = capsys.readouterr().err
    # Not taken as `flag`: either unknown, or `flag` still missing.
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {abbreviated}" in err or f"required: {flag}" in err, err


def _tiny_flags(out):
    return ["--model", "tiny-random", "--width", "64", "--height", "64", "--frames", "2", "--steps", "1",
            "--out", str(out)]


def test_an_existing_folder_without_slash_gets_png_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    assert run(_tiny_flags(folder)) == 0  # documented in --help and README: an existing folder is a PNG folder
    assert sorted(p.name for p in folder.iterdir()) == ["frame_00000.png", "frame_00001.png"]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno

    import model.media.video

    def full(pixels, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model.media.video, "_encode", full)
    out = tmp_path / "clip.mp4"
    assert run(_tiny_flags(out)) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"error: {out}: could not be written: No space left on device; nothing was written"
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


SLOW_WRITE = """
import sys, time
from pathlib import Path
import model.media.video
from model.sample import run

def slow(pixels, path, *args, **kwargs):
    Path(path).write_bytes(b"partial")
    print("writing", flush=True)
    time.sleep(60)

model.media.video._encode = slow
sys.exit(run(sys.argv[1:]))
"""


def test_sigterm_while_writing_leaves_no_file(tmp_path):
    out = tmp_path / "clip.gif"
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, *_tiny_flags(out)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.stdout.readline() == "writing\n"
    assert any(p.name.endswith(".part") for p in tmp_path.iterdir())  # the hidden file being written
    process.terminate()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.splitlines()[-1] == "terminated: nothing written"
    assert list(tmp_path.iterdir()) == []


def test_batch_makes_output_folders_and_ctrl_c_names_what_was_written(tmp_path, capsys, monkeypatch):
    import model.distributed.batch as batch

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a\nb\nc\n")
    real_write = batch.write_line
    calls = []

    def write_then_interrupt(frames, line, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(line)
        return real_write(frames, line, *args)

    monkeypatch.setattr(batch, "write_line", write_then_interrupt)
    out = tmp_path / "out" / "{index:04d}.gif"  # out/ does not exist yet: made for the batch
    flags = [f for f in _tiny_flags(out) if f != str(out)][:-1]
    assert run([*flags, "--prompts", str(prompts), "--out", str(out)]) == 130
    written = [str(tmp_path / "out" / f"{i:04d}.gif") for i in range(2)]
    assert capsys.readouterr().err.splitlines()[-1] == (f"interrupted: wrote {', '.join(written)}; the other lines "
                                                        "are not written (run again to continue)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000.gif", "0001.gif"]
