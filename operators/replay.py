"""Re-run Job C's account books over its recorded input logs, and compare the decisions.

Pure domain code: it imports only schemas, the other domain modules and the standard
library. ``tradeflow/risk_tools.py`` reads the logs and renders the reports.

Job C's flow delivers each account's inputs to its ``AccountBook`` in arrival order,
which the logs alone do not fix: the inputs are separate streams. What each recorded
``RiskDecision`` does fix is ``input_offsets``: for every ``stream:partition`` the
offset of the last record of it the book had applied when it decided. The replay
rebuilds each account's input sequence from those cuts:

* **Windows.** An input at offset ``o`` of ``stream:partition`` belongs to the window
  of the first decision (of that account, in risk_decisions order) whose recorded
  offset for that ``stream:partition`` -- the highest recorded so far -- is ``>= o``;
  inputs beyond every cut come after the last decision. So every decision is replayed
  on exactly the records of each partition its state reflected.
* **Within a window** inputs are merged by ``(event ts, stream rank, partition,
  offset)`` (ranks: accounts, symbol_limits, control, venue_fills, market_data,
  trade_signals), each partition staying in offset order. The window's signal comes
  last, right after the mark the router attached to it.
* **Control rows** of ``global`` and ``strategy:<id>`` scope that come before the
  account's first accounts row reach the book the way the flow delivers them: only
  the latest row per scope, just before that accounts row.
* **Marks.** The flow attaches the symbol's last tick to each signal, and fans throttled
  ticks out to the accounts that hold the symbol (had a venue report in it). The
  attached tick is exact: it is the recorded ``market_data:<p>`` offset of the signal's
  symbol's partition when that offset holds a tick of the symbol. Which ticks were
  fanned out follows from the throttle over each symbol's ticks (``MarketIndex``).
  How many fan-outs an account had received from a partition at a decision is pinned
  by the recorded offset when it names a fanned-out tick (or a tick attached to an
  earlier decision: then none came since); around a signal's own partition it is
  bounded by the attached tick and the symbol's next tick. What stays ambiguous --
  fan-outs of *other* symbols of the signal's partition between the attached tick and
  the symbol's next one, and the tick an account got when it became a holder -- is
  resolved by event time against the newest tick the account is known to have seen.
  A decision that also records ``market_data:<p>@<symbol>`` (the tick each held
  position was valued at) needs none of this: those ticks, and the symbol's fan-outs
  since the one recorded before, are applied before it, which is exact.

Accounts, symbol_limits, control rows and fills reach a book in partition order (they
do not pass the symbol router). Signals and fanned-out ticks do, and the router takes
each batch key by key (the book restores the signals' stream order within a batch;
ticks stay grouped by symbol), so they can reach a book out of partition order: a decided
signal is placed by its own decision, exactly; fanned-out ticks are what the model
estimates above. With several workers the windows still hold the right records, the
order inside them is the model's. See docs/risk-audit.md.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, Generic, TypeVar

from operators.accounting import MONEY
from operators.portfolio import AccountBook, InputPos, Outcome
from operators.risk import CheckInput, evaluate
from schemas.base import Record
from schemas.market import MarketData
from schemas.strategy import TradeSignal
from schemas.trading import (
    Account,
    Control,
    PortfolioState,
    RiskDecision,
    RuleResult,
    SymbolLimit,
    VenueFill,
)

R = TypeVar("R", bound=Record)

STREAM_RANK = {
    "accounts": 0,
    "symbol_limits": 1,
    "control": 2,
    "venue_fills": 3,
    "market_data": 4,
    "trade_signals": 5,
}
"""Tie-break between streams at equal event time inside a window."""

INPUT_STREAMS = tuple(STREAM_RANK)
"""Job C's input streams, as named in ``RiskDecision.input_offsets``."""


@dataclass(frozen=True, slots=True)
class Logged(Generic[R]):
    """A record and the position it was read from."""

    record: R
    stream: str
    partition: int
    offset: int

    @property
    def where(self) -> str:
        """Return ``stream:partition``, the key of ``RiskDecision.input_offsets``."""
        return f"{self.stream}:{self.partition}"

    @property
    def pos(self) -> InputPos:
        """Return the position as the account book records it."""
        return InputPos(self.stream, self.partition, self.offset)


@dataclass
class RecordedLog:
    """Job C's input logs and its recorded decisions, each in log order."""

    signals: list[Logged[TradeSignal]] = field(default_factory=list)
    fills: list[Logged[VenueFill]] = field(default_factory=list)
    accounts: list[Logged[Account]] = field(default_factory=list)
    symbol_limits: list[Logged[SymbolLimit]] = field(default_factory=list)
    control: list[Logged[Control]] = field(default_factory=list)
    market_data: list[Logged[MarketData]] = field(default_factory=list)
    decisions: list[Logged[RiskDecision]] = field(default_factory=list)

    def account_ids(self) -> list[str]:
        """Return every account that has a row, a signal, a fill or a decision."""
        ids = {x.record.account for x in self.accounts}
        ids |= {x.record.account for x in self.signals}
        ids |= {x.record.account for x in self.fills}
        ids |= {x.record.account for x in self.decisions}
        return sorted(ids)


@dataclass(frozen=True)
class Replayed:
    """One signal as decided again, next to its recorded decision (None if none)."""

    signal: Logged[TradeSignal]
    recorded: Logged[RiskDecision] | None
    decision: RiskDecision
    check: CheckInput
    """What the rules looked at (the state just before the signal)."""
    account_row: Logged[Account] | None = None
    """The accounts row in force (where the limits came from)."""
    symbol_row: Logged[SymbolLimit] | None = None
    """The symbol_limits row in force for the signal's symbol."""


@dataclass(frozen=True)
class Difference:
    """One field on which a replayed decision differs from the recorded one."""

    signal_id: str
    account: str
    field: str
    """``decision``, ``order_id``, ``limits_version``, ``rules`` or ``<RULE>.passed|value|limit``."""
    recorded: str | None
    replayed: str | None


def compare(recorded: RiskDecision, replayed: RiskDecision) -> list[Difference]:
    """Return how ``replayed`` differs from ``recorded`` (decision, rules, limits version)."""
    out: list[Difference] = []

    def diff(name: str, a: object, b: object) -> None:
        if a != b:
            out.append(Difference(recorded.signal_id, recorded.account, name,
                                  None if a is None else str(a), None if b is None else str(b)))

    diff("decision", recorded.decision.value, replayed.decision.value)
    diff("order_id", recorded.order_id, replayed.order_id)
    diff("limits_version", recorded.limits_version, replayed.limits_version)
    theirs = {r.rule: r for r in replayed.rules}
    diff("rules", ",".join(r.rule for r in recorded.rules), ",".join(r.rule for r in replayed.rules))
    for rule in recorded.rules:
        other = theirs.get(rule.rule)
        if other is not None:
            diff(f"{rule.rule}.passed", rule.passed, other.passed)
            diff(f"{rule.rule}.value", rule.value, other.value)
            diff(f"{rule.rule}.limit", rule.limit, other.limit)
    return out


# --------------------------------------------------------------------- market data


class MarketIndex:
    """Ticks by position and by symbol, and which of them Job C's router fanned out."""

    def __init__(self, ticks: Iterable[Logged[MarketData]], throttle: timedelta) -> None:
        self.at: dict[tuple[int, int], Logged[MarketData]] = {}
        self.partition_of: dict[str, int] = {}
        self.offsets: dict[str, list[int]] = defaultdict(list)
        """Offsets of each symbol's ticks, ascending (one partition per symbol)."""
        self.fanned: set[tuple[int, int]] = set()
        self._part_offsets: dict[int, list[int]] = defaultdict(list)
        self._part_clock: dict[int, list[datetime]] = defaultdict(list)
        """Per partition, the newest tick time up to each offset (non-decreasing)."""
        last_fanout: dict[str, datetime] = {}
        for tick in sorted(ticks, key=lambda t: (t.partition, t.offset)):
            sym = tick.record.symbol
            self.at[(tick.partition, tick.offset)] = tick
            clock = self._part_clock[tick.partition]
            clock.append(max(clock[-1], tick.record.ts) if clock else tick.record.ts)
            self._part_offsets[tick.partition].append(tick.offset)
            self.partition_of.setdefault(sym, tick.partition)
            self.offsets[sym].append(tick.offset)
            prev = last_fanout.get(sym)
            if prev is None or tick.record.ts - prev >= throttle:
                last_fanout[sym] = tick.record.ts
                self.fanned.add((tick.partition, tick.offset))

    def tick(self, partition: int, offset: int | None) -> Logged[MarketData] | None:
        """Return the tick at a position, or None."""
        return None if offset is None else self.at.get((partition, offset))

    def next_after(self, symbol: str, offset: int) -> int | None:
        """Return the offset of the symbol's first tick after ``offset``."""
        offs = self.offsets.get(symbol, [])
        i = bisect_right(offs, offset)
        return offs[i] if i < len(offs) else None

    def last_upto(self, symbol: str, offset: int) -> int | None:
        """Return the offset of the symbol's last tick at or before ``offset``."""
        offs = self.offsets.get(symbol, [])
        i = bisect_right(offs, offset)
        return offs[i - 1] if i else None

    def position_at(self, partition: int, ts: datetime) -> int:
        """Return the last offset of a partition whose ticks are all at or before ``ts`` (-1: none)."""
        i = bisect_right(self._part_clock.get(partition, []), ts)
        return self._part_offsets[partition][i - 1] if i else -1

    def fanouts_after(self, symbol: str, offset: int) -> list[int]:
        """Return the offsets of the symbol's fanned-out ticks after ``offset``."""
        part = self.partition_of.get(symbol)
        offs = self.offsets.get(symbol, [])
        return [o for o in offs[bisect_right(offs, offset):] if (part, o) in self.fanned]


# --------------------------------------------------------------------- one account


@dataclass(frozen=True)
class _Delivery:
    """A tick the router sends to an account, at a router position of its partition."""

    at: int
    tick: Logged[MarketData]


@dataclass
class _Cut:
    """One recorded decision and where it sits in the inputs."""

    index: int
    recorded: Logged[RiskDecision]
    signal: Logged[TradeSignal]
    attached: Logged[MarketData] | None
    hw: dict[str, int]
    """Highest recorded offset per ``stream:partition`` up to this decision."""


@dataclass(order=True)
class _Item:
    """An input placed in the account's sequence."""

    window: int
    ts: datetime
    rank: int
    partition: int
    offset: int
    seq: int
    what: Logged[Any] = field(compare=False)


class AccountTimeline:
    """Rebuild one account's input sequence from the logs and its recorded decisions."""

    def __init__(self, account: str, log: AccountLog, market: MarketIndex) -> None:
        self.account = account
        self.log = log
        self.market = market
        self.cuts = self._cuts()
        self.warnings: list[str] = []

    # ------------------------------------------------------------ decisions

    def _cuts(self) -> list[_Cut]:
        by_id: dict[str, list[Logged[TradeSignal]]] = defaultdict(list)
        for s in self.log.signals:
            by_id[s.record.signal_id].append(s)
        cuts: list[_Cut] = []
        hw: dict[str, int] = {}
        self.orphans: list[Logged[RiskDecision]] = []
        for rec in self.log.decisions:
            offsets = rec.record.input_offsets
            signal = _pick_signal(by_id.get(rec.record.signal_id, []), offsets)
            if signal is None:
                self.orphans.append(rec)
                continue
            for key, off in offsets.items():
                hw[key] = max(hw.get(key, -1), off)
            cuts.append(_Cut(len(cuts), rec, signal, self._attached(signal.record, offsets), dict(hw)))
        return cuts

    def _attached(self, signal: TradeSignal, offsets: dict[str, int]) -> Logged[MarketData] | None:
        part = self.market.partition_of.get(signal.symbol)
        if part is None:
            return None
        tick = self.market.tick(part, offsets.get(f"market_data:{part}"))
        return tick if tick is not None and tick.record.symbol == signal.symbol else None

    def _window(self, where: str, offset: int) -> int:
        """Return the index of the first decision whose cut covers the position."""
        lo, hi = 0, len(self.cuts)
        while lo < hi:  # cuts' high-water marks only grow
            mid = (lo + hi) // 2
            if self.cuts[mid].hw.get(where, -1) >= offset:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # ------------------------------------------------------------ marks

    def _deliveries(self) -> dict[int, list[_Delivery]]:
        """Return, per partition, the ticks the router sent the account, in router order.

        The account becomes a holder of a symbol when the router sees its first venue
        report in it, and gets the symbol's last tick then (at the router's position),
        then every fanned-out tick after that.
        """
        first: dict[str, Logged[VenueFill]] = {}
        for f in sorted(self.log.fills, key=lambda x: (x.record.ts, x.partition, x.offset)):
            first.setdefault(f.record.symbol, f)
        evidence = self._holder_evidence(set(first))
        out: dict[int, list[_Delivery]] = defaultdict(list)
        for sym, report in first.items():
            part = self.market.partition_of.get(sym)
            if part is None:
                continue
            at, mark = self._registration(sym, part, report, evidence.get(sym))
            if mark is not None:
                out[part].append(_Delivery(at, self.market.at[(part, mark)]))
            out[part] += [_Delivery(o, self.market.at[(part, o)]) for o in self.market.fanouts_after(sym, at)]
        for deliveries in out.values():
            deliveries.sort(key=lambda d: (d.at, d.tick.offset))
        return out

    def _holder_evidence(self, held: set[str]) -> dict[str, tuple[int, int]]:
        """Return, per held symbol, the first evidence of its first mark.

        That is the first tick of the symbol a decision recorded as its last mark of the
        partition without it being attached to a signal, and the highest offset of that
        partition recorded before it (the router had passed it).
        """
        out: dict[str, tuple[int, int]] = {}
        hw: dict[int, int] = {}
        attached: set[tuple[int, int]] = set()
        for cut in self.cuts:
            if cut.attached is not None:
                attached.add((cut.attached.partition, cut.attached.offset))
            for key, r in cut.recorded.record.input_offsets.items():
                stream, _, p = key.partition(":")
                if stream != "market_data":
                    continue
                part = int(p)
                tick = self.market.tick(part, r)
                if tick is not None and tick.record.symbol in held and (part, r) not in attached:
                    out.setdefault(tick.record.symbol, (r, hw.get(part, -1)))
                hw[part] = max(hw.get(part, -1), r)
        return out

    def _registration(
        self, sym: str, part: int, report: Logged[VenueFill], evidence: tuple[int, int] | None
    ) -> tuple[int, int | None]:
        """Return where the router was when the account became a holder of ``sym``, and the tick.

        Pinned by evidence (see ``_holder_evidence``) when the recorded tick was not fanned
        out, or lies below a position the router had already passed: only the holder's
        first mark can be that. Otherwise estimated: at least the tick attached to the
        signal of the reported order, and the partition's position at the newest tick
        time the first decision after the report had seen; at most the recorded tick.
        """
        if evidence is not None:
            r, passed = evidence
            if (part, r) not in self.market.fanned or r < passed:
                return max(r, passed), r
        floor = -1
        for cut in self.cuts:
            if cut.recorded.record.order_id == report.record.order_id and cut.attached is not None:
                floor = cut.attached.offset
        k = self._window(report.where, report.offset)
        if 0 < k <= len(self.cuts):
            floor = max(floor, self.cuts[k - 1].hw.get(f"market_data:{part}", -1))
        if evidence is not None:
            floor = min(floor, evidence[0])
        return floor, self.market.last_upto(sym, floor)

    def _bounds(self, part: int, deliveries: list[_Delivery]) -> list[tuple[int, int, int | None]]:
        """Return per decision (lo, hi, link): how many deliveries it had received."""
        ats = [d.at for d in deliveries]
        index = {d.tick.offset: i for i, d in enumerate(deliveries)}
        attached_by: dict[int, int] = {}
        key = f"market_data:{part}"
        out: list[tuple[int, int, int | None]] = []
        for cut in self.cuts:
            sym = cut.signal.record.symbol
            own = self.market.partition_of.get(sym) == part
            lo, hi, link = 0, len(deliveries), None
            recorded = cut.recorded.record.input_offsets.get(key)
            if own and cut.attached is not None:
                a = cut.attached.offset
                nxt = self.market.next_after(sym, a)
                lo, hi = bisect_right(ats, a), len(ats) if nxt is None else bisect_left(ats, nxt)
                attached_by[a] = cut.index
            elif recorded is None:
                lo = hi = 0
            elif recorded in attached_by:
                link = attached_by[recorded]
            elif recorded in index:
                lo = hi = index[recorded] + 1
            else:
                self.warnings.append(f"{cut.recorded.record.signal_id}: {key}={recorded} is no tick "
                                     f"the account could have received")
            if own and cut.attached is None and self.market.offsets.get(sym):
                hi = min(hi, bisect_left(ats, self.market.offsets[sym][0]))
            out.append((lo, hi, link))
        return out

    def _clock(self, cut: _Cut) -> datetime:
        """Return the newest tick time the decision's state is known to reflect."""
        times = [cut.signal.record.ts]
        for key, off in cut.recorded.record.input_offsets.items():
            stream, _, part = key.partition(":")
            tick = self.market.tick(int(part), off) if stream == "market_data" else None
            if tick is not None:
                times.append(tick.record.ts)
        return max(times)

    def _counts(self, deliveries: list[_Delivery], bounds: list[tuple[int, int, int | None]]) -> list[int]:
        """Choose how many deliveries each decision had received, within the bounds."""
        n = len(bounds)
        group = list(range(n))  # decisions linked to an earlier one share its count
        for k, (_, _, link) in enumerate(bounds):
            if link is not None:
                for j in range(link, k + 1):
                    group[j] = group[link]
        lo = [0] * n
        hi = [len(deliveries)] * n
        for k, (b_lo, b_hi, _) in enumerate(bounds):
            g = group[k]
            lo[g], hi[g] = max(lo[g], b_lo), min(hi[g], b_hi)
        for k in range(1, n):
            lo[group[k]] = max(lo[group[k]], lo[group[k - 1]])
        for k in range(n - 2, -1, -1):
            hi[group[k]] = min(hi[group[k]], hi[group[k + 1]])
        counts = [0] * n
        done = 0
        for k in range(n):
            g = group[k]
            if g != k:
                counts[k] = counts[g]
                continue
            c = max(done, lo[g])
            cut = self.cuts[k]
            if cut.attached is not None and cut.attached.record.ts > cut.signal.record.ts:
                c = max(c, hi[g])  # the router ran ahead of the strategies: as far as the records allow
            clock = self._clock(cut)
            while c < hi[g] and deliveries[c].tick.record.ts <= clock:
                c += 1
            if c < lo[g] or c > max(hi[g], lo[g]):
                self.warnings.append(f"mark deliveries of {self.cuts[k].recorded.record.signal_id} "
                                     f"out of their bounds")
            counts[k] = done = max(done, min(c, max(hi[g], lo[g])))
        return counts

    def _mark_items(self) -> list[tuple[int, Logged[MarketData]]]:
        if any("@" in key for c in self.cuts for key in c.recorded.record.input_offsets):
            return self._recorded_marks()
        out: list[tuple[int, Logged[MarketData]]] = []
        for part, deliveries in self._deliveries().items():
            counts = self._counts(deliveries, self._bounds(part, deliveries))
            k = 0
            for i, d in enumerate(deliveries):
                while k < len(counts) and counts[k] <= i:
                    k += 1
                out.append((k, d.tick))
        return out

    def _recorded_marks(self) -> list[tuple[int, Logged[MarketData]]]:
        """Return the marks of held positions as the decisions recorded them (exact).

        A decision that records ``market_data:<p>@<symbol>`` names the tick each held
        position was valued at; the symbol's fanned-out ticks since the tick recorded
        before reached the account too (a holder gets every one).
        """
        out: list[tuple[int, Logged[MarketData]]] = []
        last: dict[str, int] = {}
        for cut in self.cuts:
            for key, off in cut.recorded.record.input_offsets.items():
                where, sep, sym = key.partition("@")
                stream, _, part = where.partition(":")
                tick = self.market.tick(int(part), off) if sep and stream == "market_data" else None
                if tick is None or last.get(sym, -1) >= off:
                    continue
                if sym in last:
                    out += [(cut.index, self.market.at[(tick.partition, o)])
                            for o in self.market.fanouts_after(sym, last[sym]) if o < off]
                out.append((cut.index, tick))
                last[sym] = off
        return out

    # ------------------------------------------------------------ sequence

    def sequence(self) -> Iterator[tuple[Logged[Any], _Cut | None]]:
        """Yield the account's inputs in replay order; a signal comes with its decision."""
        decided = {(c.signal.partition, c.signal.offset) for c in self.cuts}
        items: list[_Item] = []
        seq = 0

        def put(window: int, what: Logged[Any]) -> None:
            nonlocal seq
            items.append(_Item(window, what.record.ts, STREAM_RANK[what.stream], what.partition,
                               what.offset, seq, what))
            seq += 1

        for x in self.log.direct():
            if x.stream == "trade_signals" and (x.partition, x.offset) in decided:
                continue
            put(self._window(x.where, x.offset), x)
        for window, tick in self._mark_items():
            put(window, tick)
        windows: dict[int, list[_Item]] = defaultdict(list)
        for item in items:
            windows[item.window].append(item)
        ordered = _collapse_broadcasts(
            [w for k in range(len(self.cuts) + 1) for w in _window_order(windows.get(k, []), self, k)]
        )
        yield from ordered

    def _cut_at(self, k: int) -> _Cut | None:
        return self.cuts[k] if k < len(self.cuts) else None


def _window_order(items: list[_Item], timeline: AccountTimeline, k: int
                  ) -> list[tuple[Logged[Any], _Cut | None]]:
    """Merge a window's inputs (each partition in offset order), then its signal."""
    queues: dict[tuple[str, int], list[_Item]] = defaultdict(list)
    for item in items:  # items arrive in each queue's order
        queues[(item.what.stream, item.partition)].append(item)
    heap = [(q[0].ts, q[0].rank, q[0].partition, q[0].offset, q[0].seq, key, 0)
            for key, q in queues.items()]
    heapq.heapify(heap)
    out: list[tuple[Logged[Any], _Cut | None]] = []
    while heap:
        *_, key, i = heapq.heappop(heap)
        q = queues[key]
        out.append((q[i].what, None))
        if i + 1 < len(q):
            nxt = q[i + 1]
            heapq.heappush(heap, (nxt.ts, nxt.rank, nxt.partition, nxt.offset, nxt.seq, key, i + 1))
    cut = timeline._cut_at(k)
    if cut is not None:
        if cut.attached is not None:
            out.append((cut.attached, cut))
        out.append((cut.signal, cut))
    return out


def _collapse_broadcasts(
    seq: list[tuple[Logged[Any], _Cut | None]],
) -> list[tuple[Logged[Any], _Cut | None]]:
    """Deliver broadcast control rows seen before the first accounts row as the flow does.

    The control router sends ``global``/``strategy:`` rows only to accounts it knows; an
    account it meets later gets the latest row per scope just before its first row.
    """
    first = next((i for i, (x, _) in enumerate(seq) if x.stream == "accounts"), None)
    pending: dict[str, Logged[Any]] = {}
    out: list[tuple[Logged[Any], _Cut | None]] = []
    for i, (x, cut) in enumerate(seq):
        if i == first:
            out += [(row, None) for row in pending.values()]
        if (first is None or i < first) and isinstance(x.record, Control) \
                and not x.record.scope.startswith("account:"):
            pending[x.record.scope] = x
            continue
        out.append((x, cut))
    return out


def _pick_signal(candidates: list[Logged[TradeSignal]], offsets: dict[str, int]
                 ) -> Logged[TradeSignal] | None:
    """Return the signal a decision was made for (by id, then by its recorded offset)."""
    for s in candidates:
        if offsets.get(s.where) == s.offset:
            return s
    return candidates[0] if len(candidates) == 1 else None


@dataclass
class AccountLog:
    """One account's slice of the logs (``split_by_account``)."""

    signals: list[Logged[TradeSignal]] = field(default_factory=list)
    fills: list[Logged[VenueFill]] = field(default_factory=list)
    accounts: list[Logged[Account]] = field(default_factory=list)
    symbol_limits: list[Logged[SymbolLimit]] = field(default_factory=list)
    control: list[Logged[Control]] = field(default_factory=list)
    decisions: list[Logged[RiskDecision]] = field(default_factory=list)

    def direct(self) -> list[Logged[Any]]:
        """Return every input but market data, each stream in log order."""
        return [*self.accounts, *self.symbol_limits, *self.control, *self.fills, *self.signals]


def split_by_account(log: RecordedLog, accounts: Iterable[str] | None = None) -> dict[str, AccountLog]:
    """Return each account's slice of the logs (broadcast control rows go to every account)."""
    wanted = set(accounts) if accounts is not None else set(log.account_ids())
    out = {a: AccountLog() for a in sorted(wanted)}
    for name in ("signals", "fills", "accounts", "symbol_limits", "decisions"):
        for x in getattr(log, name):
            slot = out.get(x.record.account)
            if slot is not None:
                getattr(slot, name).append(x)
    for c in log.control:
        scope = c.record.scope
        targets = [scope.removeprefix("account:")] if scope.startswith("account:") else list(out)
        for a in targets:
            if a in out:
                out[a].control.append(c)
    for slot in out.values():
        slot.decisions.sort(key=lambda d: (d.partition, d.offset))
    return out


# --------------------------------------------------------------------- the replay


class _CapturingBook(AccountBook):
    """An account book that keeps what the rules looked at for the last signal.

    It publishes nothing but decisions, so it skips building portfolio_state rows (the
    largest cost of a mark): every rule, kill-switch check and state change is Job C's.
    """

    last_check: CheckInput | None = None
    _unpublished: PortfolioState | None = None

    def _check_input(self, signal: TradeSignal, order_id: str) -> CheckInput:
        ctx = super()._check_input(signal, order_id)
        self.last_check = ctx
        return ctx

    def portfolio_state(self, ts: datetime) -> PortfolioState:
        """Return a placeholder row: the replay compares decisions, not portfolio rows."""
        if self._unpublished is None:
            self._unpublished = super().portfolio_state(ts)
        return self._unpublished


def _apply(book: _CapturingBook, x: Logged[Any]) -> Outcome:
    rec = x.record
    if isinstance(rec, MarketData):
        return book.on_mark(rec.symbol, rec.price, rec.ts, pos=x.pos)
    if isinstance(rec, TradeSignal):
        return book.on_signal(rec, pos=x.pos)
    if isinstance(rec, VenueFill):
        return book.on_fill(rec, pos=x.pos)
    if isinstance(rec, Account):
        return book.on_account(rec, pos=x.pos)
    if isinstance(rec, SymbolLimit):
        return book.on_symbol_limit(rec, pos=x.pos)
    if isinstance(rec, Control):
        return book.on_control(rec, pos=x.pos)
    raise TypeError(f"Job C has no input of type {type(rec).__name__}")


def replay_account(
    account: str, alog: AccountLog, market: MarketIndex, *, warnings: list[str] | None = None
) -> Iterator[Replayed]:
    """Replay one account's inputs through a fresh ``AccountBook``; yield every decision."""
    timeline = AccountTimeline(account, alog, market)
    book = _CapturingBook(account)
    account_row: Logged[Account] | None = None
    symbol_rows: dict[str, Logged[SymbolLimit]] = {}
    for x, cut in timeline.sequence():
        outcome = _apply(book, x)
        if isinstance(x.record, Account):
            account_row = x
        elif isinstance(x.record, SymbolLimit):
            symbol_rows[x.record.symbol] = x
        if outcome.decision is None:
            continue
        check = book.last_check
        if check is None:  # pragma: no cover - on_signal always gathers it
            raise RuntimeError("a decision without its check input")
        yield Replayed(x, cut.recorded if cut is not None else None, outcome.decision, check,
                       account_row, symbol_rows.get(x.record.symbol))
    if warnings is not None:
        warnings += timeline.warnings
        warnings += [f"{d.record.signal_id}: recorded decision without its signal in trade_signals"
                     for d in timeline.orphans]


def replay_log(
    log: RecordedLog, *, throttle: timedelta, accounts: Iterable[str] | None = None,
    warnings: list[str] | None = None,
) -> Iterator[Replayed]:
    """Replay every account (or the given ones) of a recorded log; yield every decision.

    ``throttle`` must be the ``portfolio.mark_throttle_ms`` the recorded Job C ran with.
    """
    market = MarketIndex(log.market_data, throttle)
    for account, alog in split_by_account(log, accounts).items():
        yield from replay_account(account, alog, market, warnings=warnings)


# --------------------------------------------------------------------- shadow limits

ACCOUNT_LIMITS = (
    "max_order_notional", "max_order_qty", "max_gross_exposure", "max_leverage",
    "max_open_orders", "max_orders_per_second", "price_collar_bps",
)
"""Account fields a candidate limits set may override (the pre-trade limits)."""

SYMBOL_LIMITS = ("max_position_qty", "max_position_notional")
"""SymbolLimit fields a candidate limits set may override."""

ANY = "*"
"""Key that stands for every account, or every symbol, in a candidate limits set."""


class LimitsError(ValueError):
    """A candidate limits set names an unknown field or an invalid value."""


@dataclass(frozen=True)
class LimitOverrides:
    """A candidate limits set: Account and SymbolLimit fields to override, per account.

    ``accounts`` maps an account (or ``"*"``) to Account limit fields; ``symbols`` maps
    an account (or ``"*"``) to a symbol (or ``"*"``) to SymbolLimit fields. A value of
    None removes the limit. The most specific entry wins, field by field: account
    before ``"*"``, symbol before ``"*"``.
    """

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    symbols: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    label: str = "candidate"

    @classmethod
    def from_mapping(cls, data: Any) -> LimitOverrides:
        """Build from parsed JSON/YAML; raise ``LimitsError`` on anything unexpected.

        Shape: ``{"label": ..., "accounts": {ACCOUNT|"*": {field: value, ...,
        "symbols": {SYMBOL|"*": {field: value}}}}}``.
        """
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), dict):
            raise LimitsError('a limits file needs an "accounts" mapping (account or "*" -> limits)')
        unknown = set(data) - {"label", "accounts"}
        if unknown:
            raise LimitsError(f"unknown top-level keys {sorted(unknown)}; expected label, accounts")
        accounts: dict[str, dict[str, Any]] = {}
        symbols: dict[str, dict[str, dict[str, Any]]] = {}
        for account, body in data["accounts"].items():
            if not isinstance(body, dict):
                raise LimitsError(f"accounts.{account} must be a mapping of limit fields")
            fields = {k: v for k, v in body.items() if k != "symbols"}
            accounts[str(account)] = _checked(fields, ACCOUNT_LIMITS, f"accounts.{account}")
            per_symbol = body.get("symbols", {})
            if not isinstance(per_symbol, dict):
                raise LimitsError(f"accounts.{account}.symbols must map symbols to limit fields")
            symbols[str(account)] = {
                str(sym): _checked(lim, SYMBOL_LIMITS, f"accounts.{account}.symbols.{sym}")
                for sym, lim in per_symbol.items()
            }
        return cls(accounts, symbols, str(data.get("label", "candidate")))

    def account_fields(self, account: str) -> dict[str, Any]:
        """Return the Account fields overridden for ``account``."""
        return {**self.accounts.get(ANY, {}), **self.accounts.get(account, {})}

    def symbol_fields(self, account: str, symbol: str) -> dict[str, Any]:
        """Return the SymbolLimit fields overridden for ``account`` and ``symbol``."""
        out: dict[str, Any] = {}
        for acct in (ANY, account):
            for sym in (ANY, symbol):
                out.update(self.symbols.get(acct, {}).get(sym, {}))
        return out

    def account_row(self, row: Account | None) -> Account | None:
        """Return the account row with the candidate limits (None stays None: unknown account)."""
        if row is None:
            return None
        fields = self.account_fields(row.account)
        return Account.model_validate({**row.model_dump(), **fields}) if fields else row

    def symbol_row(self, row: SymbolLimit | None, account: str, symbol: str, ts: datetime
                   ) -> SymbolLimit | None:
        """Return the symbol's limits with the candidate ones (made up if none was in force)."""
        fields = self.symbol_fields(account, symbol)
        if not fields:
            return row
        if row is None:
            return SymbolLimit.model_validate({"account": account, "symbol": symbol, "ts": ts, **fields})
        return SymbolLimit.model_validate({**row.model_dump(), **fields})


def _checked(fields: dict[str, Any], allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    bad = sorted(set(fields) - set(allowed))
    if bad:
        raise LimitsError(f"{where}: cannot override {bad}; allowed: {', '.join(allowed)}")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            out[name] = None
            continue
        try:
            number = Decimal(str(value))
        except ArithmeticError:
            raise LimitsError(f"{where}.{name}: {value!r} is not a number") from None
        if not number.is_finite() or number < 0:
            raise LimitsError(f"{where}.{name}: {value!r} must be a finite number >= 0")
        out[name] = int(number) if name in ("max_open_orders", "max_orders_per_second") else number
    return out


def shadow_results(replayed: Replayed, limits: LimitOverrides) -> list[RuleResult]:
    """Evaluate the rules on the state a replayed decision saw, with candidate limits."""
    ctx = replayed.check
    signal = ctx.signal
    candidate = replace(
        ctx,
        account=limits.account_row(ctx.account),
        symbol_limit=limits.symbol_row(ctx.symbol_limit, signal.account, signal.symbol, signal.ts),
    )
    with localcontext(MONEY):
        return evaluate(candidate)


__all__ = [
    "ACCOUNT_LIMITS", "ANY", "INPUT_STREAMS", "SYMBOL_LIMITS", "AccountLog", "AccountTimeline",
    "Difference", "LimitOverrides", "LimitsError", "Logged", "MarketIndex", "RecordedLog",
    "Replayed", "compare", "replay_account", "replay_log", "shadow_results", "split_by_account",
]
