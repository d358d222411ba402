"""Job C's input journal: every input an account book applied, in the order it applied them.

Job C appends each input it takes to ``risk_journal`` before applying it, and applies
only what it journaled, so an account's decisions, orders and states are a pure
function of its journal: a crash resumes from it, and ``tradeflow risk replay`` folds
it (docs/risk-audit.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Name, Price, Record, UtcDatetime


class JournalKind(StrEnum):
    """What an entry carries (and which ``AccountBook`` method applies it)."""

    SIGNAL = "SIGNAL"
    FILL = "FILL"
    ACCOUNT = "ACCOUNT"
    SYMBOL_LIMIT = "SYMBOL_LIMIT"
    CONTROL = "CONTROL"
    MARK = "MARK"


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
    ts: UtcDatetime
