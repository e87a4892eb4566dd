"""The pack imports both ways (as `model` from the repo root, and as ComfyUI imports the folder),
whatever the folder is called, cheaply, and without shadowing or being shadowed by other modules."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.pack_import import comfyui_style_import

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, cwd, extra_path=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, extra_path))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_top_level_model_import_is_cheap():
    result = run_python("""
        import sys, model
        assert "torch" not in sys.modules and "diffusers" not in sys.modules, "import model pulled in heavy modules"
        from model import load_pipeline, load_unet, write_video   # resolved lazily
        assert load_unet.__module__ == "model.files.loading"
        print("ok")
    """, cwd=REPO_ROOT, extra_path=[REPO_ROOT])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_pack_imports_under_any_folder_name_without_leaking_modules(tmp_path):
    folder = tmp_path / "ComfyUI-Hotshot.XL pack"
    folder.symlink_to(REPO_ROOT, target_is_directory=True)
    result = run_python(comfyui_style_import(folder) + """
        assert "HotshotXLSampler" in pack.NODE_CLASS_MAPPINGS and "HotshotXLSampler" in pack.NODE_DISPLAY_NAME_MAPPINGS
        # Our packages live under the pack's name only: nothing called plain `model` or `nodes` appears.
        assert "model" not in sys.modules and "nodes" not in sys.modules
        # Heavy libraries load on first use, not when ComfyUI scans custom_nodes.
        assert "diffusers" not in sys.modules and "transformers" not in sys.modules
        loading = importlib.import_module(name + ".model.files.loading")
        assert loading.load_unet.__module__ == name + ".model.files.loading"
        print("ok")
    """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_suite_runs_from_a_clone_whose_folder_name_is_not_an_identifier(tmp_path):
    """pytest (importlib mode) loads the root __init__.py as a lone file when the folder's name is not
    a Python identifier, as in `git clone ... ComfyUI-Hotshot-XL`; that must not fail every test."""
    clone = tmp_path / "ComfyUI-Hotshot-XL"
    shutil.copytree(REPO_ROOT, clone, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache"))
    # No ../shared beside this copy and no override: the fixtures must come from the repository itself.
    env = {k: v for k, v in os.environ.items() if k != "HOTSHOT_XL_FIXTURES"}
    env["PYTHONPATH"] = ""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_imports.py::test_top_level_model_import_is_cheap"],
                            cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout


def test_other_modules_named_model_and_nodes_neither_shadow_nor_get_shadowed(tmp_path):
    # ComfyUI itself has a top-level `nodes`; another pack might put a `model` on sys.path.
    others = tmp_path / "others"
    (others / "model").mkdir(parents=True)
    (others / "model" / "__init__.py").write_text("WHO = 'someone else'\n")
    (others / "nodes.py").write_text("WHO = 'ComfyUI core'\n")
    folder = tmp_path / "custom_nodes" / "hotshot"
    folder.parent.mkdir()
    folder.symlink_to(REPO_ROOT, target_is_directory=True)
    result = run_python("""
        import model, nodes
        assert model.WHO == "someone else" and nodes.WHO == "ComfyUI core"
    """ + comfyui_style_import(folder) + """
        ours = importlib.import_module(name + ".model")
        assert ours is not model and hasattr(ours, "load_pipeline")
        assert sys.modules["model"].WHO == "someone else" and sys.modules["nodes"].WHO == "ComfyUI core"
        print("ok")
    """, cwd=tmp_path, extra_path=[others])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_same_code_both_ways(pack):
    import importlib

    import model.denoising.loop as top_level

    packaged = importlib.import_module(pack.__name__ + ".model.denoising.loop")
    assert packaged is not top_level
    assert packaged.micro_conditioning((1920, 1080), (512, 512)).tolist() == \
        top_level.micro_conditioning((1920, 1080), (512, 512)).tolist() == [[1920, 1080, 0, 0, 512, 512]]
