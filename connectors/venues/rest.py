"""The REST/WebSocket venue adapter: orders over signed HTTP, executions over a user stream.

The venue's API (deploy/fix-venue/README.md): ``POST /api/v1/orders`` with our order id
as ``clientOrderId`` (idempotent: the same id twice is the same order), ``DELETE`` and
``GET /api/v1/orders/{id}``, ``GET /api/v1/executions?after=N`` and a WebSocket user
stream of numbered executions. Every request is signed (``connectors.rest.signing``) and
paced by a token bucket that honours 429/Retry-After (``connectors.rest.ratelimit``).

I/O runs on an asyncio loop in a thread of its own (httpx2 and websockets); ``submit``,
``cancel`` and ``request_status`` only schedule work on it.

Exactly once, as the FIX adapter does it, with the same store (``connectors.fix.store``:
the order map journal, the ExecIDs seen and the numbered report outbox):

- an order is journaled IN_FLIGHT before its POST goes; a POST that times out or loses
  its connection leaves it IN_FLIGHT, and it is then asked about (``GET``) every
  ``status_after_s``, never re-sent blindly. Only if the venue still does not know it
  ``unknown_resend_after_s`` after it went is it POSTed again, with the same client
  order id, which the venue never books twice. A POST that could not even connect is
  retried until ``pending_order_timeout_s``, then rejected locally (NOT_SENT, never
  sent later);
- executions come from the POST answer, status answers, the gap query and the stream;
  each ExecID is taken once (the store remembers them) and written to the outbox before
  it counts. The stream's numbers are checked (``connectors.rest.sequence``): a gap, or
  a reconnect, is filled by ``GET /api/v1/executions?after=<cursor>``; the cursor is
  kept in ``cursor.json`` (behind the outbox, so at worst a range is fetched twice);
- ``snapshot()``/``restore()`` carry the outbox offset and the orders handed in but not
  yet journaled, exactly as ``connectors.venues.fix`` does; after a restart every order
  not known DONE is asked about at once.

A malformed venue message is counted (``malformed``) and logged, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx2
import websockets
from pydantic import SecretStr

from connectors.fix.store import OrderEntry, OrderJournal, OrderPhase, SyncGroup, atomic_write
from connectors.rest.codec import CodecError, decode, entry_body, parse_execution, seq_of
from connectors.rest.ratelimit import TokenBucket, retry_after_s
from connectors.rest.sequence import SequenceTracker, Step
from connectors.rest.settings import RestSettings
from connectors.rest.signing import signed_headers
from connectors.venues.base import JournalingVenue, VenueError, VenueFinding, VenueHealth, VenueOrder
from schemas import CANCEL_REJECTED_PREFIX, ExecStatus, OrderAction, Side, ValidatedOrder, VenueFill

log = logging.getLogger(__name__)

API = "/api/v1"
STREAM_PATH = f"{API}/stream"
_FINAL = {"FILLED", "CANCELED", "REJECTED"}
_AMBIGUOUS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)
"""The request may or may not have reached the venue: resolved by a status query."""


class RestVenue(JournalingVenue[RestSettings]):
    """Send orders to a REST venue and bring its executions back over its user stream."""

    def __init__(
        self,
        settings: RestSettings,
        *,
        name: str = "rest",
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.secret is None:
            raise VenueError("the REST venue needs a signing secret (rest.secret or rest.secret_file)")
        super().__init__(settings, name)
        self._transport = transport
        self._lock = threading.Lock()
        """Guards the journal between the I/O thread and the consumer's reads."""
        self._journal: OrderJournal | None = None
        self._group = SyncGroup()
        """One fsync for the journal lines of many orders or executions (group commit)."""
        self._commit: asyncio.Future[None] | None = None
        self._asked: dict[str, float] = {}
        """IN_FLIGHT orders and when they were last sent or asked about (I/O thread)."""
        self._querying: set[str] = set()
        """Orders whose status query is under way (one at a time per order)."""
        self._went: dict[str, float] = {}
        """When each IN_FLIGHT order's request last went (for ``unknown_resend_after_s``)."""
        self._findings: list[VenueFinding] = []
        self._found: set[str] = set()
        self.counts: dict[str, int] = dict.fromkeys((
            "orders_sent", "requests", "rate_limited", "timeouts", "status_queries", "resent_after_unknown",
            "not_resent", "malformed", "unknown_executions", "duplicates", "gaps", "gap_fetches",
            "stream_connects", "stream_failures", "unauthorized", "local_rejects",
        ), 0)
        self._tracker = SequenceTracker()
        self._cursor_saved = 0
        self._cursor_at = 0.0
        self._bucket = TokenBucket(settings.rate_limit_per_s, settings.rate_burst, time.monotonic())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx2.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._closed = False
        self._stream_up = threading.Event()
        self._logons = 0

    # -- required ------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the store and start the I/O thread (returns at once)."""
        if self._thread is not None:
            return
        s = self._settings
        self._journal = OrderJournal(
            s.session_dir, fsync=s.fsync, max_seen=s.max_seen_exec_ids, group=self._group
        )
        self._open_outbox(self._journal)
        self._tracker = SequenceTracker(self._load_cursor())
        self._cursor_saved = self._tracker.last
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"rest-{self._name}", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        self._hand_back_restored()

    def submit(self, order: ValidatedOrder) -> None:
        """Schedule a NEW order on the I/O thread."""
        if order.action is not OrderAction.NEW:
            raise VenueError(f"submit takes NEW orders, got {order.action} for {order.order_id}")
        self._hand_in(order)
        self._sent_at.setdefault(order.order_id, time.monotonic())
        self._schedule(self._new(order))

    def cancel(self, order: ValidatedOrder) -> None:
        """Schedule a cancel of ``order.order_id`` on the I/O thread."""
        self._hand_in(order)
        self._schedule(self._cancel(order))

    def health(self) -> VenueHealth:
        """Return the stream state, counts and ack/fill latencies."""
        up = self._stream_up.is_set()
        return VenueHealth(
            self._name,
            session_state="ACTIVE" if up else ("CLOSED" if self._closed else "DISCONNECTED"),
            connected=up,
            logons=self._logons,
            msgs_sent=self.counts["requests"],
            msgs_received=self._tracker.last,
            details={
                **self.counts,
                "cursor": self._tracker.last,
                "unanswered": len(self._asked),
                "next_report": self._next_report,
                "reports_queued": self._journal.reports.queued if self._journal else 0,
                **self._latency_figures(),
            },
        )

    def close(self) -> None:
        """Stop the I/O thread, save the cursor and close the store."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                fut.result(10)
            except Exception:  # noqa: BLE001 - closing anyway
                log.exception("rest: shutdown of the I/O loop failed")
            thread.join(10)
        self._stream_up.clear()
        if self._journal is not None:
            self._save_cursor(force=True)
            self._journal.close()

    # -- optional ------------------------------------------------------------------------

    def request_status(self, order_id: str) -> None:
        """Schedule a status query; the answer arrives as a STATUS report."""
        self._schedule(self._status(order_id, explicit=True))

    def poll_findings(self) -> list[VenueFinding]:
        """Return what was found wrong with the venue since the last call."""
        with self._lock:
            out, self._findings = self._findings, []
        return out

    def open_orders(self) -> list[VenueOrder]:
        """Return the orders sent and not done (IN_FLIGHT ones flagged)."""
        if self._journal is None:
            return []
        with self._lock:
            return self._journal.open_orders(self._name, in_flight_status=ExecStatus.NEW)

    # -- recovery (snapshot, restore: JournalingVenue) -------------------------------------

    def _journal_if_open(self) -> OrderJournal | None:
        return self._journal

    # -- extras --------------------------------------------------------------------------

    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the user stream (tests and tools)."""
        return self._stream_up.wait(timeout)

    # -- the I/O thread ------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._boot, ready)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _boot(self, ready: threading.Event) -> None:
        """Start the client, the stream and the housekeeping; ask about unconfirmed orders."""
        self._client = httpx2.AsyncClient(
            base_url=self._settings.base_url, transport=self._transport,
            timeout=self._settings.request_timeout_s,
            limits=httpx2.Limits(max_connections=self._settings.max_concurrent),
        )
        self._sem = asyncio.Semaphore(self._settings.max_concurrent)
        self._spawn(self._stream())
        self._spawn(self._housekeeping())
        journal = self._journal_or_fail()
        now = time.monotonic()
        with self._lock:
            for entry in journal.entries():  # unconfirmed since the restart: ask at once
                if entry.phase is OrderPhase.IN_FLIGHT:
                    self._asked[entry.order_id] = 0.0
                    self._went[entry.order_id] = now
        ready.set()

    async def _shutdown(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    def _schedule(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or self._closed:
            coro.close()
            raise VenueError("RestVenue is not connected (call connect() first)")
        loop.call_soon_threadsafe(self._spawn, coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._stopping:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rest: task failed", exc_info=task.exception())

    # -- requests ------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: bytes = b"") -> httpx2.Response:
        """Send one signed request at our pace, waiting out every 429 (its Retry-After)."""
        client, sem, secret = self._client, self._sem, self._secret()
        if client is None or sem is None:
            raise VenueError("RestVenue used before connect()")
        async with sem:
            while True:
                while (wait := self._bucket.delay(time.monotonic())) > 0:
                    await asyncio.sleep(wait)
                self._bucket.take(time.monotonic())
                headers = signed_headers(self._settings.api_key, secret, _epoch_ms(), method, path, body)
                if body:
                    headers["Content-Type"] = "application/json"
                self.counts["requests"] += 1
                resp = await client.request(method, path, content=body or None, headers=headers)
                if resp.status_code != 429:
                    if resp.status_code == 401:
                        self._unauthorized(resp)
                    return resp
                self.counts["rate_limited"] += 1
                delay = retry_after_s(resp.headers.get("Retry-After"))
                log.warning("rest: 429 on %s %s; waiting %.2fs (Retry-After)", method, path, delay)
                self._bucket.penalize(delay, time.monotonic())

    def _unauthorized(self, resp: httpx2.Response) -> None:
        self.counts["unauthorized"] += 1
        self._find(VenueFinding(
            rule="LOGON_REFUSED", key=f"{self._name}-unauthorized",
            message=f"venue {self._name} refused our signature (401): {resp.text[:200]}",
        ))

    async def _new(self, order: ValidatedOrder) -> None:
        journal = self._journal_or_fail()
        with self._lock:
            entry = journal.get(order.order_id)
            if entry is None:
                entry = _entry(order)
                journal.record_order(entry)  # IN_FLIGHT before the request goes
                self._journaled(order)
                self.counts["orders_sent"] += 1
            else:
                self._journaled(order)
        if entry.phase in (OrderPhase.DONE, OrderPhase.NOT_SENT):
            log.info("rest: order %s handed in again but already %s; ignored", order.order_id, entry.phase)
            return
        if entry.venue_order_id is not None or order.order_id in self._went:
            self.counts["not_resent"] += 1  # known to have gone: asked about, never re-sent
            self._asked[order.order_id] = 0.0
            return
        await self._durable()  # the journal knows the order before the venue can
        await self._post(entry, since=time.monotonic())

    async def _durable(self) -> None:
        """Wait until every journal line written so far is fsynced: one fsync for all waiting."""
        if self._commit is not None:
            await asyncio.shield(self._commit)
            return
        self._commit = asyncio.get_running_loop().create_future()
        await asyncio.sleep(0)  # the other orders ready now write their lines first
        done, self._commit = self._commit, None
        try:
            self._commit_now()
        finally:
            done.set_result(None)

    def _commit_now(self) -> None:
        with self._lock:
            self._group.commit()

    async def _post(self, entry: OrderEntry, since: float) -> None:
        """POST an order (first time, or again after the venue said it does not know it)."""
        backoff = self._settings.reconnect_initial_s
        while True:
            self._went[entry.order_id] = time.monotonic()
            try:
                resp = await self._request("POST", f"{API}/orders", entry_body(entry))
            except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:  # never reached it: try again
                if time.monotonic() - since >= self._settings.pending_order_timeout_s:
                    waited = self._settings.pending_order_timeout_s
                    why = f"not sent: venue unreachable for {waited:g}s ({exc})"
                    self._reject_locally(entry, OrderPhase.NOT_SENT, why)
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.reconnect_max_s)
                continue
            except _AMBIGUOUS as exc:
                self.counts["timeouts"] += 1
                log.warning("rest: order %s: %s; IN_FLIGHT until a status query answers",
                            entry.order_id, type(exc).__name__)
                self._asked[entry.order_id] = time.monotonic()
                return
            break
        if resp.status_code in (200, 201):
            self._take_order_answer(entry, resp)
        elif resp.status_code == 401:
            why = f"not sent: venue refused our signature ({resp.text[:200]})"
            self._reject_locally(entry, OrderPhase.NOT_SENT, why)
        elif 400 <= resp.status_code < 500:
            why = f"refused by the venue ({resp.status_code}): {resp.text[:200]}"
            self._reject_locally(entry, OrderPhase.DONE, why)
        else:  # 5xx: it may or may not have been booked
            log.warning("rest: order %s answered %d; asking its status", entry.order_id, resp.status_code)
            self._asked[entry.order_id] = time.monotonic()

    async def _cancel(self, cancel: ValidatedOrder) -> None:
        journal = self._journal_or_fail()
        with self._lock:
            self._journaled(cancel)
            entry = journal.get(cancel.order_id)
        if entry is None or entry.phase is OrderPhase.NOT_SENT:
            self._cancel_rejected(cancel, entry, "unknown order")
            return
        try:
            resp = await self._request("DELETE", f"{API}/orders/{quote(entry.cl_ord_id, safe='')}")
        except httpx2.HTTPError as exc:
            self.counts["timeouts"] += 1
            log.warning("rest: cancel of %s: %s; asking its status", cancel.order_id, type(exc).__name__)
            self._asked[cancel.order_id] = time.monotonic()
            return
        if resp.status_code == 200:
            self._take_order_answer(entry, resp)
        else:
            why = _error_of(resp)
            self._cancel_rejected(cancel, entry, why)
            if resp.status_code == 409:
                self._take_order_answer(entry, resp)

    async def _status(self, order_id: str, *, explicit: bool = False) -> None:
        journal = self._journal_or_fail()
        with self._lock:
            entry = journal.get(order_id)
        if entry is None or order_id in self._querying:
            return
        self._querying.add(order_id)  # one query (and its resend) at a time per order
        try:
            await self._query(entry, explicit=explicit)
        finally:
            self._querying.discard(order_id)

    async def _query(self, entry: OrderEntry, *, explicit: bool) -> None:
        order_id = entry.order_id
        self.counts["status_queries"] += 1
        try:
            resp = await self._request("GET", f"{API}/orders/{quote(entry.cl_ord_id, safe='')}")
        except httpx2.HTTPError as exc:
            log.info("rest: status of %s: %s; asking again", order_id, type(exc).__name__)
            return
        if resp.status_code == 200:
            data = self._take_order_answer(entry, resp)
            if explicit and data is not None:
                self._status_report(entry, data)
        elif resp.status_code == 404 and entry.phase is OrderPhase.IN_FLIGHT:
            went = self._went.get(order_id, 0.0)
            if time.monotonic() - went >= self._settings.unknown_resend_after_s:
                self.counts["resent_after_unknown"] += 1
                log.warning("rest: venue does not know %s %.1fs after it went; sending it again "
                            "(same client order id)", order_id, time.monotonic() - went)
                await self._post(entry, since=time.monotonic())

    # -- executions ----------------------------------------------------------------------

    def _take_order_answer(self, entry: OrderEntry, resp: httpx2.Response) -> dict[str, Any] | None:
        """Take an order answer (``{"order", "executions"}``): its executions, then its state."""
        try:
            data = decode(resp.content)
            order = data.get("order")
            executions = data.get("executions", [])
            if not isinstance(order, dict) or not isinstance(executions, list):
                raise CodecError("an order answer needs order and executions")
        except CodecError as exc:
            self._malformed(f"order answer for {entry.order_id}", exc)
            if entry.phase is OrderPhase.IN_FLIGHT:
                self._asked[entry.order_id] = time.monotonic()  # resolved by a status query
            return None
        for e in executions:
            self._take(e)
        status = order.get("status")
        with self._lock:
            journal = self._journal_or_fail()
            if isinstance(order.get("orderId"), str):
                journal.record_venue_id(entry.order_id, order["orderId"])
            if status in _FINAL:
                journal.record_phase(entry.order_id, OrderPhase.DONE, str(status))
            elif entry.phase is not OrderPhase.DONE:
                journal.record_phase(entry.order_id, OrderPhase.WORKING)
        self._asked.pop(entry.order_id, None)
        self._commit_now()
        return order

    def _take(self, e: object) -> bool:
        """Take one execution: once per ExecID, into the outbox; False if malformed."""
        if not isinstance(e, dict):
            self._malformed("execution", CodecError("not an object"))
            return False
        journal = self._journal_or_fail()
        with self._lock:
            entry = journal.by_cl_ord_id(str(e.get("clientOrderId")))
            if entry is None:
                self.counts["unknown_executions"] += 1
                log.warning("rest: execution for an order we never sent: %s", e)
                return True
            exec_id = e.get("execId")
            if isinstance(exec_id, str) and journal.seen(exec_id):
                self.counts["duplicates"] += 1
                return True
            try:
                fill = parse_execution(e, venue=self._name, order_id=entry.order_id, account=entry.account)
            except CodecError as exc:
                self._malformed(f"execution of {entry.order_id}", exc)
                return False
            journal.log_report(fill)
            if fill.venue_order_id:
                journal.record_venue_id(entry.order_id, fill.venue_order_id)
            entry.cum_qty, entry.avg_px, entry.leaves_qty = fill.cum_qty, fill.avg_px, fill.leaves_qty
            if fill.status in (ExecStatus.FILLED, ExecStatus.CANCELED, ExecStatus.REJECTED):
                journal.record_phase(entry.order_id, OrderPhase.DONE, fill.status.value)
            elif entry.phase is OrderPhase.IN_FLIGHT:
                journal.record_phase(entry.order_id, OrderPhase.WORKING)
        self._asked.pop(entry.order_id, None)
        self._measure(fill)
        return True

    def _measure(self, fill: VenueFill) -> None:
        sent = self._sent_at.get(fill.order_id)
        if sent is None:
            return
        ms = (time.monotonic() - sent) * 1000
        if fill.status in (ExecStatus.NEW, ExecStatus.REJECTED) and fill.last_qty == 0:
            self._ack_ms.append(ms)
        elif fill.last_qty > 0:
            self._fill_ms.append(ms)
        if fill.status in (ExecStatus.FILLED, ExecStatus.CANCELED, ExecStatus.REJECTED):
            self._sent_at.pop(fill.order_id, None)

    def _status_report(self, entry: OrderEntry, order: dict[str, Any]) -> None:
        with self._lock:
            fill = VenueFill(
                order_id=entry.order_id, venue=self._name,
                exec_id=f"{entry.order_id}-STATUS-{time.time_ns()}", status=ExecStatus.STATUS,
                account=entry.account, symbol=entry.symbol, side=Side(entry.side),
                cum_qty=entry.cum_qty, leaves_qty=entry.leaves_qty or Decimal(0), avg_px=entry.avg_px,
                venue_order_id=entry.venue_order_id, reason=str(order.get("status", "")),
                ts=datetime.now(UTC),
            )
            self._journal_or_fail().log_report(fill)
            self._group.commit()

    def _local(self, entry: OrderEntry, status: ExecStatus, tag: str, reason: str) -> None:
        with self._lock:
            self._journal_or_fail().log_report(VenueFill(
                order_id=entry.order_id, venue=self._name, exec_id=f"{entry.order_id}-REST-{tag}",
                status=status, account=entry.account, symbol=entry.symbol, side=Side(entry.side),
                reason=reason[:400], ts=datetime.now(UTC),
            ))
            self._group.commit()

    def _reject_locally(self, entry: OrderEntry, phase: OrderPhase, reason: str) -> None:
        # Report REJECTED ourselves and journal the order as ``phase``: NOT_SENT for one that
        # never reached the venue (it is never sent later), DONE for one the venue refused.
        self.counts["local_rejects"] += 1
        with self._lock:
            self._journal_or_fail().record_phase(entry.order_id, phase, reason)
        self._asked.pop(entry.order_id, None)
        self._local(entry, ExecStatus.REJECTED, "REJ", reason)

    def _cancel_rejected(self, cancel: ValidatedOrder, entry: OrderEntry | None, why: str) -> None:
        with self._lock:
            self._journal_or_fail().log_report(VenueFill(
                order_id=cancel.order_id, venue=self._name,
                exec_id=f"{cancel.order_id}-CXLREJ-{time.time_ns()}", status=ExecStatus.CANCEL_REJECTED,
                account=cancel.account, symbol=cancel.symbol, side=cancel.side,
                venue_order_id=entry.venue_order_id if entry else None,
                reason=f"{CANCEL_REJECTED_PREFIX}{why}"[:400], ts=datetime.now(UTC),
            ))
            self._group.commit()

    # -- the user stream -----------------------------------------------------------------

    async def _stream(self) -> None:
        secret = self._secret()
        backoff = self._settings.reconnect_initial_s
        while not self._stopping:
            headers = signed_headers(self._settings.api_key, secret, _epoch_ms(), "GET", STREAM_PATH, b"")
            try:
                async with websockets.connect(
                    self._settings.ws_url, additional_headers=headers, open_timeout=5,
                    ping_interval=5, ping_timeout=5, close_timeout=1, max_size=2**20,
                ) as ws:
                    async for raw in ws:
                        await self._on_stream(raw)
                    backoff = self._settings.reconnect_initial_s
            except asyncio.CancelledError:
                raise
            except websockets.ConnectionClosed as exc:
                self.counts["stream_failures"] += 1
                if exc.rcvd is not None and exc.rcvd.code == 1008:  # policy: our signature refused
                    self._unauthorized_stream(exc.rcvd.reason)
                log.info("rest: user stream closed (%s); reconnecting in %.1fs", exc, backoff)
            except (OSError, TimeoutError, websockets.WebSocketException, httpx2.HTTPError) as exc:
                self.counts["stream_failures"] += 1
                log.info("rest: user stream down (%s: %s); reconnecting in %.1fs",
                         type(exc).__name__, exc, backoff)
            finally:
                self._stream_up.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._settings.reconnect_max_s)

    def _unauthorized_stream(self, reason: str) -> None:
        self.counts["unauthorized"] += 1
        self._find(VenueFinding(rule="LOGON_REFUSED", key=f"{self._name}-unauthorized",
                                message=f"venue {self._name} refused our user stream: {reason[:200]}"))

    async def _on_stream(self, raw: str | bytes) -> None:
        try:
            msg = decode(raw)
            kind = msg.get("type")
            if kind == "hello":
                last = msg.get("lastSeq")
                if not isinstance(last, int):
                    raise CodecError(f"hello without lastSeq: {msg}")
                self.counts["stream_connects"] += 1  # signed and accepted: the stream is up
                self._logons += 1
                self._stream_up.set()
                if self._tracker.hello(last).step is Step.GAP:
                    await self._recover()
                return
            if kind != "execution":
                raise CodecError(f"unknown message type {kind!r}")
            seq = seq_of(msg)
        except CodecError as exc:
            self._malformed("stream message", exc)
            return
        offer = self._tracker.offer(seq)
        if offer.step is Step.GAP:
            self.counts["gaps"] += 1
            log.info("rest: executions %d..%d missed on the stream; fetching them", offer.missing_from,
                     offer.missing_to)
            await self._recover()
        if seq == self._tracker.last + 1:
            self._take(msg)
            self._tracker.advance(seq)
        self._commit_now()  # before the cursor can move past it
        self._save_cursor()

    async def _recover(self) -> None:
        """Fetch every execution after the cursor by REST, in order, and take them."""
        while not self._stopping:
            self.counts["gap_fetches"] += 1
            try:
                resp = await self._request("GET", f"{API}/executions?after={self._tracker.last}&limit=500")
                data = decode(resp.content) if resp.status_code == 200 else {}
            except (httpx2.HTTPError, CodecError) as exc:
                log.warning("rest: gap query failed (%s); the next message or reconnect retries", exc)
                return
            executions = data.get("executions")
            if not isinstance(executions, list) or not executions:
                return
            for e in executions:
                try:
                    seq = seq_of(e) if isinstance(e, dict) else 0
                except CodecError:
                    seq = 0
                if seq != self._tracker.last + 1:
                    want = self._tracker.last + 1
                    self._malformed("gap query", CodecError(f"expected seq {want}, got {seq}"))
                    return
                self._take(e)
                self._tracker.advance(seq)
            self._commit_now()
            self._save_cursor()

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        every = min(0.05, self._settings.status_after_s / 2)
        while not self._stopping:
            await asyncio.sleep(every)
            now = time.monotonic()
            for order_id, at in list(self._asked.items()):
                if now - at >= self._settings.status_after_s and order_id not in self._querying:
                    self._asked[order_id] = now
                    log.info("rest: no answer about %s; asking its status", order_id)
                    self._spawn(self._status(order_id))
            self._save_cursor()

    # -- helpers -------------------------------------------------------------------------

    def _load_cursor(self) -> int:
        path = self._settings.session_dir / "cursor.json"
        try:
            value = json.loads(path.read_text()).get("last_seq", 0)
        except (OSError, ValueError, AttributeError):
            return 0
        return value if isinstance(value, int) and value >= 0 else 0

    def _save_cursor(self, *, force: bool = False) -> None:
        last = self._tracker.last
        if last == self._cursor_saved or (not force and last - self._cursor_saved < 50 and
                                          time.monotonic() - self._cursor_at < 0.5):
            return
        atomic_write(self._settings.session_dir / "cursor.json", json.dumps({"last_seq": last}).encode(),
                     fsync=self._settings.fsync)
        self._cursor_saved = last
        self._cursor_at = time.monotonic()

    def _malformed(self, what: str, exc: Exception) -> None:
        self.counts["malformed"] += 1
        log.warning("rest: malformed %s from the venue: %s", what, exc)

    def _find(self, finding: VenueFinding) -> None:
        with self._lock:
            if finding.key not in self._found:
                self._found.add(finding.key)
                self._findings.append(finding)
                log.critical("rest: %s", finding.message)

    def _secret(self) -> SecretStr:
        secret = self._settings.secret
        if secret is None:
            raise VenueError("the REST venue needs a signing secret")
        return secret

    def _journal_or_fail(self) -> OrderJournal:
        if self._journal is None:
            raise VenueError("RestVenue used before connect()")
        return self._journal


def _entry(order: ValidatedOrder) -> OrderEntry:
    return OrderEntry(
        order_id=order.order_id, cl_ord_id=order.order_id, account=order.account, symbol=order.symbol,
        side=order.side.value, qty=str(order.qty), order_type=order.order_type.value,
        limit_px=None if order.limit_px is None else str(order.limit_px), tif=order.time_in_force.value,
    )


def _error_of(resp: httpx2.Response) -> str:
    try:
        return str(decode(resp.content).get("error", resp.status_code))[:300]
    except CodecError:
        return f"HTTP {resp.status_code}"


def _epoch_ms() -> int:
    return time.time_ns() // 1_000_000
