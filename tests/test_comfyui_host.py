"""The pack inside a real ComfyUI server (integration; skipped unless COMFYUI_PATH is set).

Run:  COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfyui-venv/bin/python \\
      python -m pytest tests/test_comfyui_host.py -v

One server is started for this module (fixture ``comfy``) with the repo root mounted under an
arbitrary folder name; every test here shares it. See tests/comfyui_host.py for the client
(object_info, queue, wait, interrupt, output_dir, log_text).
"""

import os
from pathlib import Path

import pytest

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: no ComfyUI checkout to run the pack in", allow_module_level=True)

from tests.comfyui_host import PromptRejected, history_messages, running_comfyui  # noqa: E402

# Model files or folders the server should see, by ComfyUI model folder name, e.g.
# {"diffusers": [TINY_MODEL], "animatediff_models": [FIXTURES / "hsxl_temporal_layers_tiny.safetensors"]}.
# Node tests that need weights add them here: they are linked into models/<folder>/ before startup.
HOST_MODELS: dict = {}

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def comfy():
    with running_comfyui(REPO_ROOT, models=HOST_MODELS) as client:
        yield client


@pytest.fixture(scope="module")
def object_info(comfy):
    return comfy.object_info()


def test_pack_loads_and_registers_every_node(comfy, object_info, pack):
    """ComfyUI imports the mounted folder without IMPORT FAILED and lists exactly the pack's classes."""
    log = comfy.log_text()
    import_lines = comfy.pack_import_lines()
    assert import_lines, f"no import line for {comfy.pack_mount} in the log\n{comfy.log_tail()}"
    assert not any("IMPORT FAILED" in line for line in import_lines), "\n".join(import_lines) + "\n" + log
    assert f"Cannot import {comfy.pack_mount}" not in log, log

    # Core video/animation nodes are there, so the host itself is healthy.
    for core in ("SaveAnimatedWEBP", "CreateVideo", "SaveVideo", "VAEDecode", "VAELoader", "CheckpointLoaderSimple"):
        assert core in object_info, f"core node {core} missing from /object_info"

    # Exactly the pack's classes come from our folder (ComfyUI reports "custom_nodes.<folder>").
    expected = set(pack.NODE_CLASS_MAPPINGS)
    ours = {name for name, info in object_info.items()
            if info.get("python_module") == f"custom_nodes.{comfy.pack_folder_name}"}
    assert ours == expected, (f"missing: {sorted(expected - ours)}, unexpected: {sorted(ours - expected)} "
                              "(a name equal to a core node's is silently ignored by ComfyUI)")
    for name, display in pack.NODE_DISPLAY_NAME_MAPPINGS.items():
        if name in expected:
            assert object_info[name]["display_name"] == display


def test_harness_round_trip_with_core_nodes(comfy):
    """The harness itself: a core-only graph runs and writes into output_dir; a bad one is rejected."""
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 3, "color": 255}},
        "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "harness/anim",
                                                           "fps": 8.0, "lossless": False, "quality": 80,
                                                           "method": "fastest"}},
    }
    entry = comfy.wait(comfy.queue(prompt), timeout=120)
    assert entry["status"]["status_str"] == "success", history_messages(entry, "execution_error")
    ui = entry["outputs"]["2"]
    assert ui["animated"] == [True]
    (image,) = ui["images"]
    assert (comfy.output_dir / image["subfolder"] / image["filename"]).is_file()

    prompt["2"]["inputs"]["method"] = "no-such-method"
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(prompt)
    assert "2" in rejected.value.node_errors


# ------------------------------------------------------------------------------------------------
# Node-specific tests go below, sharing the `comfy` server (add needed weights to HOST_MODELS):
#   entry = comfy.wait(comfy.queue({...API graph using the pack's nodes...}), timeout=...)
#   failures: history_messages(entry, "execution_error") -> node_type, exception_type, exception_message
#   cancel:   comfy.interrupt(prompt_id) -> history_messages(entry, "execution_interrupted")
# ------------------------------------------------------------------------------------------------
