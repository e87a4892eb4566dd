"""Build `example_workflows/` (ComfyUI's template folder for custom nodes) from `workflows/editor/`.

    python -m tests.make_templates          # lays out workflows/editor/*.json in place, writes example_workflows/

`workflows/editor/*.json` stays the one source (the tests and API twins use it). This script
- lays every source out without overlapping nodes: columns by graph depth, node sizes from their
  sockets and widgets as the editor draws them, and a view (`extra.ds`) that shows the whole graph
  in the VIEW part of the editor's canvas, at a scale where the editor still draws text;
- adds download entries (`properties.models`: name, url, directory, read by the editor's missing-
  models dialog) to nodes whose widget names a released single file;
- writes each as `example_workflows/<title>.json` (the template browser shows a custom node's
  template under its file name, and nothing else: no separate title or description field), with
  the title and description also kept in `extra.template`, and a `<title>.jpg` thumbnail of the graph.

tests/test_templates.py fails while example_workflows/ differs from what this would write.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = REPO_ROOT / "workflows" / "editor"
TEMPLATES = REPO_ROOT / "example_workflows"

# The part of the editor's canvas a workflow should open in: in a 1600x800 canvas, right of the side
# bar (which lies over the canvas's left edge) and below the floating title and Run bar. The scale
# stays above the editor's low-quality threshold (0.6), below which node titles and widgets are not drawn.
VIEW = (70, 100, 1570, 760)  # left, top, right, bottom in canvas pixels
MIN_SCALE = 0.6
TITLE_HEIGHT = 30  # LiteGraph draws the title bar above `pos`
SLOT_HEIGHT, WIDGET_HEIGHT, TEXT_BOX_HEIGHT, MEDIA_HEIGHT = 22, 26, 110, 280
COLUMN_GAP, ROW_GAP, MARGIN = 50, 40, 20
THUMBNAIL_SIZE = (480, 360)

# Released single files, as the editor's missing-models dialog wants them (only safetensors from
# Hugging Face or Civitai are offered for download). Folders (the Hotshot-XL model folder, diffusers
# ControlNets) cannot be downloaded this way: README says how to get them.
RELEASED_FILES = {
    "hsxl_temporal_layers.safetensors": (
        "https://huggingface.co/hotshotco/Hotshot-XL/resolve/main/hsxl_temporal_layers.safetensors",
        "animatediff_models"),
    "sd_xl_base_1.0.safetensors": (
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        "checkpoints"),
}

# source file -> (title, description). A workflow missing here gets a title from its file name.
CATALOGUE = {
    "hotshot_xl_text_to_video.json": (
        "Hotshot-XL - text to video",
        "The release's text-to-video: the Hotshot-XL model folder, 8 frames at 672x384, Euler ancestral, "
        "saved as an mp4 that holds this workflow."),
    "hotshot_xl_sdxl_checkpoint_text_to_video.json": (
        "Hotshot-XL - SDXL checkpoint + temporal layers",
        "Any SDXL single-file checkpoint with the released temporal layers (hsxl_temporal_layers.safetensors): "
        "8 frames of text to video."),
    "hotshot_xl_lora_text_to_video.json": (
        "Hotshot-XL - text to video with an SDXL LoRA",
        "An SDXL LoRA on the UNet and text encoders, then text to video."),
    "hotshot_xl_long_video_1280x720.json": (
        "Hotshot-XL - long video 1280x720 (80 frames)",
        "80 frames at 1280x720, sampled in overlapping context windows of 8 frames."),
    "hotshot_xl_video_to_video.json": (
        "Hotshot-XL - video to video",
        "Redraws an input video (the example GIF) with a prompt, keeping its motion."),
    "hotshot_xl_controlnet_from_video.json": (
        "Hotshot-XL - ControlNet (Canny) from a video",
        "Canny edges of an input video steer an SDXL ControlNet while Hotshot-XL generates the frames."),
    "hotshot_xl_prompt_travel_32_frames.json": (
        "Hotshot-XL - prompt travel over 32 frames",
        "Keyframed prompts blended frame by frame over 32 frames, sampled in context windows."),
    "hotshot_xl_native_text_to_video.json": (
        "Hotshot-XL native - Load Checkpoint + KSampler",
        "Any SDXL checkpoint through core Load Checkpoint, Hotshot-XL's temporal layers applied to its MODEL, "
        "core KSampler: 8 frames as one video."),
    "hotshot_xl_native_prompt_travel_32_frames.json": (
        "Hotshot-XL native - prompt travel over 32 frames",
        "Keyframed prompts as per-frame core CONDITIONING (Prompt Travel (CONDITIONING)) on the native MODEL, "
        "with its motion scale, in core context windows of 8: 32 frames with core KSampler."),
    "hotshot_xl_native_long_video_1280x720.json": (
        "Hotshot-XL native - 80 frames at 1280x720 in core context windows",
        "The native MODEL under core Context Windows (Manual): 80 frames at 1280x720 with core KSampler."),
    "hotshot_xl_native_lora_controlnet_from_video.json": (
        "Hotshot-XL native - LoRA + ControlNet from a video",
        "Core LoRA loader and core ControlNet Apply (Canny edges of an input video, one per frame) on the "
        "native Hotshot-XL MODEL."),
}


def title_of(source: Path) -> tuple[str, str]:
    if source.name in CATALOGUE:
        return CATALOGUE[source.name]
    words = source.stem.replace("hotshot_xl_", "").replace("_", " ")
    return f"Hotshot-XL - {words}", f"Hotshot-XL workflow {source.stem}."


# ------------------------------------------------------------------------------------------ layout

def _is_text_box(value) -> bool:
    return isinstance(value, str) and (len(value) > 40 or "\n" in value)


def node_size(node: dict) -> list[int]:
    """Width and height (below the title bar) the editor needs for the node's sockets and widgets."""
    values = node.get("widgets_values") or []
    values = values if isinstance(values, list) else list(values.values())
    sockets = [entry for entry in node.get("inputs", []) if "widget" not in entry]
    height = SLOT_HEIGHT * max(len(sockets), len(node.get("outputs", [])), 1) + 10
    height += sum(TEXT_BOX_HEIGHT if _is_text_box(v) else WIDGET_HEIGHT for v in values)
    if node["type"] in ("LoadImage", "LoadVideo", "HotshotXLSaveVideo", "SaveVideo", "PreviewImage", "SaveImage"):
        height += MEDIA_HEIGHT  # the image or video shown on the node
    width = 360 if any(_is_text_box(v) for v in values) else 300
    return [width, height]


def _depths(workflow: dict) -> dict[int, int]:
    parents = {node["id"]: [] for node in workflow["nodes"]}
    for _, source, _, target, _, _ in workflow["links"]:
        parents[target].append(source)
    depth: dict[int, int] = {}

    def visit(node_id: int, seen=()) -> int:
        if node_id not in depth:
            if node_id in seen:
                raise ValueError(f"workflow has a cycle through node {node_id}")
            depth[node_id] = 1 + max((visit(p, seen + (node_id,)) for p in parents[node_id]), default=-1)
        return depth[node_id]

    for node_id in parents:
        visit(node_id)
    return depth


def _split_columns(columns: dict[int, list[dict]], tallest: float) -> list[list[dict]]:
    """Columns in order, each cut where its nodes would stand taller than `tallest`."""
    split = []
    for index in sorted(columns):
        split.append([])
        used = 0
        for node in columns[index]:
            need = TITLE_HEIGHT + node_size(node)[1] + ROW_GAP
            if used and used + need > tallest:
                split.append([])
                used = 0
            split[-1].append(node)
            used += need
    return split


def _place(columns: list[list[dict]], bands: int) -> tuple[int, int]:
    """Sets each node's size and position, the columns in `bands` rows; returns the graph's right and bottom."""
    per_band = -(-len(columns) // bands)
    band_top = 0
    for start in range(0, len(columns), per_band):
        x, band_bottom = 0, band_top
        for column in columns[start:start + per_band]:
            y, width = band_top, 0
            for node in column:
                node["size"] = node_size(node)
                node["pos"] = [x, y + TITLE_HEIGHT]
                y += TITLE_HEIGHT + node["size"][1] + ROW_GAP
                width = max(width, node["size"][0])
            x += width + COLUMN_GAP
            band_bottom = max(band_bottom, y)
        band_top = band_bottom + ROW_GAP
    nodes = [node for column in columns for node in column]
    return max(n["pos"][0] + n["size"][0] for n in nodes), max(n["pos"][1] + n["size"][1] for n in nodes)


def laid_out(workflow: dict) -> dict:
    """The workflow with nodes in columns by depth (top to bottom in their old order), sized for
    their content, and the view fitted around them; links and values unchanged."""
    workflow = copy.deepcopy(workflow)
    depth = _depths(workflow)
    columns: dict[int, list[dict]] = {}
    # (x, y): a column split in two keeps its order when laid out again
    for node in sorted(workflow["nodes"], key=lambda n: (n["pos"][0], n["pos"][1], n["id"])):
        columns.setdefault(depth[node["id"]], []).append(node)
    # Nodes go in columns by depth; a long chain of columns is folded into bands (rows of columns) and a
    # tall column split in two, whichever first fits the view at a scale where the editor draws text.
    width, height = VIEW[2] - VIEW[0] - 2 * MARGIN, VIEW[3] - VIEW[1] - 2 * MARGIN
    tried = []
    for tallest in (height / MIN_SCALE, height / MIN_SCALE / 2):
        split = _split_columns(columns, tallest)
        for bands in range(1, len(split) + 1):
            right, bottom = _place(split, bands)
            scale = min(1.0, width / right, height / bottom)
            tried.append((scale, tallest, bands))
            if scale >= MIN_SCALE:
                break
        else:
            continue
        break
    else:
        scale, tallest, bands = max(tried)
        right, bottom = _place(_split_columns(columns, tallest), bands)
    # screen = (canvas + offset) * scale: the graph's box centred in the view
    centre = ((VIEW[0] + VIEW[2]) / 2, (VIEW[1] + VIEW[3]) / 2)
    offset = [round(centre[0] / scale - right / 2, 2), round(centre[1] / scale - bottom / 2, 2)]
    workflow["extra"] = {**workflow.get("extra", {}), "ds": {"scale": round(scale, 4), "offset": offset}}
    for node in workflow["nodes"]:
        _add_model_entries(node)
    return workflow


def _add_model_entries(node: dict) -> None:
    values = node.get("widgets_values") or []
    entries = [{"name": v, "url": RELEASED_FILES[v][0], "directory": RELEASED_FILES[v][1]}
               for v in values if isinstance(v, str) and v in RELEASED_FILES]
    if entries:
        node.setdefault("properties", {})["models"] = entries


def screen_boxes(workflow: dict) -> dict[int, tuple[float, float, float, float]]:
    """Each node's box (title bar included) in editor-canvas pixels under the workflow's view."""
    scale, (dx, dy) = workflow["extra"]["ds"]["scale"], workflow["extra"]["ds"]["offset"]
    return {n["id"]: ((n["pos"][0] + dx) * scale, (n["pos"][1] - TITLE_HEIGHT + dy) * scale,
                      (n["pos"][0] + n["size"][0] + dx) * scale, (n["pos"][1] + n["size"][1] + dy) * scale)
            for n in workflow["nodes"]}


# --------------------------------------------------------------------------------------- templates

def template(source: Path) -> tuple[str, dict]:
    """(file stem, workflow) of the template made from one source workflow."""
    title, description = title_of(source)
    workflow = laid_out(json.loads(source.read_text(encoding="utf-8")))
    workflow["extra"]["template"] = {"title": title, "description": description, "source": f"workflows/editor/{source.name}"}
    return title, workflow


def thumbnail(workflow: dict, title: str) -> bytes:
    """A JPEG of the graph's boxes (our nodes amber, core nodes grey) under the title."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", THUMBNAIL_SIZE, (24, 26, 31))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=26)
    draw.text((20, 16), title.replace("Hotshot-XL - ", ""), fill=(240, 240, 240), font=font)
    draw.text((20, 50), "Hotshot-XL", fill=(230, 160, 60), font=ImageFont.load_default(size=18))
    boxes = screen_boxes(workflow)
    left, top = min(b[0] for b in boxes.values()), min(b[1] for b in boxes.values())
    right, bottom = max(b[2] for b in boxes.values()), max(b[3] for b in boxes.values())
    area = (20, 90, THUMBNAIL_SIZE[0] - 20, THUMBNAIL_SIZE[1] - 16)
    fit = min((area[2] - area[0]) / (right - left), (area[3] - area[1]) / (bottom - top))
    # centred in the area
    x0 = area[0] + ((area[2] - area[0]) - (right - left) * fit) / 2
    y0 = area[1] + ((area[3] - area[1]) - (bottom - top) * fit) / 2

    def place(box):
        return (x0 + (box[0] - left) * fit, y0 + (box[1] - top) * fit,
                x0 + (box[2] - left) * fit, y0 + (box[3] - top) * fit)

    centres = {}
    for node in workflow["nodes"]:
        box = place(boxes[node["id"]])
        centres[node["id"]] = box
        ours = node["type"].startswith("HotshotXL")
        draw.rounded_rectangle(box, radius=4, fill=(70, 52, 28) if ours else (55, 58, 66),
                               outline=(230, 160, 60) if ours else (140, 145, 155), width=2)
    for _, source, _, target, _, _ in workflow["links"]:
        a, b = centres[source], centres[target]
        draw.line(((a[2], (a[1] + a[3]) / 2), (b[0], (b[1] + b[3]) / 2)), fill=(120, 200, 160), width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def dump(workflow: dict) -> str:
    return json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    TEMPLATES.mkdir(exist_ok=True)
    written = set()
    for source in sorted(SOURCES.glob("*.json")):
        workflow = json.loads(source.read_text(encoding="utf-8"))
        source.write_text(dump(laid_out(workflow)), encoding="utf-8")
        title, made = template(source)
        (TEMPLATES / f"{title}.json").write_text(dump(made), encoding="utf-8")
        (TEMPLATES / f"{title}.jpg").write_bytes(thumbnail(made, title))
        written |= {f"{title}.json", f"{title}.jpg"}
    for stale in TEMPLATES.iterdir():
        if stale.name not in written:
            stale.unlink()
    print(f"wrote {len(written) // 2} templates to {TEMPLATES}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
