"""pyfluss from synchronous code: one connection and one private event loop per user.

Every pyfluss call that talks to the network is a coroutine that must be *created*
inside a running loop (docs/fluss-client.md §1). Bytewax sources and sinks, writers,
readers and lookups are synchronous, so each of them owns a ``FlussClient``: a
connection plus a private event loop that drives it with ``run_until_complete``.
Every await is bounded (``asyncio.wait_for``): a call that would hang while the
tablet server is away raises ``FlussTimeout`` instead.

After a tablet server outage a connection's metadata may have forgotten the tables:
writes raise ``TABLE_NOT_EXIST`` and lookups hang until ``conn.get_table`` reloads
the table (docs/fluss-client.md §8). ``FlussClient.table`` does that reload with
retries; callers ask for it when they see either symptom.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import fluss

from connectors.base import ConnectorError
from connectors.fluss.settings import FlussSettings

log = logging.getLogger("connectors.fluss")

T = TypeVar("T")

CONNECT_TIMEOUT_S = 30.0
"""Opening a connection gives up after this long."""

RPC_TIMEOUT_S = 30.0
"""Admin calls (create, list offsets, table metadata) give up after this long."""

FLUSH_TIMEOUT_S = 120.0
"""How long a sink waits for its records to be acknowledged, e.g. while the tablet
server restarts, before it raises (the Kafka profile's delivery timeout)."""

CLOSE_TIMEOUT_S = 10.0
"""Closing a connection gives up after this long (it waits for writes still queued)."""

RELOAD_TIMEOUT_S = 120.0
"""How long a stale table is reloaded (``get_table`` retried) before giving up."""


EXIT_SETTLE_S = 0.2
"""How long a process that used pyfluss waits at exit (see ``settle_before_exit``)."""

_used = False


def note_pyfluss_used() -> None:
    """Make this process wait ``EXIT_SETTLE_S`` at exit (called on every pyfluss call)."""
    global _used  # noqa: PLW0603 - one flag per process, read by the exit hook
    _used = True


@atexit.register
def settle_before_exit() -> None:
    """Let pyfluss's runtime threads hand their last results back before Python finalizes.

    pyfluss completes an awaitable from a tokio thread through the loop's
    ``call_soon_threadsafe``; the loop can see the result (and the program go on to
    exit) while that thread is still inside the call, waiting to take the GIL back.
    If the interpreter is finalizing by then, the thread is made to exit in the middle
    of Rust frames and the whole process aborts (SIGABRT, exit 134): ``tradeflow feed``
    and ``seed`` did so in about one run in ten after all their work was done. Exit
    hooks run before finalization, so a short pause here lets those threads finish.
    (A call that timed out may complete later still; its result is dropped, but its
    thread could race the exit the same way. Nothing on the normal path times out.)
    """
    if _used:
        time.sleep(EXIT_SETTLE_S)


class FlussTimeout(ConnectorError):
    """A bounded pyfluss call did not finish in time (the cluster is unreachable or busy)."""


def is_table_missing(exc: BaseException) -> bool:
    """Tell whether ``exc`` says the table does not exist (or the client forgot it)."""
    return isinstance(exc, fluss.FlussError) and exc.error_code == fluss.ErrorCode.TABLE_NOT_EXIST


def is_out_of_range(exc: BaseException) -> bool:
    """Tell whether ``exc`` says a fetch offset is no longer (or not yet) in the log."""
    if not isinstance(exc, fluss.FlussError):
        return False
    code = fluss.ErrorCode.LOG_OFFSET_OUT_OF_RANGE_EXCEPTION
    return exc.error_code == code or "out of range" in str(exc)


def is_transient(exc: BaseException) -> bool:
    """Tell whether a failed call may succeed when tried again (leader moves, outages)."""
    if isinstance(exc, FlussTimeout | TimeoutError):
        return True
    if not isinstance(exc, fluss.FlussError):
        return False
    transient = {
        fluss.ErrorCode.NETWORK_EXCEPTION,
        fluss.ErrorCode.NOT_LEADER_OR_FOLLOWER,
        fluss.ErrorCode.LEADER_NOT_AVAILABLE_EXCEPTION,
        fluss.ErrorCode.REQUEST_TIME_OUT,
        fluss.ErrorCode.UNKNOWN_TABLE_OR_BUCKET_EXCEPTION,
        fluss.ErrorCode.FENCED_LEADER_EPOCH_EXCEPTION,
        fluss.ErrorCode.NOT_ENOUGH_REPLICAS_EXCEPTION,
        fluss.ErrorCode.STORAGE_BACKPRESSURE_EXCEPTION,
    }
    text = str(exc)
    # "No leader found for table bucket": the client's own metadata has no leader for a
    # bucket yet (after a tablet server restart); it holds one again once reloaded.
    return bool(exc.is_retriable) or exc.error_code in transient or any(
        m in text for m in ("Connection refused", "No leader found")
    )


def client_config(
    settings: FlussSettings, *, max_poll_records: int | None = None, fetch_wait_ms: int | None = None
) -> fluss.Config:
    """Return the pyfluss configuration of every tradeflow client.

    Writers wait for all replicas (``acks=all``) and are idempotent (no duplicates
    when they retry); sources poll at most ``max_poll_records`` records at a time and
    let the tablet server hold a fetch for at most ``fetch_wait_ms``: Fluss 0.9.1
    answers a waiting fetch only when that time is up, even if rows arrived meanwhile,
    so it bounds the latency a scanner adds (the client default, 500 ms, put the
    median tick-to-row latency of Job A at ~480 ms).
    """
    props = {
        "bootstrap.servers": settings.bootstrap,
        "writer.acks": "all",
        "writer.enable-idempotence": "true",
    }
    if max_poll_records is not None:
        props["scanner.log.max-poll-records"] = str(max_poll_records)
    if fetch_wait_ms is not None:
        props["scanner.log.fetch.wait-max-time-ms"] = str(max(1, fetch_wait_ms))
    config = fluss.Config(props)
    config.connect_timeout_ms = int(CONNECT_TIMEOUT_S * 1000)
    return config


class FlussClient:
    """A Fluss connection driven from synchronous code through a private event loop.

    Meant for one thread at a time (a Bytewax source partition or sink partition, a
    writer, a reader): build one per user and ``close()`` it when done.
    """

    def __init__(
        self,
        settings: FlussSettings,
        *,
        max_poll_records: int | None = None,
        fetch_wait_ms: int | None = None,
    ) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._tables: dict[str, fluss.FlussTable] = {}
        config = client_config(settings, max_poll_records=max_poll_records, fetch_wait_ms=fetch_wait_ms)
        try:
            self.conn: fluss.FlussConnection = self.run(
                lambda: fluss.FlussConnection.create(config), CONNECT_TIMEOUT_S
            )
        except BaseException as exc:
            self._loop.close()
            if isinstance(exc, fluss.FlussError | FlussTimeout):
                raise ConnectorError(
                    f"cannot connect to the Fluss cluster at {settings.bootstrap}: {exc}"
                ) from exc
            raise
        self.admin: fluss.FlussAdmin = self.conn.get_admin()

    def run(self, make: Callable[[], Awaitable[T]], timeout: float = RPC_TIMEOUT_S) -> T:
        """Create the awaitable inside the loop, run it to completion within ``timeout``."""

        async def bounded() -> T:
            return await asyncio.wait_for(make(), timeout)

        note_pyfluss_used()
        try:
            return self._loop.run_until_complete(bounded())
        except TimeoutError as exc:
            raise FlussTimeout(f"a Fluss call did not finish within {timeout:g}s") from exc

    def table(self, path: fluss.TablePath, *, reload: bool = False) -> fluss.FlussTable:
        """Return a table handle (cached); with ``reload`` fetch its metadata again.

        A reload retries ``TABLE_NOT_EXIST`` and transient errors for up to
        ``RELOAD_TIMEOUT_S``: right after a tablet server outage the first
        ``get_table`` may answer that the table does not exist, and the next one loads
        it again, after which writers and lookupers made before the outage work again.
        """
        key = str(path)
        if not reload and key in self._tables:
            return self._tables[key]
        deadline = time.monotonic() + (RELOAD_TIMEOUT_S if reload else RPC_TIMEOUT_S)
        while True:
            try:
                table = self.run(lambda: self.conn.get_table(path))
                break
            except (fluss.FlussError, FlussTimeout) as exc:
                # TABLE_NOT_EXIST is retried too: callers ensured the table, and right after
                # an outage the client answers that way until its metadata is reloaded.
                retry = is_table_missing(exc) or is_transient(exc)
                if not retry or time.monotonic() > deadline:
                    raise ConnectorError(f"cannot load Fluss table {path}: {exc}") from exc
                log.info("loading Fluss table %s again: %s", path, exc)
                time.sleep(0.25)
        self._tables[key] = table
        return table

    def latest_offsets(self, path: fluss.TablePath, buckets: list[int]) -> dict[int, int]:
        """Return the next offset to be written of each bucket (the high watermark)."""
        return self._offsets(path, buckets, fluss.OffsetSpec.latest())

    def earliest_offsets(self, path: fluss.TablePath, buckets: list[int]) -> dict[int, int]:
        """Return the first offset still in the log of each bucket."""
        return self._offsets(path, buckets, fluss.OffsetSpec.earliest())

    def _offsets(self, path: fluss.TablePath, buckets: list[int], spec: fluss.OffsetSpec) -> dict[int, int]:
        # A transient error (a bucket without a leader in this client's metadata after a
        # tablet server restart) reloads the table's metadata and asks again.
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            try:
                return dict(self.run(lambda: self.admin.list_offsets(path, buckets, spec)))
            except (fluss.FlussError, FlussTimeout) as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                log.info("listing offsets of Fluss table %s again: %s", path, exc)
                time.sleep(0.25)
                self.table(path, reload=True)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close the connection and the loop (drop writers and scanners before)."""
        if self._loop.is_closed():
            return
        self._tables.clear()
        try:
            self.run(self.conn.close, timeout)
        except (fluss.FlussError, ConnectorError) as exc:
            log.warning("closing the Fluss connection: %s", exc)
        finally:
            self._loop.close()
