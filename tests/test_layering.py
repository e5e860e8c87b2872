"""The package's layering, checked on its source: nothing imports upwards or sideways, no private
name is borrowed across modules, and no import of the package hides inside a function.

    cli -> pipeline | evaluation | export | compat -> methods | metrics | models
        -> targets | localize | images | render -> ops -> errors, _validate, _files, _progress

A component may import its own modules and anything in a lower layer; the three pipelines
(explain, video, folder) share ``pipeline``'s other modules but never import each other.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "actcam_ext"

LAYERS = {
    "errors": 0, "_version": 0, "_C": 0, "_validate": 0.5, "_files": 0.5, "_progress": 0.5,
    "ops": 1,
    "targets": 2, "localize": 2, "images": 2, "render": 2,
    "methods": 3, "metrics": 3, "models": 3,
    "pipeline": 4, "evaluation": 4, "export": 4, "compat": 4,
    "cli": 5,
    "__init__": 6, "__main__": 6,
}
PIPELINES = {"explain", "video", "folder"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _component(parts) -> str:
    return parts[0]


def _resolve(parts, node: ast.ImportFrom) -> list:
    """The package-relative dotted parts a relative or absolute ``from`` import names."""
    is_pkg = parts[-1] == "__init__"
    here = list(parts[:-1]) if not is_pkg else list(parts[:-1])
    if node.level:
        base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
        return base + (node.module.split(".") if node.module else [])
    if node.module and node.module.split(".")[0] == "actcam_ext":
        return node.module.split(".")[1:]
    return None


def _imports(tree, parts):
    """(target parts, imported names, inside a function?) for every import of the package."""
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                target = _resolve(parts, child)
                if target is not None:
                    out.append((target, [a.name for a in child.names], inner, child.lineno))
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] == "actcam_ext":
                        out.append((a.name.split(".")[1:], [], inner, child.lineno))
            visit(child, inner)

    visit(tree, False)
    return out


def _is_module(target: list, name: str) -> bool:
    base = PACKAGE.joinpath(*target, name) if target else PACKAGE / name
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists() or name == "_C"


def _violations():
    found = []
    for path, parts in _modules():
        tree = ast.parse(path.read_text(), str(path))
        me = _component(parts)
        for target, names, in_func, line in _imports(tree, parts):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if in_func:
                found.append(f"{where}: function-local import of actcam_ext.{'.'.join(target)}")
            for name in names:
                if name.startswith("_") and not name.startswith("__") and not _is_module(target, name):
                    found.append(f"{where}: borrows the private name {name} of actcam_ext.{'.'.join(target)}")
            heads = [[*target, n] for n in names if _is_module(target, n)] or [target]
            for full in heads:
                other = full[0] if full else "__init__"
                if other == me:
                    if me == "pipeline" and len(parts) > 1 and parts[1] in PIPELINES and len(full) > 1 \
                            and full[1] in PIPELINES and full[1] != parts[1]:
                        found.append(f"{where}: pipeline {parts[1]} imports pipeline {full[1]}")
                    continue
                if other not in LAYERS or me not in LAYERS:
                    found.append(f"{where}: {me} -> {other}: a component missing from the layer table")
                elif LAYERS[other] >= LAYERS[me]:
                    kind = "sideways" if LAYERS[other] == LAYERS[me] else "upwards"
                    found.append(f"{where}: {me} imports {kind} from {other}")
    return found


def test_every_component_has_a_layer():
    components = {_component(parts) for _, parts in _modules()}
    assert components <= set(LAYERS), components - set(LAYERS)


def test_no_upward_sideways_private_or_hidden_imports():
    assert _violations() == []


def test_the_checker_catches_violations(tmp_path, monkeypatch):
    """The checker itself: a fake package with one of each violation."""
    fake = tmp_path / "actcam_ext"
    for rel, text in {
        "errors.py": "",
        "ops/__init__.py": "from ..methods import GradCAM\n",                       # upwards
        "methods/__init__.py": "from ..metrics import x\nfrom ..ops._native import _warned\n",  # sideways, private
        "metrics.py": "def f():\n    from .ops import cam\n",                       # hidden
        "pipeline/__init__.py": "",
        "pipeline/video.py": "from .folder import explain_folder\n",                 # pipeline -> pipeline
        "pipeline/folder.py": "",
        "ops/_native.py": "",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    found = "\n".join(_violations())
    for needle in ("ops imports upwards from methods", "methods imports sideways from metrics",
                   "borrows the private name _warned", "function-local import of actcam_ext.ops",
                   "pipeline video imports pipeline folder"):
        assert needle in found, (needle, found)
