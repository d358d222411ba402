"""The lazy backend packages: what type checkers see is what loads at run time."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

PACKAGES = ["connectors.kafka", "connectors.fluss"]


def typed_imports(package: str) -> dict[str, str]:
    """Return name -> module of the imports under ``if TYPE_CHECKING:`` in a package's __init__."""
    tree = ast.parse(Path(importlib.util.find_spec(package).origin).read_text())  # type: ignore[union-attr]
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                assert imp.module is not None
                out |= {alias.name: imp.module for alias in imp.names}
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_typed_imports_name_the_lazy_exports_and_each_loads(package: str) -> None:
    pkg = importlib.import_module(package)
    exports = pkg._EXPORTS
    assert typed_imports(package) == exports
    assert pkg.__all__ == sorted(exports)
    for name, module in exports.items():
        assert getattr(pkg, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pkg.Nope  # noqa: B018 - the attribute access is the test
