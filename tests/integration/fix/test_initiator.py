"""Our FIX initiator (connectors.venues.fix.FixVenue) against the real QuickFIX/J venue.

Nothing is mocked: the venue is the JVM acceptor from deploy/fix-venue, started per
test by the ``fix_venue`` fixtures, and the adapter talks to it over TCP from its own
thread, with its file store under the test's tmp_path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.fix.settings import FixSettings
from connectors.venues import make_venue
from connectors.venues.fix import FixVenue
from schemas import ExecStatus, OrderAction, OrderType, Side, ValidatedOrder, VenueFill
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue

from .conftest import DROP_ACK_SYMBOL, REJECT_SYMBOL, RESTING_SYMBOL, VenueFactory

pytestmark = pytest.mark.integration

TIMEOUT = 20.0


def settings(venue: QuickFixVenue, store: Path, **overrides: object) -> FixSettings:
    values: dict[str, object] = {
        "host": venue.host,
        "port": venue.port,
        "sender_comp_id": venue.target_comp_id,
        "target_comp_id": venue.sender_comp_id,
        "heartbeat_s": 5,
        "store_dir": store,
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 1.0,
    }
    values.update(overrides)
    return FixSettings(**values)  # type: ignore[arg-type]


def order(order_id: str, symbol: str = "AAPL", **kw: object) -> ValidatedOrder:
    data: dict[str, object] = {
        "order_id": order_id,
        "account": "acc1",
        "symbol": symbol,
        "side": Side.BUY,
        "qty": Decimal(100),
        "ts": datetime.now(UTC),
    }
    data.update(kw)
    return ValidatedOrder(**data)  # type: ignore[arg-type]


class Collector:
    """Poll an adapter until the reports a test waits for have arrived."""

    def __init__(self, adapter: FixVenue) -> None:
        self.adapter = adapter
        self.reports: list[VenueFill] = []

    def until(self, done: Callable[[list[VenueFill]], bool], what: str) -> list[VenueFill]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            self.reports += self.adapter.poll_reports()
            if done(self.reports):
                return self.reports
            time.sleep(0.02)
        pytest.fail(f"no {what} within {TIMEOUT}s; got {self.reports}; {self.adapter.health()}")

    def of(self, order_id: str) -> list[ExecStatus]:
        return [r.status for r in self.reports if r.order_id == order_id]


def _has(order_id: str, status: ExecStatus) -> Callable[[list[VenueFill]], bool]:
    return lambda reports: any(r.order_id == order_id and r.status is status for r in reports)


@pytest.fixture
def adapter(fix_venue: QuickFixVenue, tmp_path: Path) -> Iterator[FixVenue]:
    venue = make_venue("fix", settings=settings(fix_venue, tmp_path / "initiator"))
    assert isinstance(venue, FixVenue)
    venue.connect()
    assert venue.wait_logged_on(TIMEOUT), venue.health()
    yield venue
    venue.close()


def test_initiator_market_order_is_acked_then_filled_at_venue_price(adapter: FixVenue) -> None:
    got = Collector(adapter)
    adapter.submit(order("mkt-1"))
    got.until(_has("mkt-1", ExecStatus.FILLED), "fill")
    ack, fill = got.reports
    assert (ack.status, ack.leaves_qty) == (ExecStatus.NEW, Decimal(100))
    assert (fill.last_qty, fill.last_px) == (Decimal(100), Decimal(100))
    assert (fill.cum_qty, fill.leaves_qty, fill.avg_px) == (Decimal(100), 0, Decimal(100))
    assert fill.venue_order_id
    assert fill.venue_order_id == ack.venue_order_id
    assert ack.exec_id != fill.exec_id
    assert adapter.open_orders() == []


def test_initiator_limit_order_with_partial_fills_sums_to_order_qty(
    fix_venue_factory: VenueFactory, tmp_path: Path
) -> None:
    venue = fix_venue_factory(partial_fills=3)
    with FixVenue(settings(venue, tmp_path / "initiator")) as adapter:
        got = Collector(adapter)
        adapter.submit(order("lmt-1", order_type=OrderType.LIMIT, limit_px=Decimal("99.5")))
        got.until(_has("lmt-1", ExecStatus.FILLED), "final fill")
    fills = [r for r in got.reports if r.last_qty > 0]
    assert [r.status for r in fills] == [ExecStatus.PARTIAL, ExecStatus.PARTIAL, ExecStatus.FILLED]
    assert sum(r.last_qty for r in fills) == Decimal(100)
    assert {r.last_px for r in fills} == {Decimal("99.5")}
    assert [r.cum_qty for r in fills] == sorted(r.cum_qty for r in fills)


def test_initiator_rejected_symbol_comes_back_rejected_with_reason(adapter: FixVenue) -> None:
    got = Collector(adapter)
    adapter.submit(order("bad-1", REJECT_SYMBOL))
    (rej,) = got.until(_has("bad-1", ExecStatus.REJECTED), "reject")
    assert "not traded" in rej.reason


def test_initiator_resting_order_status_then_cancel(adapter: FixVenue, fix_venue: QuickFixVenue) -> None:
    got = Collector(adapter)
    adapter.submit(order("rest-1", RESTING_SYMBOL))
    got.until(_has("rest-1", ExecStatus.NEW), "ack")
    (working,) = adapter.open_orders()
    assert (working.order_id, working.in_flight) == ("rest-1", False)

    adapter.request_status("rest-1")
    got.until(_has("rest-1", ExecStatus.STATUS), "status answer")
    adapter.cancel(order("rest-1", RESTING_SYMBOL, action=OrderAction.CANCEL))
    got.until(_has("rest-1", ExecStatus.CANCELED), "cancel")
    assert got.of("rest-1") == [ExecStatus.NEW, ExecStatus.STATUS, ExecStatus.CANCELED]
    assert adapter.open_orders() == []
    # a second cancel of the finished order is answered locally, nothing goes out
    adapter.cancel(order("rest-1", RESTING_SYMBOL, action=OrderAction.CANCEL))
    (notice,) = Collector(adapter).until(bool, "cancel-rejected notice")
    assert notice.status is ExecStatus.CANCEL_REJECTED
    assert notice.reason == "cancel rejected: order is done"


def test_initiator_restart_never_resends_an_order_whose_outcome_is_unknown(
    fix_venue: QuickFixVenue, tmp_path: Path
) -> None:
    store = tmp_path / "initiator"
    lost = order("lost-1", DROP_ACK_SYMBOL)
    with FixVenue(settings(fix_venue, store)) as first:
        assert first.wait_logged_on(TIMEOUT)
        first.submit(lost)
        deadline = time.monotonic() + TIMEOUT
        while not fix_venue.accepted_orders("lost-1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll_reports() == []  # the venue never answers this symbol
        sent_before = first.health().figure("next_sender_seq")

    # A new process on the same store replays the order (Bytewax at-least-once).
    with FixVenue(settings(fix_venue, store)) as second:
        assert second.wait_logged_on(TIMEOUT), second.health()
        assert second.health().figure("next_sender_seq") > sent_before  # numbering went on
        second.submit(lost)
        got = Collector(second)
        got.until(_has("lost-1", ExecStatus.STATUS), "status answer")
        health = second.health().as_dict()
    assert [r["outcome"] for r in fix_venue.audit_orders("lost-1")] == ["NEW"]
    assert health["orders_sent"] == 0
    assert health["not_resent"] == 1
    status = next(r for r in got.reports if r.status is ExecStatus.STATUS)
    assert status.cum_qty == Decimal(100)  # filled at the venue: reconciled by cum_qty


def test_initiator_status_request_of_order_unknown_to_venue_gives_rejected(
    fix_venue_factory: VenueFactory, tmp_path: Path
) -> None:
    store = tmp_path / "initiator"
    first_venue = fix_venue_factory()
    with FixVenue(settings(first_venue, store)) as first:
        assert first.wait_logged_on(TIMEOUT)
        first.submit(order("gone-1", RESTING_SYMBOL))
        Collector(first).until(_has("gone-1", ExecStatus.NEW), "ack")
    first_venue.stop()
    # A venue that lost everything (fresh store): both sides start at 1.
    fresh = fix_venue_factory(port=first_venue.port, reset_on_logon=True)
    with FixVenue(settings(fresh, store, reset_on_logon=True)) as second:
        got = Collector(second)
        got.until(_has("gone-1", ExecStatus.REJECTED), "status answer for the lost order")
    rej = next(r for r in got.reports if r.status is ExecStatus.REJECTED)
    assert "unknown order" in rej.reason


def test_initiator_reconnects_after_venue_crash_and_sends_orders_that_waited(
    fix_venue: QuickFixVenue, tmp_path: Path
) -> None:
    with FixVenue(settings(fix_venue, tmp_path / "initiator")) as adapter:
        assert adapter.wait_logged_on(TIMEOUT)
        got = Collector(adapter)
        adapter.submit(order("before"))
        got.until(_has("before", ExecStatus.FILLED), "first fill")
        fix_venue.kill()
        deadline = time.monotonic() + TIMEOUT
        while adapter.health().figure("logged_on") and time.monotonic() < deadline:
            time.sleep(0.05)
        adapter.submit(order("while-down"))
        time.sleep(0.5)
        assert adapter.health().figure("pending") == 1
        fix_venue.start()
        got.until(_has("while-down", ExecStatus.FILLED), "fill after reconnect")
        health = adapter.health().as_dict()
    assert health["logons"] >= 2
    assert health["connect_failures"] >= 1 or health["connects"] >= 2
    assert [r["outcome"] for r in fix_venue.audit_orders("while-down")] == ["NEW"]
    assert got.of("before") == [ExecStatus.NEW, ExecStatus.FILLED]  # no double counting
