"""Helpers for the node and workflow tests (no test functions here): node declarations, workflow
files in both formats, and running an API-format graph node by node without ComfyUI."""

from __future__ import annotations

import inspect
import os
import json
import numbers
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / "workflows"
# Editor-format workflows sit in a sub-folder: ComfyUI's template browser lists every *.json directly
# inside a pack's workflows/ as well as example_workflows/ (made from these by tests/make_templates.py).
EDITOR_WORKFLOWS = WORKFLOWS / "editor"
API_WORKFLOWS = WORKFLOWS / "api"

TINY = dict(width=64, height=64, steps=2, frames=4)  # workflow settings small enough for the tiny model on a CPU
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
EDITOR_KEYS = {"last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"}


EXAMPLE_INPUTS = WORKFLOWS / "inputs"  # the example inputs the shipped workflows load (ComfyUI's input/ folder)


class LoadImageStandIn:
    """ComfyUI's core Load Image, as the tests run it without ComfyUI: every frame of an image
    (an animated GIF is a batch), float 0..1, from workflows/inputs/ or an absolute path."""

    @classmethod
    def INPUT_TYPES(cls):
        files = sorted(p.name for p in EXAMPLE_INPUTS.iterdir()) if EXAMPLE_INPUTS.is_dir() else []
        return {"required": {"image": (files, {"image_upload": True})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    def load_image(self, image):
        import numpy as np
        import torch
        from PIL import Image, ImageSequence

        path = Path(image) if Path(image).is_absolute() else EXAMPLE_INPUTS / image
        with Image.open(path) as file:
            frames = [np.array(frame.convert("RGB"), dtype=np.float32) / 255 for frame in ImageSequence.Iterator(file)]
        return torch.from_numpy(np.stack(frames)), torch.zeros(len(frames), 64, 64)


class CannyStandIn:
    """ComfyUI's core Canny (comfy_extras/nodes_canny.py): kornia's canny, edges as an IMAGE."""

    @classmethod
    def INPUT_TYPES(cls):
        threshold = {"min": 0.01, "max": 0.99, "step": 0.01}
        return {"required": {"image": ("IMAGE",), "low_threshold": ("FLOAT", {"default": 0.4, **threshold}),
                             "high_threshold": ("FLOAT", {"default": 0.8, **threshold})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "detect_edge"

    def detect_edge(self, image, low_threshold, high_threshold):
        from kornia.filters import canny

        edges = canny(image.movedim(-1, 1), low_threshold, high_threshold)[1]
        return (edges.repeat(1, 3, 1, 1).movedim(1, -1),)


# Model lists of core loaders: what ComfyUI lists there (every .safetensors file below the folder).
CORE_MODEL_LISTS = {"ckpt_name": "checkpoints", "lora_name": "loras", "control_net_name": "controlnet"}
CORE_DECLARATIONS = REPO_ROOT / "tests" / "core_nodes.json"


def core_model_names(folder: str) -> list[str]:
    root = os.environ.get("HOTSHOT_XL_MODELS")
    base = Path(root) / folder if root else None
    if base is None or not base.is_dir():
        return []
    return sorted((Path(here) / f).relative_to(base).as_posix() for here, _, files in os.walk(base, followlinks=True)
                  for f in files if f.endswith(".safetensors"))


def declared_node(name: str, info: dict):
    """A class declaring a core node's inputs and outputs as ComfyUI 0.8 does (tests/core_nodes.json),
    for checking workflows without ComfyUI; it cannot run (the host tests run those workflows)."""

    def input_types(cls):
        declared = {}
        for section in ("required", "optional"):
            specs = {}
            for input_name in (info.get("input_order") or {}).get(section, info["input"].get(section, {})):
                kind, *rest = info["input"][section][input_name]
                options = dict(rest[0]) if rest else {}
                if kind == "COMBO":  # the V3 schema's spelling of an option list
                    kind = options.pop("options")
                elif input_name in CORE_MODEL_LISTS:
                    kind = core_model_names(CORE_MODEL_LISTS[input_name])
                specs[input_name] = (kind, options)
            if specs:
                declared[section] = specs
        return declared

    return type(name, (), {"INPUT_TYPES": classmethod(input_types), "RETURN_TYPES": tuple(info["output"]),
                           "FUNCTION": "not_run_without_comfyui"})


_DECLARED = {name: info for name, info in json.loads(CORE_DECLARATIONS.read_text(encoding="utf-8")).items()
             if not name.startswith("_")}

# Core ComfyUI nodes the shipped workflows use, and their titles.
CORE_NODES = {"LoadImage": LoadImageStandIn, "Canny": CannyStandIn,
              **{name: declared_node(name, info) for name, info in _DECLARED.items()}}
CORE_TITLES = {"LoadImage": "Load Image", "Canny": "Canny",
               **{name: info["display_name"] for name, info in _DECLARED.items()}}
NATIVE_NODE = "HotshotXLApplyTemporalLayers"  # workflows with it run core samplers: only inside ComfyUI


def is_native(prompt: dict) -> bool:
    return any(node["class_type"] == NATIVE_NODE for node in prompt.values())


def input_specs(cls) -> list[tuple[str, object, dict, bool]]:
    """(name, type or option list, options, required) of a V1 node's inputs, in declaration order."""
    declared = cls.INPUT_TYPES()
    specs = []
    for section, required in (("required", True), ("optional", False)):
        for name, spec in declared.get(section, {}).items():
            kind = spec[0]
            options = spec[1] if len(spec) > 1 else {}
            specs.append((name, kind, options, required))
    return specs


def is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def value_problems(kind, options: dict, value) -> list[str]:
    """What is wrong with a widget value for an input declared as (kind, options); empty if nothing."""
    if isinstance(kind, list):
        return [] if value in kind else [f"{value!r} is not one of {kind}"]
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{value!r} is not an INT"]
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return [f"{value!r} is not a FLOAT"]
    elif kind == "STRING":
        return [] if isinstance(value, str) else [f"{value!r} is not a STRING"]
    elif kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{value!r} is not a BOOLEAN"]
    problems = []
    if "min" in options and value < options["min"]:
        problems.append(f"{value} is below the minimum {options['min']}")
    if "max" in options and value > options["max"]:
        problems.append(f"{value} is above the maximum {options['max']}")
    return problems


def editor_files() -> list[Path]:
    return sorted(EDITOR_WORKFLOWS.glob("*.json"))


def api_files() -> list[Path]:
    return sorted(API_WORKFLOWS.glob("*.json"))


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def editor_to_api(workflow: dict, classes: dict) -> dict:
    """The API-format graph the editor would queue for an editor-format workflow of the pack's nodes.

    Widget values are taken in declaration order; a seed with control_after_generate is followed by
    the control's own value ("randomize", "fixed", ...), which the API format does not carry.
    """
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        cls = classes[node["type"]]
        values = list(node.get("widgets_values") or [])
        linked = {entry["name"]: entry.get("link") for entry in node.get("inputs", [])}
        inputs = {}
        for name, kind, options, required in input_specs(cls):
            if linked.get(name) is not None:
                link = links[linked[name]]
                inputs[name] = [str(link[1]), link[2]]
                if is_widget(kind):  # a widget turned into a socket still keeps its value slot
                    values.pop(0)
                    if options.get("control_after_generate"):
                        values.pop(0)
            elif is_widget(kind):
                if not values and not required:  # an optional widget newer than the file: its default
                    continue
                if not values:
                    raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {name}")
                inputs[name] = values.pop(0)
                if options.get("control_after_generate"):
                    values.pop(0)
        if values:
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values left over: {values}")
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def topological_order(prompt: dict) -> list[str]:
    order, seen = [], set()

    def visit(node_id: str, path=()):
        if node_id in seen:
            return
        if node_id in path:
            raise ValueError(f"cycle through node {node_id}")
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list):
                visit(str(value[0]), path + (node_id,))
        seen.add(node_id)
        order.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return order


def run_api(prompt: dict, classes: dict) -> tuple[dict, dict]:
    """Run every node of an API-format graph in dependency order, as ComfyUI would (one call each).

    Returns (outputs: node id -> result tuple, ui: node id -> ui dict of output nodes).
    """
    outputs, ui = {}, {}
    for node_id in topological_order(prompt):
        node = prompt[node_id]
        cls = classes[node["class_type"]]
        kwargs = {name: outputs[str(value[0])][value[1]] if isinstance(value, list) else value
                  for name, value in node["inputs"].items()}
        result = getattr(cls(), cls.FUNCTION)(**kwargs)
        if isinstance(result, dict):
            ui[node_id] = result.get("ui")
            result = result.get("result", ())
        outputs[node_id] = tuple(result)
    return outputs, ui


def function_parameters(cls) -> inspect.Signature:
    return inspect.signature(getattr(cls, cls.FUNCTION))


def nodes_of(prompt: dict, class_type: str) -> list[str]:
    return [node_id for node_id, node in prompt.items() if node["class_type"] == class_type]


def shrink(prompt: dict, configs: str, names: dict | None = None) -> dict:
    """A workflow at test size: tiny sizes and steps, fp32; `configs` (the tiny model folder's name)
    gives single files their configs and tokenizers; `names` replaces model names."""
    for node in prompt.values():
        inputs = node["inputs"]
        for key, value in inputs.items():
            if isinstance(value, str) and names and value in names:
                inputs[key] = names[value]
        if node["class_type"] == "HotshotXLSampler":
            inputs.update(TINY)
        if "dtype" in inputs:
            inputs["dtype"] = "fp32"
        if node["class_type"] == "HotshotXLCheckpointLoader":
            inputs["configs"] = configs
        if node["class_type"] == "HotshotXLContextOptions":
            inputs["length"] = min(inputs["length"], 3)
            inputs["overlap"] = min(inputs["overlap"], 1)
        if node["class_type"] == "HotshotXLPromptTravel":
            inputs["keyframes"] = fit_keyframes(inputs["keyframes"], TINY["frames"])
    return prompt


def fit_keyframes(text: str, frames: int) -> str:
    """Prompt travel keyframe lines moved proportionally onto a `frames`-frame video (the last
    keyframe on the last frame; keyframes that land on one frame keep the first)."""
    keyframes = [line.partition(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]
    last = max(int(frame) for frame, _, _ in keyframes) or 1
    fitted = {}
    for frame, _, prompt in keyframes:
        fitted.setdefault(round(int(frame) * (frames - 1) / last), prompt.strip())
    return "\n".join(f"{frame}: {prompt}" for frame, prompt in fitted.items())
