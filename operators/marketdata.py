"""Market data from a venue: snapshots and incremental refreshes into ticks, each once.

Pure domain code (schemas and the standard library; the clock is passed in). The FIX
connector (``connectors/fix/marketdata.py``) parses MarketDataSnapshotFullRefresh (W)
and MarketDataIncrementalRefresh (X) into ``MdEntry`` values and hands them here; this
engine decides which become ``MarketData`` ticks, and when a new snapshot is needed.

Every trade of a symbol carries the venue's sequence number ``seq`` (RptSeq, 83):
1, 2, 3... per symbol. Per symbol the engine keeps the last ``seq`` it emitted, and:

- an incremental at ``last + 1`` is emitted; at or below ``last`` it is a duplicate
  (an overlap with a snapshot, a resend) and dropped; above ``last + 1`` is a **gap**:
  the symbol goes to RECOVERING, the entry is held, and a snapshot is requested;
- while RECOVERING, incrementals are held (in order, at most ``max_pending``); a
  snapshot (the symbol's last N trades, oldest first) emits its entries above
  ``last``, then the held ones that follow on, and the symbol is SYNCED again. A
  snapshot whose oldest entry is above ``last + 1`` cannot repair the gap: the missing
  range is reported as lost (``MdReject``) and the engine goes on from the snapshot;
- a disconnect puts every symbol in RECOVERING; the logon that follows asks for a
  snapshot of every symbol (``on_logon``), and the last seqs (also across a restart:
  ``state``/``restore``) keep anything already emitted from being emitted again;
- a snapshot requested and not answered in ``snapshot_timeout`` is requested again.

A symbol with no state yet (a fresh start) takes its first snapshot whole: starting
mid-stream is what a new subscriber does, not a loss.

Watermark: ``wm`` is the highest event time emitted minus ``lateness``, but never
past the last tick of a symbol that is recovering (its missing ticks are later than
that tick and must not be late), and never moving back. While a symbol with no tick
yet is recovering the watermark holds where it is. Ticks with a bad price, size or
time are not emitted: they come back as ``MdReject`` (for dead_letters) and still
advance the symbol's sequence, so they never block it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from schemas import MarketData

MAX_PENDING = 10_000
"""Incrementals held per symbol while it waits for a snapshot."""


@dataclass(frozen=True, slots=True)
class MdEntry:
    """One trade as the venue sent it (an MD entry of a W or X)."""

    symbol: str
    seq: int
    price: Decimal
    size: Decimal
    ts: datetime


@dataclass(frozen=True, slots=True)
class MdReject:
    """Something that is not a tick: bad input or ticks lost, for dead_letters."""

    reason: str
    payload: str
    symbol: str | None = None


@dataclass(slots=True)
class MdOutput:
    """What the engine decided after one call."""

    ticks: list[MarketData] = field(default_factory=list)
    rejects: list[MdReject] = field(default_factory=list)
    snapshot_requests: list[str] = field(default_factory=list)
    """Symbols to ask a snapshot of (MarketDataRequest, snapshot only)."""
    duplicates: int = 0
    """Entries dropped because they were emitted already."""

    def merge(self, other: MdOutput) -> MdOutput:
        """Append another output to this one; return self."""
        self.ticks += other.ticks
        self.rejects += other.rejects
        self.snapshot_requests += [s for s in other.snapshot_requests if s not in self.snapshot_requests]
        self.duplicates += other.duplicates
        return self


class SymbolStatus(StrEnum):
    """Where a symbol's stream stands."""

    SYNCED = "SYNCED"
    RECOVERING = "RECOVERING"


@dataclass(slots=True)
class _Symbol:
    last_seq: int = 0
    last_ts: datetime | None = None
    status: SymbolStatus = SymbolStatus.RECOVERING
    requested_at: datetime | None = None
    pending: dict[int, MdEntry] = field(default_factory=dict)
    fresh: bool = True
    """No tick taken yet (not even from a restored state): the first snapshot is taken whole."""


class MarketDataEngine:
    """Per symbol: snapshot + incrementals -> ticks, once each, in seq order (module doc)."""

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        lateness: timedelta = timedelta(0),
        snapshot_timeout: timedelta = timedelta(seconds=5),
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._symbols: dict[str, _Symbol] = {s: _Symbol() for s in symbols}
        if not self._symbols:
            raise ValueError("no symbols to subscribe to")
        self._lateness = lateness
        self._snapshot_timeout = snapshot_timeout
        self._max_pending = max_pending
        self._high: datetime | None = None
        self._wm: datetime | None = None
        self.emitted = 0
        self.duplicates = 0
        self.gaps = 0
        self.lost = 0

    # -- state ----------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        """Return the subscribed symbols."""
        return list(self._symbols)

    def status(self, symbol: str) -> SymbolStatus:
        """Return where ``symbol`` stands (SYNCED or RECOVERING)."""
        return self._symbols[symbol].status

    def last_seq(self, symbol: str) -> int:
        """Return the last seq emitted for ``symbol`` (0: none)."""
        return self._symbols[symbol].last_seq

    @property
    def watermark(self) -> datetime | None:
        """Return the watermark of the last tick emitted."""
        return self._wm

    def state(self) -> dict[str, Any]:
        """Return what a restart needs (JSON-able): last seq and time per symbol, the watermark."""
        return state_of(
            {s: (v.last_seq, v.last_ts) for s, v in self._symbols.items() if not v.fresh},
            self._wm,
        )

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take the last seqs, times and watermark of an earlier run (``state``)."""
        symbols, wm = parse_state(state)
        for sym, (seq, ts) in symbols.items():
            if sym in self._symbols:
                entry = self._symbols[sym]
                entry.last_seq, entry.last_ts, entry.fresh = seq, ts, False
                if ts is not None and (self._high is None or ts > self._high):
                    self._high = ts
        self._wm = wm

    # -- session --------------------------------------------------------------------

    def on_logon(self, now: datetime) -> list[str]:
        """Return the symbols to subscribe to (snapshot + updates); all await a snapshot."""
        for entry in self._symbols.values():
            entry.status = SymbolStatus.RECOVERING
            entry.requested_at = now
        return self.symbols

    def on_disconnected(self) -> None:
        """Note that the session is gone: every symbol waits for a snapshot again."""
        for entry in self._symbols.values():
            entry.status = SymbolStatus.RECOVERING
            entry.requested_at = None
            entry.pending.clear()

    def tick(self, now: datetime) -> MdOutput:
        """Ask again for snapshots requested longer than ``snapshot_timeout`` ago."""
        out = MdOutput()
        for sym, entry in self._symbols.items():
            if (
                entry.status is SymbolStatus.RECOVERING
                and entry.requested_at is not None
                and now - entry.requested_at >= self._snapshot_timeout
            ):
                entry.requested_at = now
                out.snapshot_requests.append(sym)
        return out

    # -- market data ----------------------------------------------------------------

    def on_incremental(self, entries: Sequence[MdEntry], now: datetime) -> MdOutput:
        """Apply the entries of one incremental refresh, in their order."""
        out = MdOutput()
        for e in entries:
            entry = self._symbols.get(e.symbol)
            if entry is None:
                out.rejects.append(MdReject(f"symbol {e.symbol!r} was not subscribed", _payload(e), e.symbol))
                continue
            if e.seq <= entry.last_seq:
                out.duplicates += 1
                continue
            if entry.status is SymbolStatus.RECOVERING:
                self._hold(entry, e, out)
                continue
            if e.seq == entry.last_seq + 1:
                self._emit(entry, e, out)
                continue
            # a gap: hold this one, ask for a snapshot
            self.gaps += 1
            entry.status = SymbolStatus.RECOVERING
            entry.requested_at = now
            self._hold(entry, e, out)
            out.snapshot_requests.append(e.symbol)
        self.duplicates += out.duplicates
        return out

    def on_snapshot(self, symbol: str, entries: Sequence[MdEntry], now: datetime) -> MdOutput:
        """Apply a snapshot of ``symbol``: its last trades, oldest first."""
        out = MdOutput()
        entry = self._symbols.get(symbol)
        if entry is None:
            out.rejects.append(MdReject(f"snapshot of symbol {symbol!r}, which was not subscribed",
                                        json.dumps({"symbol": symbol, "entries": len(entries)}), symbol))
            return out
        ordered = sorted((e for e in entries if e.symbol == symbol), key=lambda e: e.seq)
        for e in entries:
            if e.symbol != symbol:
                why = f"entry of {e.symbol!r} in a snapshot of {symbol!r}"
                out.rejects.append(MdReject(why, _payload(e), symbol))
        newer = [e for e in ordered if e.seq > entry.last_seq]
        out.duplicates += len(ordered) - len(newer)
        if newer and not entry.fresh and newer[0].seq > entry.last_seq + 1:
            self._lost(entry, symbol, entry.last_seq + 1, newer[0].seq - 1, out)
        entry.fresh = False
        entry.status = SymbolStatus.RECOVERING  # until replayed: its ticks hold the watermark
        entry.requested_at = None
        for e in newer:
            if e.seq > entry.last_seq:
                self._emit(entry, e, out)
        if self._drain(entry, symbol, now, out):
            entry.status = SymbolStatus.SYNCED
        self.duplicates += out.duplicates
        return out

    # -- inside ---------------------------------------------------------------------

    def _hold(self, entry: _Symbol, e: MdEntry, out: MdOutput) -> None:
        if e.seq in entry.pending:
            out.duplicates += 1
            return
        entry.pending[e.seq] = e
        if len(entry.pending) > self._max_pending:
            entry.pending.pop(min(entry.pending))  # the snapshot will carry the oldest again

    def _drain(self, entry: _Symbol, symbol: str, now: datetime, out: MdOutput) -> bool:
        """Emit the held entries that follow on; tell whether none is left behind a hole."""
        for seq in sorted(entry.pending):
            e = entry.pending.pop(seq)
            if seq <= entry.last_seq:
                out.duplicates += 1
            elif seq == entry.last_seq + 1:
                self._emit(entry, e, out)
            else:  # still a hole after the snapshot: ask again, keep the rest
                entry.pending[seq] = e
                entry.requested_at = now
                self.gaps += 1
                out.snapshot_requests.append(symbol)
                return False  # the later ones are still held
        return True

    def _lost(self, entry: _Symbol, symbol: str, first: int, last: int, out: MdOutput) -> None:
        count = last - first + 1
        self.lost += count
        out.rejects.append(MdReject(
            f"ticks lost: seq {first}..{last} of {symbol} are older than the venue's snapshot",
            json.dumps({"symbol": symbol, "first_seq": first, "last_seq": last, "count": count}),
            symbol,
        ))

    def _emit(self, entry: _Symbol, e: MdEntry, out: MdOutput) -> None:
        entry.last_seq = e.seq  # a bad tick still takes its place in the sequence
        try:
            if entry.last_ts is not None and e.ts < entry.last_ts:
                raise ValueError(f"time {e.ts.isoformat()} is before the symbol's last tick "
                                 f"{entry.last_ts.isoformat()}")
            high = e.ts if self._high is None or e.ts > self._high else self._high
            wm = self._next_watermark(high, e)
            tick = MarketData(symbol=e.symbol, ts=e.ts, price=e.price, volume=e.size, wm=wm, seq=e.seq)
        except (ValidationError, ValueError, TypeError) as exc:
            reason = _reason(exc)
            out.rejects.append(MdReject(f"bad tick: {reason}", _payload(e), e.symbol))
            return
        entry.last_ts = e.ts
        self._high = high
        self._wm = wm
        self.emitted += 1
        out.ticks.append(tick)

    def _next_watermark(self, high: datetime, emitting: MdEntry) -> datetime | None:
        candidate = high - self._lateness
        for sym, entry in self._symbols.items():
            if entry.status is SymbolStatus.SYNCED:
                continue
            if sym == emitting.symbol:  # replaying a snapshot: its next ticks are not earlier
                candidate = min(candidate, emitting.ts)
                continue
            if entry.last_ts is None:
                return self._wm  # a symbol with no tick yet is recovering: hold
            candidate = min(candidate, entry.last_ts)
        if self._wm is not None and candidate < self._wm:
            return self._wm
        return candidate


def state_of(last: Mapping[str, tuple[int, datetime | None]], wm: datetime | None) -> dict[str, Any]:
    """Return the JSON-able restart state of per-symbol (last seq, last time) and a watermark."""
    return {
        "symbols": {
            s: {"seq": seq, "ts": ts.isoformat() if ts is not None else None}
            for s, (seq, ts) in sorted(last.items())
        },
        "wm": wm.isoformat() if wm is not None else None,
    }


def parse_state(state: Mapping[str, Any]) -> tuple[dict[str, tuple[int, datetime | None]], datetime | None]:
    """Read a restart state (``state_of``); raise ValueError when it is malformed."""
    try:
        symbols = {
            str(s): (int(v["seq"]), _time(v.get("ts")))
            for s, v in dict(state.get("symbols") or {}).items()
        }
        return symbols, _time(state.get("wm"))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad market data state: {exc}") from None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    ts = datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        raise ValueError(f"time without a zone: {value}")
    return ts.astimezone(UTC)


def _payload(e: MdEntry) -> str:
    return json.dumps({"symbol": e.symbol, "seq": e.seq, "price": str(e.price), "size": str(e.size),
                       "ts": e.ts.isoformat()})


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'tick'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
    return str(exc)
