"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import _pytest.assertion.util as _assertion_util
import pytest

from connectors.registry import Connectors
from connectors.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of the local profile with a fresh embedded store."""
    return load_settings(data_dir=tmp_path / "data", profile="local")


@pytest.fixture
def connectors(settings: Settings) -> Connectors:
    """The registry over the fresh embedded store."""
    return Connectors(settings)


# pytest explains a failed ``==`` between two containers with a full diff, which on
# thousands of records (recovery tests compare whole streams) runs for many minutes.
# Above this size, say what differs in a few lines instead.
_BIG = 2000


def _bounded_compare(op: str, left: object, right: object, **kwargs: object) -> Iterator[str]:
    sized = (list, tuple, dict, set, frozenset)
    if op == "==" and isinstance(left, sized) and isinstance(right, sized):
        if max(len(left), len(right)) > _BIG:
            yield f"{type(left).__name__} of {len(left)} == {type(right).__name__} of {len(right)}"
            if isinstance(left, dict) and isinstance(right, dict):
                only_l, only_r = left.keys() - right.keys(), right.keys() - left.keys()
                differ = [k for k in left.keys() & right.keys() if left[k] != right[k]]
                yield f"keys only left: {len(only_l)}, only right: {len(only_r)}"
                yield f"values differ: {len(differ)}"
                for k in differ[:3]:
                    yield f"  {k!r}: {left[k]!r} != {right[k]!r}"
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                first = next((i for i, (a, b) in enumerate(zip(left, right, strict=False)) if a != b), None)
                yield f"first differing index: {first}"
            return
    yield from _original_compare(op, left, right, **kwargs)  # type: ignore[arg-type]


_original_compare = _assertion_util.assertrepr_compare
_assertion_util.assertrepr_compare = _bounded_compare  # type: ignore[assignment]
