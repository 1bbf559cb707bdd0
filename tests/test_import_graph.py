"""The layout's boundaries (DESIGN.md §2), proven from the import graph of the source itself.

Every module of the project is parsed with `ast`; every import counts, wherever it stands:
at the top, inside a function (a late import), under `if TYPE_CHECKING:`. Importing `a.b.c`
also imports the packages `a` and `a.b` (their `__init__` runs first), so those count too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("studio", "dramas", "characters")
# The only platform modules that may name the domain apps: they compose the studio.
COMPOSITION_ROOTS = {"studio.urls", "studio.routing", "studio.asgi", "studio.settings"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for top in (*APPS, "tests"):
        for path in (ROOT / top).rglob("*.py"):
            found[module_name(path)] = path
    found["manage"] = ROOT / "manage.py"
    return found


MODULES = project_modules()


def imported_names(name: str, path: Path) -> set[str]:
    """Every module name `name` imports (absolute; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.add(target)
            # `from a import b` imports the module a.b when there is one.
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in names if n}


def with_packages(names: set[str]) -> set[str]:
    """The names, and every package each of them sits in."""
    result = set(names)
    for name in names:
        parts = name.split(".")
        result.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return result


GRAPH = {
    name: {
        other
        for other in with_packages(imported_names(name, path))
        if other in MODULES and other != name
    }
    for name, path in MODULES.items()
}
IMPORTS = {name: with_packages(imported_names(name, path)) for name, path in MODULES.items()}


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def importers(*, of: str, among) -> list[str]:
    return sorted(
        f"{name} imports {other}" for name in among for other in IMPORTS[name] if under(other, of)
    )


def product(name: str) -> bool:
    return name.split(".")[0] in APPS


def test_it_sees_the_whole_project():
    # Sanity: the parse found the modules the rules are about.
    for expected in ("studio.jobs.worker", "dramas.consumers", "characters.consistency"):
        assert expected in MODULES
    assert "dramas.models" in GRAPH["dramas.consumers"]


def test_the_platform_imports_no_domain_app_except_its_composition_roots():
    platform = [
        name
        for name in MODULES
        if under(name, "studio") and name not in COMPOSITION_ROOTS and ".migrations" not in name
    ]
    assert importers(of="dramas", among=platform) == []
    assert importers(of="characters", among=platform) == []


def test_characters_never_import_dramas():
    assert importers(of="dramas", among=[n for n in MODULES if under(n, "characters")]) == []


def test_the_job_engine_imports_no_provider_and_no_domain_app():
    engine = [name for name in MODULES if under(name, "studio.jobs")]
    for other in ("studio.providers", "dramas", "characters"):
        assert importers(of=other, among=engine) == []


def test_no_product_module_imports_django_test():
    assert importers(of="django.test", among=[n for n in MODULES if product(n)]) == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_there_is_no_import_cycle_among_the_project_modules():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_it_counts_late_and_type_checking_imports(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from dramas.models import Take\n"
        "def later():\n"
        "    import characters.faces\n"
        "    from . import sibling\n"
    )
    names = with_packages(imported_names("studio.sample", source))
    assert {"dramas", "dramas.models", "characters.faces", "studio.sibling"} <= names
