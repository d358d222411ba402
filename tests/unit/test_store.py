"""The embedded store: partitions, offsets, tables, several processes at once."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.embedded.store import StoreFile, open_stream, partition_for


def test_partition_of_a_key_is_stable_and_in_range() -> None:
    assert partition_for("AAPL", 4) == partition_for("AAPL", 4)
    assert {partition_for(f"S{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert partition_for(None, 4) == 0


def test_offsets_count_from_zero_per_partition(tmp_path: Path) -> None:
    f = open_stream(tmp_path, "s", partitions=2, table=False)
    placed = f.append([(f"k{i}", b"%d" % i) for i in range(10)])
    for part in (0, 1):
        offs = [o for p, o in placed if p == part]
        assert offs == list(range(len(offs)))
    assert sum(f.end_offsets().values()) == 10
    recs = f.read(0, 1, 100)
    assert [r.offset for r in recs] == list(range(1, f.end_offsets()[0]))


def test_a_source_reads_the_records_read_returns_as_messages(tmp_path: Path) -> None:
    f = open_stream(tmp_path, "s", partitions=2, table=False)
    f.append([(f"k{i}" if i % 3 else None, b"v%d" % i) for i in range(30)])
    for part in (0, 1):
        for offset, limit in ((0, 100), (2, 5), (99, 10)):
            want = [(r.partition, r.offset, r.key, r.value) for r in f.read(part, offset, limit)]
            got = f.read_messages("s", part, offset, limit)
            assert [(m.partition, m.offset, m.key, m.value) for m in got] == want
            assert all(m.stream == "s" and type(m.value) is bytes for m in got)


def test_partition_count_is_fixed_by_the_first_open(tmp_path: Path) -> None:
    open_stream(tmp_path, "s", partitions=3, table=False).close()
    assert open_stream(tmp_path, "s", partitions=8, table=False).partitions == 3


def test_table_keeps_the_latest_row_per_key_and_the_changelog(tmp_path: Path) -> None:
    t = open_stream(tmp_path, "t", partitions=1, table=True)
    t.append([("a", b"1"), ("b", b"1"), ("a", b"2")])
    assert t.latest("a") == b"2"
    assert t.latest("zz") is None
    assert list(t.scan_latest()) == [("a", b"2"), ("b", b"1")]
    assert [r.value for r in t.read(0, 0, 10)] == [b"1", b"1", b"2"]


def test_closed_flag_is_seen_by_other_connections(tmp_path: Path) -> None:
    w = open_stream(tmp_path, "s", partitions=1, table=False)
    r = open_stream(tmp_path, "s", partitions=1, table=False)
    assert not r.is_closed()
    w.set_closed()
    assert r.is_closed()


def _writer(path: str, who: int, n: int) -> None:
    f = open_stream(Path(path), "s", partitions=2, table=False)
    for i in range(n):
        f.append([(f"k{i % 5}", f"{who}:{i}".encode())])
    f.close()


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 200)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    f = open_stream(tmp_path, "s", partitions=2, table=False)
    values = [r.value for part in (0, 1) for r in f.read(part, 0, 10_000)]
    assert sorted(values) == sorted(f"{w}:{i}".encode() for w in range(3) for i in range(200))
    for part in (0, 1):
        offs = [r.offset for r in f.read(part, 0, 10_000)]
        assert offs == list(range(len(offs)))
    # each writer's own records keep their order within a partition
    for part in (0, 1):
        for w in range(3):
            recs = f.read(part, 0, 10_000)
            mine = [int(r.value.split(b":")[1]) for r in recs if r.value.startswith(b"%d:" % w)]
            assert mine == sorted(mine)


def test_append_with_ids_keeps_each_id_once(tmp_path: Path) -> None:
    f = open_stream(tmp_path, "s", partitions=2, table=False)
    f.append([("a", b"1"), ("b", b"2")], ids=["x", "y"])
    placed = f.append([("a", b"1"), ("c", b"3")], ids=["x", "z"])
    assert len(placed) == 1
    values = sorted(r.value for part in (0, 1) for r in f.read(part, 0, 10))
    assert values == [b"1", b"2", b"3"]


def _open_at_once(path: str, barrier: Any) -> None:
    barrier.wait()
    for _ in range(OPENS):  # each last close checkpoints and drops the WAL: the next open recovers
        store = StoreFile(Path(path), partitions=3, table=False)
        store.append([("k", b"v")])
        store.close()


OPENS = 40


def test_processes_opening_one_new_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    # Two Job Ds starting together open the same stream file; switching it to WAL (or
    # recovering its WAL) answered "database is locked" at once to one of them, without
    # waiting the busy timeout, which crashed that job (a CI run of test_routing).
    ctx = mp.get_context("spawn")
    procs_per_file, files = 4, 3
    for i in range(files):
        path = tmp_path / f"s{i}.db"
        barrier = ctx.Barrier(procs_per_file)
        procs = [ctx.Process(target=_open_at_once, args=(str(path), barrier)) for _ in range(procs_per_file)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * procs_per_file, f"file {i}"
        ends = StoreFile(path, partitions=3, table=False).end_offsets()
        assert sum(ends.values()) == procs_per_file * OPENS


def test_each_record_keeps_the_time_it_was_appended(tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    f = StoreFile(tmp_path / "s.db", partitions=1, table=False)
    f.append([("k", b"1"), ("k", b"2")])
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    got = f.read(0, 0, 10)
    assert [r.value for r in got] == [b"1", b"2"]
    assert all(r.written_at is not None and before <= r.written_at <= after for r in got)


def test_a_file_from_before_append_times_gets_the_column_and_its_old_records_none(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('partitions', '1');"
        "CREATE TABLE log (part INTEGER NOT NULL, off INTEGER NOT NULL, key TEXT, value BLOB NOT NULL,"
        " PRIMARY KEY (part, off)) WITHOUT ROWID;"
        "INSERT INTO log VALUES (0, 0, 'k', x'31');"
    )
    conn.close()
    f = StoreFile(path, partitions=1, table=False)
    f.append([("k", b"2")])
    old, new = f.read(0, 0, 10)
    assert (old.value, old.written_at) == (b"1", None)
    assert new.value == b"2"
    assert new.written_at is not None


def test_a_polled_partition_reads_only_after_another_connection_commits(tmp_path: Path) -> None:
    from connectors.base import Polling
    from connectors.embedded import StoreSource

    polling = Polling(batch_size=10, interval=timedelta(milliseconds=50),
                      busy_interval=timedelta(milliseconds=1), busy_for=timedelta(seconds=30))
    writer = open_stream(tmp_path, "s", partitions=1, table=False)
    writer.append([("k", b"1")])
    part = StoreSource(tmp_path, "s", partitions=1, table=False, follow=True, polling=polling).build_part(
        "s", "0", None
    )
    reads = 0
    real_read = part._file.read

    def counting_read(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_read(*args)

    part._file.read = counting_read  # type: ignore[method-assign]
    assert [m.value for m in part.next_batch()] == [b"1"]
    assert part.next_awake() is None  # more may follow: at once
    assert part.next_batch() == []  # the end: one read finds nothing
    reads_at_end = reads
    for _ in range(5):
        assert part.next_batch() == []
    assert reads == reads_at_end  # nothing committed since: no read at all
    awake = part.next_awake()
    assert awake is not None
    assert awake - datetime.now(UTC) <= timedelta(milliseconds=1)  # records came lately: busy
    writer.append([("k", b"2")])
    assert [m.value for m in part.next_batch()] == [b"2"]
    assert part.snapshot() == 2


def test_a_quiet_partition_polls_at_the_long_interval() -> None:
    from connectors.base import Polling

    polling = Polling(interval=timedelta(milliseconds=50), busy_interval=timedelta(milliseconds=1),
                      busy_for=timedelta(seconds=1))
    assert polling.wait(0.2) == timedelta(milliseconds=1)
    assert polling.wait(1.5) == timedelta(milliseconds=50)
    assert Polling(busy_for=timedelta(0)).wait(0.0) == Polling().interval
