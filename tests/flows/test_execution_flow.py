"""Job D on the paper venue: orders in, execution reports and metrics out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bytewax.testing import run_main

from connectors.registry import Connectors
from connectors.settings import Settings
from flows.execution import build_flow
from schemas import Control, ExecStatus, ExecutionMetrics, MarketData, ValidatedOrder, VenueFill
from tests.helpers import read_all

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def order(oid: str, action: str = "NEW", account: str = "A", qty: int = 5) -> ValidatedOrder:
    return ValidatedOrder(
        order_id=oid, action=action, account=account, symbol="X", side="BUY", qty=Decimal(qty), ts=T0
    )


def feed(conn: Connectors, orders: list[ValidatedOrder]) -> None:
    ticks = [
        MarketData(symbol="X", ts=T0 + timedelta(seconds=i), price=100 + i, volume=100) for i in range(1, 4)
    ]
    inputs: list[tuple[str, list]] = [("validated_orders", orders), ("control", []), ("market_data", ticks)]
    for name, records in inputs:
        w = conn.writer(name)
        w.write(records)
        w.close_stream()


def fills(conn: Connectors) -> list[VenueFill]:
    return [f for f in read_all(conn, "venue_fills") if isinstance(f, VenueFill)]


def test_orders_are_acked_and_filled_once_with_metrics(settings: Settings, connectors: Connectors) -> None:
    feed(connectors, [order("O1"), order("O2"), order("O1")])  # O1 twice: replayed record
    run_main(build_flow(settings))
    got = fills(connectors)
    assert sorted((f.order_id, f.status.value) for f in got) == [
        ("O1", "FILLED"), ("O1", "NEW"), ("O2", "FILLED"), ("O2", "NEW"),
    ]
    filled = [f for f in got if f.status is ExecStatus.FILLED]
    assert [(f.cum_qty, f.leaves_qty, f.last_px) for f in filled] == [(5, 0, 101)] * 2
    (metrics,) = read_all(connectors, "execution_metrics")
    assert isinstance(metrics, ExecutionMetrics)
    assert metrics.orders_sent == 2
    assert metrics.fills == 2
    assert metrics.ack_p50_ms is not None


def test_halted_scope_refuses_new_orders_and_unknown_cancels_are_not_sent(
    settings: Settings, connectors: Connectors
) -> None:
    halt = Control(scope="account:B", state="HALTED", ts=T0)
    w = connectors.writer("control")
    w.write([halt])
    feed(connectors, [order("O1", account="B"), order("O2", account="A"), order("O9", action="CANCEL")])
    run_main(build_flow(settings))
    got = {(f.order_id, f.status) for f in fills(connectors)}
    assert ("O1", ExecStatus.REJECTED) in got
    assert ("O1", ExecStatus.FILLED) not in got
    assert ("O2", ExecStatus.FILLED) in got
    (cancel,) = [f for f in fills(connectors) if f.order_id == "O9"]
    assert cancel.status is ExecStatus.CANCEL_REJECTED
    assert cancel.reason.startswith("cancel rejected")
