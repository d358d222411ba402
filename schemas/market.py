"""Market data in, indicators out: the records of Job A."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, FiniteFloat, model_validator

from schemas.base import Name, NonNegative, Price, Record, Stamp, UtcDatetime

INDICATOR_COLUMN = re.compile(r"^(sma|ema|rsi)_\d+$")


class MarketData(Record):
    """One trade tick (or the close of a bar) for a symbol.

    ``wm`` is the feed's watermark: its promise that no later tick for this source
    will carry ``ts < wm``. Job A uses it to decide what is late (see README).
    """

    key_fields: ClassVar[tuple[str, ...]] = ("symbol",)

    symbol: Name
    ts: UtcDatetime
    price: Price
    volume: NonNegative
    wm: UtcDatetime | None = None
    seq: int | None = Field(default=None, ge=0)
    """The source's sequence number of the tick within its symbol (RptSeq of a FIX venue),
    when the source has one; feeds without one leave it out."""
    entered_at: Stamp = None
    """Wall-clock time the tick entered the system (the feed writing it to market_data);
    every record derived from it carries the same value (README, "Latency")."""

    @model_validator(mode="after")
    def _symbol_not_blank(self) -> MarketData:
        if not self.symbol.strip():
            raise ValueError("symbol must not be blank")
        return self


class SmaWide(Record):
    """One wide row of indicators per input tick, keyed by symbol.

    Besides the fixed columns it holds one column per configured indicator period,
    named ``sma_<n>``, ``ema_<n>``, ``rsi_<n>`` (float64, null until the window is
    full). The set of periods is configuration, so those columns are validated by
    name rather than declared.
    """

    model_config = ConfigDict(frozen=True, extra="allow")
    key_fields: ClassVar[tuple[str, ...]] = ("symbol",)

    symbol: Name
    ts: UtcDatetime
    price: FiniteFloat
    volume: FiniteFloat
    vwap: FiniteFloat | None = None
    seq: int = 0
    """Position of the tick within its symbol's stream (0-based), for deterministic ids."""
    entered_at: Stamp = None
    """The tick's ``entered_at``, carried."""

    @model_validator(mode="before")
    @classmethod
    def _check_indicator_columns(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fixed = cls.model_fields
            for name, value in data.items():
                if name in fixed:
                    continue
                if not INDICATOR_COLUMN.match(name):
                    raise ValueError(f"unknown column {name!r}")
                if value is not None and (
                    not isinstance(value, int | float) or not math.isfinite(value)
                ):
                    raise ValueError(f"{name} must be a finite number or null")
        return data

    def indicator(self, name: str) -> float | None:
        """Return an indicator column by name (``sma_5``, ``rsi_14``, ``vwap``), or None."""
        if name == "vwap":
            return self.vwap
        extra = self.__pydantic_extra__ or {}
        value = extra.get(name)
        return None if value is None else float(value)

    def indicators(self) -> dict[str, float | None]:
        """Return every indicator column, ``vwap`` included."""
        out: dict[str, float | None] = dict(self.__pydantic_extra__ or {})
        out["vwap"] = self.vwap
        return out
