"""Every import points down the layers (ARCHITECTURE.md, "Layers"): a module may import its own
package and any lower layer, never a higher one nor a sibling package of its own layer. Every import
counts, the ones inside functions too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streams"

# Lowest first. A module's layer is that of its longest prefix listed here ("streams": itself only).
LAYERS: tuple[tuple[str, ...], ...] = (
    # the package itself (its version, nothing imported), and the native extension the core may use
    ("streams", "streams.errors", "streams._native"),
    ("streams.core",),
    ("streams.state", "streams.logs"),
    ("streams.settings",),
    ("streams.io",),
    ("streams.kafka",),
    ("streams.cli",),
    ("streams.__main__",),
)


def unit_of(module: str) -> tuple[int, str]:
    """(layer, the listed name the module belongs to)."""
    best: tuple[int, str] | None = None
    for rank, names in enumerate(LAYERS):
        for name in names:
            inside = module == name or (name != "streams" and module.startswith(name + "."))
            if inside and (best is None or len(name) > len(best[1])):
                best = (rank, name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) of every import of the project's own modules in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "streams" or name.startswith("streams.")]


def upward_imports(root: Path = PACKAGE) -> list[str]:
    bad: list[str] = []
    for path in sorted(root.rglob("*.py")):
        here = module_name(path, root)
        rank, unit = unit_of(here)
        for line, target in imports_of(path, root):
            their_rank, their_unit = unit_of(target)
            if their_unit == unit or their_rank < rank:
                continue
            bad.append(
                f"{path.relative_to(root.parent)}:{line}: {here} (layer {rank}) imports {target} "
                f"(layer {their_rank})"
            )
    return bad


def test_every_import_points_down() -> None:
    assert upward_imports() == []


def test_the_check_sees_upward_lazy_and_sibling_imports(tmp_path: Path) -> None:
    """The checker itself: an upward import (even inside a function) and one between two packages of
    the same layer are found; a downward one and one within a package are not."""
    root = tmp_path / "streams"
    for folder in ("core", "state", "kafka", "io"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "core" / "a.py").write_text("def f():\n    from streams.kafka import app\n")
    (root / "core" / "b.py").write_text("from streams.core import a\nfrom . import a as again\n")
    (root / "state" / "s.py").write_text("from streams.logs import x\nfrom streams.core.a import f\n")
    (root / "kafka" / "k.py").write_text("import streams.io.sources\nfrom ..state import s\n")
    found = upward_imports(root)
    assert [row.split(": ", 1)[1].split(" (")[0] for row in found] == [
        "streams.core.a",  # core -> kafka, lazily
        "streams.state.s",  # state -> logs: same layer, another package
    ]
