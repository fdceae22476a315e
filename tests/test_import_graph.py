"""The package's import graph: no circles, and no import that runs up the layers.

The layer order is written once, in the notebook names: `nbs/NN[x]_name.ipynb` exports the module named by its
`#| default_exp` line, and `NN` is that module's layer (a letter suffix is a second module of the same layer).
`apps/app.py` sits on the top layer. Every import counts, module-level or inside a function; a string registry
target ("astra_wb.x:Cls", imported by `importlib` when it is asked for) is the sanctioned way to reach a higher
layer and is not an import here.
"""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_LAYER = 99   # apps/app.py is wiring above every library module


def notebook_modules(nbs: Path = ROOT / "nbs") -> dict[str, int]:
    "Module name -> layer, read from each numbered notebook's `#| default_exp` line."
    layers = {}
    for nb in sorted(nbs.glob("[0-9]*.ipynb")):
        layer = int(re.match(r"(\d+)", nb.name).group(1))
        for cell in json.loads(nb.read_text())["cells"]:
            source = "".join(cell["source"])
            found = re.search(r"^#\|\s*default_exp\s+(\S+)", source, re.M)
            if found:
                layers[found.group(1)] = layer
                break
    return layers


def _target(node: ast.AST, package: str) -> list[str]:
    "The `astra_wb` modules one import statement names (relative or absolute)."
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names if a.name.startswith(package + ".")]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:   # `from .x import y`, or `from . import x`
        return [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
    if node.module == package:
        return [a.name for a in node.names]
    if node.module and node.module.startswith(package + "."):
        return [node.module.split(".")[1]]
    return []


def imports_of(path: Path, package: str = "astra_wb") -> set[str]:
    "Every package module `path` imports, at module level or inside a function."
    tree = ast.parse(path.read_text(), filename=str(path))
    return {name for node in ast.walk(tree) for name in _target(node, package)}


def import_graph() -> tuple[dict[str, set[str]], dict[str, int]]:
    "Edges module -> imported modules over the package and the app, and each node's layer."
    layers = notebook_modules()
    graph = {m: imports_of(ROOT / "astra_wb" / f"{m}.py") & set(layers) for m in layers}
    graph["apps.app"] = imports_of(ROOT / "apps" / "app.py") & set(layers)
    layers["apps.app"] = APP_LAYER
    return graph, layers


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    "The strongly connected components with more than one module (Tarjan), each sorted."
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    "Imports from a lower layer to a higher one, as 'a (L) -> b (L)'."
    return [f"{a} ({layers[a]}) -> {b} ({layers[b]})" for a in sorted(graph) for b in sorted(graph[a])
            if b in layers and layers[b] > layers[a]]


def test_every_module_has_a_numbered_notebook():
    layers = notebook_modules()
    modules = {p.stem for p in (ROOT / "astra_wb").glob("*.py") if not p.stem.startswith("_")}
    assert modules - set(layers) == set(), "modules with no numbered notebook (no layer)"


def test_graph_helpers_see_circles_and_upward_imports():
    "The checks below can fail: a hand-made graph with one circle and one upward import."
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set()}
    assert circles(graph) == [["a", "b"]]
    assert upward(graph, {"a": 1, "b": 1, "c": 2}) == ["b (1) -> c (2)"]
    tree = "from .x import y\nimport astra_wb.z\ndef f():\n    from astra_wb import w\n"
    found = {n for node in ast.walk(ast.parse(tree)) for n in _target(node, "astra_wb")}
    assert found == {"x", "z", "w"}


def test_no_import_circles():
    graph, _ = import_graph()
    assert circles(graph) == []


def test_no_import_runs_up_the_layers():
    graph, layers = import_graph()
    assert upward(graph, layers) == []


def test_readme_layout_lists_every_notebook():
    "The README's layer table names every numbered notebook, in the row of its layer."
    readme = (ROOT / "README.md").read_text()
    rows = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| ([^|]*) \|", readme, re.M)}
    missing = [nb.stem for nb in sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
               if f"`{nb.stem}`" not in rows.get(int(re.match(r"\d+", nb.name).group()), "")]
    assert missing == [], "notebooks missing from the README's layer table"


if __name__ == "__main__":   # print the graph: `python tests/test_import_graph.py`
    g, lay = import_graph()
    for m in sorted(g, key=lambda m: (lay[m], m)):
        print(f"{lay[m]:>2} {m:<12} -> {', '.join(sorted(g[m], key=lambda x: (lay.get(x, 0), x)))}")
    print("circles:", circles(g))
    print("upward:", *upward(g, lay), sep="\n  ")
