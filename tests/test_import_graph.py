"""The house's arrows, read from the source with `ast` (nothing is imported): no import cycle inside
`model/` or inside `nodes/`, nor between `model/`'s sub-packages (train/ and caption/ never import each other); `model/` never imports `nodes/` or ComfyUI; the network never reaches the
trainer. Imports inside functions count too: a lazy import is still an arrow. Each rule is shown to fail
on a planted violation, in a synthetic graph and in a copy of `model/`."""

import ast
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Top-level names of the host: `model/` must run without any of them.
COMFYUI_MODULES = {"comfy", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server", "execution",
                   "latent_preview", "node_helpers"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, packages=("model", "nodes")) -> dict[str, set[str]]:
    """{module: modules it imports}, dotted from `root` (the repo: `model.network.unet`). Relative imports
    are resolved; absolute ones are kept as written (`torch`, `comfy.sd`)."""
    files = {module_name(p, root): p for package in packages for p in (root / package).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        arrows = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                arrows.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    base = node.module
                else:
                    up = package[: len(package) - node.level + 1] if node.level > 1 else package
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import host`: the arrow goes to the submodule
                    target = f"{base}.{alias.name}"
                    arrows.add(target if target in files else base)
        arrows.discard(name)
        graph[name] = arrows
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """`model/`'s graph with each sub-package as one node (model.train.cli -> model.train)."""
    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages = {}
    for name, arrows in graph.items():
        if name.startswith("model."):
            node = packages.setdefault(package(name), set())
            node.update(package(t) for t in arrows if t.startswith("model.") and package(t) != package(name))
    return packages


def violations(graph: dict[str, set[str]]) -> list[str]:
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    problems += [f"sub-packages import each other: {' <-> '.join(c)}" for c in cycles(package_graph(graph))]
    for name, arrows in sorted(graph.items()):
        if not name.startswith("model"):
            continue
        for target in sorted(arrows):
            top = target.split(".")[0]
            if target.startswith("nodes") or (top in COMFYUI_MODULES and top != "nodes") or top == "nodes":
                problems.append(f"{name} imports {target} (model/ must not import nodes/ or ComfyUI)")
    for name in sorted(graph):
        if name == "model.network" or name.startswith("model.network."):
            reached = sorted(m for m in reachable(graph, name) if m == "model.train" or m.startswith("model.train."))
            if reached:
                problems.append(f"{name} reaches the trainer: {', '.join(reached)}")
    return problems


def test_the_house_has_no_cycles_and_no_wrong_way_arrows():
    graph = import_graph(REPO_ROOT)
    assert "model.network.unet" in graph and "nodes.sampling" in graph  # the walk found the house
    assert violations(graph) == []


def test_each_rule_fails_on_a_synthetic_graph():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    bad = {"model.network.unet": {"model.network.blocks"}, "model.network.blocks": {"model.files.x"},
           "model.files.x": {"model.train.graph"}, "model.train.graph": set(),
           "model.pipeline": {"comfy.sd", "nodes.host"}, "nodes.host": set()}
    problems = violations(bad)
    assert violations({"model.train.cli": {"model.caption.captioner"}, "model.caption.captioner": {"model.train.data"},
                       "model.train.data": set()}) == ["sub-packages import each other: model.caption <-> model.train"]
    assert any("model.network.unet reaches the trainer: model.train.graph" in p for p in problems)
    assert any("model.pipeline imports comfy.sd" in p for p in problems)
    assert any("model.pipeline imports nodes.host" in p for p in problems)


def test_each_rule_fails_on_a_planted_import_in_a_copy_of_the_pack(tmp_path):
    for package in ("model", "nodes"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))

    def plant(relative: str, line: str):
        path = tmp_path / relative
        path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {line}\n", encoding="utf-8")

    assert violations(import_graph(tmp_path)) == []
    plant("model/network/blocks.py", "from ...model.pipeline import load_pipeline")  # pipeline -> network -> pipeline
    plant("model/network/norms.py", "from ..train import objective")
    plant("model/media/video.py", "import comfy.model_management")
    plant("nodes/host.py", "from .sampling import HotshotXLSampler")  # sampling -> host -> sampling
    problems = violations(import_graph(tmp_path))
    assert any(p.startswith("import cycle") and "model.pipeline" in p and "model.network.blocks" in p for p in problems)
    assert any(p.startswith("import cycle") and "nodes.host" in p and "nodes.sampling" in p for p in problems)
    assert any("model.network.norms reaches the trainer" in p for p in problems)
    assert any("model.media.video imports comfy.model_management" in p for p in problems)
