"""schemas.built.build: the same record as the model's own validation, or its error."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas import trading
from schemas.base import Side
from schemas.built import _plan, build
from schemas.market import MarketData
from schemas.strategy import OrderType

T0 = datetime(2026, 1, 2, 9, 30, tzinfo=UTC)

DECIMALS = ["0.00", "1", "100.10", "1E+3", "5000000", "1.000000000000", "0.000000015", "2.5",
            "9999999999.99999999",  # 9 valid for every kind (positive, <= 8 places)
            "0", "-1", "123.456789012345", "0E-12", "-0.000000005", "1E+11", "NaN", "Infinity",
            "12345678901234567890.123", "1E+80"]
IDS = ["AAPL", "O-0123abcd", "x" * 64, "s:AAPL:1", "ok.id-1", "a b", "", "x" * 65, "bad|id"]
TEXTS = ["", "fine", "é" * 1100, "x" * 1024, "x" * 1025]
TIMES = [T0, T0 + timedelta(microseconds=1500), T0.astimezone(timezone(timedelta(hours=2))),
         datetime(2026, 1, 2, 9, 30)]  # noqa: DTZ001 - a naive time must be refused the same


def some(rng: random.Random, choices: list[Any], valid: int) -> Any:
    """One of ``choices``: mostly one of the first ``valid`` (a record fails on any field)."""
    return rng.choice(choices[:valid] if rng.random() < 0.96 else choices)


ENUMS: list[tuple[str, list[Any]]] = [
    ("Side", [Side.BUY, Side.SELL, "BUY"]),
    ("OrderType", list(OrderType)),
    ("OrderStatus", list(trading.OrderStatus)),
    ("OrderAction", list(trading.OrderAction)),
    ("TradingState", [*trading.TradingState, "HALTED"]),
    ("Severity", list(trading.Severity)),
    ("Decision", ["PASS", "FAIL"]),
    ("ExecStatus", [*trading.ExecStatus, "FILLED"]),
]
"""An enum field's choices, by the enum's name in the annotation (a str is coerced)."""

BY_NAME: dict[str, Any] = {
    "ts": lambda rng: some(rng, TIMES, 3),
    "entered_at": lambda rng: some(rng, TIMES, 3),
    "message": lambda rng: rng.choice(TEXTS),
    "reason": lambda rng: rng.choice(TEXTS),
    "passed": lambda rng: rng.choice([True, False, True, False, 1]),
    "open_orders": lambda rng: rng.choice([0, 7, 499, -2, Decimal(3)]),
    "limits_version": lambda rng: rng.choice([0, 7, 499, -2, Decimal(3)]),
    "latency_us": lambda rng: rng.choice([0.5, 12.25, float("inf"), float("nan"), 3]),
    "rules": lambda rng: rng.choice([[trading.RuleResult(rule="R", passed=True)], [],
                                     [{"rule": "R", "passed": True}]]),
    "input_offsets": lambda rng: rng.choice([{"a:0": 3}, {}, {"a:0": 3.5}]),
    "values": lambda rng: rng.choice([{"a": "3"}, {}, {"a": 3}]),
    "wm": lambda rng: some(rng, [*TIMES, None], 3),
    "seq": lambda rng: rng.choice([0, 7, 499, None, -1, Decimal(3), True]),  # Field(ge=0)
    "symbol": lambda rng: some(rng, [*IDS[:5], " "], 5),  # MarketData: a model validator of its own
}


def value_for(rng: random.Random, name: str, ann: str) -> Any:
    """A random value for one field (sometimes invalid, sometimes of another type)."""
    if name in BY_NAME:
        return BY_NAME[name](rng)
    if "Decimal" in ann:
        return Decimal(some(rng, DECIMALS, 9)) if rng.random() < 0.97 else rng.choice([1, "2.5", None])
    for enum, choices in ENUMS:
        if enum in ann:
            return rng.choice(choices)
    return some(rng, IDS, 5) if rng.random() < 0.98 else None


def pick(rng: random.Random, model: type[BaseModel]) -> dict[str, Any]:
    """Random values for ``model``'s fields, the optional ones sometimes left out."""
    return {name: value_for(rng, name, str(info.annotation))
            for name, info in model.model_fields.items()
            if name != "time_in_force" and (info.is_required() or rng.random() < 0.7)}


MODELS = [
    MarketData,  # a bound (seq >= 0) and a model validator of mode "after"
    trading.VenueFill,  # a model validator of mode "after" (a fill has a price)
    trading.RuleResult,
    trading.PortfolioState,
    trading.PositionState,
    trading.OrderState,
    trading.ValidatedOrder,
    trading.RiskDecision,
    trading.RiskEvent,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_build_gives_the_validated_record_or_the_same_error(model: type[BaseModel]) -> None:
    assert _plan(model) is not None  # the hot path is taken, not only the fallback
    rng = random.Random(model.__name__)  # noqa: S311 - reproducible
    built = failed = 0
    for _ in range(3000):
        values = pick(rng, model)
        try:
            want = model(**values)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            with pytest.raises(ValidationError) as got:
                build(model, **values)
            assert got.value.errors(include_url=False, include_context=False) == errors
            failed += 1
            continue
        for _ in range(2):  # the second time through the remembered identity checks
            got_rec = build(model, **values)
            assert type(got_rec) is model
            assert got_rec == want
            assert repr(got_rec) == repr(want)
            assert got_rec.model_dump_json() == want.model_dump_json()
            assert got_rec.model_fields_set == want.model_fields_set
            assert got_rec.model_dump(exclude_unset=True) == want.model_dump(exclude_unset=True)
            for name in model.model_fields:  # the same Decimal digits and exponent
                assert str(getattr(got_rec, name)) == str(getattr(want, name))
        built += 1
    assert built > 300
    assert failed > 50


def test_restored_gives_back_the_record_its_values_came_from() -> None:
    from schemas.built import restored
    from schemas.trading import Account, SymbolLimit

    rows: list[BaseModel] = [
        Account(account="A1", cash=Decimal("100.50"), max_order_qty=Decimal("1.000000000000"),
                ts=T0, max_open_orders=3),
        SymbolLimit(account="A1", symbol="AAPL", max_position_qty=Decimal(50), ts=T0),
    ]
    for row in rows:
        again = restored(type(row), dict(row.__dict__))
        assert again == row
        assert repr(again) == repr(row)
        assert again.model_dump_json() == row.model_dump_json()
        assert again.model_fields_set == set(type(row).model_fields)
        partial = dict(row.__dict__)
        del partial["ts"]
        with pytest.raises(ValidationError):  # not every field: validated, and refused
            restored(type(row), partial)
