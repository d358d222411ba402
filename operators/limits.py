"""Read a candidate limits set (``LimitOverrides``) from a JSON or YAML file.

Used by Job C's shadow instance (``flows.portfolio_risk``) and by the risk tools
(``tradeflow risk shadow``); it sits here, below both, so that a flow never imports
the CLI layer. The only I/O is reading the one file named by the caller. See
docs/risk-audit.md for the file's shape.
"""

from __future__ import annotations

import json
from pathlib import Path

from operators.replay import LimitOverrides, LimitsError


class RiskToolError(Exception):
    """A request the tools cannot answer (unknown id, bad limits file): printed, exit 2.

    ``tradeflow.risk_tools`` raises it too and re-exports it; it is defined here because
    ``load_limits`` raises it.
    """


def load_limits(path: Path) -> LimitOverrides:
    """Read a candidate limits set from a JSON or YAML file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RiskToolError(f"cannot read the limits file: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise RiskToolError("reading YAML needs PyYAML (pip install pyyaml); or write the limits "
                                "as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RiskToolError(f"{path}: bad YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RiskToolError(f"{path}: bad JSON: {exc}") from None
    try:
        return LimitOverrides.from_mapping(data)
    except LimitsError as exc:
        raise RiskToolError(f"{path}: {exc}") from None


__all__ = ["RiskToolError", "load_limits"]
