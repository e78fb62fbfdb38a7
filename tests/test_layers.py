"""The package's imports form layers that only point down, with no circle: read from the source
(every ``import``, at module level or inside a function), not from what happens to be imported."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "proxylab"

# bottom first; a module may import modules of its own layer or below, never above, and never in a circle
LAYERS = [
    ("settings and helpers", {"config", "files", "gaussian"}),
    ("operator and spec", {"rules", "proxygrad", "ascent"}),
    ("model surgery", {"function_calls", "swap"}),
    ("models, AM and training", {"models", "architectures", "data", "regularizers", "toys", "am", "certify",
                                 "resnet_stats", "train", "plotting", "with_lucent"}),
    ("grids and shipped results", {"results", "report", "runner", "training_grids", "stats_grids", "am_grids",
                                   "result_figures", "experiments"}),
    ("notebooks' widgets, CLI, the package", {"widgets", "explorer", "cli", "__main__", "__init__"}),
]


def imports(path: Path) -> set[str]:
    """The package modules that ``path`` imports (``"__init__"`` for the package itself)."""
    def module(dotted: str, names=()) -> set[str]:  # "" or "proxylab" is the package: its names may be submodules
        if dotted:
            return {dotted.split(".")[0]}
        return {a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__" for a in names}

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= module(node.module or "", node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "proxylab":
            found |= module(node.module.partition(".")[2], node.names)
        elif isinstance(node, ast.Import):
            found |= {a.name.partition(".")[2] or "__init__" for a in node.names if a.name.split(".")[0] == "proxylab"}
    return found - {path.stem}


def graph() -> dict[str, set[str]]:
    return {p.stem: imports(p) for p in sorted(PACKAGE.glob("*.py"))}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer, every module in no layer, and every circle."""
    layer = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
    out = [f"{m} is in no layer of LAYERS" for m in edges if m not in layer]
    out += [f"{m} ({LAYERS[layer[m]][0]}) imports {t} ({LAYERS[layer[t]][0]}), a layer above it"
            for m, targets in edges.items() for t in sorted(targets)
            if m in layer and t in layer and layer[t] > layer[m]]
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                out.append("circle: " + " -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return out


def test_imports_point_down_the_layers_without_circles():
    assert violations(graph()) == []


def test_every_layer_names_only_modules_that_exist():
    assert set().union(*(mods for _, mods in LAYERS)) == {p.stem for p in PACKAGE.glob("*.py")}


def test_the_check_finds_an_upward_import_a_lazy_one_and_a_circle(tmp_path):
    edges = graph()
    planted = violations({**edges, "rules": edges["rules"] | {"am"}})
    assert "rules (operator and spec) imports am (models, AM and training), a layer above it" in planted
    assert any(v.startswith("circle: ") and "rules -> am" in v for v in planted)
    module = tmp_path / "proxygrad.py"
    module.write_text("def f():\n    from .am import evaluating\n    from proxylab import swap\n")
    assert imports(module) == {"am", "swap"}
    circle = violations({**edges, "function_calls": edges["function_calls"] | {"swap"}})
    assert circle == ["circle: swap -> function_calls -> swap"]
