"""Fine-tuning: the differentiable UNet reproduces the original's gradients, and the trainer
(python -m model.train) overfits, resumes bit for bit, trains data-parallel and refuses bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from model.files.loading import is_temporal_key, load_unet
from model.train import cli
from model.network.unet import set_gradient_checkpointing
from model.media.video import write_video

from tests.goldens import golden_mismatches

LOSS_TOLERANCE = 1e-5  # relative
GRAD_TOLERANCE = 1e-4  # of each gradient's largest entry ...
GRAD_FLOOR = 1e-6  # ... plus this much of the largest gradient of all (zero gradients are float noise)
ZERO_GRADIENT = "up_blocks.2.temporal_attentions.2.transformer_blocks.0.ff.net.2.bias"  # GroupNorm removes it


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return load_file(fixtures_dir / "train_golden.safetensors")


def temporal_gradients(unet, golden, checkpointing=False):
    unet.requires_grad_(False)
    params = {name: p for name, p in unet.named_parameters() if is_temporal_key(name)}
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    unet.train()
    set_gradient_checkpointing(unet, checkpointing)
    pred = unet(golden["noisy_latents"], golden["timesteps"], golden["encoder_hidden_states"],
                golden["text_embeds"], golden["time_ids"])
    loss = F.mse_loss(pred.float(), golden["noise"])
    loss.backward()
    unet.eval()
    return loss.detach(), {name: p.grad.clone() for name, p in params.items()}


@pytest.fixture(scope="module")
def golden_run(tiny_model_dir, golden):
    unet = load_unet(tiny_model_dir, dtype="fp32")
    return unet, temporal_gradients(unet, golden)


def test_noising_matches_the_release_scheduler(golden, tiny_model_dir):
    from model.files.components import scheduler_config
    from model.train.objective import Objective

    objective = Objective(scheduler_config(tiny_model_dir))
    noisy = objective.add_noise(golden["latents"], golden["noise"], golden["timesteps"])
    assert (noisy - golden["noisy_latents"]).abs().max() < 1e-6


def test_loss_and_gradients_match_the_original(golden_run, golden):
    _, (loss, grads) = golden_run
    assert abs(loss.item() / golden["loss"].item() - 1) < LOSS_TOLERANCE
    assert len(grads) == 390 and grads.keys() == {k[5:] for k in golden if k.startswith("grad.")}
    assert grad_mismatches(grads, golden) == []


def grad_mismatches(grads, golden):
    return golden_mismatches({f"grad.{name}": grad for name, grad in grads.items()},
                             {k: v for k, v in golden.items() if k.startswith("grad.")}, GRAD_TOLERANCE, GRAD_FLOOR)


def test_the_gradient_comparison_ignores_float_noise_and_catches_real_errors(golden):
    reference = {k[5:]: v for k, v in golden.items() if k.startswith("grad.")}
    assert reference[ZERO_GRADIENT].abs().max() < 1e-8  # zero in exact arithmetic
    noisy = dict(reference, **{ZERO_GRADIENT: reference[ZERO_GRADIENT] + 1e-8})
    assert grad_mismatches(noisy, golden) == []
    # A 1e-3 relative error on the smallest real gradient (about 2.6e-4 at most) must be seen.
    real = "up_blocks.2.temporal_attentions.0.proj_out.bias"
    wrong = dict(reference, **{real: reference[real] * (1 + 1e-3)})
    assert grad_mismatches(wrong, golden) == [f"grad.{real}"]
    assert grad_mismatches(dict(reference, **{real: reference[real] * float("nan")}), golden) == [f"grad.{real}"]


def test_gradient_checkpointing_gives_the_same_gradients(golden_run, golden):
    unet, (loss, grads) = golden_run
    loss_again, grads_again = temporal_gradients(unet, golden, checkpointing=True)
    assert loss_again == loss
    for name, grad in grads.items():
        assert torch.allclose(grads_again[name], grad, rtol=0, atol=1e-7 * grad.abs().max().item()), name


def test_temporal_layers_in_pieces_give_the_gradients_of_whole_ones(golden_run, golden):
    # The fixture's temporal layers are small enough to run whole; a budget of a few rows makes them run
    # (and, checkpointed, be recomputed) in pieces of rows, as large ones do.
    unet, (loss, grads) = golden_run
    try:
        unet.set_piece_budget(4096)
        loss_pieces, grads_pieces = temporal_gradients(unet, golden, checkpointing=True)
    finally:
        unet.set_piece_budget("auto")
    assert abs(loss_pieces.item() / loss.item() - 1) < LOSS_TOLERANCE
    assert grad_mismatches(grads_pieces, golden) == []
    assert golden_mismatches(grads_pieces, grads, GRAD_TOLERANCE, GRAD_FLOOR) == []


def test_the_unet_is_built_for_inference_and_train_mode_is_asked_for(tiny_model_dir):
    unet = load_unet(tiny_model_dir, dtype="fp32")
    assert not unet.training
    sample = torch.randn(1, 4, 2, 8, 8, requires_grad=True)
    args = (torch.tensor([10]), torch.randn(1, 77, 64), torch.randn(1, 32), torch.randn(1, 6))
    assert not unet(sample, *args).requires_grad  # eval: no graph
    unet.train()
    assert unet(sample, *args).requires_grad


# -- the trainer --------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


def write_clip(path: Path, frames: int, seed: int, size=(48, 64)):
    """A texture sliding sideways: motion the temporal layers can learn."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(*size, 3, generator=generator)
    write_video(torch.stack([base.roll(3 * k, dims=1) for k in range(frames)]), path, fps=8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "slide.mp4", 12, 0)
    (folder / "slide.txt").write_text("a texture sliding to the right")
    write_clip(folder / "other.gif", 9, 1)
    (folder / "other.txt").write_text("another texture")
    return folder


def train_args(tiny_model_dir, data, output, *extra):
    # 64x64 frames: 8x8 latents. At 32x32 (4x4 latents, 1x1 after the tiny UNet's two downsamplings)
    # the gradients are so ill-conditioned that one or two threads' rounding changes them many times
    # over, and the subprocess runs below use one thread. A later --width/--height replaces these.
    return ["--model", str(tiny_model_dir), "--data", str(data), "--output", str(output), "--width", "64",
            "--height", "64", "--lr", "1e-3", "--no-progress", *extra]


def trainer_for(argv):
    options = cli.options_from_args(cli.build_parser().parse_args(argv))
    from model.train.trainer import Trainer

    return Trainer(options, cli.prepare_clips(options, print))


def test_the_trainer_overfits_a_fixed_batch(tiny_model_dir, clips, tmp_path):
    trainer = trainer_for(train_args(tiny_model_dir, clips, tmp_path / "o.safetensors", "--noise-offset", "0",
                                     "--max-grad-norm", "0"))
    batch = trainer.inputs(0)
    with torch.no_grad():
        before = trainer.loss(batch).item()
    for _ in range(4):
        trainer.optimise(0)  # always micro-batch 0: the same clips, noise and timesteps
    with torch.no_grad():
        after = trainer.loss(batch).item()
    assert after < 0.9 * before


def read(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_a_motion_lora_file_reproduces_what_was_trained(tiny_model_dir, clips, tmp_path):
    from model.train.lora import FORMAT, merged_weights

    out = tmp_path / "lora.safetensors"
    argv = train_args(tiny_model_dir, clips, out, "--steps", "2", "--lora-rank", "2", "--lora-alpha", "4")
    trainer = trainer_for(argv)
    trainer.fit()
    state, metadata = trainer.output_state()
    cli.write_output(state, metadata, out, overwrite=False)
    lora, metadata = read(out)
    assert metadata["format"] == FORMAT
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"], metadata["ss_steps"]) == ("2", "4.0", "2")
    name = "unet.down_blocks.0.temporal_attentions.0.transformer_blocks.0.attention_blocks.0.to_q"
    assert lora[f"{name}.lora_A.weight"].shape == (2, 32) and lora[f"{name}.lora_B.weight"].shape == (32, 2)
    assert lora[f"{name}.alpha"].ndim == 0 and lora[f"{name}.alpha"].item() == 4
    assert lora[f"{name}.lora_B.weight"].abs().max() > 0  # trained away from its zero start
    assert all(k.startswith("unet.") and ".temporal_attentions." in k for k in lora)

    # The trained model (UNet + adapter hooks) equals the base UNet with W + (alpha/rank) B A.
    trainer.unet.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, 4, 8, 8, 8, generator=generator), torch.tensor([500]),
              torch.randn(1, 77, 64, generator=generator), torch.randn(1, 32, generator=generator),
              torch.tensor([[64.0, 64, 0, 0, 64, 64]]))
    # Hooks add B A x beside W x; a merge computes (W + B A) x: equal up to float32 rounding.
    with_hooks = trainer.unet(*inputs)
    base = load_unet(tiny_model_dir, dtype="fp32")
    merged = merged_weights(base.state_dict(), lora)
    assert len(merged) == len(lora) // 3
    base.load_state_dict(merged, strict=False)
    assert (base(*inputs) - with_hooks).abs().max() < 5e-5

    # The LoRA loader behind `--lora` and the LoRA node reads the file to the same trained model ...
    from model.pipeline import load_pipeline
    from model.sample import run

    pipe = load_pipeline(tiny_model_dir, dtype="fp32", device="cpu")
    report = pipe.load_lora(out, 1.0)
    assert f"{len(lora)} of {len(lora)} tensors matched" in report.lines()[0]  # every tensor the trainer wrote
    assert (pipe.unet(*inputs) - with_hooks).abs().max() < 5e-5
    pipe.unload_loras()
    assert torch.equal(pipe.unet(*inputs), base_output := load_unet(tiny_model_dir, dtype="fp32")(*inputs))
    assert not torch.equal(base_output, with_hooks)
    # ... and the sample CLI takes it with --lora.
    video = tmp_path / "with_motion_lora.mp4"
    assert run(["--model", str(tiny_model_dir), "--lora", str(out), "--width", "64", "--height", "64", "--steps", "1",
                "--dtype", "fp32", "--device", "cpu", "--out", str(video)]) == 0
    assert video.is_file()


@pytest.fixture
def one_thread():
    """torch on one thread in this process, as in the subprocesses (OMP_NUM_THREADS=1): bit-identical
    results need the same reductions, and a different thread count may split them differently."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_killed_and_resumed_ends_bit_identical_and_loads_in_the_sample_cli(tiny_model_dir, fixtures_dir, clips,
                                                                          tmp_path, one_thread):
    steps = ["--save-every", "2", "--cache-latents", "--cache-text"]
    out, ckpt = tmp_path / "resumed.safetensors", tmp_path / "ckpt"
    argv = train_args(tiny_model_dir, clips, out, "--steps", "4", *steps, "--checkpoint-dir", str(ckpt))
    # Killed long before its end; --steps may be raised or lowered when resuming.
    killed = [a if a != "4" else "50" for a in argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "model.train", *killed], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        straight = tmp_path / "straight.safetensors"  # meanwhile: the run that is never stopped
        assert cli.run(train_args(tiny_model_dir, clips, straight, "--steps", "4", *steps,
                                  "--checkpoint-dir", str(tmp_path / "straight-ckpt"))) == 0
        deadline = time.time() + 120
        while not (ckpt / "step-00000002").is_dir() and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()
    for later in (ckpt / "step-00000004", ckpt / "step-00000006"):  # should the kill have come late
        if later.is_dir():
            shutil.rmtree(later)
    # What a kill during a save leaves behind must not be taken for a checkpoint.
    (ckpt / ".step-00000004.dead.partial").mkdir()
    (ckpt / "step-00000004").mkdir()
    (ckpt / "step-00000004" / "trained.safetensors").write_bytes(b"")

    assert cli.run(argv + ["--resume"]) == 0
    resumed, straight_state = read(out)[0], read(straight)[0]
    # The log holds each step once, the steps the killed run logged after its checkpoint written again.
    from model.train.logs import read_rows

    logged, straight_log = read_rows(ckpt / "metrics.csv"), read_rows(tmp_path / "straight-ckpt" / "metrics.csv")
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert [(r["loss"], r["loss_smoothed"]) for r in logged] == [(r["loss"], r["loss_smoothed"]) for r in straight_log]
    assert resumed.keys() == straight_state.keys()
    assert all(torch.equal(resumed[k], straight_state[k]) for k in resumed)

    # The released layout, loadable by the sample CLI with an SDXL single file.
    released, _ = read(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")
    assert resumed.keys() == released.keys() and len(resumed) == 420
    changed = [k for k in resumed if not torch.equal(resumed[k], released[k])]
    assert changed and all("positional_encoding" not in k for k in changed)
    assert all(resumed[k].shape == released[k].shape and resumed[k].dtype == released[k].dtype for k in resumed)
    from model.sample import run as sample

    video = tmp_path / "v.gif"
    assert sample(["--temporal-layers", str(out), "--sdxl", str(fixtures_dir / "sdxl-tiny-single-file.safetensors"),
                   "--tokenizer", str(tiny_model_dir), "--configs", str(tiny_model_dir), "--width", "64",
                   "--height", "64", "--steps", "2", "--dtype", "fp32", "--device", "cpu", "--out", str(video)]) == 0
    assert video.stat().st_size > 0


def test_a_checkpoint_of_another_run_is_refused(tiny_model_dir, clips, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    argv = train_args(tiny_model_dir, clips, tmp_path / "a.safetensors", "--steps", "1", "--checkpoint-dir",
                      str(ckpt))
    from model.train import checkpoint

    checkpoint.save(ckpt, 1, {}, {}, {"seed": 5, "model": ["elsewhere"]}, keep=3)
    assert cli.run(argv + ["--resume"]) == 2
    error = capsys.readouterr().err
    assert "step-00000001: is from another run or model" in error and "seed: checkpoint has 5" in error
    assert not (tmp_path / "a.safetensors").exists()


DDP_WORKER = """
import sys, torch
from model.train import cli
from model.train.trainer import Trainer
options = cli.options_from_args(cli.build_parser().parse_args(sys.argv[2:]))
trainer = Trainer(options, cli.prepare_clips(options, print))
trainer.gradients(0)
if trainer.rank == 0:
    torch.save({n: m.grad for n, m in trainer.masters.items()}, sys.argv[1])
trainer.fit()  # one step, logged by rank 0 alone
"""


def test_two_gloo_ranks_of_one_clip_give_the_gradients_of_one_rank_of_two(tiny_model_dir, clips, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    logs = tmp_path / "logs"
    argv = train_args(tiny_model_dir, clips, tmp_path / "o.safetensors", "--device", "cpu", "--dtype", "fp32",
                      "--steps", "1", "--log-dir", str(logs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                "--master-port", "29517", str(worker), str(tmp_path / "g.pt"), *argv,
                                "--batch-size", "1", "--cache-dir", str(tmp_path / "cache")], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        trainer = trainer_for(argv + ["--batch-size", "2"])  # meanwhile: one rank, both clips
        trainer.gradients(0)
        output, _ = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    two_ranks = torch.load(tmp_path / "g.pt")
    assert two_ranks.keys() == trainer.masters.keys()
    largest = max(master.grad.abs().max() for master in trainer.masters.values())
    for name, master in trainer.masters.items():
        assert (two_ranks[name] - master.grad).abs().max() <= 1e-5 * largest, name
    # Only rank 0 logged: one row, one event file (each writer's file is named by its process).
    from model.train.logs import read_rows

    assert [row["step"] for row in read_rows(logs / "metrics.csv")] == [1]
    assert len(list((logs / "tensorboard").glob("events.out.tfevents.*"))) == 1
    # --cache-dir: each rank encoded its share (one clip, one caption: a shard of each per rank).
    shards = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.safetensors"))
    assert shards == ["latents"] * 2 + ["text"] * 2


# -- bad input: one clear error naming the flag or file, before anything is loaded -----------------------


def run_cli(argv, capsys):
    code = cli.run(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--frames", "0"], "--frames: must be a positive whole number"),
    (["--frames", "30"], "--frames: the temporal layers hold 24 positions"),
    (["--width", "60"], "--width: must be a positive multiple of 8"),
    (["--lr", "nan"], "--lr: must be positive"),
    (["--lora-alpha", "4"], "--lora-alpha: only applies with --lora-rank"),
    (["--validate-every", "5"], "--validate-every: needs --validation-prompt"),
    (["--caption-missing"], "--caption-missing: needs --captioner"),
    (["--snr-gamma", "-1"], "--snr-gamma: must be positive"),
])
def test_bad_flags_are_named(tiny_model_dir, clips, tmp_path, capsys, extra, message):
    code, error = run_cli(train_args(tiny_model_dir, clips, tmp_path / "o.safetensors", *extra), capsys)
    assert code == 2 and message in error


def test_bad_model_and_output_paths_are_named(tiny_model_dir, clips, tmp_path, capsys):
    existing = tmp_path / "taken.safetensors"
    existing.write_bytes(b"mine")
    code, error = run_cli(train_args(tiny_model_dir, clips, existing), capsys)
    assert code == 2 and "--output" in error and "--overwrite" in error and existing.read_bytes() == b"mine"
    code, error = run_cli(train_args(tiny_model_dir, clips, tmp_path / "o.pt"), capsys)
    assert code == 2 and "--output: must be a .safetensors file" in error
    code, error = run_cli(train_args(tmp_path / "nowhere", clips, tmp_path / "o.safetensors"), capsys)
    assert code == 2 and "nowhere: not found (--model)" in error


def test_bad_data_folders(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    code, error = run_cli(train_args(tiny_model_dir, tmp_path / "missing", out), capsys)
    assert code == 2 and "--data:" in error and "missing is not a folder" in error
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no clips here")
    code, error = run_cli(train_args(tiny_model_dir, empty, out), capsys)
    assert code == 2 and "holds no clips" in error

    short = tmp_path / "short"
    short.mkdir()
    write_clip(short / "brief.mp4", 5, 0)
    (short / "brief.txt").write_text("too brief")
    code, error = run_cli(train_args(tiny_model_dir, short, out), capsys)
    assert code == 2 and "1 clip shorter than 8 frames at 8 fps, skipped" in error and "brief.mp4" in error
    assert "no usable clip" in error

    uncaptioned = tmp_path / "uncaptioned"
    uncaptioned.mkdir()
    write_clip(uncaptioned / "a.mp4", 8, 0)
    (uncaptioned / "b").mkdir()  # the original's layout: frames and prompt.txt
    write_video(torch.rand(8, 32, 32, 3), str(uncaptioned / "b") + "/")
    code, error = run_cli(train_args(tiny_model_dir, uncaptioned, out), capsys)
    assert code == 2 and "2 clips have no caption" in error
    assert str(uncaptioned / "a.txt") in error and str(uncaptioned / "b" / "prompt.txt") in error
    code, error = run_cli(train_args(tiny_model_dir, uncaptioned, out, "--caption-missing", "--captioner",
                                     str(tiny_model_dir / "vae")), capsys)
    assert code == 2 and "not a vision-language captioner" in error and "vae" in error
    assert not out.exists()


def test_unreadable_clips_are_listed_and_skipped(tiny_model_dir, tmp_path):
    write_clip(tmp_path / "good.mp4", 16, 0)
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    (tmp_path / "broken.txt").write_text("broken")
    (tmp_path / "frames").mkdir()  # the original's layout
    from PIL import Image
    for i in range(9):
        Image.new("RGB", (40, 24), (20 * i, 0, 0)).save(tmp_path / "frames" / f"frame_{i}.jpg")
    (tmp_path / "frames" / "prompt.txt").write_text("red fading in")
    messages = []
    options = cli.options_from_args(cli.build_parser().parse_args(
        train_args(tiny_model_dir, tmp_path, tmp_path / "o.safetensors", "--frames", "8")))
    found = cli.prepare_clips(options, messages.append)
    assert [(c.source.path.name, c.frame_indices[0]) for c in found] == [("frames", 0), ("good.mp4", 0), ("good.mp4", 8)]
    assert found[0].caption == "red fading in"
    assert any("unreadable, skipped" in m and "broken.mp4" in m for m in messages)


def test_bf16_trains_float32_masters_and_writes_the_source_position_tables(tiny_model_dir, fixtures_dir, clips,
                                                                           tmp_path):
    trainer = trainer_for(train_args(tiny_model_dir, clips, tmp_path / "o.safetensors", "--dtype", "bf16",
                                     "--frames", "2", "--width", "32", "--height", "32"))
    name = "down_blocks.0.temporal_attentions.0.proj_in.weight"
    before = trainer.masters[name].detach().clone()
    trainer.optimise(0)
    master, param = trainer.masters[name], trainer.params[name]
    assert master.dtype == torch.float32 and param.dtype == torch.bfloat16
    assert not torch.equal(master, before) and torch.equal(param, master.to(torch.bfloat16))
    state, _ = trainer.output_state()
    assert torch.equal(state[name], master.detach())
    released, _ = read(fixtures_dir / "hsxl_temporal_layers_tiny.safetensors")
    tables = [k for k in released if k.endswith("positional_encoding")]
    assert tables and all(torch.equal(state[k], released[k]) for k in tables)


# -- logs and provenance ------------------------------------------------------------------------------


def test_a_run_logs_every_step_and_its_files_say_how_they_were_made(tiny_model_dir, clips, tmp_path, capsys,
                                                                     monkeypatch):
    from tqdm.std import tqdm

    from model.train.logs import read_rows
    from model.train.provenance import fast_hash

    shown = []  # what the progress bar showed
    original = tqdm.set_postfix
    monkeypatch.setattr(tqdm, "set_postfix", lambda bar, **kw: (shown.append(kw["loss"]), original(bar, **kw)))
    out, ckpt, logs = tmp_path / "o.safetensors", tmp_path / "ckpt", tmp_path / "logs"
    assert cli.run(train_args(tiny_model_dir, clips, out, "--steps", "20", "--frames", "2", "--save-every", "15",
                              "--lr-scheduler", "cosine", "--warmup-steps", "4", "--checkpoint-dir", str(ckpt),
                              "--log-dir", str(logs))) == 0

    rows = read_rows(logs / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(1, 21)) and len(shown) == 20
    assert [f"{r['loss']:.4f}" for r in rows] == shown
    assert all(r["grad_norm"] > 0 and r["step_seconds"] > 0 and r["clips_per_second"] > 0 for r in rows)
    assert rows[0]["loss_smoothed"] == rows[0]["loss"]  # bias-corrected: no pull towards zero
    assert min(r["loss"] for r in rows) < rows[5]["loss_smoothed"] < max(r["loss"] for r in rows)
    assert rows[0]["lr"] == pytest.approx(1e-3 / 4) and rows[3]["lr"] == pytest.approx(1e-3)  # warmup, then cosine
    assert rows[-1]["lr"] < rows[10]["lr"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logs / "tensorboard"))
    events.Reload()
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == list(range(1, 21))
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)  # float32 there
    assert {"train/lr", "train/grad_norm", "train/clips_per_second"} <= set(events.Tags()["scalars"])

    # The output and every checkpoint (one at the last step too) carry the run's settings.
    _, metadata = read(out)
    assert metadata["format"] == "pt" and metadata["ss_steps"] == "20" and metadata["ss_max_train_steps"] == "20"
    assert (metadata["ss_learning_rate"], metadata["ss_lr_scheduler"], metadata["ss_lr_warmup_steps"]) == (
        "0.001", "cosine", "4")
    assert (metadata["ss_batch_size_per_device"], metadata["ss_mixed_precision"], metadata["ss_seed"]) == (
        "1", "float32", "111")
    options = cli.options_from_args(cli.build_parser().parse_args(
        train_args(tiny_model_dir, clips, tmp_path / "x.safetensors", "--frames", "2")))
    assert "ss_network_dim" not in metadata
    assert metadata["ss_num_train_clips"] == str(len(cli.prepare_clips(options, print)))
    folders = json.loads(metadata["ss_dataset_dirs"])
    assert folders == [{"path": str(clips.resolve()), "repeats": 1, "prefix": "", "caption_dropout": 0.0, "size": None,
                        "clips": int(metadata["ss_num_train_clips"])}]
    files = json.loads(metadata["ss_base_model_files"])
    unet_file = tiny_model_dir.resolve() / "unet" / "diffusion_pytorch_model.safetensors"
    assert {"file": str(unet_file), "bytes": unet_file.stat().st_size, "hash": fast_hash(unet_file)} in files
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step-")) == ["step-00000015", "step-00000020"]
    assert read(ckpt / "step-00000015" / "trained.safetensors")[1]["ss_steps"] == "15"
    capsys.readouterr()
    assert cli.run(["--inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ss_lr_scheduler: cosine" in printed and "ss_steps: 20" in printed
    assert f"hash={fast_hash(unet_file)}" in printed
    assert cli.run(["--inspect", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors: not found" in capsys.readouterr().err


def test_the_fast_hash_is_whole_for_small_files_and_samples_large_ones(tmp_path):
    import hashlib

    from model.train.provenance import SAMPLE, fast_hash

    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small.write_bytes(b"x" * 100)
    assert fast_hash(small) == hashlib.sha256(b"100" + b"x" * 100).hexdigest()
    data = bytearray(os.urandom(4 * SAMPLE))
    large.write_bytes(bytes(data))
    before = fast_hash(large)
    data[2 * SAMPLE - 10] ^= 1  # inside the middle sample: seen
    large.write_bytes(bytes(data))
    assert fast_hash(large) != before
    before = fast_hash(large)
    data[SAMPLE + 10] ^= 1  # between the samples: unseen (what "fast" costs, said in provenance.py)
    large.write_bytes(bytes(data))
    assert fast_hash(large) == before


# -- slips: each row sets a folder up, runs the CLI, and says what must come out ----------------------


def _resume_without_checkpoint(base, folder):
    return ["--resume", "--checkpoint-dir", str(folder / "typo")], 2, ["--resume: no complete checkpoint in",
                                                                      str(folder / "typo")]


def _resume_auto_without_checkpoint(base, folder):
    return ["--resume", "auto", "--steps", "1"], 0, ["--resume auto: no complete checkpoint", "starting from step 0"]


def _one_short_clip(base, folder):
    data = folder / "short"
    data.mkdir()
    write_clip(data / "brief.mp4", 5, 0)
    (data / "brief.txt").write_text("too brief")
    return ["--data", str(data)], 2, ["1 clip shorter than 8 frames at 8 fps, skipped", "no usable clip"]


def _one_uncaptioned_clip(base, folder):
    data = folder / "bare"
    data.mkdir()
    write_clip(data / "a.mp4", 8, 0)
    return ["--data", str(data)], 2, ["1 clip has no caption"]


def _empty_caption_is_the_users(base, folder):
    data = folder / "empty-caption"
    data.mkdir()
    write_clip(data / "a.mp4", 8, 0)
    (data / "a.txt").write_text("  \n")
    return ["--data", str(data), "--steps", "1"], 0, ["1 clip with an empty caption (trained unconditionally)",
                                                      "training on 1 clip,"]


def _validation_lost_to_a_kill(base, folder):
    ckpt = folder / "ckpt"
    first = ["--steps", "2", "--save-every", "2", "--validate-every", "2", "--validation-prompt", "waves",
             "--validation-steps", "1", "--frames", "2", "--checkpoint-dir", str(ckpt)]
    assert cli.run(base + first + ["--output", str(folder / "first.safetensors")]) == 0
    (ckpt / "validation-step-00000002.mp4").unlink()  # as if killed while sampling it
    return first + ["--resume"], 0, ["resumed from", "validation video at step 2: 1 sampling steps",
                                     "validation-step-00000002.mp4"]


@pytest.mark.parametrize("case", [_resume_without_checkpoint, _resume_auto_without_checkpoint, _one_short_clip,
                                  _one_uncaptioned_clip, _empty_caption_is_the_users, _validation_lost_to_a_kill],
                         ids=lambda case: case.__name__.strip("_"))
def test_slips(case, tiny_model_dir, clips, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    base = train_args(tiny_model_dir, clips, out)
    extra, code, messages = case(base, tmp_path)
    capsys.readouterr()
    assert cli.run(base + extra) == code
    error = capsys.readouterr().err
    assert all(m in error for m in messages), error
    assert out.exists() == (code == 0)
    if case is _empty_caption_is_the_users:
        assert (tmp_path / "empty-caption" / "a.txt").read_text() == "  \n"
    if case is _validation_lost_to_a_kill:
        assert (tmp_path / "ckpt" / "validation-step-00000002.mp4").stat().st_size > 0
        assert not list((tmp_path / "ckpt").glob(".partial-*"))
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "ckpt" / "tensorboard"))
        events.Reload()
        # the first run's and the redone one's (the test removed the video rather than killing the run)
        assert [image.step for image in events.Images("validation")] == [2, 2]


# -- the encoding cache ---------------------------------------------------------------------------------


@pytest.fixture
def encoder_calls(monkeypatch):
    """Calls of the VAE's encode and of both text encoders, counted at their classes."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    calls = {"vae": 0, "text": 0}

    def counting(cls, method, kind):
        original = getattr(cls, method)

        def counted(*args, **kwargs):
            calls[kind] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(cls, method, counted)

    counting(AutoencoderKL, "encode", "vae")
    counting(CLIPTextModel, "forward", "text")
    counting(CLIPTextModelWithProjection, "forward", "text")
    return calls


def test_a_second_run_from_the_cache_dir_encodes_nothing_and_equals_the_uncached_run(tiny_model_dir, clips, tmp_path,
                                                                                      encoder_calls):
    cache = tmp_path / "cache"
    runs = {}
    for name, extra in (("plain", []), ("filling", ["--cache-dir", str(cache)]),
                        ("cached", ["--cache-dir", str(cache)])):
        before = dict(encoder_calls)
        out = tmp_path / f"{name}.safetensors"
        assert cli.run(train_args(tiny_model_dir, clips, out, "--steps", "3", "--frames", "2", "--checkpoint-dir",
                                  str(tmp_path / f"{name}-ckpt"), *extra)) == 0
        runs[name] = (read(out)[0], {k: encoder_calls[k] - before[k] for k in before})
    clip_count = int(read(tmp_path / "plain.safetensors")[1]["ss_num_train_clips"])
    per_caption = runs["plain"][1]["text"] // 3  # the plain run encodes each step's caption
    assert runs["plain"][1]["vae"] == 3 and per_caption >= 2
    assert runs["filling"][1] == {"vae": clip_count, "text": 2 * per_caption}  # each clip and caption once
    assert runs["cached"][1] == {"vae": 0, "text": 0}
    plain = runs["plain"][0]
    for name in ("filling", "cached"):
        assert all(torch.equal(runs[name][0][k], plain[k]) for k in plain), name
    shards = sorted(p.name.split("-")[0] for p in cache.glob("*.safetensors"))
    assert shards == ["latents", "text"] and (cache / "content-hashes.json").is_file()
    assert not list(cache.glob(".*partial"))


def test_the_cache_is_keyed_by_content_and_encoder(tiny_model_dir, clips, tmp_path):
    from model.train.cache import EncodingStore

    cache = tmp_path / "cache"
    argv = train_args(tiny_model_dir, clips, tmp_path / "o.safetensors", "--frames", "2", "--cache-dir", str(cache))
    first = trainer_for(argv)
    moved = tmp_path / "moved"  # the same clips elsewhere: the same entries
    shutil.copytree(clips, moved)
    second = trainer_for(train_args(tiny_model_dir, moved, tmp_path / "o.safetensors", "--frames", "2", "--cache-dir",
                                    str(cache)))
    assert sorted(first.store.latent_keys.values()) == sorted(second.store.latent_keys.values())
    (moved / "slide.mp4").unlink()
    write_clip(moved / "slide.mp4", 12, 5)  # new content under an old name: a new entry
    changed = trainer_for(train_args(tiny_model_dir, moved, tmp_path / "o.safetensors", "--frames", "2",
                                     "--cache-dir", str(cache)))
    assert len(set(changed.store.latent_keys.values()) - set(first.store.latent_keys.values())) > 0
    with torch.no_grad():  # other VAE weights: other entries, never the old ones
        next(changed.pipe.vae.parameters()).add_(1)
    other = EncodingStore.prepare(changed)
    assert not set(other.latent_keys.values()) & set(changed.store.latent_keys.values())
    assert other.text_keys == changed.store.text_keys


def test_streaming_from_the_cache_holds_a_bounded_number_of_shards(tmp_path):
    import gc

    from model.train.cache import ShardReader, ShardWriter

    def resident_bytes():
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    entry = 256 << 10  # bytes
    writer = ShardWriter(tmp_path, "latents", shard_bytes=4 * entry)
    for i in range(160):  # 40 MiB of entries; the reader's budget: 2 open shards of 1 MiB
        writer.add(f"k{i}", {"mean": torch.full((entry // 4,), float(i))})
    writer.flush()
    del writer
    assert len(list(tmp_path.glob("latents-*.safetensors"))) == 40
    reader = ShardReader(tmp_path, "latents", open_shards=2)
    gc.collect()
    tensors_before = sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())
    rss_before = resident_bytes()
    growth = []
    for _ in range(2):
        for i in range(160):
            (mean,) = reader.get(f"k{i}", ("mean",))
            assert mean[0].item() == i and len(reader._open) <= 2
            del mean
        growth.append(resident_bytes() - rss_before)
    gc.collect()
    assert sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()) == tensors_before
    assert max(growth) < 10 << 20, growth  # vs 40 MiB if the entries were kept


# -- dataset config ---------------------------------------------------------------------------------------


def test_a_dataset_config_sets_repeats_prefix_and_caption_dropout_per_folder(tiny_model_dir, clips, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write_clip(other / "solo.mp4", 8, 3)
    (other / "solo.txt").write_text("a lone texture")
    config = tmp_path / "data.toml"
    config.write_text(f'[[folder]]\npath = "{clips}"\nrepeats = 2\nprefix = "zzq,"\n\n'
                      '[[folder]]\npath = "other"\ncaption_dropout = 1.0\nsize = [32, 40]\n')
    argv = ["--model", str(tiny_model_dir), "--dataset-config", str(config), "--output",
            str(tmp_path / "o.safetensors"), "--width", "64", "--height", "64", "--frames", "2", "--batch-size", "2"]
    trainer = trainer_for(argv)
    from_clips = [c for c in trainer.clips if c.source.path.parent == clips]
    assert len(from_clips) == 2 * len({c.key for c in from_clips}) and len(trainer.clips) == len(from_clips) + 4
    assert {c.caption for c in from_clips} == {"zzq, a texture sliding to the right", "zzq, another texture"}
    solo = [c for c in trainer.clips if c.source.path.parent == other]
    assert {(c.caption, c.caption_dropout, c.bucket) for c in solo} == {("a lone texture", 1.0, (32, 40))}
    assert {c.bucket for c in from_clips} == {(64, 64)}
    seen = []
    trainer._text = lambda caption: (seen.append(caption), trainer.encode_caption(caption))[1]
    for micro_batch in range(trainer.epoch_length):
        batch = trainer.batch_for(micro_batch)
        seen.clear()
        trainer.inputs(micro_batch)
        assert seen == ["" if trainer.clips[i] in solo else trainer.clips[i].caption for i in batch]
    assert json.loads(trainer.provenance["ss_dataset_dirs"])[1] == {
        "path": str(other), "repeats": 1, "prefix": "", "caption_dropout": 1.0, "size": [32, 40], "clips": 4}


@pytest.mark.parametrize("text, suffix, message", [
    ('[[folder]]\npath = "x"\nrepeat = 2\n', ".toml", "folder 1: unknown key 'repeat'"),
    ('[[folder]]\npath = "x"\nrepeats = 0\n', ".toml", "folder 1: repeats must be a positive whole number"),
    ('{"folder": [{"path": "x"}, {"path": "y", "caption_dropout": 1.5}]}', ".json",
     "folder 2: caption_dropout must be between 0 and 1"),
    ('[[folder]]\nrepeats = 2\n', ".toml", "folder 1: needs path"),
    ('[[folder]]\npath = "x"\nsize = [60, 64]\n', ".toml", "folder 1: size must be [width, height], positive"),
    ('folder = [', ".toml", "is not valid TOML"),
    ('path: x', ".yaml", "expected a .toml or .json file"),
])
def test_bad_dataset_configs_are_named(tiny_model_dir, tmp_path, capsys, text, suffix, message):
    config = tmp_path / f"data{suffix}"
    config.write_text(text)
    code, error = run_cli(["--model", str(tiny_model_dir), "--dataset-config", str(config), "--output",
                           str(tmp_path / "o.safetensors")], capsys)
    assert code == 2 and f"--dataset-config: {config}" in error and message in error, error
