"""The strategy interface, parameter validation and the registry.

A strategy is a small pure class. Built from a config's ``params`` (validated against
its declared ``PARAMS``), it reads one sma_wide row at a time together with its own
per-symbol state and returns at most one ``Intent`` (side, reason, the indicator values
used). The state is plain picklable data created by ``new_state`` and updated in
place by ``on_row``; the flow keeps it in Bytewax state, so it survives restarts.

Adding a strategy is one class and one registration::

    @register("my_rule")
    class MyRule(Strategy[MyState]):
        PARAMS = {"period": Param(int, ge=1)}
        ...

Sizing, order type, limits, enable/disable and the control table are not the
strategy's business: ``operators.strategies.engine`` applies them to every intent.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from schemas.base import Side
from schemas.market import SmaWide

ParamValue = int | float
"""A validated parameter value."""


class StrategyError(ValueError):
    """A strategy config cannot be used; ``str(err)`` is the reason for the dead letter."""


class UnknownStrategyError(StrategyError):
    """No strategy is registered under the name."""


class ParamError(StrategyError):
    """A parameter is unknown, missing or invalid."""


@dataclass(frozen=True, slots=True)
class Param:
    """Declare one numeric parameter: its type, default (None: required) and bounds.

    Bounds are ``gt``/``ge``/``lt``/``le`` as in pydantic. Booleans and strings are
    refused; an ``int`` parameter accepts an integral float (``5.0``), a ``float``
    parameter accepts an int.
    """

    kind: type[int] | type[float]
    default: ParamValue | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    doc: str = ""

    def parse(self, name: str, value: object) -> ParamValue:
        """Return ``value`` as this parameter's type, or raise ``ParamError``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ParamError(f"{name} must be finite, got {value!r}")
        out: ParamValue
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ParamError(f"{name} must be an integer, got {value!r}")
            out = int(value)
        else:
            out = float(value)
        self._check_bounds(name, out)
        return out

    def _check_bounds(self, name: str, value: ParamValue) -> None:
        checks = (
            (self.gt, lambda b: value > b, ">"),
            (self.ge, lambda b: value >= b, ">="),
            (self.lt, lambda b: value < b, "<"),
            (self.le, lambda b: value <= b, "<="),
        )
        for bound, ok, op in checks:
            if bound is not None and not ok(bound):
                raise ParamError(f"{name} must be {op} {bound:g}, got {value!r}")


def parse_params(
    spec: Mapping[str, Param], params: Mapping[str, object], strategy: str
) -> dict[str, ParamValue]:
    """Validate ``params`` against ``spec``: no unknown names, required ones present.

    Every problem is reported at once, e.g. ``sma_cross: unknown param(s) fats;
    missing fast``.
    """
    problems: list[str] = []
    unknown = sorted(set(params) - set(spec))
    if unknown:
        problems.append(f"unknown param(s) {', '.join(unknown)} (known: {', '.join(sorted(spec)) or 'none'})")
    out: dict[str, ParamValue] = {}
    for name, param in spec.items():
        if name not in params:
            if param.default is None:
                problems.append(f"missing {name}")
            else:
                out[name] = param.default
            continue
        try:
            out[name] = param.parse(name, params[name])
        except ParamError as exc:
            problems.append(str(exc))
    if problems:
        raise ParamError(f"{strategy}: {'; '.join(problems)}")
    return out


def _shown(value: ParamValue) -> str:
    """Return a parameter value as messages show it (floats in ``:g`` form)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, slots=True)
class Intent:
    """What a strategy wants on one row: a side, why, and the indicator values it used."""

    side: Side
    reason: str
    indicators: dict[str, float | None]


StateT = TypeVar("StateT")


class Strategy(ABC, Generic[StateT]):
    """A trading rule over sma_wide rows of one symbol at a time.

    Subclasses declare ``PARAMS``, read their validated values from ``self.params`` in
    ``__init__`` (raising ``ParamError`` for cross-parameter problems), and implement
    ``columns``, ``new_state`` and ``on_row``. Instances are immutable after
    ``__init__`` and picklable.
    """

    name: ClassVar[str] = ""
    """Registry name, set by ``register``."""
    PARAMS: ClassVar[Mapping[str, Param]] = {}
    """The parameters this strategy accepts."""

    def __init__(self, params: Mapping[str, object]) -> None:
        self.params: dict[str, ParamValue] = parse_params(self.PARAMS, params, self.name)

    def _require_less(self, low: str, high: str) -> None:
        """Raise ``ParamError`` unless param ``low`` is less than param ``high`` (a cross-parameter rule)."""
        lo, hi = self.params[low], self.params[high]
        if lo >= hi:
            raise ParamError(
                f"{self.name}: {low} must be less than {high}, got {low}={_shown(lo)} {high}={_shown(hi)}"
            )

    @property
    def key(self) -> tuple[str, tuple[tuple[str, ParamValue], ...]]:
        """Return what identifies this rule: name and validated params.

        When the key of the config in force changes, per-symbol state is started
        afresh (the old state described another rule).
        """
        return self.name, tuple(sorted(self.params.items()))

    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """Return the sma_wide columns this rule reads (``sma_5``, ``rsi_14``, ``vwap``)."""

    @abstractmethod
    def new_state(self) -> StateT:
        """Return the per-symbol state before any row was seen."""

    @abstractmethod
    def on_row(self, state: StateT, row: SmaWide) -> Intent | None:
        """Update ``state`` with one row of its symbol; return an intent if the rule fires."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{type(self).__name__}({args})"


S = TypeVar("S", bound=type[Strategy[Any]])

STRATEGIES: dict[str, type[Strategy[Any]]] = {}
"""Registered strategies by name (``sma_cross``, ``rsi_reversion``, ``vwap_deviation``...)."""


def register(name: str) -> Callable[[S], S]:
    """Register a strategy class under ``name`` (a class decorator)."""

    def decorate(cls: S) -> S:
        known = STRATEGIES.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {known.__qualname__}")
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return decorate


def create(name: str, params: Mapping[str, object]) -> Strategy[Any]:
    """Build the registered strategy ``name`` with ``params``, or raise ``StrategyError``."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise UnknownStrategyError(f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})")
    return cls(params)
