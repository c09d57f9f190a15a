"""The code's layers run one way, with no import loop: every import is parsed (inside functions too), and the
order is the one README's Layout states. A function-level import must be a heavy library's, marked `# lazy`."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cxr_core", "train", "cxr_app", "app_pages")
# Lowest first: a module may import its own layer and those before it, never a later one.
LAYERS = (
    ("cxr_core", "cxr_core.errors", "cxr_core.fileio", "cxr_core.settings", "cxr_core.paths", "cxr_core.formatting"),
    ("cxr_core.inputs",), ("cxr_core.config",), ("cxr_core.safety",), ("cxr_core.model",), ("cxr_core.validation",),
    ("cxr_core.fitting",), ("cxr_core.cases",), ("cxr_core.site",), ("cxr_core.request",), ("cxr_core.dicom",), ("cxr_core.reports",),
    ("cxr_core.cli", "cxr_core.__main__"), ("train",), ("cxr_app",), ("app_pages", "app"),
)
ORDER_SENTENCE = ("Layers, lowest first: errors/fileio/settings/paths/formatting, inputs, config, safety, model, validation, "
                  "fitting, cases, site, request, dicom, reports, cli, train, cxr_app, app_pages")


def layer_of(module: str) -> int:
    best = max(((len(p), i) for i, layer in enumerate(LAYERS) for p in layer
                if module == p or module.startswith(p + ".")), default=None)
    if best is None:
        raise ValueError(f"{module} is in no layer")
    return best[1]


def sources(root: Path = ROOT) -> dict[str, str]:
    """{module name: source} for every module of the product (migrations excluded: Alembic loads them)."""
    out = {"app": (root / "app.py").read_text()}
    for package in PACKAGES:
        for f in (root / package).rglob("*.py"):
            if "migrations" in f.parts:
                continue
            parts = list(f.relative_to(root).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f.read_text()
    return out


def imports(module: str, source: str, known: set[str], is_package: bool) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for each import of a project module."""
    tree = ast.parse(source)
    top = {id(n) for n in tree.body}
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(m) for m in ast.walk(n)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if is_package else module.split(".")[:-1]
            stem = (".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else node.module or "")
            names = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                found.append((name, node.lineno, id(node) not in top))
    return found


def problems(srcs: dict[str, str], packages: set[str] | None = None) -> list[str]:
    """Every cycle, every import against the layer order, and every unmarked or project import inside a
    function, in words."""
    known = set(srcs)
    packages = packages if packages is not None else {m for m in srcs if _is_package(m)}
    out, graph = [], {m: set() for m in srcs}
    for module, source in srcs.items():
        lines = source.splitlines()
        for name, line, inside in imports(module, source, known, module in packages):
            graph[module].add(name)
            if layer_of(name) > layer_of(module):
                out.append(f"{module}:{line} imports {name}, a later layer")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        library = "." if getattr(inner, "level", 0) else (
                            inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name).split(".")[0]
                        if library in sys.stdlib_module_names:
                            out.append(f"{module}:{inner.lineno} imports the standard library inside a function")
                        elif "# lazy" not in lines[inner.end_lineno - 1]:
                            out.append(f"{module}:{inner.lineno} imports inside a function without a `# lazy` mark")
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def _is_package(module: str) -> bool:
    path = ROOT / Path(*module.split("."))
    return (path / "__init__.py").is_file()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_code_has_no_import_cycle_and_runs_its_layers_one_way():
    found = problems(sources())
    assert not found, "\n".join(found)


def test_the_readme_states_the_same_order():
    assert ORDER_SENTENCE in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("edit, expected", [
    ({"cxr_core.safety.ood": "from ..model.predict import Predictor\n"}, "a later layer"),
    ({"cxr_core.model.decision": "def f():\n    from .predict import Predictor  # lazy\n"}, "import cycle"),
    ({"cxr_core.model.decision": "def f():\n    import json\n"}, "standard library inside a function"),
    ({"cxr_core.model.decision": "def f():\n    import keras\n"}, "without a `# lazy` mark"),
])
def test_the_check_fails_on_a_cycle_a_later_layer_and_an_unmarked_lazy_import(edit, expected):
    srcs = sources()
    for module, extra in edit.items():
        srcs[module] += "\n" + extra
    assert any(expected in p for p in problems(srcs)), expected
