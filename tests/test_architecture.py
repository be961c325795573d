"""The import direction, enforced: the core never imports the plug-in or the sandbox, and the mapping stays pure.

Read from the source (every import statement, at any depth, including those inside functions), so a lazy import
cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "integration"
SANDBOX = CORE / "sandbox"
MAPPING = CORE / "mapping"


def modules(folder: Path, *, exclude: Path | None = None) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if exclude is None or exclude not in p.parents)


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _nodes(tree: ast.AST):
    """Every node, leaving out `if TYPE_CHECKING:` blocks (annotations only, never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _type_checking_only(node):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in `path` names (relative imports resolved), with its line."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = []
    for node in _nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names.append((node.lineno, base))
            names.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return sorted(names)


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for line, name in imported_names(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


def test_the_core_imports_neither_the_plug_in_nor_the_sandbox():
    assert violations(modules(CORE, exclude=SANDBOX), ("backinstock", "integration.sandbox")) == []


def test_the_mapping_imports_no_models_and_no_database():
    forbidden = ("integration.models", "backinstock.models", "django.db", "django.apps", "requests")
    assert violations([*modules(MAPPING), ROOT / "backinstock" / "mapping.py"], forbidden) == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    # A module that imports the plug-in inside a function, and the models relatively, is caught; an import for
    # type annotations only is not an import at run time
    package = tmp_path / "integration" / "mapping"
    package.mkdir(parents=True)
    module = package / "sneaky.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from integration.models import Connection\n"
        "def f():\n    import backinstock.models\n    from ..models import Flow\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert violations([module], ("backinstock", "integration.models")) == [
        "integration/mapping/sneaky.py:5 imports backinstock.models",
        "integration/mapping/sneaky.py:6 imports integration.models",
        "integration/mapping/sneaky.py:6 imports integration.models.Flow",
    ]


@pytest.mark.parametrize("path", modules(CORE / "centra") + modules(CORE / "rule"))
def test_the_api_clients_are_transport_only(path):
    # Centra's and Rule's clients know no processing, delivery or admin
    forbidden = ("integration.processing", "integration.delivery", "integration.admin", "integration.inbound")
    assert violations([path], forbidden) == []
