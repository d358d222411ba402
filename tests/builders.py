"""Records the tests build over and over.

One account row, one trade signal and one validated order with defaults that pass every
rule, a start time and a fake millisecond clock; each test overrides only the fields it
is about.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from schemas.base import Side
from schemas.strategy import TradeSignal
from schemas.trading import Account, ValidatedOrder

D = Decimal
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
"""The default event time of every record built here."""
EPS = D("0.00000001")
"""The smallest step of a DECIMAL(18,8): a limit plus EPS fails, a limit minus EPS passes."""
ACCOUNT = "A1"


def fake_clock() -> Callable[[], int]:
    """Return a clock for ``AccountBook``: 0, 1000, 2000, ... on each call."""
    ticks = itertools.count(step=1000)
    return lambda: next(ticks)


def account(ts: datetime = T0, **kw: Any) -> Account:
    """Return an account row of ``ACCOUNT`` at ``ts``; ``kw`` sets or overrides any field."""
    return Account(**{"account": ACCOUNT, "ts": ts, **kw})


def signal(**kw: Any) -> TradeSignal:
    """Return signal ``s1``: a market BUY of 10 AAPL for ``ACCOUNT`` at T0; ``kw`` overrides."""
    fields: dict[str, Any] = {
        "signal_id": "s1", "strategy_id": "st", "symbol": "AAPL", "account": ACCOUNT,
        "side": Side.BUY, "qty": D(10), "ts": T0,
    }
    return TradeSignal(**{**fields, **kw})


def order(order_id: str = "o1", **kw: Any) -> ValidatedOrder:
    """Return a NEW market BUY of 10 AAPL for ``ACCOUNT`` at T0; ``kw`` overrides any field."""
    fields: dict[str, Any] = {
        "order_id": order_id, "account": ACCOUNT, "symbol": "AAPL", "side": Side.BUY, "qty": D(10), "ts": T0,
    }
    return ValidatedOrder(**{**fields, **kw})
