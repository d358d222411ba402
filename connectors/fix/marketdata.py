"""Market data over FIX 4.4: subscribe at a venue, write its trades into market_data once each.

A FIX initiator session of its own (``FixSession`` and ``FixInitiator`` from this
package: logon, heartbeats, reconnects with backoff) whose handler speaks market data:

- after every logon it sends one MarketDataRequest (35=V, 263=1 snapshot + updates,
  264=0, 265=1 incremental, 269=2 trades) for all symbols;
- MarketDataSnapshotFullRefresh (W) and MarketDataIncrementalRefresh (X) are parsed
  into ``MdEntry`` values (RptSeq, 83, in every entry) and handed to the pure engine
  ``operators.marketdata.MarketDataEngine``, which decides what is a new tick, what a
  duplicate, and when a gap needs a snapshot (then a V with 263=0 for that symbol);
- MarketDataRequestReject (Y), BusinessMessageReject (j), entries that do not parse
  and ticks the engine refuses go to dead_letters with the reason, never stopping
  the feed.

``FixMarketDataFeed`` runs that session and, on the caller's thread, writes what the
engine emitted: ticks to market_data, then the restart state (last seq and time per
symbol, the watermark, and where market_data ended) atomically to ``state_path``. A
restarted feed takes the state and also reads market_data past the end it recorded,
so ticks written just before a crash (before the state caught up) are not written
again. Sessions log on with ``ResetSeqNumFlag``: a lost session is repaired from
snapshots by RptSeq, not by FIX resends.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import count
from pathlib import Path
from typing import Any

import simplefix

from connectors.base import StreamReader, StreamWriter, stamp_entered
from connectors.fix.codec import AppMessage, to_wire_log
from connectors.fix.initiator import FixInitiator
from connectors.fix.session import Clock, EventKind, FixSession, SessionOutput, utc_now
from connectors.fix.settings import FixSettings
from connectors.fix.store import SessionStore
from connectors.fix.store.files import atomic_write
from operators.marketdata import MarketDataEngine, MdEntry, MdOutput, MdReject, parse_state, state_of
from schemas import DeadLetter, DecodeError, MarketData, Record, decode

log = logging.getLogger(__name__)

JOB = "feed-fix"
"""The ``job`` of this feed's dead letters."""

SOURCE = "fix-md"
"""The ``source_stream`` of this feed's dead letters."""

MAX_PAYLOAD_CHARS = 60_000


class MdTag:
    """FIX 4.4 market data tags."""

    RPT_SEQ = 83
    SYMBOL = 55
    TEXT = 58
    NO_RELATED_SYM = 146
    MD_REQ_ID = 262
    SUBSCRIPTION_REQUEST_TYPE = 263
    MARKET_DEPTH = 264
    MD_UPDATE_TYPE = 265
    NO_MD_ENTRY_TYPES = 267
    NO_MD_ENTRIES = 268
    MD_ENTRY_TYPE = 269
    MD_ENTRY_PX = 270
    MD_ENTRY_SIZE = 271
    MD_ENTRY_DATE = 272
    MD_ENTRY_TIME = 273
    MD_UPDATE_ACTION = 279
    MD_REQ_REJ_REASON = 281


SNAPSHOT = "W"
INCREMENTAL = "X"
REQUEST = "V"
REQUEST_REJECT = "Y"
BUSINESS_REJECT = "j"

TRADE = "2"
"""MDEntryType (269) of a trade: the only entries that become ticks."""


# ---------------------------------------------------------------------------- wire


def market_data_request(req_id: str, symbols: Sequence[str], *, subscribe: bool) -> AppMessage:
    """Return a MarketDataRequest for trades: snapshot + updates (``subscribe``) or snapshot only."""
    fields: list[tuple[int, str]] = [
        (MdTag.MD_REQ_ID, req_id),
        (MdTag.SUBSCRIPTION_REQUEST_TYPE, "1" if subscribe else "0"),
        (MdTag.MARKET_DEPTH, "0"),
        (MdTag.MD_UPDATE_TYPE, "1"),
        (MdTag.NO_MD_ENTRY_TYPES, "1"),
        (MdTag.MD_ENTRY_TYPE, TRADE),
        (MdTag.NO_RELATED_SYM, str(len(symbols))),
    ]
    fields += [(MdTag.SYMBOL, s) for s in symbols]
    return AppMessage(REQUEST, tuple(fields))


@dataclass(slots=True)
class ParsedMd:
    """A W or X taken apart: its entries, and what could not be read."""

    msg_type: str
    symbol: str | None = None
    """The snapshot's symbol (W); None for an incremental."""
    entries: list[MdEntry] = field(default_factory=list)
    rejects: list[MdReject] = field(default_factory=list)


def _pairs(msg: simplefix.FixMessage) -> list[tuple[int, str]]:
    out = []
    for tag, value in msg.pairs:
        try:
            out.append((int(tag), bytes(value).decode("latin-1")))
        except ValueError:
            continue
    return out


def _entry_time(date: str | None, clock: str | None) -> datetime:
    if not date or not clock:
        raise ValueError("MDEntryDate (272) and MDEntryTime (273) are required")
    for fmt in ("%Y%m%d %H:%M:%S.%f", "%Y%m%d %H:%M:%S"):
        try:
            return datetime.strptime(f"{date} {clock}", fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"bad MDEntryDate/MDEntryTime {date!r} {clock!r}")


def _to_entry(group: dict[int, str], symbol: str | None) -> MdEntry:
    sym = group.get(MdTag.SYMBOL) or symbol
    if not sym:
        raise ValueError("no Symbol (55)")
    raw_seq = group.get(MdTag.RPT_SEQ)
    if raw_seq is None or not raw_seq.isdigit():
        raise ValueError(f"RptSeq (83) missing or not a number: {raw_seq!r}")
    try:
        price = Decimal(group[MdTag.MD_ENTRY_PX])
        size = Decimal(group.get(MdTag.MD_ENTRY_SIZE, "0"))
    except KeyError:
        raise ValueError("no MDEntryPx (270)") from None
    except InvalidOperation:
        raise ValueError(f"MDEntryPx/MDEntrySize not decimals: {group.get(MdTag.MD_ENTRY_PX)!r} "
                         f"{group.get(MdTag.MD_ENTRY_SIZE)!r}") from None
    ts = _entry_time(group.get(MdTag.MD_ENTRY_DATE), group.get(MdTag.MD_ENTRY_TIME))
    return MdEntry(sym.strip(), int(raw_seq), price, size, ts)


def parse_market_data(msg: simplefix.FixMessage) -> ParsedMd:
    """Take a W or X apart into trade entries; entries that do not parse become rejects."""
    pairs = _pairs(msg)
    msg_type = next((v for t, v in pairs if t == 35), "")
    delimiter = MdTag.MD_ENTRY_TYPE if msg_type == SNAPSHOT else MdTag.MD_UPDATE_ACTION
    out = ParsedMd(msg_type)
    groups: list[dict[int, str]] = []
    in_groups = False
    for tag, value in pairs:
        if tag == MdTag.NO_MD_ENTRIES:
            in_groups = True
            continue
        if not in_groups:
            if tag == MdTag.SYMBOL and msg_type == SNAPSHOT:
                out.symbol = value
            continue
        if tag == delimiter:
            groups.append({})
        if groups and tag not in (10,):
            groups[-1].setdefault(tag, value)
    if msg_type == SNAPSHOT and not out.symbol:
        out.rejects.append(MdReject("snapshot without Symbol (55)", to_wire_log(msg.encode(True))))
        return out
    for group in groups:
        if group.get(MdTag.MD_ENTRY_TYPE, TRADE) != TRADE:
            continue  # not a trade: no tick (this feed subscribes to trades only)
        if msg_type == INCREMENTAL and group.get(MdTag.MD_UPDATE_ACTION) != "0":
            out.rejects.append(MdReject(
                f"MDUpdateAction {group.get(MdTag.MD_UPDATE_ACTION)!r} on a trade (only 0=New)",
                json.dumps(group), group.get(MdTag.SYMBOL)))
            continue
        try:
            out.entries.append(_to_entry(group, out.symbol))
        except ValueError as exc:
            out.rejects.append(MdReject(f"bad MD entry: {exc}", json.dumps(group), group.get(MdTag.SYMBOL)))
    return out


# ---------------------------------------------------------------------------- session handler


class MarketDataHandler:
    """The initiator's handler: MD messages into the engine; its output into a queue.

    Runs on the initiator's I/O thread only (under its lock); ``outputs`` is how the
    feed's thread gets the ticks and rejects.
    """

    def __init__(self, engine: MarketDataEngine, clock: Clock = utc_now) -> None:
        self.engine = engine
        self._clock = clock
        self.session: FixSession | None = None
        self.outputs: queue.SimpleQueue[MdOutput] = queue.SimpleQueue()
        self._req_ids = count(1)
        self._boot = datetime.now(UTC).strftime("%H%M%S%f")
        self.logons = 0
        self.snapshot_requests = 0

    def _req_id(self) -> str:
        return f"MD{self._boot}-{next(self._req_ids)}"

    def _requests(self, symbols: Sequence[str]) -> list[bytes]:
        session = self.session
        if session is None or not session.ready or not symbols:
            return []
        self.snapshot_requests += len(symbols)
        return [session.send_app(market_data_request(self._req_id(), [s], subscribe=False)) for s in symbols]

    def on_output(self, out: SessionOutput) -> list[bytes]:
        """Handle what the session delivered; return MarketDataRequests to send."""
        frames: list[bytes] = []
        now = self._clock()
        result = MdOutput()
        for event in out.events:
            if event.kind is EventKind.LOGON and self.session is not None:
                self.logons += 1
                symbols = self.engine.on_logon(now)
                request = market_data_request(self._req_id(), symbols, subscribe=True)
                frames.append(self.session.send_app(request))
            elif event.kind in (EventKind.LOGON_REFUSED, EventKind.VENUE_STATE_LOST, EventKind.ERROR):
                log.error("market data session: %s %s", event.kind.value, event.text)
        for msg in out.app_messages:
            result.merge(self._on_app(msg, now))
        frames += self._requests(result.snapshot_requests)
        result.snapshot_requests = []
        if result.ticks or result.rejects or result.duplicates:
            self.outputs.put(result)
        return frames

    def _on_app(self, msg: simplefix.FixMessage, now: datetime) -> MdOutput:
        try:
            return self._apply(msg, now)
        except Exception as exc:  # a poison message: to dead_letters, the session goes on
            log.exception("market data message could not be processed")
            return MdOutput(rejects=[MdReject(f"could not be processed: {exc!r}"[:2000],
                                              to_wire_log(msg.encode(True)))])

    def _apply(self, msg: simplefix.FixMessage, now: datetime) -> MdOutput:
        raw = msg.get(35)
        msg_type = raw.decode("latin-1") if raw else ""
        if msg_type in (SNAPSHOT, INCREMENTAL):
            parsed = parse_market_data(msg)
            if msg_type == SNAPSHOT and parsed.symbol is not None:
                result = self.engine.on_snapshot(parsed.symbol, parsed.entries, now)
            elif msg_type == INCREMENTAL:
                result = self.engine.on_incremental(parsed.entries, now)
            else:
                result = MdOutput()
            result.rejects = parsed.rejects + result.rejects
            return result
        why = {
            REQUEST_REJECT: "MarketDataRequest refused by the venue",
            BUSINESS_REJECT: "BusinessMessageReject from the venue",
        }.get(msg_type, f"unexpected message type {msg_type!r} on the market data session")
        text = msg.get(MdTag.TEXT)
        if text:
            why += f": {text.decode('latin-1')}"
        log.error("market data session: %s", why)
        return MdOutput(rejects=[MdReject(why, to_wire_log(msg.encode(True)))])

    def on_idle(self) -> list[bytes]:
        """Ask again for snapshots that were not answered in time."""
        return self._requests(self.engine.tick(self._clock()).snapshot_requests)

    def on_disconnected(self) -> None:
        """Every symbol waits for a snapshot after the next logon."""
        self.engine.on_disconnected()


# ---------------------------------------------------------------------------- the feed


@dataclass
class FeedStats:
    """What a feed did so far."""

    ticks: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    skipped_on_restore: int = 0
    """Ticks found in market_data past the state's end on start-up (written before a crash)."""


class FixMarketDataFeed:
    """Subscribe at a FIX venue and write its trades into market_data, each once (module doc).

    ``settings`` is the market data session's (its own CompID; ``reset_on_logon`` is
    forced on). ``on_written`` is called with each batch of ticks after it was written
    (benchmarks time it).
    """

    def __init__(
        self,
        settings: FixSettings,
        symbols: Sequence[str],
        market_data: StreamWriter,
        dead_letters: StreamWriter,
        state_path: Path,
        *,
        market_data_reader: StreamReader | None = None,
        lateness: timedelta = timedelta(0),
        snapshot_timeout: timedelta = timedelta(seconds=5),
        clock: Clock = utc_now,
        on_written: Callable[[list[MarketData]], None] | None = None,
    ) -> None:
        self.settings = settings.model_copy(update={"reset_on_logon": True})
        self.symbols = [s.strip().upper() for s in symbols if s.strip()]
        self.engine = MarketDataEngine(self.symbols, lateness=lateness, snapshot_timeout=snapshot_timeout)
        self._md = market_data
        self._dl = dead_letters
        self._reader = market_data_reader
        self.state_path = state_path
        self._clock = clock
        self._on_written = on_written
        self.stats = FeedStats()
        self._last: dict[str, tuple[int, datetime | None]] = {}
        self._wm: datetime | None = None
        self._ends: dict[int, int] = {}
        self._restore()
        self.handler = MarketDataHandler(self.engine, clock)
        store = SessionStore(self.settings.session_dir, fsync=settings.fsync)
        self.session = FixSession(self.settings, store, clock)
        self.handler.session = self.session
        self.initiator = FixInitiator(self.session, self.handler)

    # -- restart state ------------------------------------------------------------------

    def _restore(self) -> None:
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            self._last, self._wm = parse_state(state)
            self._ends = {int(p): int(o) for p, o in dict(state.get("market_data_end") or {}).items()}
        if self._reader is not None:
            self._catch_up(self._reader)
        self.engine.restore(state_of(self._last, self._wm))

    def _catch_up(self, reader: StreamReader) -> None:
        """Fold in ticks written past the state's end (the process died before saving it)."""
        ends = reader.end_offsets()
        for part, end in ends.items():
            # no state yet: read it all (ticks of a run that died before its first save)
            offset = self._ends.get(part, 0)
            while offset < end:
                batch = reader.read(part, offset, 5000)
                if not batch:
                    break
                for rec in batch:
                    try:
                        tick = decode(MarketData, rec.value)
                    except DecodeError:
                        continue
                    if tick.seq is not None and tick.symbol in self.symbols:
                        self._fold(tick)
                        self.stats.skipped_on_restore += 1
                offset = batch[-1].offset + 1
        self._ends = dict(ends)

    def _fold(self, tick: MarketData) -> None:
        seq, _ = self._last.get(tick.symbol, (0, None))
        if tick.seq is not None and tick.seq > seq:
            self._last[tick.symbol] = (tick.seq, tick.ts)
        if tick.wm is not None and (self._wm is None or tick.wm > self._wm):
            self._wm = tick.wm

    def _save_state(self) -> None:
        state = state_of(self._last, self._wm)
        state["market_data_end"] = {str(p): o for p, o in sorted(self._ends.items())}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.state_path, json.dumps(state, indent=1).encode(), fsync=self.settings.fsync)

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the session's thread (logon, subscribe; returns at once)."""
        self.initiator.start()

    def stop(self) -> None:
        """Log out, stop the thread and write what is still queued."""
        self.initiator.stop()
        self.pump()

    def drop_connection(self) -> None:
        """Close the socket under the session (a forced disconnect; it reconnects)."""
        sock = getattr(self.initiator, "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass

    def pump(self, wait: float = 0.0) -> int:
        """Write what the engine emitted since the last call; return the ticks written.

        ``wait``: wait up to this many seconds for the first output (no busy polling).
        """
        ticks: list[MarketData] = []
        rejects: list[MdReject] = []
        first = True
        while True:
            try:
                if first and wait > 0:
                    out = self.handler.outputs.get(timeout=wait)
                else:
                    out = self.handler.outputs.get_nowait()
            except queue.Empty:
                break
            first = False
            ticks += out.ticks
            rejects += out.rejects
            self.stats.duplicates += out.duplicates
        if rejects:
            now = self._clock()
            self._dl.write([self._dead_letter(r, now) for r in rejects])
            self.stats.dead_letters += len(rejects)
        if ticks:
            ticks = stamp_entered(ticks, self._clock())  # entered the system now (README, Latency)
            self._md.write(ticks)
            for tick in ticks:
                self._fold(tick)
            if self._reader is not None:
                self._ends = self._reader.end_offsets()
            self._save_state()
            self.stats.ticks += len(ticks)
            if self._on_written is not None:
                self._on_written(ticks)
        return len(ticks)

    def _dead_letter(self, reject: MdReject, now: datetime) -> Record:
        return DeadLetter(
            source_stream=SOURCE,
            source_key=reject.symbol,
            reason=reject.reason[:2000],
            payload=reject.payload[:MAX_PAYLOAD_CHARS],
            job=JOB,
            ts=now,
        )

    def run(
        self,
        *,
        seconds: float | None = None,
        stop: threading.Event | None = None,
        interval: float = 0.05,
        until: Callable[[], bool] | None = None,
    ) -> FeedStats:
        """Start, write ticks as they come until ``seconds`` pass, ``stop`` is set or ``until()``.

        Ticks are written as soon as the session thread hands them over; ``interval`` is
        how often the stop conditions are looked at when nothing comes.
        """
        self.start()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while not (stop is not None and stop.is_set()):
                self.pump(wait=interval)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if until is not None and until():
                    break
                if self.initiator.halted is not None:  # e.g. the logon refused: retrying cannot help
                    log.critical("market data session halted: %s", self.initiator.halted)
                    break
        finally:
            self.stop()
        return self.stats

    def status(self) -> dict[str, Any]:
        """Return the feed's figures and the session's state (for logs and the CLI)."""
        return {
            "ticks": self.stats.ticks,
            "dead_letters": self.stats.dead_letters,
            "duplicates_dropped": self.stats.duplicates,
            "gaps": self.engine.gaps,
            "lost": self.engine.lost,
            "logons": self.handler.logons,
            "snapshot_requests": self.handler.snapshot_requests,
            "connects": self.initiator.connects,
            "skipped_on_restore": self.stats.skipped_on_restore,
            "session": self.session.state.value,
            "halted": self.initiator.halted,
        }
