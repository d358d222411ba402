"""`tradeflow infra up --only fix` starts the venue with its REST API; the printed env is enough."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.rest.settings import RestSettings
from connectors.venues.rest import RestVenue
from schemas import ExecStatus, Side, ValidatedOrder
from tests.integration.test_infra_cli import infra_up
from tradeflow.infra.common import port_open

pytestmark = pytest.mark.integration


def test_infra_up_fix_serves_the_rest_api_that_its_exports_point_at(tmp_path: Path) -> None:
    with infra_up(tmp_path / "infra", "--only", "fix") as (out, state):
        assert "TRADEFLOW_REST__BASE_URL=http://127.0.0.1:" in out
        env = state.env
        assert "TRADEFLOW_REST__SECRET" not in env  # only its file
        adapter = RestVenue(RestSettings(
            base_url=env["TRADEFLOW_REST__BASE_URL"], ws_url=env["TRADEFLOW_REST__WS_URL"],
            api_key=env["TRADEFLOW_REST__API_KEY"], secret_file=Path(env["TRADEFLOW_REST__SECRET_FILE"]),
            store_dir=tmp_path / "store", fsync=False,
        ))
        adapter.connect()
        try:
            assert adapter.wait_connected(20)
            adapter.submit(ValidatedOrder(order_id="INFRA1", account="A", symbol="AAPL", side=Side.BUY,
                                          qty=Decimal(3), ts=datetime.now(UTC)))
            deadline = time.monotonic() + 20
            got: list[ExecStatus] = []
            while ExecStatus.FILLED not in got and time.monotonic() < deadline:
                got += [f.status for f in adapter.poll_reports()]
                time.sleep(0.05)
            assert ExecStatus.FILLED in got
        finally:
            adapter.close()
    assert not port_open(state.ports["fix"])
