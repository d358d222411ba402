"""``tradeflow risk replay``: replay Job C's decisions from its logs and diff them.

Job C's input journal is folded through fresh account books; every decision is
compared with the one recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from connectors.settings import Settings
from operators.replay import Difference, Logged, RecordedLog, Replayed, compare, replay_log
from schemas import Account, JournalKind, RiskDecision, SymbolLimit
from tradeflow.risk_tools.logs import load_log, ts_text


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
                         f"(by {c.updated_by} at {ts_text(c.ts)}), first used by {c.first_signal_id}")
    for w in report.warnings[:show]:
        lines.append(f"warning: {w}")
    lines.append("OK: every decision reproduced" if report.ok else "NOT OK")
    return "\n".join(lines)
