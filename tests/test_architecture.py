"""The direction of imports: keys <- builders <- builds <- copr_api, and no cycle inside builds/services.

Imports are read from the source with `ast`, including those inside functions, which hide a
cycle from Python but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a list of modules, the first repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def test_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    # The control: the checker below would pass vacuously if it could not see this.
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    graph = {name: imports_of(tmp_path / f"{name}.py", name) & {"a", "b"} for name in ("a", "b")}
    assert cycle_in(graph) == ["a", "b", "a"]


def test_no_module_of_builds_services_imports_one_that_imports_it_back():
    services = {
        name: path
        for name, path in modules_of("builds").items()
        if name.startswith("builds.services.")  # the package's __init__ only re-exports them
    }
    assert len(services) >= 5
    graph = {name: imports_of(path, name) & set(services) for name, path in services.items()}
    assert cycle_in(graph) is None


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
