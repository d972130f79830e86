"""The direction of imports: keys <- builders <- builds <- copr_api, and no cycle through builds/services.

Imports are read from the source with `ast`, including those inside functions, which hide a
cycle from Python but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("keys", "builders", "builds", "copr_api", "coprssh")


def modules_of(package: str) -> dict[str, Path]:
    """Module name → file for every module of `package` (migrations aside)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    """Every module `path` imports, at module level or inside a function (`from x import y` gives x and x.y)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def way_back(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest chain of imports from `start` back to itself (start repeated at the end), or None."""
    paths = [[start]]
    seen: set[str] = set()
    while paths:
        path = paths.pop(0)
        for target in sorted(graph.get(path[-1], ())):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                paths.append([*path, target])
    return None


def graph_of(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the modules among `files` that it imports."""
    return {name: imports_of(path, name) & set(files) for name, path in files.items()}


def test_way_back_finds_a_cycle_hidden_in_a_function(tmp_path):
    # The control: the checker below would pass vacuously if it could not see this.
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    graph = graph_of({name: tmp_path / f"{name}.py" for name in ("a", "b")})
    assert way_back(graph, "a") == ["a", "b", "a"]
    assert way_back(graph, "b") == ["b", "a", "b"]


def test_way_back_finds_a_cycle_through_another_module_and_a_package(tmp_path):
    # pkg.a imports, inside a function, a helper that imports pkg, whose __init__ imports pkg.a.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg.a import run\n")
    (tmp_path / "pkg" / "a.py").write_text("def run():\n    from helpers import tool\n")
    (tmp_path / "pkg" / "b.py").write_text("from helpers import tool\n")
    (tmp_path / "helpers.py").write_text("from pkg import run\n")
    graph = graph_of(
        {
            "pkg": tmp_path / "pkg" / "__init__.py",
            "pkg.a": tmp_path / "pkg" / "a.py",
            "pkg.b": tmp_path / "pkg" / "b.py",
            "helpers": tmp_path / "helpers.py",
        }
    )
    assert way_back(graph, "pkg.a") == ["pkg.a", "helpers", "pkg", "pkg.a"]
    assert way_back(graph, "pkg.b") is None  # it imports the cycle, but nothing imports it back


def test_no_module_of_builds_services_imports_one_that_imports_it_back():
    # Through any module of the project, at module level or inside a function, and through
    # the package's __init__ (a module importing `from builds.services import …` counts).
    modules = {name: path for app in APPS for name, path in modules_of(app).items()}
    services = [name for name in modules if name == "builds.services" or name.startswith("builds.services.")]
    assert len(services) >= 6
    graph = graph_of(modules)
    loops = {name: way_back(graph, name) for name in services}
    assert {name: loop for name, loop in loops.items() if loop is not None} == {}


def test_apps_depend_one_way():
    # keys <- builders <- builds <- copr_api: an app imports nothing of the apps that use it.
    forbidden = {
        "keys": ("builders", "builds", "copr_api"),
        "builders": ("builds", "copr_api"),
        "builds": ("copr_api",),
    }
    wrong = []
    for app, users in forbidden.items():
        for name, path in modules_of(app).items():
            for imported in imports_of(path, name):
                if imported.split(".")[0] in users:
                    wrong.append(f"{name} imports {imported}")
    assert wrong == []
