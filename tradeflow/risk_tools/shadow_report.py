"""``tradeflow risk shadow``: decide the recorded signals again with candidate limits.

The report says which decisions would change, and by which rule.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from connectors.settings import Settings
from operators.limits import load_limits
from operators.replay import LimitOverrides, RecordedLog, Replayed, compare, replay_log, shadow_results
from tradeflow.risk_tools.logs import load_log
from tradeflow.risk_tools.replay_report import Window


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
