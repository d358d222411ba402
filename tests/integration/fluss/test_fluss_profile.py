"""Jobs A and C on the fluss profile against a real Fluss cluster: the same rows as on the
embedded store, PK tables holding exactly the latest row per key, SIGKILL + Bytewax
recovery from snapshotted bucket offsets, a tablet server restart mid-stream, and
malformed payloads landing in dead_letters (with the DLQ columns)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fluss
import pytest

from connectors.kafka import recovery_positions
from connectors.registry import Connectors
from flows import portfolio_risk
from operators.portfolio import order_id_for
from schemas import (
    Account,
    DeadLetter,
    MarketData,
    PositionState,
    SmaWide,
    TradeSignal,
    VenueFill,
    decode,
)
from tests.flows.test_indicators_flow import BAD_PAYLOADS, T0
from tests.integration import scenarios
from tests.integration.fluss.profiles import (
    fluss_env,
    fluss_settings,
    latest_rows,
    run_on_both,
    run_phases_on_both,
)
from tests.integration.profiles import assert_same_by_id
from tradeflow.infra.fluss import FlussCluster

pytestmark = pytest.mark.integration


def scan_table(cluster: FlussCluster, database: str, table: str) -> list[dict[str, Any]]:
    """Read a whole log table with the bare pyfluss client (every column, every bucket)."""

    async def scenario() -> list[dict[str, Any]]:
        config = fluss.Config({"bootstrap.servers": cluster.bootstrap_servers})
        async with await fluss.FlussConnection.create(config) as conn:
            path = fluss.TablePath(database, table)
            info = await conn.get_admin().get_table_info(path)
            buckets = list(range(info.num_buckets))
            ends = await conn.get_admin().list_offsets(path, buckets, fluss.OffsetSpec.latest())
            scanner = await (await conn.get_table(path)).new_scan().create_log_scanner()
            scanner.subscribe_buckets(dict.fromkeys(buckets, fluss.EARLIEST_OFFSET))
            rows: list[dict[str, Any]] = []
            seen = dict.fromkeys(buckets, 0)
            while any(seen[b] < ends[b] for b in buckets):
                for bucket, recs in (await scanner.poll(500)).items():
                    seen[bucket.bucket_id] += len(recs)
                    rows += [{**r.row, "_bucket": bucket.bucket_id, "_offset": r.offset} for r in recs]
            del scanner
            return rows

    return asyncio.run(asyncio.wait_for(scenario(), 60))


# ------------------------------------------------------------------------ Job A


@pytest.mark.parametrize("workers", [1, 2])
def test_job_a_on_fluss_writes_the_same_rows_as_on_the_embedded_store(
    fluss_cluster: FlussCluster, tmp_path: Path, workers: int
) -> None:
    runs = scenarios.job_a_matches_local(run_on_both, fluss_cluster, tmp_path, workers)
    # Each symbol's rows are in one bucket, in seq order (the bucket key is the symbol).
    settings = runs.fluss_settings
    reader = Connectors(settings).reader("sma_wide")
    try:
        buckets: dict[str, set[int]] = {}
        for part in range(reader.partitions):
            seqs: dict[str, list[int]] = {}
            for rec in reader.read(part, 0, 10_000):
                row = decode(SmaWide, rec.value)
                assert rec.key == row.symbol
                buckets.setdefault(row.symbol, set()).add(part)
                seqs.setdefault(row.symbol, []).append(row.seq)
            assert all(s == sorted(s) for s in seqs.values())
    finally:
        reader.close()
    assert all(len(b) == 1 for b in buckets.values())


def test_job_a_killed_mid_stream_resumes_from_its_fluss_offsets(
    fluss_cluster: FlussCluster, tmp_path: Path
) -> None:
    settings = fluss_settings(fluss_cluster, tmp_path / "data")
    killed = scenarios.kill_and_resume(settings, fluss_env(settings), tmp_path, ticks=40_000, seed=11)

    # The snapshots name the tables' buckets; the last one is at each bucket's closed end.
    ends = Connectors(settings).reader("market_data").end_offsets()
    positions = {
        (p.topic, p.partition): p.offset
        for p in recovery_positions(killed.recovery)
        if p.step_id == "indicators.market_data"
    }
    assert positions == {(f"{settings.fluss.database}.market_data", b): end for b, end in ends.items()}

    killed.assert_a_run_after_the_end_writes_nothing()


def test_job_a_survives_a_tablet_server_restart_mid_stream(
    fluss_cluster: FlussCluster, tmp_path: Path
) -> None:
    settings = fluss_settings(fluss_cluster, tmp_path / "data")
    database = settings.fluss.database
    scenarios.run_through_a_restart(
        settings,
        fluss_env(settings),
        tmp_path,
        lambda: fluss_cluster.restart_tablet_server(databases=[database]),
        ticks=40_000,
        seed=5,
    )


def test_malformed_payloads_go_to_dead_letters_with_dlq_columns(
    fluss_cluster: FlussCluster, tmp_path: Path
) -> None:
    settings = fluss_settings(fluss_cluster, tmp_path / "data", fluss={"buckets": 1})
    payloads = scenarios.malformed_market_data()
    writer = Connectors(settings).writer("market_data")
    writer.write_raw([("X", p) for p in payloads])
    writer.close_stream()
    writer.close()
    offsets = {p: i for i, p in enumerate(payloads)}  # one bucket: offset = write order

    scenarios.assert_job_a_letters_point_back(settings, {p: (0, offset) for p, offset in offsets.items()})

    # The same facts as typed columns of the dead_letters table, for SQL readers.
    database = settings.fluss.database
    rows = sorted(scan_table(fluss_cluster, database, "dead_letters"), key=lambda r: r["dlq_source_offset"])
    assert len(rows) == len(BAD_PAYLOADS)
    for row, (payload, why) in zip(rows, BAD_PAYLOADS.items(), strict=True):
        assert row["source_stream"] == "market_data"
        assert row["dlq_source_table"] == f"{database}.market_data"
        assert (row["dlq_source_bucket"], row["dlq_source_offset"]) == (0, offsets[payload])
        assert why in row["dlq_reason"], row["dlq_reason"]
        assert row["dlq_job"] == "indicators"
        assert row["_v"] == 1
        assert decode(DeadLetter, row["payload"]).payload.encode() == payload
    # Raw payloads carry no event time and no schema version in the source table.
    raw = scan_table(fluss_cluster, database, "market_data")
    assert {(r["ts"], r["_v"]) for r in raw} == {(None, None)}


# ------------------------------------------------------------------------ PK tables


def test_pk_table_holds_exactly_the_latest_row_per_key(fluss_cluster: FlussCluster, tmp_path: Path) -> None:
    settings = fluss_settings(fluss_cluster, tmp_path / "data")
    keys = [(f"ACC{a}", f"S{s}") for a in range(4) for s in range(5)]
    versions = [
        PositionState(
            account=acct, symbol=sym, net_qty=Decimal(v * 10 + i), avg_px=Decimal("100.5") + v,
            realized_pnl=Decimal(v), unrealized_pnl=Decimal(0), market_value=Decimal(i),
            ts=T0 + timedelta(seconds=v),
        )
        for v in range(4)
        for i, (acct, sym) in enumerate(keys)
    ]
    writer = Connectors(settings).writer("positions_state")
    for i in range(0, len(versions), 15):  # several writes per key, spread over batches
        writer.write(versions[i : i + 15])
    writer.close()
    want = {r.key(): r for r in versions}  # the last version of each key

    assert latest_rows(settings, "positions_state") == want
    reader = Connectors(settings).reader("positions_state")
    try:
        for key, rec in want.items():
            raw = reader.latest(key)
            assert raw is not None
            assert decode(PositionState, raw) == rec
        assert reader.latest("NOBODY|X") is None
        # The changelog still has every version, as upserts (+I then +U), in write order.
        log = reader.read(0, 0, 10_000)
        assert [decode(PositionState, r.value) for r in log] == versions
    finally:
        reader.close()

    # The bare client sees one row per key with the key columns filled.
    async def bare_lookup() -> dict[str, object] | None:
        config = fluss.Config({"bootstrap.servers": fluss_cluster.bootstrap_servers})
        async with await fluss.FlussConnection.create(config) as conn:
            table = await conn.get_table(fluss.TablePath(settings.fluss.database, "positions_state"))
            row = await table.new_lookup().create_lookuper().lookup({"account": "ACC3", "symbol": "S4"})
            return row

    row = asyncio.run(asyncio.wait_for(bare_lookup(), 30))
    assert row is not None
    assert (row["account"], row["symbol"]) == ("ACC3", "S4")
    assert decode(PositionState, row["payload"]) == want["ACC3|S4"]  # type: ignore[arg-type]
    assert row["ts"] == T0 + timedelta(seconds=3)


def test_job_c_on_fluss_matches_local_and_its_tables_hold_the_latest_rows(
    fluss_cluster: FlussCluster, tmp_path: Path
) -> None:
    t0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    accounts = [
        Account(account=a, cash=Decimal(100_000), max_order_notional=Decimal(5000), max_open_orders=5, ts=t0)
        for a in ("ACC1", "ACC2")
    ]
    ticks = [
        MarketData(symbol=s, ts=t0 + timedelta(seconds=i), price=Decimal(100 + i), volume=1)
        for i in range(3)
        for s in ("X", "Y")
    ]
    signals = [
        TradeSignal(
            signal_id=f"s{i}", strategy_id="st", symbol="XY"[i % 2], account=f"ACC{1 + i % 2}",
            side="BUY" if i % 3 else "SELL", qty=Decimal(5 + 10 * (i % 4)), ts=t0 + timedelta(seconds=10 + i),
        )
        for i in range(12)
    ]
    fills = [
        VenueFill(
            order_id=order_id_for(s.account, s.signal_id), venue="paper", account=s.account, symbol=s.symbol,
            side=s.side, exec_id=f"e{i}", status="FILLED", last_qty=s.qty, last_px=Decimal(101),
            cum_qty=s.qty, leaves_qty=Decimal(0), avg_px=Decimal(101), ts=t0 + timedelta(seconds=40 + i),
        )
        for i, s in enumerate(signals[:6])
    ]
    # Phases, so that decisions do not depend on how the separate inputs interleave:
    # accounts and marks, then the signals, then the venue's fills.
    phases: list[dict[str, list[Any]]] = [
        {"accounts": accounts, "symbol_limits": [], "control": [], "market_data": ticks},
        {"trade_signals": signals},
        {"venue_fills": fills},
    ]
    runs = run_phases_on_both(
        portfolio_risk.build_flow, fluss_cluster, tmp_path, phases,
        ["risk_decisions", "validated_orders", "risk_events", "dead_letters"],
        partitions=1, fluss={"buckets": 1},
    )
    for profile in (runs.local, runs.fluss):  # measured, not decided: leave it out
        profile["risk_decisions"] = [
            r.model_copy(update={"latency_us": 0.0}) for r in profile["risk_decisions"]
        ]
    decisions = runs.local["risk_decisions"]
    assert len(decisions) == len(signals)
    assert {d.decision.value for d in decisions} == {"PASS", "FAIL"}  # type: ignore[attr-defined]
    assert_same_by_id(runs, "risk_decisions", lambda r: r.signal_id)  # type: ignore[attr-defined]
    assert_same_by_id(runs, "validated_orders", lambda r: (r.order_id, r.action))  # type: ignore[attr-defined]
    assert_same_by_id(runs, "risk_events", lambda r: r.event_id)  # type: ignore[attr-defined]
    assert runs.fluss["dead_letters"] == runs.local["dead_letters"] == []
    # The PK tables Job C upserts hold the same latest row per key on both profiles.
    for table in ("orders", "positions_state", "portfolio_state"):
        local = latest_rows(runs.local_settings, table)
        assert local, table
        assert latest_rows(runs.fluss_settings, table) == local, table
