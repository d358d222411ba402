"""Job C's input journal: every input an account book applied, in the order it applied them.

Job C appends each input it takes to ``risk_journal`` before applying it, and applies
only what it journaled, so an account's decisions, orders and states are a pure
function of its journal: a crash resumes from it, and ``tradeflow risk replay`` folds
it (docs/risk-audit.md).
"""

from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.base import Name, Price, Record, UtcDatetime


class JournalKind(StrEnum):
    """What an entry carries (and which ``AccountBook`` method applies it)."""

    SIGNAL = "SIGNAL"
    FILL = "FILL"
    ACCOUNT = "ACCOUNT"
    SYMBOL_LIMIT = "SYMBOL_LIMIT"
    CONTROL = "CONTROL"
    MARK = "MARK"
    ROUTE = "ROUTE"
    VENUE = "VENUE"
    INSTRUMENT = "INSTRUMENT"


class JournalMark(BaseModel):
    """A market_data tick an account was marked at (or a signal was priced at)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Name
    price: Price
    ts: UtcDatetime
    partition: int
    offset: int


class JournalEntry(Record):
    """One input of one account book, at its place (``seq``) in the account's order.

    ``stream``/``partition``/``offset`` say where the input was read; ``record`` is the
    input record's fields (None for a MARK, whose tick is ``mark``). A SIGNAL carries
    in ``mark`` the last tick of its symbol at or before the signal's event time.
    """

    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    account: Name
    seq: int = Field(ge=1)
    kind: JournalKind
    stream: Name
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    record: dict[str, Any] | None = None
    mark: JournalMark | None = None
    market_ts: UtcDatetime | None = None
    """For a SIGNAL: the time of its symbol's newest tick when it was released (what
    STALE_SIGNAL compares the signal's time with); None when no tick was seen."""
    ts: UtcDatetime

    @field_validator("record")
    @classmethod
    def _finite_numbers(cls, record: dict[str, Any] | None) -> dict[str, Any] | None:
        # a record is a written record's JSON fields (``model_dump(mode="json")``, decimals
        # as strings): Infinity/NaN are no JSON values and would not read back equal (NaN
        # != NaN), and a number no float holds exactly, which the decode reads as a
        # Decimal, would be written back as a string
        if record is not None and not _all_finite(record):
            raise ValueError("a number in the record is not a finite float")
        return record


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return False
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True
