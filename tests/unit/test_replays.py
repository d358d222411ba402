"""ReplayFilterSink: a restarted job's sink does not write again what the stream ends with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.embedded import LocalBackend
from connectors.registry import Connectors
from connectors.replays import REPLAYS_SKIPPED, RecentIds, ReplayFilterSink, read_tail_ids
from connectors.settings import load_settings
from schemas import Record, RiskEvent, Severity, decode, spec

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def event(n: int, message: str = "m") -> RiskEvent:
    return RiskEvent(event_id=f"E{n}", account=f"A{n}", rule="R", severity=Severity.INFO, message=message,
                     ts=T0)


class Recording(DynamicSink[Record]):
    """A sink that keeps what it is asked to write."""

    def __init__(self) -> None:
        self.written: list[Record] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        sink = self

        class Part(StatelessSinkPartition[Record]):
            def write_batch(self, items: list[Record]) -> None:
                sink.written += items

        return Part()


def stored(tmp_path: Path, events: list[RiskEvent]) -> LocalBackend:
    backend = LocalBackend(tmp_path, partitions=2)
    writer = backend.writer(spec("risk_events"), "risk_events")
    writer.write(events)
    writer.close()
    return backend


def test_a_restarted_sink_skips_the_ids_the_stream_ends_with_and_writes_the_rest(tmp_path: Path) -> None:
    backend = stored(tmp_path, [event(n) for n in range(10)])
    inner = Recording()
    events = spec("risk_events")
    sink = ReplayFilterSink(inner, events, lambda: backend.reader(events, "risk_events"), window=100)
    before = REPLAYS_SKIPPED.labels("risk_events")._value.get()
    part = sink.build("out", 0, 1)
    part.write_batch([event(8), event(9), event(10), event(11)])
    part.write_batch([event(11), event(12)])  # written by this life already: skipped too
    assert [e.event_id for e in inner.written] == ["E10", "E11", "E12"]  # type: ignore[attr-defined]
    assert REPLAYS_SKIPPED.labels("risk_events")._value.get() - before == 3


def test_only_the_window_is_read_back_per_partition(tmp_path: Path) -> None:
    backend = stored(tmp_path, [event(n) for n in range(40)])
    reader = backend.reader(spec("risk_events"), "risk_events")
    try:
        ends = reader.data_ends()
        ids = read_tail_ids(reader, spec("risk_events"), window=5)
        per_part = [[r.value for r in reader.read(p, 0, 100)] for p in range(2)]
    finally:
        reader.close()
    assert sorted(ends) == [0, 1]
    assert min(ends.values()) > 5
    assert sum(ends.values()) == 40
    tails = {decode(RiskEvent, v).event_id for part in per_part for v in part[-5:]}
    assert {f"E{n}" for n in range(40) if f"E{n}" in ids} == tails  # the last 5 of each partition


def test_recent_ids_forget_the_oldest_first() -> None:
    ids = RecentIds(3)
    for n in range(5):
        ids.add(str(n))
    assert [str(n) in ids for n in range(5)] == [False, False, True, True, True]


def test_the_registry_wraps_sinks_of_backends_that_do_not_keep_ids(tmp_path: Path) -> None:
    class Forgetful(LocalBackend):
        keeps_ids = False

    settings = load_settings(data_dir=tmp_path)
    conn = Connectors(settings)
    conn._backends[settings.profile] = Forgetful(tmp_path)  # noqa: SLF001 - the backend under test
    assert isinstance(conn.sink("risk_events"), ReplayFilterSink)
    assert not isinstance(conn.sink("market_data"), ReplayFilterSink)  # no ids
    assert not isinstance(Connectors(settings).sink("risk_events"), ReplayFilterSink)  # keeps ids itself
    off = Connectors(load_settings(data_dir=tmp_path, replay_window=0))
    off._backends[settings.profile] = Forgetful(tmp_path)  # noqa: SLF001
    assert not isinstance(off.sink("risk_events"), ReplayFilterSink)
