"""connectors/fluss/tables.py without a cluster: a table the coordinator never took is made again.

Fluss 0.9.1 can miss the creation of a table (apache/fluss#1018): no bucket ever gets a
leader. A CI run hit it (pipeline*.dead_letters, 120 s without a leader). The real
cluster cannot be made to miss it on demand, so this drives ``ensure_table``'s decision
with the cluster calls replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from connectors.base import ConnectorError
from connectors.fluss import tables


class FakeAdmin:
    def __init__(self) -> None:
        self.dropped: list[Any] = []

    async def drop_table(self, path: Any, ignore_if_not_exists: bool = False) -> None:
        self.dropped.append(path)


class FakeClient:
    def __init__(self) -> None:
        self.admin = FakeAdmin()

    def run(self, make: Callable[[], Awaitable[Any]], timeout: float = 1.0) -> Any:
        return asyncio.run(make())  # type: ignore[arg-type]


class Info:
    num_buckets = 3


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fake cluster calls; ``ready`` lists, per wait, whether the buckets get leaders."""
    state: dict[str, Any] = {"created": [], "waits": [], "ready": []}

    def create_or_get(client: Any, layout: Any) -> tuple[Info, bool]:
        state["created"].append(True)
        return Info(), state.get("creates", True)

    def wait_ready(client: Any, path: Any, buckets: int, *, timeout_s: float = 0.0) -> None:
        state["waits"].append(timeout_s)
        if not state["ready"].pop(0):
            raise ConnectorError("no leader for every bucket")

    monkeypatch.setattr(tables, "_create_or_get", create_or_get)
    monkeypatch.setattr(tables, "wait_ready", wait_ready)
    monkeypatch.setattr(tables, "check_layout", lambda layout, info: None)
    return state


class Layout:
    path = "db.t"
    qualified = "db.t"


def test_a_table_just_created_without_a_leader_is_dropped_and_created_again(cluster: dict[str, Any]) -> None:
    client = FakeClient()
    cluster["ready"] = [False, True]
    tables.ensure_table(client, Layout())  # type: ignore[arg-type]
    assert client.admin.dropped == ["db.t"]
    assert len(cluster["created"]) == 2
    assert cluster["waits"] == [tables.FRESH_TABLE_READY_S, tables.FRESH_TABLE_READY_S]


def test_it_gives_up_recreating_after_the_retries_and_waits_the_full_time(cluster: dict[str, Any]) -> None:
    client = FakeClient()
    cluster["ready"] = [False] * (tables.LOST_TABLE_RETRIES + 1)
    with pytest.raises(ConnectorError):
        tables.ensure_table(client, Layout())  # type: ignore[arg-type]
    assert len(client.admin.dropped) == tables.LOST_TABLE_RETRIES
    assert cluster["waits"][-1] == 0.0  # the last wait is the full READY_TIMEOUT_S


def test_a_table_another_process_created_is_never_dropped(cluster: dict[str, Any]) -> None:
    client = FakeClient()
    cluster["creates"] = False
    cluster["ready"] = [False]
    with pytest.raises(ConnectorError):
        tables.ensure_table(client, Layout())  # type: ignore[arg-type]
    assert client.admin.dropped == []
    assert cluster["waits"] == [0.0]


def test_the_close_records_table_is_made_again_the_same_way(
    cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_tradeflow_closed`` is created by ``CloseRecords``, not ``ensure_table``; a CI run
    hit the missed creation there too (120 s without a leader, then the write failed)."""
    from connectors.fluss import markers

    client = FakeClient()
    exists: list[bool] = [False, False]

    async def table_exists(path: Any) -> bool:
        return exists.pop(0)

    client.admin.table_exists = table_exists  # type: ignore[attr-defined]
    made: list[Any] = []
    monkeypatch.setattr(markers, "ensure_database", lambda c, db: None)
    monkeypatch.setattr(markers, "create_table", lambda c, path, descriptor: made.append(path))
    monkeypatch.setattr(FakeClient, "table", lambda self, path: "handle", raising=False)
    cluster["ready"] = [False, True]
    records = markers.CloseRecords(client, "db")  # type: ignore[arg-type]
    assert records._ensure() == "handle"
    assert made == [records.path, records.path]
    assert client.admin.dropped == [records.path]
    assert cluster["waits"] == [tables.FRESH_TABLE_READY_S, tables.FRESH_TABLE_READY_S]


def test_a_bucket_without_a_leader_in_the_clients_metadata_is_transient() -> None:
    import fluss

    from connectors.fluss.client import is_transient

    stale = fluss.FlussError("Fluss hitting unexpected error No leader found for table bucket: "
                             "TableBucket(table_id=2, bucket=0).")
    assert is_transient(stale)  # asked again after a metadata reload (FlussClient._offsets)
    assert not is_transient(fluss.FlussError("Fluss hitting unexpected error something else"))
