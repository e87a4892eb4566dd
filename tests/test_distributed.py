"""Several processes (model/distributed): one video's windows and a prompt batch shared among ranks.

One torchrun launch of 2 gloo ranks on the CPU (tests/distributed_worker.py, one thread each) runs
a windowed video, a prompt batch and a killed rank; the tests compare with the single-process
runs made here, with one thread too (thread counts change float reduction orders on the CPU).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.denoising.context import ContextOptions, context_windows, windowed_predictor
from model.distributed.batch import check_outputs, output_for, read_prompts
from model.distributed.windows import WindowShare
from model.errors import InputError
from model.pipeline import Settings, load_pipeline
from model.sample import run
from model.denoising.schedulers import make_scheduler
from model.media.video import read_video, to_uint8_frames

REPO_ROOT = Path(__file__).resolve().parent.parent
LAUNCH_TIMEOUT_S = 240  # a launch that hangs fails the test instead of the suite
VIDEO = dict(frames=24, width=64, height=64, steps=2, seed=3, context=ContextOptions(length=8, overlap=4))
PROMPTS = ['a cat', '{"prompt": "a dog", "guidance": 3.0, "seed": 99, "negative_prompt": null}', '',
           'waves at night']
BATCH = dict(width=64, height=64, frames=4, steps=2)  # flags of the batch, also its lines' settings
# (prompt, negative prompt, settings) the lines must equal: line i with --seed 10 + i unless it sets its own.
LINES = [("a cat", "blurry", dict(seed=10)), ("a dog", None, dict(seed=99, guidance=3.0)),
         ("waves at night", "blurry", dict(seed=12))]


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe(tiny_model_dir, one_thread):
    return load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")


def batch_argv(model_dir, prompts, out):
    flags = [f"--{key}={value}" for key, value in BATCH.items()]
    return ["--model", str(model_dir), "--dtype", "fp32", "--device", "cpu", "--prompts", str(prompts),
            "--out", f"{out}/{{index:02d}}/", "--seed", "10", *flags]


@pytest.fixture(scope="module")
def launch(tiny_model_dir, tmp_path_factory):
    """The worker's launch: (completed process, its seconds, output folder, batch folder, batch flags)."""
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "batch").mkdir()
    (folder / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    argv = batch_argv(tiny_model_dir, folder / "prompts.txt", folder / "batch")
    video = ["--model", str(tiny_model_dir), "--dtype", "fp32", "--device", "cpu", "--prompt", "a cat",
             "--negative-prompt", "blurry", "--frames", "24", "--width", "64", "--height", "64", "--steps", "2",
             "--seed", "3", "--context-length", "8", "--context-overlap", "4", "--out", f"{folder}/video/"]
    (folder / "argv.json").write_text(json.dumps({"batch": argv, "video": video}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(REPO_ROOT / "tests" / "distributed_worker.py"), str(tiny_model_dir), str(folder),
               str(folder / "argv.json")]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    return done, time.perf_counter() - started, folder, folder / "batch", argv


def test_windowed_video_on_two_ranks_is_the_single_process_video(launch, pipe):
    done, _, folder, _, _ = launch
    assert (folder / "rank0.pt").is_file() and (folder / "rank1.pt").is_file(), done.stdout + done.stderr
    alone = pipe("a cat", "blurry", **VIDEO)
    calls = {}
    for rank in (0, 1):
        result = torch.load(folder / f"rank{rank}.pt")
        assert torch.equal(result["frames"], alone), f"rank {rank}: max diff {(result['frames'] - alone).abs().max()}"
        calls[rank] = result["unet_calls"]
        assert result["received_bytes"] > 0
    # The CLI's run of the same video: PNG frames, written once (by rank 0).
    assert np.array_equal(png_frames(folder / "video"), to_uint8_frames(alone))
    assert [line.split(" ")[0] for line in done.stdout.splitlines() if " 24 frames, 64x64" in line] == ["wrote"]
    # The ranks shared the windows: between them every window of every step once, round robin.
    scheduler = make_scheduler("euler_a", pipe.scheduler_config)
    scheduler.set_timesteps(VIDEO["steps"])
    windows = [len(context_windows(24, VIDEO["context"], t)) for t in scheduler.timesteps]
    assert len(calls[0]) == sum(-(-count // 2) for count in windows)
    assert len(calls[1]) == sum(count // 2 for count in windows)
    assert set(calls[0]) == set(calls[1]) == {8}


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([read_video(file)[0][0].numpy() for file in sorted(folder.glob("frame_*.png"))])


def test_prompt_batch_on_two_ranks_gives_each_line_its_single_process_video(launch, pipe):
    done, _, _, batch, _ = launch
    wrote = [line for line in done.stdout.splitlines() if ": wrote " in line]
    # Every line written once, by one rank; both ranks had lines to do.
    assert sorted(int(line.split("line ")[1].split()[0]) for line in wrote) == [0, 1, 2], done.stdout
    assert {line.split(":")[0] for line in wrote} == {"rank 0", "rank 1"}
    assert sorted(p.name for p in batch.iterdir()) == ["00", "01", "02"]  # no staging folder left
    for index, (prompt, negative, settings) in enumerate(LINES):
        alone = to_uint8_frames(pipe(prompt, negative, **BATCH, **settings))
        assert np.array_equal(png_frames(batch / f"{index:02d}"), alone), f"line {index}"


def test_rerun_in_one_process_writes_only_the_missing_line(launch, pipe, capsys):
    _, _, _, batch, argv = launch
    before = {name: (batch / name / "frame_00000.png").stat().st_mtime_ns for name in ("00", "02")}
    expected = png_frames(batch / "01")
    shutil.rmtree(batch / "01")
    capsys.readouterr()
    assert run(argv) == 0
    out = capsys.readouterr()
    assert [line.split(" (")[0] for line in out.out.splitlines() if ": wrote " in line] == ["line 1"], out.out
    assert "3 lines, 2 already written, 1 to render" in out.err
    assert np.array_equal(png_frames(batch / "01"), expected)  # one process renders what the two ranks did
    assert {name: (batch / name / "frame_00000.png").stat().st_mtime_ns for name in ("00", "02")} == before
    assert run(argv) == 0 and "0 to render" in capsys.readouterr().err  # all there: nothing loaded


def test_a_killed_rank_fails_the_launch_without_hanging(launch):
    done, seconds, folder, _, _ = launch
    assert "killing rank 1" in done.stdout
    assert done.returncode != 0, done.stdout + done.stderr
    assert not list(folder.glob("killed_rank*.pt"))  # nothing written by the run that failed
    assert "SIGKILL" in done.stderr or "Signal 9" in done.stderr, done.stderr[-3000:]
    assert seconds < LAUNCH_TIMEOUT_S


# --- prompt files and output patterns, without a launch ---------------------------------------------

def test_output_pattern_needs_an_index():
    assert output_for("out/{index:04d}.mp4", 7) == "out/0007.mp4"
    for pattern in ("out/video.mp4", "out/{name}.mp4", "out/{index:q}.mp4"):
        with pytest.raises(InputError, match=r"^out: .*\{index"):
            output_for(pattern, 0)


def test_prompt_lines_take_their_settings_and_seed(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text('a\n\n{"prompt": "b", "frames": 16, "scheduler": "euler"}\n{"prompt": "c", "seed": 1}\n')
    lines = read_prompts(prompts, Settings(seed=100), "neg", str(tmp_path / "{index}.mp4"))
    assert [(l.prompt, l.negative_prompt, l.settings.seed, l.line_number) for l in lines] == [
        ("a", "neg", 100, 1), ("b", "neg", 101, 3), ("c", "neg", 1, 4)]
    assert lines[1].settings.frames == 16 and lines[1].settings.scheduler.name == "euler"
    assert lines[2].output == str(tmp_path / "2.mp4")


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a", "frames": 0}', "line 2: frames: must be a positive whole number"),
    ('{"prompt": "a", "colour": 1}', "line 2: unknown keys 'colour'"),
    ('{"prompt": "a",', "line 2: starts with { but is not a JSON object"),
    ('{"frames": 8}', "line 2: needs \"prompt\""),
    ('{"prompt": "a", "scheduler": "fast"}', "line 2: scheduler: unknown scheduler 'fast'"),
    ("a (cat", r"line 2: prompt: unclosed '\(' at character 3"),
    ('{"prompt": "a", "negative_prompt": "(x:99)"}', "line 2: negative_prompt: weight '99' at character 4")])
def test_bad_prompt_lines_name_the_file_and_line(tmp_path, line, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text(f"fine\n{line}\n")
    with pytest.raises(InputError, match=message):
        read_prompts(prompts, Settings(), out="{index}.mp4")


def test_batch_outputs_are_checked_before_loading(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    with pytest.raises(InputError, match="a folder per line"):
        check_outputs(read_prompts(prompts, Settings(), out=f"{tmp_path}/{{index}}_%05d.png"))
    assert run(["--model", "tiny-random", "--prompts", str(prompts), "--out", "x.mp4"]) == 2
    assert "--out: 'x.mp4' has no {index}" in capsys.readouterr().err
    # A missing folder is made when a line is written (see test_cli.py), but not inside a file.
    assert run(["--model", "tiny-random", "--prompts", str(prompts), "--out", f"{prompts}/no/{{index}}.mp4"]) == 2
    assert f"folder {prompts}/no cannot be made: {prompts} is not a writable folder" in capsys.readouterr().err
    assert run(["--model", "tiny-random", "--prompts", str(tmp_path / "none.txt"), "--out", "{index}.mp4"]) == 2
    assert "no such prompts file" in capsys.readouterr().err
    assert run(["--model", "tiny-random", "--dist-timeout", "0", "--out", f"{tmp_path}/a.mp4"]) == 2
    assert "--dist-timeout: must be a positive number" in capsys.readouterr().err


# --- the window exchange, with threads standing in for ranks ----------------------------------------

class ThreadRanks:
    """What WindowShare needs of a RankGroup, for `size` threads exchanging through shared slots."""

    def __init__(self, rank: int, size: int, slots: list, barrier: threading.Barrier):
        self.rank, self.size, self.transport = rank, size, torch.device("cpu")
        self.slots, self.sync = slots, barrier

    def all_gather(self, tensor):
        self.slots[self.rank] = tensor.clone()
        self.sync.wait()
        gathered = list(self.slots)
        self.sync.wait()
        return gathered


@pytest.mark.parametrize("size", [2, 3, 7])
@pytest.mark.parametrize("options", [ContextOptions(), ContextOptions(6, 2, 2, "static", "flat", True),
                                     ContextOptions(4, 0, 4, loop=True)])
def test_shared_windows_blend_bit_identically(options, size):
    """Every rank's blend equals the single-process one bit for bit, also with ranks left without a window."""
    latents = torch.randn(2, 4, 19, 3, 5, generator=torch.Generator().manual_seed(0))

    def predict(window_latents, timestep):  # depends on every frame of the window, like the UNet
        return torch.sin(window_latents * 3 + timestep / 100) + window_latents.mean(dim=2, keepdim=True)

    timestep = torch.tensor(700.0)
    alone = windowed_predictor(predict, options)(latents, timestep)
    slots, barrier, results = [None] * size, threading.Barrier(size), [None] * size

    def rank(number):
        share = WindowShare(ThreadRanks(number, size, slots, barrier))
        results[number] = (windowed_predictor(predict, options, share)(latents, timestep), share)

    threads = [threading.Thread(target=rank, args=(number,)) for number in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    windows = len(context_windows(19, options, 700))
    for number, (blended, share) in enumerate(results):
        assert torch.equal(blended, alone), f"rank {number} of {size}"
        assert list(share.windows_of_this_rank(windows)) == list(range(number, windows, size))
        assert share.received_bytes == -(-windows // size) * (size - 1) * 2 * 4 * options.length * 3 * 5 * 4
