"""The imports show the architecture (docs/layout.md): layers, no cycle, no stnlab import inside a function, and
any other import inside a function says why."""

from __future__ import annotations

import ast

from conftest import ROOT

SRC = ROOT / "src"
# Bottom first; a module may import its own layer and the ones before it.
LAYERS = [
    (
        "stnlab",
        "stnlab.errors",
        "stnlab.files",
        "stnlab.markdown",
        "stnlab.geometry",
        "stnlab.contrast_norm",
        "stnlab.metrics",
        "stnlab.noise",
        "stnlab.run_dirs",
        "stnlab.config.checks",  # the one place that checks config values: every layer uses it
        "stnlab.config.schema",
    ),
    ("stnlab.data", "stnlab.models", "stnlab.tracking", "stnlab.config"),
    ("stnlab.training",),
    ("stnlab.evaluation", "stnlab.query", "stnlab.sweeps", "stnlab.viz", "stnlab.bench", "stnlab.cli"),
    ("stnlab.apps",),
]


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted((SRC / "stnlab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text())
    return out


def _layer(module: str) -> int:
    found = [(len(p), i) for i, layer in enumerate(LAYERS) for p in layer if module == p or module.startswith(p + ".")]
    assert found, f"{module} is in no layer of tests/test_layers.py"
    return max(found)[1]


def _imports(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """module -> the stnlab modules it imports (a name imported from a package counts as its submodule)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, tree in modules.items():
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stnlab"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("stnlab")]
            for target in targets:
                while target not in modules:
                    target = target.rpartition(".")[0]
                if target != name and not target.startswith(name + "."):  # a package importing its own parts
                    edges[name].add(target)
    return edges


def _imports_inside_functions() -> list[tuple[str, ast.Import | ast.ImportFrom, list[str]]]:
    """Every import statement inside a function of src/: ``(file:line, node, the file's lines)``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [
                    (f"{path.relative_to(SRC)}:{node.lineno}", node, lines)
                    for node in ast.walk(fn)
                    if isinstance(node, (ast.Import, ast.ImportFrom))
                ]
    return found


def test_no_stnlab_import_inside_a_function():
    nested = [
        where
        for where, node, _ in _imports_inside_functions()
        if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stnlab"))
        or (isinstance(node, ast.Import) and any(a.name.startswith("stnlab") for a in node.names))
    ]
    assert not nested, nested


def test_an_import_inside_a_function_says_why():
    """Only heavy or optional imports wait for their function (W&B, PyAV, onnxruntime, Lightning on the --help
    path), each with its reason on its line or the line above."""
    silent = [
        where
        for where, node, lines in _imports_inside_functions()
        if "#" not in lines[node.lineno - 1] and not lines[node.lineno - 2].lstrip().startswith("#")
    ]
    assert not silent, silent


def test_no_module_imports_a_layer_above_its_own():
    edges = _imports(_modules())
    upward = [f"{m} -> {t}" for m, targets in edges.items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not upward, upward


def test_no_import_cycle():
    edges = _imports(_modules())
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            assert state.get(target) != 1, " -> ".join([*path[path.index(target) :], target])
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
