"""Event-time mode: Job C applies each account's inputs in event-time order, not arrival order.

Pure domain code (schemas, ``operators.sequencing`` and the standard library). Job C's
inputs come from separate writers (the feed, each Job B, each Job D), so the order in
which a fill and a signal of one account arrive depends on timing. With
``deterministic`` on, every writer promises how far it has got, and Job C releases an
account's inputs only up to the event time that every awaited writer has passed:

- ``Reached`` is the promise a job's engine emits *behind* its outputs (Jobs B and D:
  "my input is processed through these times per symbol"; Job D also: "this many
  validated orders of each account taken"). ``connectors.progress`` writes it as a
  ``Progress`` row after the outputs it follows are flushed, with the end offsets of
  the data stream; the feed writes one per batch of ticks (symbol ``*``: the market).
- ``EventClock`` (Job C's router): counts a ``Progress`` row once the router has read
  its data stream up to the row's ends, and computes the **frontier**: the event time
  up to which every input of every account is known. Per symbol, a producer that has
  processed its input through ``p`` writes nothing more before the symbol's next
  tick after ``p``; the market (the feed's promise) bounds everything.
- ``BookQueue`` (per account): holds the account's signals, fills and marks, and
  releases them in ``(time, kind, id)`` order up to the frontier, and, for fills,
  only while Job D has taken every order the book sent (an order it has not taken can
  still fill at any time after its own). The book applies only what the queue
  releases, so its journal is in event-time order and two runs of one market apply
  the same entries in the same order.

Each distinct event time with an order in it costs a round of progress rows (C's
order reaches D, D's progress comes back), so the mode is for bounded runs
(backtests, ``tradeflow demo --speed 0``, the chaos trials), not for live trading
against a venue that fills in wall-clock time.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.sequencing import END, TickHistory
from schemas import MarketData, Progress

MS = timedelta(milliseconds=1)
"""Event times have millisecond precision: ``t - MS`` is the last time strictly before ``t``."""

MARKET = "*"
"""The symbol of the feed's promise: every tick up to this time is written."""

FEED = "feed"
"""The producer name of the feed writer."""


@dataclass(frozen=True, slots=True)
class Reached:
    """A job's promise, emitted behind its outputs: input processed through these times."""

    symbols: dict[str, datetime]
    orders: dict[str, int] = field(default_factory=dict)


def merged(marks: Iterable[Reached]) -> Reached | None:
    """Return one promise covering several (the latest time per symbol, the most orders)."""
    symbols: dict[str, datetime] = {}
    orders: dict[str, int] = {}
    any_mark = False
    for m in marks:
        any_mark = True
        for s, t in m.symbols.items():
            if s not in symbols or t > symbols[s]:
                symbols[s] = t
        for a, n in m.orders.items():
            orders[a] = max(n, orders.get(a, 0))
    return Reached(symbols, orders) if any_mark else None


def ticks_reached(items: Iterable[Any]) -> dict[str, datetime]:
    """Return, per symbol, the latest tick among decoded inputs (Job D's promise of a batch)."""
    out: dict[str, datetime] = {}
    for d in items:
        rec = d.record
        if isinstance(rec, MarketData) and (rec.symbol not in out or rec.ts > out[rec.symbol]):
            out[rec.symbol] = rec.ts
    return out


@dataclass
class EventClock:
    """How far each awaited producer has got, as far as Job C has read its data."""

    awaited: tuple[str, ...]
    """Every producer whose promise bounds the frontier (the feed among them)."""
    read: dict[tuple[str, int], int] = field(default_factory=dict)
    """Per (stream, partition), the last offset the router has read."""
    pending: list[Progress] = field(default_factory=list)
    """Progress rows whose data the router has not read to their ends yet."""
    reached: dict[str, dict[str, datetime]] = field(default_factory=dict)
    """Per producer, per symbol, the time its promise covers."""
    orders: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per producer, per account, the validated orders it has taken."""
    runs: dict[str, set[str]] = field(default_factory=dict)
    """Per producer, the runs (``Progress.run``) whose rows were counted."""
    version: int = field(default=0, compare=False)
    """Counts the progress rows that counted (``reached`` or ``orders`` may have moved)."""

    def on_read(self, stream: str, partition: int, offset: int) -> bool:
        """Record a data record read; return True if a waiting progress row now counts."""
        key = (stream, partition)
        if offset > self.read.get(key, -1):
            self.read[key] = offset
        return self._settle()

    def on_progress(self, row: Progress) -> bool:
        """Take a progress row; return True if it (or one waiting) now counts."""
        if row.producer not in self.awaited:
            return False
        self.pending.append(row)
        return self._settle()

    def _covered(self, row: Progress) -> bool:
        return all(self.read.get((row.stream, p), -1) >= end - 1 for p, end in row.ends.items() if end > 0)

    def _settle(self) -> bool:
        if not self.pending:
            return False
        counted = [r for r in self.pending if self._covered(r)]
        if not counted:
            return False
        self.pending = [r for r in self.pending if not self._covered(r)]
        self.version += 1
        for row in counted:
            mine = self.reached.setdefault(row.producer, {})
            if row.run is not None and row.run not in (runs := self.runs.setdefault(row.producer, set())):
                # A new run (a restart from a snapshot): its times start over, and what the
                # run before promised does not hold for what this one takes from now on.
                runs.add(row.run)
                mine.clear()
            for s, t in row.symbols.items():
                if s not in mine or t > mine[s]:
                    mine[s] = t
            taken = self.orders.setdefault(row.producer, {})
            for a, n in row.orders.items():
                taken[a] = max(n, taken.get(a, 0))
        return True

    def orders_taken(self, account: str) -> int:
        """Return how many validated orders of ``account`` the venues have taken."""
        return sum(by_account.get(account, 0) for by_account in self.orders.values())

    def frontier(self, histories: dict[str, TickHistory], held: datetime | None) -> datetime | None:
        """Return the event time up to which every input is known (None: nothing yet).

        ``held``: the earliest signal the router still holds (its time is not safe).
        """
        market = self.reached.get(FEED, {}).get(MARKET)
        if FEED in self.awaited and market is None:
            return None
        w = market if market is not None else END
        for producer in self.awaited:
            if producer == FEED:
                continue
            mine = self.reached.get(producer)
            if mine is None:
                return None
            for symbol, history in histories.items():
                w = min(w, _safe(history, mine.get(symbol), w))
        if held is not None:
            w = min(w, held - MS)
        return w

    def copy(self) -> EventClock:
        """Return a copy (for snapshots)."""
        return EventClock(
            self.awaited, dict(self.read), list(self.pending),
            {k: dict(v) for k, v in self.reached.items()}, {k: dict(v) for k, v in self.orders.items()},
            {k: set(v) for k, v in self.runs.items()},
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot taken before ``runs`` existed: every run is new to it.
        self.__dict__.update({"runs": {}, **state})


def _safe(history: TickHistory, done: datetime | None, market: datetime) -> datetime:
    """Return up to when a producer that processed a symbol through ``done`` has written all."""
    ticks = history.ticks
    if done is None:  # nothing of the symbol processed: it may write at the first tick
        return history.first - MS if history.first is not None else market
    if ticks and ticks[0].ts > done and history.dropped:
        return done  # ticks after ``done`` were forgotten: only ``done`` is sure
    after = history.first_after(done)  # called for every producer and symbol on every input: memo
    return after - MS if after is not None else max(done, market)


# --------------------------------------------------------------------- per account


RANKS = {"MARK": 0, "SIGNAL": 1, "FILL": 2}
"""At one event time: marks first (a signal is priced at its time), then signals, then
fills (a fill at the time of a signal can only be of an earlier order, or of the
order that signal makes)."""


@dataclass
class BookQueue:
    """One account's held inputs, released in event-time order up to what is known."""

    heap: list[tuple[datetime, int, str, int, Any]] = field(default_factory=list)
    frontier: datetime | None = None
    taken: int = 0
    """Validated orders of this account the venues have taken (their promise)."""
    sent: deque[datetime] = field(default_factory=deque)
    """Times of the orders the book sent that the venues have not confirmed taking."""
    sent_count: int = 0
    arrivals: int = 0
    held_keys: set[tuple[str, int, int]] = field(default_factory=set)

    def hold(self, ts: datetime, kind: str, ident: str, pos: tuple[str, int, int], event: Any) -> None:
        """Hold one input (a replay of one already held is dropped)."""
        if pos in self.held_keys:
            return
        self.held_keys.add(pos)
        self.arrivals += 1
        heapq.heappush(self.heap, (ts, RANKS[kind], ident, self.arrivals, (pos, event)))

    def on_clock(self, frontier: datetime | None, taken: int) -> None:
        """Take the router's frontier and the venues' count of this account's orders.

        The frontier may go back (a producer restarted from its snapshot, a signal held
        by the router): what was released stays applied, the rest waits.
        """
        if frontier is not None:
            self.frontier = frontier
        self.taken = max(self.taken, taken)
        self._confirm()

    def on_sent(self, ts: datetime) -> None:
        """Record an order the book sent (its fills can come at any time after ``ts``)."""
        self.sent_count += 1
        self.sent.append(ts)
        self._confirm()

    def _confirm(self) -> None:
        while self.sent and self.sent_count - len(self.sent) < self.taken:
            self.sent.popleft()

    def bound(self) -> datetime | None:
        """Return the latest event time that may be released now."""
        if self.frontier is None:
            return None
        if self.sent:
            return min(self.frontier, self.sent[0] - MS)
        return self.frontier

    def release(self) -> list[Any]:
        """Pop the held inputs that may be applied now, in order (one at a time: see ``ready``)."""
        out = []
        while self.ready():
            out.append(self.pop())
        return out

    def ready(self) -> bool:
        """Tell whether the earliest held input may be applied now."""
        bound = self.bound()
        return bool(self.heap) and bound is not None and self.heap[0][0] <= bound

    def pop(self) -> Any:
        """Remove and return the earliest held input."""
        _, _, _, _, (pos, event) = heapq.heappop(self.heap)
        self.held_keys.discard(pos)
        return event

    def copy(self) -> BookQueue:
        """Return a copy (for snapshots; the held events are immutable and shared)."""
        return BookQueue(list(self.heap), self.frontier, self.taken, deque(self.sent), self.sent_count,
                         self.arrivals, set(self.held_keys))
