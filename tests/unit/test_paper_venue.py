"""The paper venue: fills against market data, in event time, deterministically."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.venues import make_venue
from connectors.venues.base import VenueError
from connectors.venues.paper import PaperVenue, PaperVenueConfig
from schemas import ExecStatus, MarketData, OrderAction, OrderType, Side, ValidatedOrder, VenueFill
from schemas.base import encode
from schemas.fast import fast_encode
from schemas.trading import TimeInForce

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def order(
    order_id: str = "o1",
    *,
    side: Side = Side.BUY,
    qty: str = "100",
    limit: str | None = None,
    ms: int = 0,
    symbol: str = "AAPL",
    tif: TimeInForce = TimeInForce.DAY,
    action: OrderAction = OrderAction.NEW,
) -> ValidatedOrder:
    return ValidatedOrder(
        order_id=order_id,
        action=action,
        account="acc1",
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_px=Decimal(limit) if limit else None,
        time_in_force=tif,
        ts=at(ms),
    )


def tick(price: str, ms: int, volume: str = "1000", symbol: str = "AAPL") -> MarketData:
    return MarketData(symbol=symbol, ts=at(ms), price=Decimal(price), volume=Decimal(volume))


def statuses(fills: list[VenueFill]) -> list[ExecStatus]:
    return [f.status for f in fills]


def test_make_venue_paper_builds_a_paper_venue_with_options() -> None:
    venue = make_venue("paper", latency_ms=5, name="sim")
    assert isinstance(venue, PaperVenue)
    assert venue.name == "sim"
    assert venue.config.latency_ms == 5


def test_make_venue_with_unknown_name_raises() -> None:
    with pytest.raises(VenueError, match="unknown venue"):
        make_venue("nope")


def test_paper_config_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="extra"):
        PaperVenue(latncy_ms=5)


def test_market_order_fills_at_next_price_after_submission() -> None:
    venue = PaperVenue()
    venue.on_market(tick("99", ms=0))  # seen before the order: not used
    venue.submit(order(ms=10))
    venue.on_market(tick("101.5", ms=20))
    venue.on_market(tick("102", ms=30))
    ack, fill = venue.poll_reports()
    assert ack.status is ExecStatus.NEW
    assert ack.leaves_qty == Decimal(100)
    assert fill.status is ExecStatus.FILLED
    assert (fill.last_qty, fill.last_px) == (Decimal(100), Decimal("101.5"))
    assert (fill.cum_qty, fill.leaves_qty, fill.avg_px) == (Decimal(100), 0, Decimal("101.5"))
    assert fill.ts == at(20)
    assert venue.poll_reports() == []


def test_market_order_ignores_ticks_of_other_symbols() -> None:
    venue = PaperVenue()
    venue.submit(order())
    venue.on_market(tick("50", ms=5, symbol="MSFT"))
    assert statuses(venue.poll_reports()) == [ExecStatus.NEW]


def test_market_order_ignores_a_late_tick_older_than_the_order() -> None:
    venue = PaperVenue()
    venue.submit(order(ms=100))
    venue.on_market(tick("90", ms=50))
    venue.on_market(tick("91", ms=150))
    fills = [f for f in venue.poll_reports() if f.last_qty > 0]
    assert [f.last_px for f in fills] == [Decimal(91)]


def test_limit_buy_fills_at_limit_only_when_price_at_or_below_limit() -> None:
    venue = PaperVenue()
    venue.submit(order(limit="100"))
    venue.on_market(tick("100.01", ms=1))
    assert statuses(venue.poll_reports()) == [ExecStatus.NEW]
    venue.on_market(tick("100", ms=2))
    (fill,) = venue.poll_reports()
    assert fill.status is ExecStatus.FILLED
    assert fill.last_px == Decimal(100)


def test_limit_sell_fills_at_limit_only_when_price_at_or_above_limit() -> None:
    venue = PaperVenue()
    venue.submit(order(side=Side.SELL, limit="100"))
    venue.on_market(tick("99.99", ms=1))
    venue.on_market(tick("100", ms=2))
    fills = [f for f in venue.poll_reports() if f.last_qty > 0]
    assert len(fills) == 1
    assert (fills[0].last_px, fills[0].side) == (Decimal(100), Side.SELL)


def test_partial_fills_are_bounded_by_fraction_of_traded_volume() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.1"))
    venue.submit(order(qty="250"))
    venue.on_market(tick("10", ms=1, volume="1000"))  # 100
    venue.on_market(tick("12", ms=2, volume="1000"))  # 100
    venue.on_market(tick("13", ms=3, volume="5000"))  # 50 left
    reports = venue.poll_reports()
    assert statuses(reports) == [
        ExecStatus.NEW,
        ExecStatus.PARTIAL,
        ExecStatus.PARTIAL,
        ExecStatus.FILLED,
    ]
    assert [f.last_qty for f in reports[1:]] == [Decimal(100), Decimal(100), Decimal(50)]
    assert [f.cum_qty for f in reports[1:]] == [Decimal(100), Decimal(200), Decimal(250)]
    assert [f.leaves_qty for f in reports[1:]] == [Decimal(150), Decimal(50), Decimal(0)]
    # (100*10 + 100*12 + 50*13) / 250 = 11.4
    assert reports[-1].avg_px == Decimal("11.4")


def test_partial_fill_liquidity_is_shared_in_time_priority() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.5"))
    venue.submit(order("first", qty="80"))
    venue.submit(order("second", qty="80"))
    venue.on_market(tick("10", ms=1, volume="100"))  # 50 to share
    fills = [f for f in venue.poll_reports() if f.last_qty > 0]
    assert [(f.order_id, f.last_qty) for f in fills] == [("first", Decimal(50))]


def test_partial_fills_round_down_to_lot_size() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.15"), lot_size=Decimal(10))
    venue.submit(order(qty="100"))
    venue.on_market(tick("10", ms=1, volume="100"))  # 15 -> 10
    fills = [f for f in venue.poll_reports() if f.last_qty > 0]
    assert [f.last_qty for f in fills] == [Decimal(10)]


def test_order_does_not_fill_before_submit_ts_plus_latency() -> None:
    venue = PaperVenue(latency_ms=50)
    venue.submit(order(ms=100))
    venue.on_market(tick("10", ms=120))
    venue.on_market(tick("11", ms=149))
    venue.on_market(tick("12", ms=150))
    ack, fill = venue.poll_reports()
    assert ack.ts == at(150)
    assert (fill.last_px, fill.ts) == (Decimal(12), at(150))


@pytest.mark.parametrize(
    ("options", "the_order", "reason"),
    [
        ({"rejected_symbols": frozenset({"GME"})}, order(symbol="GME"), "symbol GME is rejected"),
        ({"allowed_symbols": frozenset({"MSFT"})}, order(), "symbol AAPL is not traded here"),
        ({"max_qty": Decimal(50)}, order(qty="51"), "qty 51 above max 50"),
    ],
)
def test_order_breaking_a_reject_rule_is_rejected_with_reason(
    options: dict[str, object], the_order: ValidatedOrder, reason: str
) -> None:
    venue = PaperVenue(**options)
    venue.submit(the_order)
    venue.on_market(tick("10", ms=1, symbol=the_order.symbol))
    (rej,) = venue.poll_reports()
    assert rej.status is ExecStatus.REJECTED
    assert rej.reason == reason
    assert (rej.cum_qty, rej.leaves_qty) == (0, 0)
    assert venue.open_orders() == []


def test_cancel_of_working_order_reports_canceled_and_stops_fills() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.1"))
    venue.submit(order(qty="300"))
    venue.on_market(tick("10", ms=1, volume="1000"))
    venue.cancel(order(ms=2, action=OrderAction.CANCEL))
    venue.on_market(tick("10", ms=3, volume="1000"))
    reports = venue.poll_reports()
    assert statuses(reports) == [ExecStatus.NEW, ExecStatus.PARTIAL, ExecStatus.CANCELED]
    cxl = reports[-1]
    assert (cxl.cum_qty, cxl.leaves_qty, cxl.avg_px) == (Decimal(100), 0, Decimal(10))
    assert venue.open_orders() == []


def test_cancel_of_filled_order_reports_cancel_rejected_status() -> None:
    venue = PaperVenue()
    venue.submit(order())
    venue.on_market(tick("10", ms=1))
    venue.cancel(order(ms=2, action=OrderAction.CANCEL))
    last = venue.poll_reports()[-1]
    assert last.status is ExecStatus.CANCEL_REJECTED
    assert last.reason == "cancel rejected: order is FILLED"
    assert last.cum_qty == Decimal(100)


def test_cancel_of_unknown_order_reports_cancel_rejected_with_unique_exec_ids() -> None:
    venue = PaperVenue()
    venue.cancel(order("ghost", action=OrderAction.CANCEL))
    venue.cancel(order("ghost", ms=1, action=OrderAction.CANCEL))
    a, b = venue.poll_reports()
    assert a.reason == "cancel rejected: unknown order"
    assert a.exec_id != b.exec_id


def test_ioc_order_fills_what_it_can_on_first_tick_and_cancels_the_rest() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.1"))
    venue.submit(order(qty="300", tif=TimeInForce.IOC))
    venue.on_market(tick("10", ms=1, volume="1000"))
    venue.on_market(tick("10", ms=2, volume="1000"))
    reports = venue.poll_reports()
    assert statuses(reports) == [ExecStatus.NEW, ExecStatus.PARTIAL, ExecStatus.CANCELED]
    assert reports[-1].cum_qty == Decimal(100)


def test_status_request_reports_current_state_and_open_orders_lists_working_ones() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.1"))
    venue.submit(order(qty="300"))
    venue.submit(order("o2", limit="1"))
    venue.on_market(tick("10", ms=1, volume="1000"))
    venue.poll_reports()
    venue.request_status("o1")
    (status,) = venue.poll_reports()
    assert status.status is ExecStatus.STATUS
    assert (status.cum_qty, status.leaves_qty) == (Decimal(100), Decimal(200))
    working = {o.order_id: o for o in venue.open_orders()}
    assert set(working) == {"o1", "o2"}
    assert working["o1"].leaves_qty == Decimal(200)
    assert working["o2"].status is ExecStatus.NEW


def test_resubmitting_the_same_order_id_never_fills_twice() -> None:
    venue = PaperVenue()
    venue.submit(order())
    venue.submit(order())
    venue.on_market(tick("10", ms=1))
    assert statuses(venue.poll_reports()) == [ExecStatus.NEW, ExecStatus.FILLED]


def test_submit_of_a_cancel_record_is_a_programmer_error() -> None:
    with pytest.raises(VenueError, match="NEW"):
        PaperVenue().submit(order(action=OrderAction.CANCEL))


def test_send_routes_by_action() -> None:
    venue = PaperVenue()
    venue.send(order())
    venue.send(order(ms=1, action=OrderAction.CANCEL))
    assert statuses(venue.poll_reports()) == [ExecStatus.NEW, ExecStatus.CANCELED]


def _run_script() -> list[VenueFill]:
    venue = PaperVenue(fill_fraction=Decimal("0.3"), latency_ms=3, fee_bps=Decimal(1))
    venue.submit(order("a", qty="500"))
    venue.submit(order("b", side=Side.SELL, qty="200", limit="10.5", ms=1))
    for i, px in enumerate(["10", "10.6", "10.2", "10.7", "9.9"]):
        venue.on_market(tick(px, ms=5 + i, volume="400"))
    venue.cancel(order("a", ms=20, action=OrderAction.CANCEL))
    venue.request_status("b")
    return venue.poll_reports()


def test_exec_ids_are_deterministic_unique_and_derived_from_order_id() -> None:
    first, second = _run_script(), _run_script()
    assert first == second
    ids = [f.exec_id for f in first]
    assert len(ids) == len(set(ids))
    assert all(f.exec_id.startswith(f"{f.order_id}-") for f in first)
    assert [f.exec_id for f in first if f.order_id == "a"][:3] == ["a-1", "a-2", "a-3"]


def test_fee_is_basis_points_of_fill_notional() -> None:
    venue = PaperVenue(fee_bps=Decimal(2))
    venue.submit(order(qty="100"))
    venue.on_market(tick("50", ms=1))
    fill = venue.poll_reports()[-1]
    assert fill.fee == Decimal("1.00000000")  # 100 * 50 * 2 / 10000


def test_health_counts_orders_acks_fills_and_rejects() -> None:
    venue = PaperVenue(max_qty=Decimal(1000))
    venue.connect()
    venue.submit(order())
    venue.submit(order("big", qty="5000"))
    venue.on_market(tick("10", ms=1))
    health = venue.health().as_dict()
    assert health["connected"] is True
    assert (health["orders_sent"], health["acks"], health["fills"], health["rejects"]) == (2, 1, 1, 1)
    assert health["working_orders"] == 0


def test_paper_venue_config_object_is_accepted() -> None:
    venue = PaperVenue(PaperVenueConfig(latency_ms=7))
    assert venue.config.latency_ms == 7
    with pytest.raises(VenueError):
        PaperVenue(PaperVenueConfig(), latency_ms=1)


def test_snapshot_restore_continues_exactly_like_an_uninterrupted_run() -> None:
    ticks = [tick(px, ms=10 + i, volume="300") for i, px in enumerate(["10", "9", "11", "8"])]
    config = PaperVenueConfig(fill_fraction=Decimal("0.2"), latency_ms=2)

    straight = PaperVenue(config)
    straight.submit(order("a", qty="150"))
    straight.submit(order("b", limit="9", qty="100", ms=1))
    for t in ticks:
        straight.on_market(t)
    expected = straight.poll_reports()

    first = PaperVenue(config)
    first.submit(order("a", qty="150"))
    first.submit(order("b", limit="9", qty="100", ms=1))
    first.on_market(ticks[0])
    state = json.loads(json.dumps(first.snapshot()))  # survives a JSON round trip
    first.on_market(ticks[1])  # state taken before this tick must not change
    resumed = PaperVenue(config)
    resumed.restore(state)
    for t in ticks[1:]:
        resumed.on_market(t)
    assert resumed.poll_reports() == expected


def test_order_arriving_after_its_ticks_fills_at_the_first_eligible_recent_tick() -> None:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from connectors.venues.paper import PaperVenue
    from schemas import MarketData, ValidatedOrder

    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    venue = PaperVenue()
    venue.connect()
    for i, px in enumerate([100, 101, 102]):
        venue.on_market(MarketData(symbol="X", ts=t0 + timedelta(seconds=i), price=px, volume=10))
    # Market data ran ahead: the order (stamped at 0.5 s) arrives after all three ticks.
    venue.submit(ValidatedOrder(order_id="O1", account="A", symbol="X", side="BUY", qty=Decimal(3),
                                ts=t0 + timedelta(milliseconds=500)))
    reports = venue.poll_reports()
    assert [r.status.value for r in reports] == ["NEW", "FILLED"]
    assert reports[-1].last_px == Decimal(101)
    assert reports[-1].ts == t0 + timedelta(seconds=1)


# -- hostile numbers (issue 17): bounded by the schemas, so the venue cannot raise ------

MAX = "9999999999.99999999"  # the largest DECIMAL(18,8) value


@pytest.mark.parametrize("price", ["1e30", "10000000000", "1.000000000000000000000000000001"])
def test_a_price_that_does_not_fit_decimal_18_8_is_a_decode_error(price: str) -> None:
    from schemas import DecodeError, decode

    raw = json.dumps({"symbol": "AAPL", "ts": "2024-03-01T14:30:00.000Z", "price": price,
                      "volume": "10"})
    with pytest.raises(DecodeError, match="price"):
        decode(MarketData, raw)
    raw_num = raw.replace(f'"{price}"', price)  # as a JSON number, too
    with pytest.raises(DecodeError, match="price"):
        decode(MarketData, raw_num)


def test_the_1e30_tick_that_crashed_job_d_cannot_make_the_venue_raise() -> None:
    venue = PaperVenue(fee_bps=Decimal("2.5"))
    venue.submit(order("o1", qty="100"))
    # built without validation (model_construct), as a bug upstream could: ignored
    bad = MarketData.model_construct(
        symbol="AAPL", ts=at(10), price=Decimal("1e30"), volume=Decimal("1000"), wm=None
    )
    venue.on_market(bad)
    bad30 = MarketData.model_construct(
        symbol="AAPL", ts=at(11), price=Decimal("1." + "1" * 30), volume=Decimal("1000"), wm=None
    )
    venue.on_market(bad30)
    venue.on_market(tick("101.5", ms=20))
    ack, fill = venue.poll_reports()
    assert ack.status is ExecStatus.NEW
    assert fill.status is ExecStatus.FILLED
    assert fill.last_px == Decimal("101.5")


def test_the_extreme_schema_valid_numbers_fill_without_raising() -> None:
    # no price band: this is about the arithmetic at the extremes, which the band would hide
    venue = PaperVenue(fee_bps=Decimal("1"), fill_fraction=Decimal("0.33333333"), price_band_pct=None)
    venue.submit(order("o1", qty=MAX))
    venue.submit(order("o2", qty="0.00000001", side=Side.SELL, limit="0.00000001"))
    venue.on_market(tick("0.00000001", ms=5, volume="0.00000001"))
    venue.on_market(tick(MAX, ms=10, volume=MAX))
    venue.on_market(tick("0.00000003", ms=20, volume=MAX))
    reports = venue.poll_reports()
    for r in reports:  # every report is a valid record that round-trips
        from schemas import decode, encode

        assert decode(VenueFill, encode(r)) == r
    fills = [r for r in reports if r.order_id == "o1"]
    # the fee of a fill near 10^20 notional does not fit: the order is canceled
    assert fills[-1].status is ExecStatus.CANCELED
    assert "fee" in fills[-1].reason
    assert all(r.avg_px < Decimal(10) ** 10 for r in reports)


def test_a_fill_fraction_leaves_no_more_than_8_decimal_places() -> None:
    venue = PaperVenue(fill_fraction=Decimal("0.3"))
    venue.submit(order("o1", qty="1"))
    venue.on_market(tick("10", ms=5, volume="0.00000007"))
    _, fill = venue.poll_reports()
    assert fill.last_qty == Decimal("0.00000002")


def test_paper_config_refuses_numbers_beyond_decimal_18_8() -> None:
    with pytest.raises(ValueError, match="DECIMAL"):
        PaperVenue(lot_size=Decimal("1e-30"))


def test_a_tick_beyond_the_price_band_fills_nothing_and_the_next_real_one_does() -> None:
    venue = PaperVenue()  # band 20 % by default
    venue.on_market(tick("100", ms=0))
    venue.submit(order(ms=10))
    venue.on_market(tick("180", ms=20))  # 80 % away: an outlier Job A dead-letters too
    venue.on_market(tick("100.5", ms=30))
    ack, fill = venue.poll_reports()
    assert (ack.status, fill.status) == (ExecStatus.NEW, ExecStatus.FILLED)
    assert fill.last_px == Decimal("100.5")
    assert venue.health().figure("ticks_refused") == 1
    again = PaperVenue()
    again.restore(venue.snapshot())  # the band's reference survives a restart
    again.submit(order("o2", ms=40))
    again.on_market(tick("20", ms=50))
    assert [r.status for r in again.poll_reports()] == [ExecStatus.NEW]


def test_a_snapshot_writes_each_recent_tick_once_and_restores_old_snapshots() -> None:
    from unittest import mock

    venue = PaperVenue(PaperVenueConfig(history_ticks=3))
    venue.submit(order("a", limit="1", qty="10"))  # rests: the book has an order to write
    ticks = [tick(str(10 + i), ms=10 + i) for i in range(5)]
    for t in ticks[:2]:
        venue.on_market(t)
    with mock.patch("connectors.venues.paper.fast_encode", wraps=fast_encode) as enc:
        first = venue.snapshot()
        assert enc.call_count == 2
        venue.on_market(ticks[2])
        venue.on_market(ticks[3])  # the first tick falls out of the history
        second = venue.snapshot()
        assert enc.call_count == 4  # only the two new ones
    assert first["recent"]["AAPL"] == [encode(t).decode() for t in ticks[:2]]
    assert second["recent"]["AAPL"] == [encode(t).decode() for t in ticks[1:4]]
    again = PaperVenue(PaperVenueConfig(history_ticks=3))
    again.restore(json.loads(json.dumps(second)))
    assert again.snapshot() == second
    old_style = dict(second, recent={"AAPL": [t.model_dump(mode="json") for t in ticks[1:4]]})
    older = PaperVenue(PaperVenueConfig(history_ticks=3))
    older.restore(old_style)  # a snapshot from before the recent ticks were kept as text
    assert older.snapshot() == second
