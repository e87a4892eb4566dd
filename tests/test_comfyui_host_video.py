"""Saving, VIDEO and templates inside a real ComfyUI (integration; skipped unless COMFYUI_PATH is set).

Run:  COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/comfyui-venv/bin/python \\
      python -m pytest tests/test_comfyui_host_video.py -v

One server for the module (the pack under an arbitrary folder name), and one more for a folder
name with a space, whose templates ComfyUI 0.8 lists but cannot serve (README: Templates).
"""

import json
import os
import time
import urllib.parse
from pathlib import Path

import pytest

if not os.environ.get("COMFYUI_PATH"):
    pytest.skip("COMFYUI_PATH is not set: no ComfyUI checkout to run the pack in", allow_module_level=True)

from model.media.metadata import read_tags  # noqa: E402
from tests.comfyui_host import PACK_FOLDER_NAME, PromptRejected, history_messages, running_comfyui  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402
from tests.pack_graph import API_WORKFLOWS, TINY, load_json, nodes_of, shrink  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_FOLDER = FIXTURES / "hotshot-xl-tiny"
TINY_NAMES = {"Hotshot-XL": TINY_FOLDER.name}
FOLDER_WITH_SPACE = "hotshot xl pack"  # a name ComfyUI-Manager would never give, but users do
FORMATS = ["mp4", "webm", "gif", "webp", "png"]


@pytest.fixture(scope="module")
def comfy():
    with running_comfyui(REPO_ROOT, models={"diffusers": [TINY_FOLDER]}) as client:
        yield client


def succeeded(entry):
    assert entry["status"]["status_str"] == "success", history_messages(entry, "execution_error")
    return entry


def tiny_graph():
    return shrink(load_json(API_WORKFLOWS / "hotshot_xl_text_to_video.json"), configs=TINY_FOLDER.name,
                  names=TINY_NAMES)


def shown_files(comfy, entry, node_id):
    return [comfy.output_dir / shown["subfolder"] / shown["filename"] for shown in entry["outputs"][node_id]["images"]]


def test_every_format_restores_the_prompt_and_workflow(comfy):
    """One sampling run saved in each format; each file holds the graph that made it, in the
    fields the editor reads when the file is dropped onto it."""
    prompt = tiny_graph()
    (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
    save = prompt.pop(save_id)
    for index, video_format in enumerate(FORMATS):
        prompt[f"9{index}"] = {"class_type": "HotshotXLSaveVideo",
                               "inputs": {**save["inputs"], "format": video_format,
                                          "filename_prefix": f"meta/{video_format}"}}
    workflow = {"last_node_id": 99, "nodes": [{"id": int(i), "type": n["class_type"]} for i, n in prompt.items()],
                "links": [], "version": 0.4}
    entry = succeeded(comfy.wait(comfy.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}}),
                                 timeout=300))
    for index, video_format in enumerate(FORMATS):
        files = shown_files(comfy, entry, f"9{index}")
        assert files and all(file.suffix == f".{video_format}" for file in files)
        for file in files:
            tags = read_tags(file)
            assert json.loads(tags["workflow"]) == workflow, file
            stored = json.loads(tags["prompt"])
            assert {i: n["inputs"] for i, n in stored.items()} == {i: n["inputs"] for i, n in prompt.items()}, file


def test_bad_prefix_and_fps_are_refused_before_anything_runs(comfy):
    """Refused when queued (a red outline on the node in the editor), with 1000 steps that never start."""
    for inputs, name in (({"filename_prefix": "../outside"}, "filename_prefix"),
                         ({"format": "gif", "fps": 60.0}, "fps")):
        prompt = tiny_graph()
        (sampler,) = nodes_of(prompt, "HotshotXLSampler")
        (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
        prompt[sampler]["inputs"]["steps"] = 1000
        prompt[save_id]["inputs"].update(inputs)
        started = time.monotonic()
        with pytest.raises(PromptRejected) as rejected:
            comfy.queue(prompt)
        assert time.monotonic() - started < 10  # answered at once: nothing loaded, nothing sampled
        details = " ".join(error["details"] for error in rejected.value.node_errors[save_id]["errors"])
        assert f"{name}: " in details, details
        assert sampler not in rejected.value.node_errors
    assert not (comfy.base_dir / "outside_00001_.mp4").exists()
    assert comfy.get_json("/queue")["queue_running"] == []


def test_core_video_with_sound_is_saved_with_its_audio(comfy):
    """Core CreateVideo with audio -> our Save Video: the mp4 has the sound and the VIDEO's rate.
    The sound comes from a clip in input/ through core Load Video and Get Video Components (this
    ComfyUI may lack torchaudio, which core's audio nodes need). Our Decode's VIDEO -> core SaveVideo."""
    import av
    import numpy as np
    import torch

    from model.media.video import write_video
    from model.media.audio import Audio

    wave = np.sin(np.linspace(0, 4000, 44100 * 2, dtype=np.float32))[None].repeat(2, 0)
    write_video(torch.rand(16, 64, 64, 3), comfy.base_dir / "input" / "with_sound.mp4", fps=8, audio=Audio(wave, 44100))
    prompt = tiny_graph()
    (decode,) = nodes_of(prompt, "HotshotXLDecode")
    prompt.update({
        "50": {"class_type": "LoadVideo", "inputs": {"file": "with_sound.mp4"}},
        "51": {"class_type": "GetVideoComponents", "inputs": {"video": ["50", 0]}},
        "52": {"class_type": "CreateVideo", "inputs": {"images": [decode, 0], "fps": 12.0, "audio": ["51", 1]}},
        "53": {"class_type": "HotshotXLSaveVideo", "inputs": {"video": ["52", 0], "filename_prefix": "av/ours",
                                                              "format": "mp4", "fps": 8.0, "loop": 0}},
        "54": {"class_type": "SaveVideo", "inputs": {"video": [decode, 1], "filename_prefix": "av/core",
                                                     "format": "mp4", "codec": "h264"}},
    })
    entry = succeeded(comfy.wait(comfy.queue(prompt), timeout=300))
    (ours,) = shown_files(comfy, entry, "53")
    with av.open(str(ours)) as container:
        assert len(container.streams.audio) == 1
        assert container.streams.video[0].average_rate == 12  # the VIDEO's rate, not the widget's
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == TINY["frames"]
    assert len(list((comfy.output_dir / "av").glob("core_*.mp4"))) == 1


def template_status(comfy, folder, file_name):
    path = f"/api/workflow_templates/{urllib.parse.quote(folder)}/{urllib.parse.quote(file_name)}"
    return comfy._request("GET", path)


def test_templates_and_thumbnails_are_served(comfy):
    """/workflow_templates lists the pack's example_workflows under its folder name, and each
    template and its thumbnail load from the route the template browser uses (file names with spaces)."""
    listed = comfy.get_json("/workflow_templates")[PACK_FOLDER_NAME]
    expected = sorted(p.stem for p in (REPO_ROOT / "example_workflows").glob("*.json"))
    assert expected and sorted(listed) == expected  # nothing else: workflows/ holds no top-level *.json
    for name in expected:
        status, body = template_status(comfy, PACK_FOLDER_NAME, name + ".json")
        assert status == 200 and json.loads(body)["nodes"], name
        status, body = template_status(comfy, PACK_FOLDER_NAME, name + ".jpg")
        assert status == 200 and body[:3] == b"\xff\xd8\xff", name


def test_a_folder_name_with_a_space_lists_templates_that_comfyui_cannot_serve():
    """What README says about folder names: ComfyUI 0.8 registers the template route with the
    folder's name as it is, and a name with a space never matches a request (404). If this fails,
    ComfyUI serves such names now: update README's Templates section."""
    with running_comfyui(REPO_ROOT, pack_folder_name=FOLDER_WITH_SPACE) as client:
        listed = client.get_json("/workflow_templates")[FOLDER_WITH_SPACE]
        assert listed
        assert template_status(client, FOLDER_WITH_SPACE, listed[0] + ".json")[0] == 404


def test_sampling_previews_every_frame_and_moves_per_window(comfy):
    """16 frames in windows of 8 (overlap 4: three windows a step): per step, a preview image for
    each of the 16 frames and progress inside the step after each window, on the websocket."""
    from tests.websocket_client import WebSocketReader

    prompt = tiny_graph()
    (sampler,) = nodes_of(prompt, "HotshotXLSampler")
    prompt["60"] = {"class_type": "HotshotXLContextOptions", "inputs": {
        "length": 8, "overlap": 4, "stride": 1, "schedule": "static", "weighting": "pyramid", "loop": False}}
    prompt[sampler]["inputs"].update({"frames": 16, "steps": 2, "seed": 11, "context_options": ["60", 0]})
    socket = WebSocketReader("127.0.0.1", comfy.port, comfy.client_id)
    try:
        prompt_id = comfy.queue(prompt, extra_data={"preview_method": "auto"})

        def finished(message):
            return (message[0] == "text" and message[1].get("type") in ("executing", "execution_error")
                    and message[1]["data"].get("node") is None and message[1]["data"].get("prompt_id") == prompt_id) \
                or (message[0] == "text" and message[1].get("type") == "execution_success")

        messages = socket.until(finished, timeout=300)
    finally:
        socket.close()
    succeeded(comfy.wait(prompt_id, timeout=60))
    # Sampler messages: from its first progress on to the Decode's start.
    start = next(i for i, m in enumerate(messages) if m[0] == "text" and m[1]["type"] == "progress"
                 and m[1]["data"]["node"] == sampler)
    end = next(i for i, m in enumerate(messages) if i > start and m[0] == "text" and m[1]["type"] == "executing"
               and m[1]["data"].get("node") != sampler)
    during = messages[start:end]
    previews = [m for m in during if m[0] == "binary" and m[1] == 1]
    assert len(previews) == 2 * 16  # every frame, every step
    assert all(p[2][4:7] == b"\xff\xd8\xff" for p in previews)  # JPEG after the 4-byte image type
    values = [m[1]["data"]["value"] for m in during if m[0] == "text" and m[1]["type"] == "progress"
              and m[1]["data"]["node"] == sampler]
    for step in range(2):
        inside = {round(v - step, 3) for v in values if step < v < step + 1}
        assert inside >= {0.333, 0.667}, (step, values)  # moved after the 1st and 2nd of 3 windows


def test_disable_metadata_leaves_the_workflow_out():
    """ComfyUI's --disable-metadata: our files hold no prompt or workflow, as core's don't."""
    with running_comfyui(REPO_ROOT, models={"diffusers": [TINY_FOLDER]}, extra_args=["--disable-metadata"]) as client:
        prompt = tiny_graph()
        (save_id,) = nodes_of(prompt, "HotshotXLSaveVideo")
        prompt[save_id]["inputs"]["format"] = "webp"
        entry = succeeded(client.wait(client.queue(prompt, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}}),
                                      timeout=300))
        (file,) = shown_files(client, entry, save_id)
        assert read_tags(file) == {}
