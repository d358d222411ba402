"""The fluss profile's connectors on a real cluster: close records and bounded/follow/
resumed/from-end sources, PK-table changelogs, table layout and set-up, raw writes,
readers, and ``CachedLookup`` (TTL, staleness, batches, other profiles, an outage)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fluss
import pyarrow as pa
import pytest
from bytewax.inputs import StatefulSourcePartition

from connectors.base import ConnectorError, SourceMessage, StoredRecord
from connectors.fluss import CLOSED_TABLE, CachedLookup, FlussSource
from connectors.registry import Connectors
from connectors.settings import Settings
from flows.common import TableGate
from schemas import Account, Control, MarketData, SymbolLimit, decode
from tests.integration.fluss.profiles import fluss_settings
from tests.integration.profiles import local_settings
from tradeflow.infra.fluss import FlussCluster

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
Part = StatefulSourcePartition[SourceMessage, int]


def ticks(n: int, start: int = 0, symbols: int = 5) -> list[MarketData]:
    return [
        MarketData(symbol=f"S{i % symbols}", ts=T0 + timedelta(seconds=i), price=Decimal(100 + i), volume=1)
        for i in range(start, start + n)
    ]


def write(settings: Settings, stream: str, records: list[Any], *, close: bool) -> None:
    writer = Connectors(settings).writer(stream)
    try:
        writer.write(records)
        if close:
            writer.close_stream()
    finally:
        writer.close()


def parts(
    settings: Settings,
    stream: str,
    *,
    follow: bool = False,
    from_end: bool = False,
    resume: dict[str, int] | None = None,
) -> dict[str, Part]:
    source = Connectors(settings).source(stream, follow=follow, from_end=from_end)
    assert isinstance(source, FlussSource)
    return {
        name: source.build_part("input", name, (resume or {}).get(name)) for name in source.list_parts()
    }


def drain(part: Part, seconds: float = 20.0) -> tuple[list[SourceMessage], bool]:
    """Call ``next_batch`` until the partition stops (True) or ``seconds`` pass (False)."""
    out: list[SourceMessage] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            batch = list(part.next_batch())
        except StopIteration:
            return out, True
        out += batch
        if not batch:
            time.sleep(0.02)
    return out, False


@pytest.fixture
def settings(fluss_cluster: FlussCluster, tmp_path: Path) -> Settings:
    return fluss_settings(fluss_cluster, tmp_path / "data", fluss={"buckets": 2})


# ------------------------------------------------------------- end of stream


def test_bounded_source_stops_at_the_close_and_a_resumed_one_stops_at_once(settings: Settings) -> None:
    data = ticks(200)
    write(settings, "market_data", data, close=True)
    ps = parts(settings, "market_data")
    assert len(ps) == 2
    got: list[SourceMessage] = []
    snapshots: dict[str, int] = {}
    for name, part in ps.items():
        msgs, stopped = drain(part)
        assert stopped, name
        assert [m.offset for m in msgs] == list(range(len(msgs)))  # every offset, in order
        snapshots[name] = part.snapshot()
        assert snapshots[name] == len(msgs)  # parked at the closed end
        part.close()
        got += msgs
    assert sorted((decode(MarketData, m.value) for m in got), key=lambda t: t.ts) == data
    assert all(m.stream == "market_data" and m.key == decode(MarketData, m.value).symbol for m in got)

    for part in parts(settings, "market_data", resume=snapshots).values():
        assert drain(part) == ([], True)
        part.close()


def test_a_stream_written_after_its_close_is_read_on_and_stops_at_the_next_close(settings: Settings) -> None:
    write(settings, "market_data", ticks(50), close=True)
    reader = Connectors(settings).reader("market_data")
    try:
        assert reader.is_closed()
        write(settings, "market_data", ticks(30, start=50), close=False)  # written again: open
        assert not reader.is_closed()
        ps = parts(settings, "market_data")
        waited = [drain(part, seconds=1.5) for part in ps.values()]
        assert sum(len(msgs) for msgs, _ in waited) == 80
        assert not any(stopped for _, stopped in waited)  # no close after the last records
        write(settings, "market_data", ticks(20, start=80), close=True)
        assert reader.is_closed()
        rest = [drain(part) for part in ps.values()]
        assert all(stopped for _, stopped in rest)
        assert sum(len(msgs) for msgs, _ in rest) == 20
        assert {name: p.snapshot() for name, p in ps.items()} == {
            f"{b}-{settings.fluss.database}.market_data": end for b, end in reader.end_offsets().items()
        }
    finally:
        reader.close()



def test_a_reader_reads_buckets_on_while_they_are_being_written(settings: Settings) -> None:
    """What a scan of a stream being written does (``tradeflow tail``, a test awaiting
    rows): read each bucket to its end, then on from there, again and again, while a
    writer appends; every record arrives once and no read stalls. (Scanning Job A's
    sma_wide in containers from the host, a scanner subscribing a bucket it had read
    before delivered nothing more until RPC_TIMEOUT_S; this cluster does not show it,
    and the reader now subscribes such a bucket on a fresh scanner.)"""
    data = ticks(600)
    writer = Connectors(settings).writer("market_data")

    def append() -> None:
        for i in range(0, len(data), 10):
            writer.write(data[i:i + 10])
            time.sleep(0.01)

    reader = Connectors(settings).reader("market_data")
    got: list[StoredRecord] = []
    thread = threading.Thread(target=append)
    thread.start()
    try:
        positions = dict.fromkeys(range(reader.partitions), 0)
        deadline = time.monotonic() + 60
        while len(got) < len(data) and time.monotonic() < deadline:
            for bucket, position in positions.items():
                started = time.monotonic()
                records = reader.read(bucket, position, 10_000)
                assert time.monotonic() - started < 10.0, f"bucket {bucket} stalled at {position}"
                got += records
                positions[bucket] = records[-1].offset + 1 if records else position
    finally:
        thread.join()
        writer.close()
        reader.close()
    assert sorted((decode(MarketData, r.value) for r in got), key=lambda t: t.ts) == data


def test_follow_mode_never_stops_and_from_end_skips_what_is_there(settings: Settings) -> None:
    write(settings, "market_data", ticks(40), close=True)
    following = parts(settings, "market_data", follow=True)
    from_end = parts(settings, "market_data", follow=True, from_end=True)
    bounded_end = parts(settings, "market_data", from_end=True)
    assert sum(len(drain(p, 1.0)[0]) for p in following.values()) == 40
    assert all(drain(p, 0.5) == ([], False) for p in from_end.values())
    assert all(drain(p) == ([], True) for p in bounded_end.values())  # closed: stops at once
    write(settings, "market_data", ticks(10, start=40), close=True)
    assert sum(len(drain(p, 1.5)[0]) for p in from_end.values()) == 10
    assert sum(len(drain(p, 1.5)[0]) for p in following.values()) == 10
    for p in [*following.values(), *from_end.values(), *bounded_end.values()]:
        p.close()


def test_a_close_record_does_not_close_a_table_created_again(
    settings: Settings, fluss_cluster: FlussCluster
) -> None:
    write(settings, "market_data", ticks(5), close=True)

    async def drop() -> None:
        config = fluss.Config({"bootstrap.servers": fluss_cluster.bootstrap_servers})
        async with await fluss.FlussConnection.create(config) as conn:
            await conn.get_admin().drop_table(fluss.TablePath(settings.fluss.database, "market_data"))

    asyncio.run(asyncio.wait_for(drop(), 30))
    write(settings, "market_data", ticks(5), close=False)  # a new table, never closed
    reader = Connectors(settings).reader("market_data")
    try:
        assert sum(reader.end_offsets().values()) == 5
        assert not reader.is_closed()
    finally:
        reader.close()
    assert not any(drain(p, 1.0)[1] for p in parts(settings, "market_data").values())


# ------------------------------------------------------------- PK tables


def test_a_pk_table_reads_as_its_upserts_and_opens_the_table_gate(settings: Settings) -> None:
    rows = [
        Control(scope="global", state="ACTIVE", ts=T0),
        Control(scope="account:A", state="HALTED", reason="limit", ts=T0),
        Control(scope="global", state="REDUCING", ts=T0 + timedelta(seconds=1)),
        Control(scope="global", state="ACTIVE", ts=T0 + timedelta(seconds=2)),
    ]
    write(settings, "control", rows, close=True)
    reader = Connectors(settings).reader("control")
    try:
        assert reader.partitions == 1
        ends = reader.end_offsets()
        # +I global, +I account:A, -U/+U global, -U/+U global: the -U rows take offsets too.
        assert ends == {0: 6}
        stored = reader.read(0, 0, 100)
        assert [r.offset for r in stored] == [0, 1, 3, 5]
        assert [decode(Control, r.value) for r in stored] == rows
        assert [r.key for r in stored] == ["global", "account:A", "global", "global"]
        assert dict(reader.scan_latest()).keys() == {"global", "account:A"}
    finally:
        reader.close()
    (part,) = parts(settings, "control").values()
    msgs, stopped = drain(part)
    assert stopped
    assert [m.offset for m in msgs] == [0, 1, 3, 5]
    gate = TableGate.at(ends)
    for m in msgs:
        gate.seen(m.partition, m.offset)
    assert gate.open  # the last changelog row is a record the flow receives
    assert part.snapshot() == ends[0]


def test_raw_writes_split_multi_field_keys_and_refuse_non_utf8(settings: Settings) -> None:
    limit = SymbolLimit(account="A1", symbol="X", max_position_qty=Decimal(5), ts=T0)
    writer = Connectors(settings).writer("symbol_limits")
    try:
        writer.write_raw([("A1|X", limit.model_dump_json().encode())])
        with pytest.raises(ConnectorError, match="UTF-8"):
            writer.write_raw([("A1|Y", b"\xff\xfe")])
    finally:
        writer.close()
    reader = Connectors(settings).reader("symbol_limits")
    try:
        raw = reader.latest("A1|X")
        assert raw is not None
        assert decode(SymbolLimit, raw) == limit
        assert reader.latest("A1|Y") is None
        with pytest.raises(ConnectorError, match="log table"):
            Connectors(settings).reader("market_data").latest("X")
    finally:
        reader.close()


def test_an_existing_table_keeps_its_buckets_and_a_foreign_one_is_refused(
    settings: Settings, fluss_cluster: FlussCluster, tmp_path: Path
) -> None:
    wide = fluss_settings(
        fluss_cluster, tmp_path / "wide", namespace=settings.fluss.database, fluss={"buckets": 4}
    )
    Connectors(wide).writer("sma_wide").close()
    reader = Connectors(settings).reader("sma_wide")  # asks for 2 buckets
    assert reader.partitions == 4
    reader.close()

    async def foreign() -> None:
        config = fluss.Config({"bootstrap.servers": fluss_cluster.bootstrap_servers})
        async with await fluss.FlussConnection.create(config) as conn:
            schema = fluss.Schema(pa.schema([pa.field("account", pa.string()), pa.field("x", pa.int64())]))
            await conn.get_admin().create_table(
                fluss.TablePath(settings.fluss.database, "accounts"), fluss.TableDescriptor(schema)
            )

    asyncio.run(asyncio.wait_for(foreign(), 30))
    with pytest.raises(ConnectorError, match="tradeflow expects a primary-key table"):
        Connectors(settings).writer("accounts")


def test_close_records_live_in_their_own_table(settings: Settings, fluss_cluster: FlussCluster) -> None:
    write(settings, "market_data", ticks(3), close=True)

    async def tables() -> list[str]:
        config = fluss.Config({"bootstrap.servers": fluss_cluster.bootstrap_servers})
        async with await fluss.FlussConnection.create(config) as conn:
            return sorted(await conn.get_admin().list_tables(settings.fluss.database))

    assert asyncio.run(asyncio.wait_for(tables(), 30)) == [CLOSED_TABLE, "market_data"]


# ------------------------------------------------------------- lookups


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def account(name: str, cash: int) -> Account:
    return Account(account=name, cash=Decimal(cash), ts=T0)


def test_cached_lookup_serves_a_row_for_at_most_ttl_seconds(settings: Settings) -> None:
    write(settings, "accounts", [account("A1", 100)], close=False)
    clock = FakeClock()
    lookup = CachedLookup(settings, "accounts", ttl_s=2.0, clock=clock)
    try:
        assert lookup.ttl_s == 2.0
        assert lookup.get("A1") == account("A1", 100)
        assert lookup.get("NOPE") is None
        write(settings, "accounts", [account("A1", 200), account("NOPE", 1)], close=False)
        clock.now += 1.9  # within the TTL: the cached answers, however stale
        assert lookup.get("A1") == account("A1", 100)
        assert lookup.get("NOPE") is None
        assert (lookup.stats.hits, lookup.stats.misses) == (2, 2)
        clock.now += 0.1  # TTL over: every write acknowledged before this get is seen
        assert lookup.get("A1") == account("A1", 200)
        assert lookup.get("NOPE") == account("NOPE", 1)
        lookup.invalidate("A1")
        write(settings, "accounts", [account("A1", 300)], close=False)
        assert lookup.get("A1") == account("A1", 300)
    finally:
        lookup.close()


def test_cached_lookup_defaults_its_ttl_and_looks_many_keys_up_at_once(settings: Settings) -> None:
    names = [f"A{i:03d}" for i in range(300)]
    write(settings, "accounts", [account(n, i) for i, n in enumerate(names)], close=False)
    lookup = CachedLookup(settings, "accounts")
    try:
        assert lookup.ttl_s == settings.fluss.lookup_cache_ttl_s
        got = lookup.get_many([*names, "ZZZ", names[0]])
        assert got == {**{n: account(n, i) for i, n in enumerate(names)}, "ZZZ": None}
        assert lookup.stats.lookups == 301  # each distinct key once
        assert len(lookup.stats.fetch_seconds) == 1
    finally:
        lookup.close()
    with pytest.raises(ConnectorError, match="log stream"):
        CachedLookup(settings, "market_data")


def test_cached_lookup_reads_through_the_registry_on_other_profiles(tmp_path: Path) -> None:
    local = local_settings(tmp_path / "local")
    write(local, "accounts", [account("A1", 5)], close=False)
    lookup = CachedLookup(local, "accounts", ttl_s=0)
    try:
        assert lookup.get("A1") == account("A1", 5)
        assert lookup.get("A2") is None
    finally:
        lookup.close()


def test_cached_lookup_answers_again_after_a_tablet_server_restart(
    settings: Settings, fluss_cluster: FlussCluster
) -> None:
    write(settings, "accounts", [account("A1", 1)], close=False)
    lookup = CachedLookup(settings, "accounts", ttl_s=0)
    try:
        assert lookup.get("A1") == account("A1", 1)
        fluss_cluster.restart_tablet_server(databases=[settings.fluss.database])
        write(settings, "accounts", [account("A1", 2)], close=False)
        assert lookup.get("A1") == account("A1", 2)  # the hung lookup reloads the table
    finally:
        lookup.close()
