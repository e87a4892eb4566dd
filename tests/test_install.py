"""`pip install .` gives a package of its own name, `hotshot_xl`, with its console script and data.

The package is installed, offline, into a fresh virtual environment that sees this environment's
packages (torch, diffusers, ...) through a .pth file, the way a user's environment already has them;
then the console script and README's Python example run from a folder outside the repository.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def readme_python_examples() -> list[str]:
    """The ```python blocks of README's "## Python" section, in order."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def readme_import_lines() -> list[str]:
    """Every import statement of every ```python block in README (continuation lines joined)."""
    readme = (REPO_ROOT / "README.md").read_text()
    statements = []
    for block in re.findall(r"```python\n(.*?)```", readme, re.S):
        statements += re.findall(r"^(?:from \S+ import [^\n(]+|import [^\n]+)", block, re.M)
    return [statement.split("#")[0].strip() for statement in statements]


def test_readme_examples_import_the_installed_package():
    statements = readme_import_lines()
    assert len(statements) >= 10  # Python, long videos, LoRA, ControlNet, several GPUs
    assert not [s for s in statements if re.match(r"(from|import) model\b", s)], statements


def test_every_folder_of_the_library_is_a_listed_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"hotshot_xl": "model"}
    folders = sorted(p.relative_to(REPO_ROOT / "model") for p in (REPO_ROOT / "model").rglob("*")
                     if p.is_dir() and p.name != "__pycache__")
    expected = ["hotshot_xl"] + [".".join(("hotshot_xl", *folder.parts)) for folder in folders]
    assert sorted(setuptools["packages"]) == sorted(expected)


def test_installed_package_runs_its_console_script_and_readme_example(tmp_path):
    # The repository's files, without the tests' fixtures: a build leaves build/ and *.egg-info in
    # the folder it builds, which must not be the checkout.
    source = tmp_path / "my clone of ComfyUI-Hotshot-XL"  # spaces, as a user might name it
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "tests", "benchmarks", "workflows", "__pycache__", "build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    import site

    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(site_packages) / "_outer_environment.pth").write_text("\n".join(outer) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              "--no-build-isolation", "--no-index", "--no-cache-dir", str(source)],
                             capture_output=True, text=True, env=env, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr

    elsewhere = tmp_path / "some project"  # not the repository: `model` is not importable here
    elsewhere.mkdir()
    script = bin_dir / "hotshot-xl-sample"
    help_text = subprocess.run([script, "--help"], cwd=elsewhere, capture_output=True, text=True, env=env,
                               timeout=60)
    assert help_text.returncode == 0, help_text.stderr
    assert help_text.stdout.startswith("usage: hotshot-xl-sample") and "--model tiny-random" in help_text.stdout
    for command in ("hotshot-xl-train", "hotshot-xl-caption"):  # each names itself, not `python -m model...`
        help_text = subprocess.run([bin_dir / command, "--help"], cwd=elsewhere, capture_output=True, text=True,
                                   env=env, timeout=120)
        assert help_text.returncode == 0 and help_text.stdout.startswith(f"usage: {command} "), help_text.stderr

    # README's examples as written, but smaller and shorter: the first with the tiny model instead
    # of the release; the second (the CPU install check) at 64x64, 2 frames, 1 step instead of
    # 256x256, 8 frames, 4 steps (about 20 s of CPU time: see README's Quick start).
    gpu, cpu = readme_python_examples()
    small = "width=64, height=64, frames=2, steps=1"
    assert '"./Hotshot-XL"' in gpu and "seed=455" in gpu and "width=256, height=256, steps=4" in cpu
    gpu = gpu.replace('"./Hotshot-XL"', '"tiny-random"').replace('device="auto"', 'device="cpu"').replace(
        "seed=455", f"seed=455, {small}")
    cpu = cpu.replace("width=256, height=256, steps=4", small)
    check = ("import sys, hotshot_xl, pathlib\n"
             "assert pathlib.Path(hotshot_xl.__file__).is_relative_to(pathlib.Path(sys.prefix)), hotshot_xl.__file__\n"
             "assert 'model' not in sys.modules\n")
    # Every README example's imports, after pip install: each name is there.
    check += "".join(statement + "\n" for statement in readme_import_lines())
    run = subprocess.run([python, "-c", check + gpu + cpu], cwd=elsewhere, capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    written = sorted(p.name for p in elsewhere.iterdir())
    assert written == ["check.mp4", "corgi.mp4"], written
    assert "sampling: 100%" in run.stderr  # the examples ask for progress
    # Run again, the first example stops at its check_output line: before loading or sampling anything.
    again = subprocess.run([python, "-c", gpu], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode != 0 and "corgi.mp4: already exists" in again.stderr, again.stderr[-3000:]
    assert "sampling" not in again.stderr
