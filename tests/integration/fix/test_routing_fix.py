"""The whole pipeline with two Job D side by side: the paper venue and the real QuickFIX/J venue.

Routes split the demo's two accounts between them. Every order must reach exactly the
venue its route names, once; positions must equal, per venue, what that venue executed:
the paper venue's fills replayed in event time, and the FIX venue's own audit log.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from schemas import ExecStatus, MarketData, OrderAction, PositionState
from tests.flows.test_routing import net_of, one_venue, routed
from tests.helpers import read_all
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue
from tradeflow.pipeline import parse_venues, run_pipeline

pytestmark = pytest.mark.integration

TICKS = 3000


def test_paper_and_fix_job_d_side_by_side_each_order_at_its_venue_once(
    fix_venue: QuickFixVenue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "TRADEFLOW_FIX__HOST": fix_venue.host, "TRADEFLOW_FIX__PORT": str(fix_venue.port),
        "TRADEFLOW_FIX__SENDER_COMP_ID": fix_venue.target_comp_id,
        "TRADEFLOW_FIX__TARGET_COMP_ID": fix_venue.sender_comp_id,
        "TRADEFLOW_FIX__HEARTBEAT_S": "5", "TRADEFLOW_EXECUTION__PAPER_HISTORY_TICKS": str(TICKS),
    }.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(data_dir=tmp_path / "data")
    market = SyntheticMarket(symbols=4, ticks=TICKS, seed=5)
    run_pipeline(settings, iter(market), TICKS, market.symbol_names(), speed=None, progress=False,
                 venues=parse_venues("paper,fix"), settle_s=5.0)
    conn = Connectors(settings)

    routes, orders, fills = routed(conn)
    assert sorted(routes.values()) == ["fix", "paper"]
    news = [o for o in orders if o.action is OrderAction.NEW]
    assert {o.venue for o in news} == {"fix", "paper"}
    acks = Counter(f.order_id for f in fills if f.status in (ExecStatus.NEW, ExecStatus.REJECTED))
    assert acks == Counter(o.order_id for o in news)  # every order answered once, by its venue

    # The FIX venue's own record: each of its orders booked exactly once, none of paper's.
    booked = Counter(a["cl_ord_id"] for a in fix_venue.audit_orders() if a["accepted"])
    assert booked == Counter(o.order_id for o in news if o.venue == "fix")

    positions = {(p.account, p.symbol): p.net_qty
                 for p in conn.table("positions_state", PositionState).values() if p.net_qty}
    assert positions == net_of(fills)
    executed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    account_of = {o.order_id: o.account for o in news}
    for a in fix_venue.audit_orders():
        if a["accepted"]:
            executed[(account_of[a["cl_ord_id"]], a["symbol"])] += Decimal(a["qty"]) * (1 if a["side"] == "1"
                                                                                          else -1)
    fix_accounts = {a for a, v in routes.items() if v == "fix"}
    assert {k: v for k, v in positions.items() if k[0] in fix_accounts} == {k: v for k, v in executed.items()
                                                                            if v}
    ticks = [t for t in read_all(conn, "market_data") if isinstance(t, MarketData)]
    paper_orders = [o for o in orders if o.venue == "paper"]
    assert {k: v for k, v in positions.items() if k[0] not in fix_accounts} == one_venue(ticks, paper_orders)
