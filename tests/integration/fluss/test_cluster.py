"""A real Fluss cluster driven through pyfluss: tables, writers, scanners, lookups, restarts.

Every test runs its own event loop (``asyncio.run``); pyfluss objects are not tied to
a loop, but each of their async calls needs a running loop when it is *called*.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fluss
import pyarrow as pa
import pytest

from tests.integration.launchers import launcher_up
from tradeflow.infra.fluss import FlussCluster

pytestmark = pytest.mark.integration

TEST_TIMEOUT = 180.0
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)

TICK_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string()),
        pa.field("px", pa.float64()),
        pa.field("ts", pa.timestamp("ms", tz="UTC")),
        pa.field("seq", pa.int64()),
    ]
)
POSITION_SCHEMA = pa.schema(
    [
        pa.field("account", pa.string()),
        pa.field("symbol", pa.string()),
        pa.field("qty", pa.int64()),
        pa.field("px", pa.float64()),
        pa.field("ts", pa.timestamp("ms", tz="UTC")),
    ]
)
SYMBOLS = ["AAPL", "MSFT", "GOOG", "TSLA", "NVDA", "AMZN"]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run one async scenario in a fresh event loop, bounded in time."""

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), TEST_TIMEOUT)

    asyncio.run(bounded())


@asynccontextmanager
async def connect(cluster: FlussCluster) -> AsyncIterator[fluss.FlussConnection]:
    """Open a pyfluss connection and close it on exit (``async with`` closes, ``with`` not)."""
    config = fluss.Config({"bootstrap.servers": cluster.bootstrap_servers})
    async with await fluss.FlussConnection.create(config) as conn:
        yield conn


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def create_table(
    conn: fluss.FlussConnection,
    database: str,
    name: str,
    schema: pa.Schema,
    *,
    buckets: int,
    primary_keys: list[str] | None = None,
    bucket_keys: list[str] | None = None,
) -> fluss.TablePath:
    admin = conn.get_admin()
    await admin.create_database(database, ignore_if_exists=True)
    path = fluss.TablePath(database, name)
    # TableDescriptor rejects bucket_keys=None (despite its stub): leave it out instead.
    extra: dict[str, Any] = {} if bucket_keys is None else {"bucket_keys": bucket_keys}
    descriptor = fluss.TableDescriptor(
        fluss.Schema(schema, primary_keys=primary_keys), bucket_count=buckets, **extra
    )
    await admin.create_table(path, descriptor, ignore_if_exists=False)
    # A fresh table answers "not leader" for a moment, until its buckets have leaders.
    deadline = time.monotonic() + 30
    while True:
        try:
            await admin.list_offsets(path, list(range(buckets)), fluss.OffsetSpec.earliest())
            return path
        except fluss.FlussError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def create_tick_log(conn: fluss.FlussConnection, database: str, buckets: int) -> fluss.TablePath:
    """Create a new log table of ticks (``TICK_SCHEMA``) in ``database``, bucketed by symbol."""
    return await create_table(
        conn, database, unique("ticks"), TICK_SCHEMA, buckets=buckets, bucket_keys=["symbol"]
    )


async def create_positions_table(
    conn: fluss.FlussConnection, database: str, buckets: int
) -> fluss.TablePath:
    """Create a new primary-key table of positions (``POSITION_SCHEMA``), keyed by account and symbol."""
    return await create_table(
        conn, database, unique("positions"), POSITION_SCHEMA, buckets=buckets,
        primary_keys=["account", "symbol"],
    )


def tick_rows(start: int, count: int) -> list[dict[str, Any]]:
    """Rows with awkward doubles and millisecond timestamps, several per symbol."""
    return [
        {
            "symbol": SYMBOLS[i % len(SYMBOLS)],
            "px": 100.0 + i / 3.0 + 1e-9 * i,
            "ts": T0 + timedelta(milliseconds=37 * i),
            "seq": i,
        }
        for i in range(start, start + count)
    ]


async def latest_offsets(conn: fluss.FlussConnection, path: fluss.TablePath, buckets: int) -> dict[int, int]:
    """``list_offsets`` (latest) that rides out a bucket leader this connection has not learnt yet.

    Right after a tablet server restart the client's metadata may have no leader for a
    bucket ("No leader found", no error code) until ``get_table`` reloads the table.
    """
    spec = fluss.OffsetSpec.latest()
    for attempt in range(20):
        try:
            return await conn.get_admin().list_offsets(path, list(range(buckets)), spec)
        except fluss.FlussError as exc:
            if "No leader found" not in str(exc) or attempt == 19:
                raise
            await asyncio.sleep(0.25)
            await get_table(conn, path)
    raise AssertionError("unreachable")


async def scan_records(
    scanner: fluss.LogScanner, until: dict[int, int], timeout: float = 30.0
) -> dict[int, list[tuple[int, fluss.ChangeType, dict[str, Any]]]]:
    """Poll a subscribed record scanner until each bucket reached ``until[bucket]``."""
    got: dict[int, list[tuple[int, fluss.ChangeType, dict[str, Any]]]] = {b: [] for b in until}
    deadline = time.monotonic() + timeout
    while any(len(got[b]) < n for b, n in until.items()):
        assert time.monotonic() < deadline, f"scan stalled: {[len(v) for v in got.values()]}"
        records = await scanner.poll(500)
        for bucket, recs in records.items():
            got[bucket.bucket_id] += [(r.offset, r.change_type, r.row) for r in recs]
    return got


async def read_log_table(
    conn: fluss.FlussConnection, path: fluss.TablePath, buckets: int
) -> dict[int, list[tuple[int, fluss.ChangeType, dict[str, Any]]]]:
    """Read every bucket of a table from its earliest offset up to its latest offset now."""
    table = await get_table(conn, path)
    scanner = await table.new_scan().create_log_scanner()
    scanner.subscribe_buckets({b: fluss.EARLIEST_OFFSET for b in range(buckets)})
    return await scan_records(scanner, await latest_offsets(conn, path, buckets))


def rows_by_seq(scanned: dict[int, list[tuple[int, Any, dict[str, Any]]]]) -> list[dict[str, Any]]:
    return sorted((row for recs in scanned.values() for _, _, row in recs), key=lambda r: r["seq"])


async def get_table(
    conn: fluss.FlussConnection, path: fluss.TablePath, attempts: int = 20
) -> fluss.FlussTable:
    """``conn.get_table`` that rides out the client's stale metadata after an outage.

    When the only tablet server goes away, pyfluss 1.0.0 re-initialises its cluster
    metadata without the tables; the first ``get_table`` afterwards may answer
    TABLE_NOT_EXIST and the next one loads the table again.
    """
    for attempt in range(attempts):
        try:
            return await conn.get_table(path)
        except fluss.FlussError as exc:
            if exc.error_code != fluss.ErrorCode.TABLE_NOT_EXIST or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def write_with_refresh(
    conn: fluss.FlussConnection,
    path: fluss.TablePath,
    write: Callable[[], fluss.WriteResultHandle],
) -> fluss.WriteResultHandle:
    """Write once; if the client forgot the table (after a tablet server restart), reload it.

    Writers created before the outage fail at once with TABLE_NOT_EXIST until the
    connection's metadata holds the table again; ``get_table`` reloads it.
    """
    try:
        return write()
    except fluss.FlussError as exc:
        if exc.error_code != fluss.ErrorCode.TABLE_NOT_EXIST:
            raise
    await get_table(conn, path)
    return write()


# ---------------------------------------------------------------------- the cluster


def test_cluster_lists_coordinator_and_tablet_server(fluss_cluster: FlussCluster) -> None:
    host, port = fluss_cluster.bootstrap_servers.split(":")
    assert host == "127.0.0.1"
    assert int(port) == fluss_cluster.coordinator_port
    assert set(fluss_cluster.pids) == {"zookeeper", "coordinator", "tablet-server"}
    for name, path in fluss_cluster.log_paths.items():
        assert path.is_file(), name

    async def scenario() -> None:
        async with connect(fluss_cluster) as conn:
            nodes = await conn.get_admin().get_server_nodes()
        kinds = sorted((n.server_type, n.host, n.port) for n in nodes)
        assert kinds == [
            ("CoordinatorServer", "127.0.0.1", fluss_cluster.coordinator_port),
            ("TabletServer", "127.0.0.1", fluss_cluster.tablet_server_port),
        ]

    run(scenario)


def test_create_database(fluss_cluster: FlussCluster) -> None:
    database = unique("db")

    async def scenario() -> None:
        async with connect(fluss_cluster) as conn:
            admin = conn.get_admin()
            assert not await admin.database_exists(database)
            await admin.create_database(
                database, fluss.DatabaseDescriptor(comment="trading"), ignore_if_exists=False
            )
            assert await admin.database_exists(database)
            assert database in await admin.list_databases()
            assert (await admin.get_database_info(database)).database_name == database
            await admin.create_database(database, ignore_if_exists=True)
            with pytest.raises(fluss.FlussError) as err:
                await admin.create_database(database, ignore_if_exists=False)
            assert err.value.error_code == fluss.ErrorCode.DATABASE_ALREADY_EXIST
            assert await admin.list_tables(database) == []

    run(scenario)


# -------------------------------------------------------------------------- log table


def test_log_table_arrow_append_and_scan_back_exactly(fluss_cluster: FlussCluster) -> None:
    buckets = 4
    expected = tick_rows(0, 240)

    async def scenario() -> None:
        async with connect(fluss_cluster) as conn:
            path = await create_tick_log(conn, unique("it_log"), buckets)
            table = await conn.get_table(path)
            assert table.arrow_schema == TICK_SCHEMA
            info = table.get_table_info()
            assert info.num_buckets == buckets
            assert not info.has_primary_key()

            writer = table.new_append().create_writer()
            handles = [
                writer.write_arrow_batch(pa.RecordBatch.from_pylist(expected[i : i + 60], TICK_SCHEMA))
                for i in range(0, 180, 60)
            ]
            handles += [writer.append(row) for row in expected[180:]]
            await writer.flush()
            # flush() does not raise for records that failed: the handles do.
            for handle in handles:
                await handle.wait()

            earliest = await conn.get_admin().list_offsets(
                path, list(range(buckets)), fluss.OffsetSpec.earliest()
            )
            assert earliest == dict.fromkeys(range(buckets), 0)
            latest = await latest_offsets(conn, path, buckets)
            assert sum(latest.values()) == len(expected)

            # Record scanner, one subscription per bucket from the earliest offset.
            scanned = await read_log_table(conn, path, buckets)
            assert rows_by_seq(scanned) == expected
            symbol_buckets: dict[str, set[int]] = {}
            for bucket, recs in scanned.items():
                assert [offset for offset, _, _ in recs] == list(range(latest[bucket]))
                # ChangeType compares with == but is not hashable (no sets or dict keys).
                assert all(ct == fluss.ChangeType.AppendOnly for _, ct, _ in recs)
                for _, _, row in recs:
                    symbol_buckets.setdefault(row["symbol"], set()).add(bucket)
                # Rows of one key stay in write order inside their bucket.
                for symbol in SYMBOLS:
                    seqs = [row["seq"] for _, _, row in recs if row["symbol"] == symbol]
                    assert seqs == sorted(seqs)
            assert all(len(b) == 1 for b in symbol_buckets.values()), symbol_buckets

            # Arrow scanner: batches with their bucket and offset range.
            batch_scanner = await table.new_scan().create_record_batch_log_scanner()
            batch_scanner.subscribe_buckets({b: fluss.EARLIEST_OFFSET for b in range(buckets)})
            batches: list[pa.RecordBatch] = []
            next_offset = dict.fromkeys(range(buckets), 0)
            deadline = time.monotonic() + 30
            while sum(b.num_rows for b in batches) < len(expected):
                assert time.monotonic() < deadline
                for rb in await batch_scanner.poll_record_batch(500):
                    bucket = rb.bucket.bucket_id
                    assert rb.base_offset == next_offset[bucket]
                    assert rb.last_offset - rb.base_offset + 1 == rb.batch.num_rows
                    next_offset[bucket] = rb.last_offset + 1
                    batches.append(rb.batch)
            assert next_offset == latest
            arrow = pa.Table.from_batches(batches).sort_by("seq")
            assert arrow.schema == TICK_SCHEMA
            assert arrow.equals(pa.Table.from_pylist(expected, TICK_SCHEMA))

            # A scanner subscribed from an offset in the middle starts there.
            mid = await table.new_scan().create_log_scanner()
            bucket = max(latest, key=lambda b: latest[b])
            mid.subscribe(bucket, 2)
            tail = await scan_records(mid, {bucket: latest[bucket] - 2})
            assert [offset for offset, _, _ in tail[bucket]] == list(range(2, latest[bucket]))

    run(scenario)


# ---------------------------------------------------------------- primary-key table


def test_primary_key_table_upserts_updates_deletes_and_lookups(
    fluss_cluster: FlussCluster,
) -> None:
    keys = [(f"ACC{a}", s) for a in range(3) for s in SYMBOLS[:4]]  # 12 keys
    updated = keys[::2]
    deleted = [keys[1], keys[3]]

    def position(key: tuple[str, str], qty: int, px: float, ms: int) -> dict[str, Any]:
        return {
            "account": key[0],
            "symbol": key[1],
            "qty": qty,
            "px": px,
            "ts": T0 + timedelta(milliseconds=ms),
        }

    async def scenario() -> None:
        async with connect(fluss_cluster) as conn:
            path = await create_positions_table(conn, unique("it_pk"), 3)
            table = await conn.get_table(path)
            assert table.has_primary_key()
            assert table.get_table_info().get_primary_keys() == ["account", "symbol"]

            writer = table.new_upsert().create_writer()
            latest: dict[tuple[str, str], dict[str, Any] | None] = {}
            for i, key in enumerate(keys):
                row = position(key, 10 * i, 100.0 + i / 7.0, i)
                writer.upsert(row)
                latest[key] = row
            await writer.flush()
            for i, key in enumerate(updated):
                row = position(key, -5 - i, 200.0 + i / 3.0, 1000 + i)
                writer.upsert(row)
                latest[key] = row
            handles = [writer.delete({"account": k[0], "symbol": k[1]}) for k in deleted]
            latest.update(dict.fromkeys(deleted))
            await writer.flush()
            for handle in handles:
                await handle.wait()

            lookuper = table.new_lookup().create_lookuper()
            for key, want in latest.items():
                assert await lookuper.lookup({"account": key[0], "symbol": key[1]}) == want, key
            assert await lookuper.lookup(["ACC9", "NONE"]) is None

            # Partial update: only the named columns change (the key must be named too).
            partial = table.new_upsert().partial_update_by_name(["account", "symbol", "px"])
            key = updated[0]
            await partial.create_writer().upsert({"account": key[0], "symbol": key[1], "px": 1.5}).wait()
            before = latest[key]
            assert before is not None
            assert await lookuper.lookup(list(key)) == {**before, "px": 1.5}

            # The changelog of a PK table: +I, then -U/+U per update, -D per delete.
            buckets = 3
            scanned = await read_log_table(conn, path, buckets)
            changes: dict[tuple[str, str], list[str]] = {}
            for recs in scanned.values():
                for _, change_type, r in recs:
                    changes.setdefault((r["account"], r["symbol"]), []).append(change_type.short_string())
            assert changes == {
                k: ["+I"] + ["-U", "+U"] * ((k in updated) + (k == updated[0])) + ["-D"] * (k in deleted)
                for k in keys
            }

            with pytest.raises(fluss.FlussError):
                await table.new_scan().create_record_batch_log_scanner()

    run(scenario)


# ------------------------------------------------------------ tablet server restart


def _restart_scenario(fluss_cluster: FlussCluster, *, kill: bool) -> None:
    """Write, restart the tablet server, then read everything back and write again.

    The test's tables live in a database of its own, and the restart waits for the
    leaders of those tables only: what other tests left on the shared cluster (many
    tables, some mid-creation) neither slows it down nor makes it time out.
    """
    buckets = 2
    database = unique("it_restart")
    first, second = tick_rows(0, 60), tick_rows(60, 40)
    keys = [("ACC1", s) for s in SYMBOLS]

    def pos(key: tuple[str, str], qty: int) -> dict[str, Any]:
        return {"account": key[0], "symbol": key[1], "qty": qty, "px": qty / 4.0, "ts": T0}

    async def scenario() -> None:
        async with connect(fluss_cluster) as conn:
            log_path = await create_tick_log(conn, database, buckets)
            pk_path = await create_positions_table(conn, database, buckets)
            log_table = await conn.get_table(log_path)
            pk_table = await conn.get_table(pk_path)
            appender = log_table.new_append().create_writer()
            upserter = pk_table.new_upsert().create_writer()
            for row in first:
                appender.append(row)
            for key in keys:
                upserter.upsert(pos(key, 1))
            await appender.flush()
            await upserter.flush()
            for key in keys[:3]:
                await upserter.upsert(pos(key, 2)).wait()

            # A scanner that lives through the restart.
            scanner = await log_table.new_scan().create_log_scanner()
            scanner.subscribe_buckets({b: fluss.EARLIEST_OFFSET for b in range(buckets)})
            before = await scan_records(scanner, await latest_offsets(conn, log_path, buckets))
            assert rows_by_seq(before) == first

            if kill:
                # Acknowledged records newer than the last high-watermark checkpoint
                # (every 200 ms in FlussCluster) are lost when the tablet server crashes.
                await asyncio.sleep(1.5)
            restart = asyncio.get_running_loop().run_in_executor(
                None, lambda: fluss_cluster.restart_tablet_server(kill=kill, databases=[database])
            )
            # Meanwhile a consumer keeps polling and looking up, as a running flow would.
            lookuper = pk_table.new_lookup().create_lookuper()
            while not restart.done():
                assert (await scanner.poll(200)).is_empty()
                with contextlib.suppress(fluss.FlussError, TimeoutError):
                    await asyncio.wait_for(lookuper.lookup(list(keys[0])), 0.5)
            await restart

            # After an outage this connection's metadata lacks the tables (writes raise
            # TABLE_NOT_EXIST, lookups hang) until get_table reloads them.
            await get_table(conn, log_path)
            await get_table(conn, pk_path)

            # Everything written before the restart is still there.
            assert rows_by_seq(await read_log_table(conn, log_path, buckets)) == first
            for i, key in enumerate(keys):
                got = await asyncio.wait_for(lookuper.lookup(list(key)), 10)
                assert got == pos(key, 2 if i < 3 else 1)

            # The writers created before the restart write again (after a metadata refresh).
            handles = []
            for row in second:
                write = functools.partial(appender.append, row)
                handles.append(await write_with_refresh(conn, log_path, write))
            handles.append(await write_with_refresh(conn, pk_path, lambda: upserter.upsert(pos(keys[-1], 9))))
            await appender.flush()
            await upserter.flush()
            for handle in handles:
                await handle.wait()

            # The old scanner carries on past the restart; fresh readers see it all.
            latest = await latest_offsets(conn, log_path, buckets)
            rest = {b: latest[b] - len(before[b]) for b in range(buckets)}
            after = await scan_records(scanner, rest)
            assert rows_by_seq(after) == second
            assert rows_by_seq(await read_log_table(conn, log_path, buckets)) == first + second
            assert await lookuper.lookup(list(keys[-1])) == pos(keys[-1], 9)

        # A brand-new connection works too.
        async with connect(fluss_cluster) as conn:
            table = await conn.get_table(pk_path)
            fresh = table.new_lookup().create_lookuper()
            assert await fresh.lookup(list(keys[0])) == pos(keys[0], 2)

    run(scenario)


def test_restart_tablet_server_keeps_data_and_takes_writes(fluss_cluster: FlussCluster) -> None:
    _restart_scenario(fluss_cluster, kill=False)


def test_killed_tablet_server_keeps_checkpointed_data(fluss_cluster: FlussCluster) -> None:
    _restart_scenario(fluss_cluster, kill=True)


# ----------------------------------------------------------------------------- CLI


def _read_line(stream: Any, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert line, f"no output within {timeout}s"
    return str(line[0])


def test_cli_up_prints_bootstrap_and_stops_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli-cluster"
    with launcher_up("tradeflow.infra.fluss", data_dir, "cluster.json") as proc:
        bootstrap = _read_line(proc.stdout, 240).strip()
        state = json.loads((data_dir / "cluster.json").read_text())
        assert bootstrap == state["bootstrap_servers"] == f"127.0.0.1:{state['coordinator_port']}"
        pids = state["pids"]
        assert set(pids) == {"zookeeper", "coordinator", "tablet-server"}

        async def scenario() -> None:
            config = fluss.Config({"bootstrap.servers": bootstrap})
            async with await fluss.FlussConnection.create(config) as conn:
                nodes = await conn.get_admin().get_server_nodes()
            assert sorted(n.server_type for n in nodes) == ["CoordinatorServer", "TabletServer"]

        run(scenario)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
        for pid in pids.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert json.loads((data_dir / "cluster.json").read_text())["pids"] == {}
