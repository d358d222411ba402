"""Two Job D side by side (one venue each), routes splitting the accounts between them."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from connectors.venues.paper import PaperVenue
from schemas import (
    ExecStatus,
    MarketData,
    OrderAction,
    PositionState,
    Route,
    ValidatedOrder,
    Venue,
    VenueFill,
)
from tests.helpers import read_all
from tradeflow.pipeline import parse_venues, run_pipeline

Net = dict[tuple[str, str], Decimal]
TICKS = 3000


def net_of(fills: list[VenueFill]) -> Net:
    net: Net = defaultdict(Decimal)
    for f in fills:
        net[(f.account, f.symbol)] += f.last_qty * f.side.sign
    return {k: v for k, v in net.items() if v}


def routed(conn: Connectors) -> tuple[dict[str, str], list[ValidatedOrder], list[VenueFill]]:
    """Return the routes, orders and fills of a run, having checked that each order went to
    the venue its account's route names and each fill came from its order's venue only."""
    routes = {r.account: r.venue for r in conn.table("routes", Route).values()}
    orders = [o for o in read_all(conn, "validated_orders") if isinstance(o, ValidatedOrder)]
    assert all(o.venue == routes[o.account] for o in orders)
    fills = [f for f in read_all(conn, "venue_fills") if isinstance(f, VenueFill)]
    venue_of = {o.order_id: o.venue for o in orders}
    assert all(f.venue == venue_of[f.order_id] for f in fills)  # answered by its own venue only
    return routes, orders, fills


def one_venue(ticks: list[MarketData], orders: list[ValidatedOrder]) -> Net:
    """The same orders through one paper venue, in event time (an order before a tick of its time)."""
    venue = PaperVenue(history_ticks=TICKS)
    venue.connect()
    events = [(o.ts, 0, i, o) for i, o in enumerate(orders)] + [(t.ts, 1, i, t) for i, t in enumerate(ticks)]
    fills: list[VenueFill] = []
    for _, _, _, event in sorted(events, key=lambda e: e[:3]):
        if isinstance(event, MarketData):
            venue.on_market(event)
        else:
            venue.send(event)
        fills += venue.poll_reports()
    return net_of(fills)


def test_each_order_reaches_the_venue_its_route_names_and_positions_equal_one_venue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each paper venue keeps every tick, so an order that reaches its Job D after the
    # market data ran ahead still fills at the first tick of its time: in event time.
    monkeypatch.setenv("TRADEFLOW_EXECUTION__PAPER_HISTORY_TICKS", str(TICKS))
    settings = load_settings(data_dir=tmp_path / "data")
    market = SyntheticMarket(symbols=4, ticks=TICKS, seed=5)
    counts = run_pipeline(settings, iter(market), TICKS, market.symbol_names(), speed=None, progress=False,
                          venues=parse_venues("paper,alt=paper"))
    conn = Connectors(settings)
    assert counts.fills > 0

    routes, orders, fills = routed(conn)
    assert sorted(routes.values()) == ["alt", "paper"]  # the two accounts split
    assert {v.venue for v in conn.table("venues", Venue).values()} == {"paper", "alt"}
    assert {o.venue for o in orders} == {"paper", "alt"}
    news = [o.order_id for o in orders if o.action is OrderAction.NEW]
    acks = [f.order_id for f in fills if f.status in (ExecStatus.NEW, ExecStatus.REJECTED)]
    assert sorted(acks) == sorted(news)  # every order reached a venue exactly once

    table = conn.table("positions_state", PositionState)
    positions = {(p.account, p.symbol): p.net_qty for p in table.values() if p.net_qty}
    assert positions == net_of(fills)
    ticks = [t for t in read_all(conn, "market_data") if isinstance(t, MarketData)]
    assert positions == one_venue(ticks, orders)
