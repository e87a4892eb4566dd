"""Shared test fixtures: where the reference fixtures live and how the pack is imported."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _find_fixtures() -> Path:
    """tests/fixtures (the reference fixtures, shipped with the repository), unless
    $HOTSHOT_XL_FIXTURES names another folder holding hotshot-xl-tiny/."""
    override = os.environ.get("HOTSHOT_XL_FIXTURES", "").strip()
    candidate = Path(override) if override else REPO_ROOT / "tests" / "fixtures"
    if not (candidate / "hotshot-xl-tiny").is_dir():
        source = "$HOTSHOT_XL_FIXTURES" if override else "the repository's tests/fixtures"
        raise RuntimeError(f"reference fixtures not found: {source} ({candidate}) holds no hotshot-xl-tiny/")
    return candidate


FIXTURES = _find_fixtures()
TINY_MODEL = FIXTURES / "hotshot-xl-tiny"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return TINY_MODEL


PACK_NAME = "hotshot_xl_pack_under_test"


def import_pack(name: str = PACK_NAME):
    """Import the repo root the way ComfyUI does: as a package named after an arbitrary folder."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pack():
    return import_pack()


@pytest.fixture
def host_env(monkeypatch, models_dir, tmp_path):
    """The pack's stand-ins for ComfyUI's folders, without ComfyUI: models from `models_dir` (each
    test module lays out its own), outputs into a fresh folder, whose path is returned."""
    monkeypatch.setenv("HOTSHOT_XL_MODELS", str(models_dir))
    monkeypatch.setenv("HOTSHOT_XL_OUTPUT", str(tmp_path / "output"))
    return tmp_path / "output"
