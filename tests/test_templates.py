"""example_workflows/ (ComfyUI's template browser) is made from workflows/ by tests/make_templates.py
and kept in step; every workflow opens fitted to the view with no overlapping nodes."""

import itertools
import json

import pytest

from tests.make_templates import (MIN_SCALE, RELEASED_FILES, SOURCES, TEMPLATES, VIEW, dump, laid_out, screen_boxes, template,
                                  title_of)

SOURCE_FILES = sorted(SOURCES.glob("*.json"))
REGENERATE = "run `python -m tests.make_templates` and commit workflows/editor/ and example_workflows/"


def test_every_template_is_made_from_its_source():
    made = {template(source)[0]: template(source)[1] for source in SOURCE_FILES}
    assert sorted(p.stem for p in TEMPLATES.glob("*.json")) == sorted(made), REGENERATE
    for title, workflow in made.items():
        assert (TEMPLATES / f"{title}.json").read_text(encoding="utf-8") == dump(workflow), f"{title}: {REGENERATE}"
        thumbnail = (TEMPLATES / f"{title}.jpg").read_bytes()
        assert thumbnail[:3] == b"\xff\xd8\xff" and len(thumbnail) > 2000, title


@pytest.mark.parametrize("source", SOURCE_FILES, ids=[p.name for p in SOURCE_FILES])
def test_sources_are_laid_out(source):
    workflow = json.loads(source.read_text(encoding="utf-8"))
    assert dump(laid_out(workflow)) == source.read_text(encoding="utf-8"), f"{source.name}: {REGENERATE}"


@pytest.mark.parametrize("source", SOURCE_FILES, ids=[p.name for p in SOURCE_FILES])
def test_workflow_opens_fitted_without_overlaps(source):
    workflow = json.loads(source.read_text(encoding="utf-8"))
    boxes = screen_boxes(workflow)
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        apart = box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1] or box_b[3] <= box_a[1]
        assert apart, f"nodes {a} and {b} overlap"
    assert min(b[0] for b in boxes.values()) >= VIEW[0] and min(b[1] for b in boxes.values()) >= VIEW[1]
    assert max(b[2] for b in boxes.values()) <= VIEW[2] and max(b[3] for b in boxes.values()) <= VIEW[3]
    assert workflow["extra"]["ds"]["scale"] >= MIN_SCALE  # the editor draws titles and widgets


def test_released_files_carry_download_entries():
    seen = set()
    for source in SOURCE_FILES:
        for node in json.loads(source.read_text(encoding="utf-8"))["nodes"]:
            for entry in node.get("properties", {}).get("models", []):
                assert entry["name"] in node["widgets_values"]  # the editor matches entries to widget values
                assert entry["url"].startswith("https://huggingface.co/") and entry["url"].endswith(entry["name"])
                assert (entry["url"], entry["directory"]) == RELEASED_FILES[entry["name"]]
                seen.add(entry["name"])
    assert seen == set(RELEASED_FILES)


def test_titles_are_plain_file_names():
    for source in SOURCE_FILES:
        title, description = title_of(source)
        assert title.startswith("Hotshot-XL") and description
        assert not set(title) & set('/\\:*?"<>|%#')  # safe as a file name and in the template URL
