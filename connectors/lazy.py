"""Package attributes that load their module on first use (PEP 562).

A backend package (``connectors.kafka``, ``connectors.fluss``) exports its classes this
way, so importing the package for its settings model alone does not import the
backend's client library: the other profiles never load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's ``__getattr__`` and ``__dir__`` for ``exports`` (name -> module).

    A name is imported from its module on first use and kept in ``namespace`` (the
    package's ``globals()``), so later uses cost a dict lookup.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module protocol's name
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
