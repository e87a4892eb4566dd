"""The CLI stores how a video was made (command, settings, model files' SHA-256) in the file."""

import hashlib
import json
import shlex

from model.media.run_record import KEY, model_files
from model.sample import run
from model.media.metadata import read_tags


def test_cli_video_says_how_it_was_made(tiny_model_dir, tmp_path):
    out = tmp_path / "clip.webp"
    argv = ["--model", str(tiny_model_dir), "--prompt", "a cat, hd", "--seed", "7", "--width", "64", "--height", "64",
            "--frames", "3", "--steps", "1", "--dtype", "fp32", "--out", str(out)]
    assert run(argv) == 0
    record = json.loads(read_tags(out)[KEY])
    assert shlex.split(record["command"])[-len(argv):] == argv
    settings = record["settings"]
    assert (settings["prompt"], settings["seed"], settings["steps"], settings["scheduler"]) == ("a cat, hd", 7, 1, "euler_a")
    weights = model_files([tiny_model_dir])
    assert weights and sorted(record["model_sha256"]) == sorted(str(p) for p in weights)
    first = weights[0]
    assert record["model_sha256"][str(first)] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_no_metadata_stores_nothing(tmp_path):
    out = tmp_path / "clip.mp4"
    assert run(["--model", "tiny-random", "--frames", "2", "--out", str(out), "--no-metadata"]) == 0
    assert KEY not in read_tags(out)
