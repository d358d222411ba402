"""Audit Job C from its logs: explain a decision, replay the decisions, shadow candidate limits.

DESIGN §3a "Trust the log": every signal has one ``risk_decisions`` record that names
the rules evaluated, the limits version in force and the input offsets its state
reflected. These tools read the logs through the connectors registry (any profile):

* ``explain(settings, ident)``: find the decision for a signal id or an order id and
  say why it went that way (``tradeflow risk explain ID``).
* ``replay(settings, ...)``: fold Job C's input journal (``risk_journal``, every input
  each account book applied, in its order) through fresh ``AccountBook``s and diff
  every decision against the record (``tradeflow risk replay``).
* ``shadow(settings, limits_file)``: the same replay, each decision also evaluated with
  a candidate limits set; report which orders would change decision and by which rule
  (``tradeflow risk shadow --limits FILE``).

The replay always rebuilds state from the start of the journal (limits "as they were at
the time" come from the journaled changelog rows); a time or offset range only selects
which decisions are compared and reported. See docs/risk-audit.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from connectors.base import StoredRecord
from connectors.registry import Connectors
from connectors.settings import Settings
from operators.limits import RiskToolError, load_limits
from operators.replay import (
    Difference,
    LimitOverrides,
    Logged,
    RecordedLog,
    Replayed,
    compare,
    replay_log,
    shadow_results,
)
from schemas import (
    Account,
    Control,
    DecodeError,
    JournalKind,
    MarketData,
    OrderState,
    Record,
    RiskDecision,
    Scope,
    SymbolLimit,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    decode,
    spec,
)

R = TypeVar("R", bound=Record)

READ_BATCH = 5000
LOG_STREAMS: dict[str, str] = {
    "risk_journal": "journal",
    "trade_signals": "signals",
    "risk_decisions": "decisions",
}
"""Stream -> ``RecordedLog`` field: Job C's journal, the signals and its decisions."""
INPUT_STREAMS = ("trade_signals", "venue_fills", "accounts", "symbol_limits", "control", "market_data",
                 "instruments")
"""Job C's input streams, as named in ``RiskDecision.input_offsets``."""


# --------------------------------------------------------------------- reading the logs


def _scan(conn: Connectors, stream: str, keep: Callable[[bytes], bool] | None = None
          ) -> Iterator[tuple[int, StoredRecord]]:
    for rec in conn.scan(stream, READ_BATCH):
        if keep is None or keep(rec.value):
            yield rec.partition, rec


def read_logged(conn: Connectors, stream: str, model: type[R],
                keep: Callable[[bytes], bool] | None = None) -> list[Logged[R]]:
    """Return every record of a stream that decodes, with its position, partition by partition.

    Records that do not decode are left out, as Job C left them out (dead letters).
    """
    out: list[Logged[R]] = []
    for part, rec in _scan(conn, stream, keep):
        try:
            out.append(Logged(decode(model, rec.value), stream, part, rec.offset))
        except DecodeError:
            continue
    return out


def load_log(settings: Settings) -> RecordedLog:
    """Read Job C's input logs and its recorded decisions, whole."""
    conn = Connectors(settings)
    log = RecordedLog()
    for stream, name in LOG_STREAMS.items():
        setattr(log, name, read_logged(conn, stream, spec(stream).model))
    return log


def _read_at(conn: Connectors, stream: str, partition: int, offset: int) -> Record | None:
    reader = conn.reader(stream)
    try:
        got = reader.read(partition, offset, 1)
    finally:
        reader.close()
    if not got or got[0].offset != offset:
        return None
    try:
        return decode(spec(stream).model, got[0].value)
    except DecodeError:
        return None


# --------------------------------------------------------------------- explain


def find_decisions(conn: Connectors, ident: str) -> list[Logged[RiskDecision]]:
    """Return the recorded decisions for a signal id or an order id."""
    needle = json.dumps(ident).encode()
    found = [d for d in read_logged(conn, "risk_decisions", RiskDecision, lambda raw: needle in raw)
             if ident in (d.record.signal_id, d.record.order_id)]
    if found:
        return found
    orders = read_logged(conn, "validated_orders", ValidatedOrder, lambda raw: needle in raw)
    signal_ids = {o.record.signal_id for o in orders if o.record.order_id == ident and o.record.signal_id}
    return [d for sid in sorted(signal_ids) for d in find_decisions(conn, sid)]


def explain(settings: Settings, ident: str) -> str:
    """Return why the signal (or order) ``ident`` was passed or refused, as text."""
    conn = Connectors(settings)
    decisions = find_decisions(conn, ident)
    if not decisions:
        raise RiskToolError(f"no risk decision for signal or order id {ident!r} in risk_decisions")
    return "\n\n".join(_explain_one(conn, d) for d in decisions)


def _explain_one(conn: Connectors, logged: Logged[RiskDecision]) -> str:
    d = logged.record
    offsets = d.input_offsets
    signal = _signal_of(conn, d)
    lines = [
        f"risk decision for signal {d.signal_id}: {d.decision.value}",
        f"  account      {d.account}",
        f"  decided      {_ts(d.ts)} (event time of the signal) in {d.latency_us:.1f} us",
        f"  recorded at  risk_decisions:{logged.partition} offset {logged.offset}",
    ]
    if signal is not None:
        s = signal.record
        px = f" limit {s.limit_px}" if s.limit_px is not None else ""
        ref = f", ref px {s.ref_px}" if s.ref_px is not None else ""
        lines.append(f"  signal       {s.side.value} {s.qty} {s.symbol} {s.order_type.value}{px}, "
                     f"strategy {s.strategy_id}{ref} ({signal.where} offset {signal.offset})")
    lines.append(f"  order        {_order_line(conn, d)}")
    lines += _limits_lines(conn, d, signal.record.symbol if signal is not None else None)
    lines += _control_lines(conn, d, signal.record.strategy_id if signal is not None else None)
    failed = [r for r in d.rules if not r.passed]
    lines.append("")
    lines.append(f"rules ({len(failed)} failed, failed first)")
    width = max([len(r.value or "-") for r in d.rules] + [8]) + 2
    lwidth = max([len(r.limit or "-") for r in d.rules] + [8]) + 2
    for r in [*failed, *(r for r in d.rules if r.passed)]:
        lines.append(f"  {'FAIL' if not r.passed else 'pass'}  {r.rule:<22}value {r.value or '-':<{width}}"
                     f"limit {r.limit or '-':<{lwidth}}{r.message}")
    lines.append("")
    lines.append("inputs the account's state reflected (input_offsets: last record applied per partition)")
    symbol = signal.record.symbol if signal is not None else None
    for key in sorted(offsets):
        lines.append(f"  {key:<26}{offsets[key]:>10}   {_describe(conn, key, offsets[key], d, symbol)}")
    return "\n".join(lines)


def _ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _signal_of(conn: Connectors, d: RiskDecision) -> Logged[TradeSignal] | None:
    for key, off in d.input_offsets.items():
        stream, _, part = key.partition(":")
        if stream != "trade_signals" or not part.isdigit():
            continue
        rec = _read_at(conn, stream, int(part), off)
        if isinstance(rec, TradeSignal) and rec.signal_id == d.signal_id:
            return Logged(rec, stream, int(part), off)
    return None


def _order_line(conn: Connectors, d: RiskDecision) -> str:
    if d.order_id is None:
        return "none: the signal was refused"
    reader = conn.reader("orders")
    try:
        raw = reader.latest(d.order_id)
    except NotImplementedError:
        raw = None
    finally:
        reader.close()
    if raw is None:
        return f"{d.order_id} (validated; no state in the orders table yet)"
    state = decode(OrderState, raw)
    return (f"{d.order_id} now {state.status.value}: {state.cum_qty} of {state.qty} filled"
            f"{f' at avg {state.avg_px}' if state.cum_qty else ''} (orders table)")


def _limits_lines(conn: Connectors, d: RiskDecision, symbol: str | None) -> list[str]:
    lines = [f"  limits       version {d.limits_version} in force"]
    off = d.input_offsets.get("accounts:0")
    row = _read_at(conn, "accounts", 0, off) if off is not None else None
    if isinstance(row, Account):
        limits = {k: v for k, v in row.model_dump().items()
                  if (k.startswith("max_") or k == "price_collar_bps") and v is not None}
        lines.append(f"               accounts row at offset {off}: status {row.status.value}, set by "
                     f"{row.updated_by} at {_ts(row.ts)}")
        lines.append("               " + ", ".join(f"{k}={v}" for k, v in limits.items()))
    elif off is None:
        lines.append("               no accounts row had been applied (unknown account)")
    sl_off = d.input_offsets.get("symbol_limits:0")
    if symbol is not None and sl_off is not None:
        rows = [r for r in read_logged(conn, "symbol_limits", SymbolLimit)
                if r.offset <= sl_off and r.record.account == d.account and r.record.symbol == symbol]
        if rows:
            sl = rows[-1]
            lines.append(f"               {symbol}: max_position_qty={sl.record.max_position_qty}, "
                         f"max_position_notional={sl.record.max_position_notional} (version "
                         f"{sl.record.limits_version}, offset {sl.offset}, by {sl.record.updated_by})")
    return lines


def _control_lines(conn: Connectors, d: RiskDecision, strategy: str | None) -> list[str]:
    off = d.input_offsets.get("control:0")
    if off is None:
        return []
    scopes = {str(s) for s in Scope.of_order(d.account, strategy)}
    latest: dict[str, Logged[Control]] = {}
    for row in read_logged(conn, "control", Control):
        if row.offset <= off and row.record.scope in scopes:
            latest[row.record.scope] = row
    return [f"  control      {c.record.scope} {c.record.state.value}"
            f"{f' ({c.record.reason})' if c.record.reason else ''}, by {c.record.updated_by} at "
            f"{_ts(c.record.ts)} (offset {c.offset})" for c in latest.values()]


def _describe(conn: Connectors, key: str, offset: int, d: RiskDecision, symbol: str | None) -> str:
    where, _, held = key.partition("@")
    stream, _, part = where.partition(":")
    if stream not in INPUT_STREAMS or not part.isdigit():
        return ""
    rec = _read_at(conn, stream, int(part), offset)
    if rec is None:
        return "(not readable any more: compacted or truncated?)"
    if isinstance(rec, MarketData):
        what = "last mark of the partition"
        if held:
            what = "the position's valuation"
        elif rec.symbol == symbol:
            what = "the mark this signal was priced at"
        return f"{rec.symbol} {rec.price} at {_ts(rec.ts)} ({what})"
    return _summary(rec, d)


def _summary(rec: Record, d: RiskDecision) -> str:
    if isinstance(rec, TradeSignal):
        return "this signal" if rec.signal_id == d.signal_id else f"signal {rec.signal_id}"
    if isinstance(rec, VenueFill):
        return f"{rec.order_id} {rec.status.value} {rec.last_qty} @ {rec.last_px} ({rec.venue} {rec.exec_id})"
    if isinstance(rec, Account):
        return f"{rec.account}: limits version {rec.limits_version}, by {rec.updated_by} at {_ts(rec.ts)}"
    if isinstance(rec, SymbolLimit):
        return f"{rec.account} {rec.symbol}: version {rec.limits_version}, by {rec.updated_by}"
    if isinstance(rec, Control):
        reason = f" ({rec.reason})" if rec.reason else ""
        return f"{rec.scope} {rec.state.value}{reason}, by {rec.updated_by} at {_ts(rec.ts)}"
    return type(rec).__name__


# --------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Window:
    """Which recorded decisions to compare.

    Event time ``[from_ts, to_ts)``, risk_decisions offsets ``[from_offset, to_offset)``
    (in each partition), and accounts (None: all).
    """

    from_ts: datetime | None = None
    to_ts: datetime | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    accounts: frozenset[str] | None = None

    def __contains__(self, r: object) -> bool:
        """Tell whether a replayed decision falls in the window."""
        if not isinstance(r, Replayed):
            return False
        if not self.holds_time(r.decision.ts):
            return False
        if r.recorded is None:  # decided by the replay only: after the recorded end
            return self.to_offset is None
        return self.holds_offset(r.recorded.offset)

    def holds_time(self, ts: datetime) -> bool:
        """Tell whether an event time is in ``[from_ts, to_ts)``."""
        return (self.from_ts is None or ts >= self.from_ts) and (self.to_ts is None or ts < self.to_ts)

    def holds_offset(self, offset: int) -> bool:
        """Tell whether a risk_decisions offset is in ``[from_offset, to_offset)``."""
        return (self.from_offset is None or offset >= self.from_offset) and (
            self.to_offset is None or offset < self.to_offset
        )

    def holds(self, account: str, ts: datetime) -> bool:
        """Tell whether a record of ``account`` at event time ``ts`` is in the window."""
        return (self.accounts is None or account in self.accounts) and self.holds_time(ts)


@dataclass(frozen=True)
class LimitChange:
    """A limits row the replay applied, and the first decision made under it."""

    account: str
    stream: str
    offset: int
    limits_version: int
    updated_by: str
    ts: datetime
    symbol: str | None
    first_signal_id: str


@dataclass
class ReplayReport:
    """What replaying the logs found."""

    checked: int = 0
    """Recorded decisions in the window, compared with their replay."""
    differences: list[Difference] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    """Signals in the window with no recorded decision: journaled but the record is lost,
    or never taken by Job C (still held, Job C behind, or lost)."""
    orphans: list[str] = field(default_factory=list)
    """Recorded decisions in the window whose signal is not in trade_signals."""
    offsets_differ: list[str] = field(default_factory=list)
    """Decisions whose replayed input offsets (market data aside) differ from the record."""
    limit_changes: list[LimitChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replayed: int = 0
    """Decisions replayed in all (state is always rebuilt from the start of the logs)."""
    load_s: float = 0.0
    replay_s: float = 0.0

    @property
    def differing(self) -> list[str]:
        """Return the signal ids whose replayed decision differs, in order."""
        return list(dict.fromkeys(d.signal_id for d in self.differences))

    @property
    def reproduced(self) -> int:
        """Return how many compared decisions were reproduced exactly."""
        return self.checked - len(self.differing)

    @property
    def ok(self) -> bool:
        """Tell whether every decision was reproduced and every signal had one."""
        return not (self.differences or self.unrecorded or self.orphans)

    @property
    def decisions_per_s(self) -> float:
        """Return replayed decisions per second of replay (reading the logs aside)."""
        return self.replayed / self.replay_s if self.replay_s else 0.0

    def by_field(self) -> Counter[str]:
        """Return how many differences there are per field."""
        return Counter(d.field for d in self.differences)


def replay(
    settings: Settings,
    *,
    from_ts: datetime | None = None,
    to_ts: datetime | None = None,
    from_offset: int | None = None,
    to_offset: int | None = None,
    accounts: Iterable[str] | None = None,
    log: RecordedLog | None = None,
) -> ReplayReport:
    """Fold Job C's journal again and diff the decisions against risk_decisions.

    ``from_ts``/``to_ts`` (event time) and ``from_offset``/``to_offset`` (risk_decisions
    offsets, in every partition) select the decisions compared; ``accounts`` limits the
    replay to those accounts. ``log`` skips reading the logs (already read).
    """
    window = Window(from_ts, to_ts, from_offset, to_offset,
                    frozenset(accounts) if accounts is not None else None)
    report = ReplayReport()
    started = time.perf_counter()
    log = log if log is not None else load_log(settings)
    report.load_s = time.perf_counter() - started
    started = time.perf_counter()
    rows_seen: set[tuple[str, str, int]] = set()
    for r in replay_log(log, accounts=window.accounts):
        report.replayed += 1
        _note_limits(report, r, rows_seen)
        if r not in window:
            continue
        if r.recorded is None:
            report.unrecorded.append(r.decision.signal_id)
            continue
        report.checked += 1
        report.differences += compare(r.recorded.record, r.decision)
        if _offsets(r.recorded.record) != _offsets(r.decision):
            report.offsets_differ.append(r.decision.signal_id)
    report.replay_s = time.perf_counter() - started
    report.unrecorded += _undecided(log, window, set(report.unrecorded))
    report.orphans = [d.record.signal_id for d in _orphans(log, window)]
    return report


def _undecided(log: RecordedLog, window: Window, known: set[str]) -> list[str]:
    """Return the signals in the window that Job C never decided (nor journaled)."""
    taken = {(d.record.account, d.record.signal_id) for d in log.decisions}
    taken |= {(x.record.account, str(x.record.record["signal_id"])) for x in log.journal
              if x.record.kind is JournalKind.SIGNAL and x.record.record is not None}
    out = []
    for x in log.signals:
        s = x.record
        if (s.account, s.signal_id) in taken or s.signal_id in known:
            continue
        if window.holds(s.account, s.ts):
            out.append(s.signal_id)
    return out


def _offsets(d: RiskDecision) -> dict[str, int]:
    """Return the input offsets the replay must match (all of them: the fold is exact)."""
    return dict(d.input_offsets)


def _note_limits(report: ReplayReport, r: Replayed, seen: set[tuple[str, str, int]]) -> None:
    rows: list[Logged[Account] | Logged[SymbolLimit]] = [
        row for row in (r.account_row, r.symbol_row) if row is not None
    ]
    for row in rows:
        key = (r.decision.account, row.stream, row.offset)
        if key in seen:
            continue
        seen.add(key)
        rec = row.record
        report.limit_changes.append(LimitChange(
            account=rec.account, stream=row.stream, offset=row.offset, limits_version=rec.limits_version,
            updated_by=rec.updated_by, ts=rec.ts, symbol=getattr(rec, "symbol", None),
            first_signal_id=r.decision.signal_id,
        ))


def _orphans(log: RecordedLog, window: Window) -> list[Logged[RiskDecision]]:
    known = {(s.record.account, s.record.signal_id) for s in log.signals}
    out = []
    for d in log.decisions:
        rec = d.record
        if (rec.account, rec.signal_id) in known:
            continue
        if window.holds(rec.account, rec.ts) and window.holds_offset(d.offset):
            out.append(d)
    return out


def render_replay(report: ReplayReport, *, show: int = 20) -> str:
    """Return a replay report as text for a person."""
    lines = [
        f"replayed {report.replayed} decisions in {report.replay_s:.2f}s "
        f"({report.decisions_per_s:,.0f}/s; reading the logs {report.load_s:.2f}s)",
        f"compared {report.checked} recorded decisions: {report.reproduced} reproduced, "
        f"{len(report.differing)} differ",
    ]
    if report.differences:
        fields = report.by_field().most_common()
        lines.append("differences by field: " + ", ".join(f"{k} {v}" for k, v in fields))
        for d in report.differences[:show]:
            lines.append(f"  {d.account} {d.signal_id}: {d.field} recorded {d.recorded} "
                         f"replayed {d.replayed}")
        if len(report.differences) > show:
            lines.append(f"  ... {len(report.differences) - show} more")
    if report.unrecorded:
        lines.append(f"{len(report.unrecorded)} signals have no recorded decision: "
                     + ", ".join(report.unrecorded[:show]))
    if report.orphans:
        lines.append(f"{len(report.orphans)} recorded decisions have no signal in trade_signals: "
                     + ", ".join(report.orphans[:show]))
    if report.offsets_differ:
        lines.append(f"{len(report.offsets_differ)} decisions reflect other input offsets than recorded: "
                     + ", ".join(report.offsets_differ[:show]))
    if report.limit_changes:
        lines.append("limits applied (first decision under each; symbol limits only where they changed):")
        seen: set[tuple[str, str | None]] = set()
        shown = 0
        for c in report.limit_changes:
            first_of_symbol = c.symbol is not None and (c.account, c.symbol) not in seen
            seen.add((c.account, c.symbol))
            if first_of_symbol or shown >= show:
                continue
            shown += 1
            sym = f" {c.symbol}" if c.symbol else ""
            lines.append(f"  {c.account}{sym}: version {c.limits_version} from {c.stream} offset {c.offset} "
                         f"(by {c.updated_by} at {_ts(c.ts)}), first used by {c.first_signal_id}")
    for w in report.warnings[:show]:
        lines.append(f"warning: {w}")
    lines.append("OK: every decision reproduced" if report.ok else "NOT OK")
    return "\n".join(lines)


# --------------------------------------------------------------------- shadow


@dataclass(frozen=True)
class ShadowChange:
    """A decision the candidate limits would have made differently."""

    signal_id: str
    account: str
    symbol: str
    strategy_id: str
    ts: datetime
    live: str
    shadow: str
    rules: tuple[str, ...]
    """PASS -> FAIL: the rules the candidate limits fail; FAIL -> PASS: the rules that no
    longer fail."""
    order_id: str | None
    """The live order (PASS -> FAIL), or the one that would have been sent."""


@dataclass
class ShadowReport:
    """How a candidate limits set would have decided the recorded signals."""

    label: str
    decisions: int = 0
    changes: list[ShadowChange] = field(default_factory=list)
    baseline_differences: int = 0
    """Decisions the replay did not reproduce (the shadow compares with the replay)."""
    seconds: float = 0.0

    @property
    def would_refuse(self) -> list[ShadowChange]:
        """Return the live orders the candidate limits would have refused."""
        return [c for c in self.changes if c.live == "PASS"]

    @property
    def would_pass(self) -> list[ShadowChange]:
        """Return the refused signals the candidate limits would have passed."""
        return [c for c in self.changes if c.live == "FAIL"]

    def by_rule(self) -> Counter[str]:
        """Return, per rule, how many live orders it would have refused."""
        return Counter(rule for c in self.would_refuse for rule in c.rules)


def shadow(
    settings: Settings,
    limits_file: Path | LimitOverrides,
    *,
    from_ts: datetime | None = None,
    to_ts: datetime | None = None,
    accounts: Iterable[str] | None = None,
    log: RecordedLog | None = None,
) -> ShadowReport:
    """Replay the recorded inputs and decide every signal again with candidate limits.

    History stays as recorded: each decision is evaluated on the state the live
    decision saw (positions, open orders, reserved exposure from the fills that really
    happened), with the candidate Account and SymbolLimit limits in place of the ones
    in force. So each change is first-order: what these limits would have said to that
    signal at that moment, not what would have followed from saying it.
    """
    limits = limits_file if isinstance(limits_file, LimitOverrides) else load_limits(limits_file)
    window = Window(from_ts, to_ts, accounts=frozenset(accounts) if accounts is not None else None)
    report = ShadowReport(limits.label)
    log = log if log is not None else load_log(settings)
    started = time.perf_counter()
    for r in replay_log(log, accounts=window.accounts):
        if r not in window:
            continue
        report.decisions += 1
        if r.recorded is not None and compare(r.recorded.record, r.decision):
            report.baseline_differences += 1
        change = _shadow_change(r, limits)
        if change is not None:
            report.changes.append(change)
    report.seconds = time.perf_counter() - started
    return report


def _shadow_change(r: Replayed, limits: LimitOverrides) -> ShadowChange | None:
    results = shadow_results(r, limits)
    live_pass = all(x.passed for x in r.decision.rules)
    shadow_pass = all(x.passed for x in results)
    if live_pass == shadow_pass:
        return None
    before = {x.rule: x.passed for x in r.decision.rules}
    if live_pass:
        rules = tuple(x.rule for x in results if not x.passed)
    else:
        rules = tuple(x.rule for x in results if x.passed and not before.get(x.rule, True))
    s = r.signal.record
    return ShadowChange(
        signal_id=s.signal_id, account=s.account, symbol=s.symbol, strategy_id=s.strategy_id, ts=s.ts,
        live="PASS" if live_pass else "FAIL", shadow="PASS" if shadow_pass else "FAIL", rules=rules,
        order_id=r.decision.order_id if live_pass else None,
    )


def render_shadow(report: ShadowReport, *, show: int = 20) -> str:
    """Return a shadow report as text for a person."""
    refuse, admit = report.would_refuse, report.would_pass
    lines = [
        f"shadow limits {report.label!r}: {report.decisions} decisions replayed in {report.seconds:.2f}s",
        f"{len(report.changes)} would change: {len(refuse)} orders the live limits passed would be "
        f"refused, {len(admit)} refused signals would pass",
    ]
    if refuse:
        rules = report.by_rule().most_common()
        lines.append("would refuse, by rule: " + ", ".join(f"{k} {v}" for k, v in rules))
    for c in report.changes[:show]:
        lines.append(f"  {c.account} {c.signal_id} {c.symbol}: {c.live} -> {c.shadow} ({', '.join(c.rules)})"
                     + (f" order {c.order_id}" if c.order_id else ""))
    if len(report.changes) > show:
        lines.append(f"  ... {len(report.changes) - show} more")
    if report.baseline_differences:
        lines.append(f"note: {report.baseline_differences} decisions were not reproduced by the replay "
                     f"itself (see tradeflow risk replay); their shadow is relative to the replay")
    return "\n".join(lines)


# --------------------------------------------------------------------- command line


def _when(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. 'Z'): {text!r}")
    return ts


def _range_args(p: argparse.ArgumentParser, *, offsets: bool) -> None:
    p.add_argument("--from-ts", type=_when, help="only decisions at or after this event time (ISO, zone)")
    p.add_argument("--to-ts", type=_when, help="only decisions before this event time")
    if offsets:
        p.add_argument("--from-offset", type=int, help="only risk_decisions offsets >= N (every partition)")
        p.add_argument("--to-offset", type=int, help="only risk_decisions offsets < N")
    p.add_argument("--account", action="append", help="only this account (repeatable)")
    p.add_argument("--show", type=int, default=20, help="list at most N items per section")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def add_arguments(parser: argparse.ArgumentParser, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``explain``, ``replay`` and ``shadow`` subcommands to the ``risk`` parser.

    ``common`` adds the shared ``--data-dir``/``--profile`` options. Each subcommand
    sets ``risk_func(args, settings) -> exit code``.
    """
    sub = parser.add_subparsers(dest="risk_command", required=True)
    p = sub.add_parser("explain", help="why a signal or order was passed or refused")
    common(p)
    p.add_argument("ident", help="a signal id or an order id")
    p.set_defaults(risk_func=run_explain)
    p = sub.add_parser("replay", help="re-run Job C over its input logs; diff the decisions")
    common(p)
    _range_args(p, offsets=True)
    p.set_defaults(risk_func=run_replay)
    p = sub.add_parser("shadow", help="how candidate limits would have decided the recorded signals")
    common(p)
    p.add_argument("--limits", type=Path, required=True, help="JSON or YAML file of limit overrides")
    _range_args(p, offsets=False)
    p.set_defaults(risk_func=run_shadow)


def run_explain(args: argparse.Namespace, settings: Settings) -> int:
    """Print the explanation of one decision."""
    print(explain(settings, args.ident))
    return 0


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Print a replay report; exit 1 when a decision was not reproduced."""
    report = replay(settings, from_ts=args.from_ts, to_ts=args.to_ts, from_offset=args.from_offset,
                    to_offset=args.to_offset, accounts=args.account)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok, "reproduced": report.reproduced,
                          "decisions_per_s": report.decisions_per_s}, default=str))
    else:
        print(render_replay(report, show=args.show))
    return 0 if report.ok else 1


def run_shadow(args: argparse.Namespace, settings: Settings) -> int:
    """Print a shadow-limits report."""
    report = shadow(settings, args.limits, from_ts=args.from_ts, to_ts=args.to_ts, accounts=args.account)
    if args.json:
        print(json.dumps({**asdict(report), "would_refuse": len(report.would_refuse),
                          "would_pass": len(report.would_pass), "by_rule": report.by_rule()}, default=str))
    else:
        print(render_shadow(report, show=args.show))
    return 0


__all__ = [
    "LimitChange", "ReplayReport", "RiskToolError", "ShadowChange", "ShadowReport", "Window",
    "add_arguments", "explain", "find_decisions", "load_limits", "load_log", "read_logged",
    "render_replay", "render_shadow", "replay", "run_explain", "run_replay", "run_shadow", "shadow",
]
