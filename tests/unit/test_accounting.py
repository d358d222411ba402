"""Average-cost positions and the account ledger."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.accounting import Ledger, Position
from schemas.base import Side

D = Decimal
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
BUY, SELL = Side.BUY, Side.SELL


# ---------------------------------------------------------------- Position


def test_position_buys_move_average_to_volume_weighted_price() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(10), D(100))
    pos.apply_fill(BUY, D(30), D(104))
    assert pos.net_qty == 40
    assert pos.avg_px == D(103)
    assert pos.realized_pnl == 0


def test_position_partial_sell_realises_pnl_and_keeps_average() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(10), D(100))
    realized = pos.apply_fill(SELL, D(4), D(110))
    assert realized == D(40)
    assert pos.realized_pnl == D(40)
    assert pos.net_qty == 6
    assert pos.avg_px == D(100)


def test_position_short_cover_realises_with_short_sign() -> None:
    pos = Position("X")
    pos.apply_fill(SELL, D(5), D(50))
    pos.apply_fill(SELL, D(5), D(60))
    assert pos.avg_px == D(55)
    assert pos.apply_fill(BUY, D(2), D(45)) == D(20)
    assert pos.net_qty == -8
    assert pos.avg_px == D(55)


def test_position_sell_through_zero_flips_and_opens_remainder_at_fill_price() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(10), D(100))
    realized = pos.apply_fill(SELL, D(15), D(90))
    assert realized == D(-100)
    assert pos.net_qty == -5
    assert pos.avg_px == D(90)


def test_position_closed_to_flat_has_zero_average() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(3), D(10))
    pos.apply_fill(SELL, D(3), D(12))
    assert pos.net_qty == 0
    assert pos.avg_px == 0
    assert pos.realized_pnl == D(6)
    assert pos.market_value == 0
    assert pos.unrealized_pnl == 0


def test_position_fees_accumulate_apart_from_realised_pnl() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(1), D(10), fee=D("0.5"))
    pos.apply_fill(SELL, D(1), D(11), fee=D("0.25"))
    assert pos.fees == D("0.75")
    assert pos.realized_pnl == D(1)


def test_position_unrealised_pnl_and_market_value_use_last_mark() -> None:
    pos = Position("X")
    pos.apply_fill(SELL, D(4), D(25))
    pos.mark(D(20))
    assert pos.unrealized_pnl == D(20)
    assert pos.market_value == D(-80)


def test_position_before_any_mark_is_valued_at_average_price() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(4), D(25))
    assert pos.last_mark is None
    assert pos.unrealized_pnl == 0
    assert pos.market_value == D(100)


@pytest.mark.parametrize(("qty", "px"), [(D(0), D(1)), (D(1), D(0)), (D(-1), D(1))])
def test_position_fill_without_positive_qty_and_price_raises(qty: Decimal, px: Decimal) -> None:
    with pytest.raises(ValueError, match="qty > 0 and px > 0"):
        Position("X").apply_fill(BUY, qty, px)


def test_position_average_keeps_precision_of_non_terminating_division() -> None:
    pos = Position("X")
    pos.apply_fill(BUY, D(1), D(1))
    pos.apply_fill(BUY, D(2), D(2))
    assert abs(pos.avg_px * 3 - D(5)) < D("1e-35")


# ---------------------------------------------------------------- Ledger


def test_ledger_buy_pays_notional_plus_fee_and_sell_receives_notional_minus_fee() -> None:
    ledger = Ledger(cash=D(1000))
    ledger.apply_fill("X", BUY, D(2), D(100), D(1))
    assert ledger.cash == D(799)
    ledger.apply_fill("X", SELL, D(1), D(150), D(1))
    assert ledger.cash == D(948)


def test_ledger_exposures_sum_absolute_and_signed_market_values() -> None:
    ledger = Ledger(cash=D(10_000))
    ledger.apply_fill("L", BUY, D(10), D(100))
    ledger.apply_fill("S", SELL, D(5), D(40))
    ledger.mark("L", D(110), T0)
    ledger.mark("S", D(50), T0)
    assert ledger.gross_exposure == D(1350)
    assert ledger.net_exposure == D(850)
    assert ledger.equity == ledger.cash + D(850)
    assert ledger.unrealized_pnl == D(100) - D(50)


def test_ledger_margin_used_divides_gross_by_max_leverage() -> None:
    ledger = Ledger(cash=D(1000))
    ledger.apply_fill("X", BUY, D(10), D(100))
    assert ledger.margin_used(D(4)) == D(250)


@pytest.mark.parametrize("max_leverage", [None, D(0)])
def test_ledger_margin_used_without_leverage_limit_is_gross(max_leverage: Decimal | None) -> None:
    ledger = Ledger(cash=D(1000))
    ledger.apply_fill("X", BUY, D(10), D(100))
    assert ledger.margin_used(max_leverage) == D(1000)


def test_ledger_leverage_is_gross_over_equity() -> None:
    ledger = Ledger(cash=D(1000))
    ledger.apply_fill("X", BUY, D(20), D(100))
    assert ledger.equity == D(1000)
    assert ledger.leverage() == D(2)


def test_ledger_leverage_without_exposure_is_zero_even_with_negative_equity() -> None:
    assert Ledger(cash=D(-5)).leverage() == 0


@pytest.mark.parametrize("cash", [D(-2000), D(-1000)])
def test_ledger_leverage_with_exposure_and_equity_at_or_below_zero_is_none(cash: Decimal) -> None:
    ledger = Ledger(cash=cash + D(1000))
    ledger.apply_fill("X", BUY, D(10), D(100))
    assert ledger.equity <= 0
    assert ledger.leverage() is None


def test_ledger_older_mark_is_ignored() -> None:
    ledger = Ledger()
    assert ledger.mark("X", D(10), T0)
    assert not ledger.mark("X", D(9), T0 - timedelta(milliseconds=1))
    assert ledger.mark_px("X") == D(10)


def test_ledger_new_position_starts_at_known_mark() -> None:
    ledger = Ledger()
    ledger.mark("X", D(12), T0)
    pos = ledger.apply_fill("X", BUY, D(1), D(10))
    assert pos.last_mark == D(12)
    assert pos.unrealized_pnl == D(2)


def test_ledger_snapshot_is_a_copy_not_live_state() -> None:
    ledger = Ledger(cash=D(100))
    ledger.apply_fill("X", BUY, D(1), D(10))
    snap = ledger.snapshot()
    ledger.apply_fill("X", BUY, D(1), D(20))
    ledger.mark("X", D(30), T0)
    assert snap["cash"] == D(90)
    assert snap["positions"][0]["net_qty"] == D(1)
    assert snap["marks"] == {}


def test_ledger_snapshot_survives_pickle_and_restores_equal_ledger() -> None:
    ledger = Ledger(cash=D(100))
    ledger.mark("X", D(11), T0)
    ledger.apply_fill("X", SELL, D(3), D(10), D("0.1"))
    data = pickle.loads(pickle.dumps(ledger.snapshot()))  # noqa: S301 - our own bytes
    restored = Ledger.from_snapshot(data)
    assert restored == ledger
    assert restored.snapshot() == ledger.snapshot()


# ---------------------------------------------------------------- properties

qtys = st.decimals(min_value=D("0.0001"), max_value=D(500), places=4)
prices = st.decimals(min_value=D("0.01"), max_value=D(5000), places=2)
fees = st.decimals(min_value=D(0), max_value=D(5), places=2)
fills = st.tuples(st.sampled_from([BUY, SELL]), qtys, prices, fees)
symbols = st.sampled_from(["A", "B"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("fill"), symbols, fills),
        st.tuples(st.just("mark"), symbols, prices),
    ),
    max_size=40,
)
TOLERANCE = D("1e-18")


class ReferencePosition:
    """Average cost written as a cost basis, in exact fractions: an independent check."""

    def __init__(self) -> None:
        self.net = Fraction(0)
        self.cost = Fraction(0)  # signed cost of the open position
        self.realized = Fraction(0)

    def fill(self, side: Side, qty: Decimal, px: Decimal) -> None:
        q = Fraction(qty) * side.sign
        p = Fraction(px)
        if self.net == 0 or (self.net > 0) == (q > 0):
            self.net += q
            self.cost += q * p
            return
        closing = min(abs(q), abs(self.net)) * (1 if q > 0 else -1)
        removed_cost = self.cost * (-closing) / self.net
        self.realized += -closing * p - removed_cost
        self.cost -= removed_cost
        self.net += q
        rest = q - closing
        if rest:
            self.cost = rest * p

    @property
    def avg(self) -> Fraction:
        return self.cost / self.net if self.net else Fraction(0)


def _close(value: Decimal, expected: Fraction | Decimal) -> bool:
    return abs(Fraction(value) - Fraction(expected)) <= Fraction(TOLERANCE)


@given(st.lists(fills, max_size=40))
def test_position_average_and_realised_match_reference(seq: list) -> None:
    pos, ref = Position("X"), ReferencePosition()
    for side, qty, px, fee in seq:
        pos.apply_fill(side, qty, px, fee)
        ref.fill(side, qty, px)
        assert pos.net_qty == ref.net
        assert _close(pos.avg_px, ref.avg)
        assert _close(pos.realized_pnl, ref.realized)
    assert pos.fees == sum((f for *_, f in seq), D(0))


def _replay(seq: list) -> tuple[Ledger, D, dict[str, Decimal]]:
    cash0 = D(1_000_000)
    ledger, cash, net = Ledger(cash=cash0), cash0, {"A": D(0), "B": D(0)}
    for i, (kind, symbol, payload) in enumerate(seq):
        if kind == "mark":
            ledger.mark(symbol, payload, T0 + timedelta(seconds=i))
            continue
        side, qty, px, fee = payload
        ledger.apply_fill(symbol, side, qty, px, fee)
        cash -= side.sign * qty * px + fee
        net[symbol] += side.sign * qty
    return ledger, cash, net


@given(ops)
def test_ledger_equity_is_cash_plus_market_values(seq: list) -> None:
    ledger, cash, net = _replay(seq)
    assert ledger.cash == cash
    market_value = sum(
        (net[s] * p.valuation_px for s, p in ledger.positions.items()), D(0)
    )
    assert _close(ledger.equity, cash + market_value)
    assert _close(ledger.gross_exposure, sum(
        (abs(net[s] * p.valuation_px) for s, p in ledger.positions.items()), D(0)
    ))


@given(ops)
def test_ledger_net_pnl_equals_cash_change_plus_position_value(seq: list) -> None:
    ledger, _, _ = _replay(seq)
    pnl = ledger.realized_pnl + ledger.unrealized_pnl - ledger.fees
    assert _close(pnl, ledger.cash - D(1_000_000) + ledger.net_exposure)


@given(ops, prices)
def test_ledger_realised_plus_unrealised_is_mark_to_market_of_every_fill(
    seq: list, final_mark: Decimal
) -> None:
    ledger, _, _ = _replay(seq)
    for i, symbol in enumerate(("A", "B")):
        ledger.mark(symbol, final_mark, T0 + timedelta(days=1, seconds=i))
    expected = sum(
        ((final_mark - px) * qty * side.sign for kind, _, payload in seq if kind == "fill"
         for side, qty, px, _ in [payload]),
        D(0),
    )
    assert _close(ledger.realized_pnl + ledger.unrealized_pnl, expected)
