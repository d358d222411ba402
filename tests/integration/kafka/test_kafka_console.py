"""The console's data access on the kafka profile: it folds the topics and writes controls.

The browser test runs on the embedded store (tests/flows/test_console.py); this one
checks that the same ``Live`` reads a real broker's topics (tables as compacted
changelogs) and appends a control row there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.registry import Connectors
from schemas import Control, PortfolioState, PositionState, TradingState
from tests.console_browser import wait_for
from tests.helpers import read_all
from tests.integration.kafka.profiles import kafka_settings
from tradeflow.console.live import Live
from tradeflow.infra.kafka import KafkaBroker

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Z = Decimal(0)


def test_the_console_folds_kafka_topics_and_writes_a_control_row(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    settings = kafka_settings(kafka_broker, tmp_path / "data")
    conn = Connectors(settings)
    writer = conn.writer("portfolio_state")
    writer.write([PortfolioState(
        account="K-1", cash=Decimal("1000.5"), equity=Decimal("1000.5"), realized_pnl=Z, unrealized_pnl=Z,
        gross_exposure=Z, net_exposure=Z, margin_used=Z, leverage=Z, open_orders=0,
        peak_equity=Decimal("1000.5"), drawdown=Z, day_start_equity=Decimal("1000.5"), ts=T0,
    )])
    writer.close()
    writer = conn.writer("positions_state")
    writer.write([PositionState(account="K-1", symbol="S", net_qty=Decimal(3), avg_px=Decimal("9.5"),
                                realized_pnl=Z, unrealized_pnl=Z, market_value=Decimal("28.5"), ts=T0)])
    writer.close()

    live = Live(settings)
    try:
        def folded() -> bool:
            live.io.submit(live.refresh).result()
            return bool(live.view.portfolios) and bool(live.view.positions)

        wait_for("the console to read the kafka topics", folded, 60, 0.2)
        out = live.view.to_json()
        assert [(a["account"], a["equity"]) for a in out["accounts"]] == [("K-1", "1000.50000000")]
        assert [(p["symbol"], p["net_qty"]) for p in out["positions"]] == [("S", "3.00000000")]

        live.write_control("account:K-1", TradingState.HALTED, "kafka console test", "tester (console)")
        rows = [c for c in read_all(conn, "control") if isinstance(c, Control)]
        assert [(c.scope, c.state, c.reason) for c in rows] == [
            ("account:K-1", TradingState.HALTED, "kafka console test")]

        def audited() -> bool:
            live.io.submit(live.refresh).result()
            return any(a["reason"] == "kafka console test" for a in live.view.to_json()["audit"])

        wait_for("the audit list to show the change", audited, 60, 0.2)
    finally:
        live.close()
