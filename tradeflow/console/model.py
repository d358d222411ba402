"""The console's picture of the pipeline: a fold of the records it reads, no I/O.

``ConsoleView.apply(stream, record, offset)`` takes each record of the streams the
console tails (``TAILED``) in stream order; ``ConsoleView.to_json(now)`` renders what a
page shows, as plain JSON: money and quantities as exact decimal strings (the page
formats them; the browser test compares them with the tables), times as UTC ISO
strings. Everything kept is bounded (the last N of each list), except the latest row
per key of the tables, which is what the tables hold too.

``control_applied`` tells, from the jobs' metrics, which jobs have read a control row
the console wrote: a job has read it once its ``control`` input counter moved past the
value it had just before the write (Jobs B, C and D read every control row that can
concern them; Job A reads none).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from operators.stats import percentile
from operators.strategies.engine import is_relevant_scope
from schemas import (
    Control,
    DeadLetter,
    ExecutionMetrics,
    MarketData,
    OrderState,
    OrderStatus,
    PortfolioState,
    PositionState,
    Record,
    RiskDecision,
    RiskEvent,
    Severity,
    StrategyConfig,
    VenueFill,
)
from tradeflow.status import Status, bucket_quantile

TAILED = (
    "portfolio_state", "positions_state", "orders", "venue_fills", "risk_events", "risk_decisions",
    "dead_letters", "control", "strategy_config", "execution_metrics",
)
"""The streams the console reads, each from its start (risk_decisions: its last records;
market_data: only its newest tick per partition, for the clock)."""

WORKING = frozenset({OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED,
                     OrderStatus.CANCEL_PENDING})
"""Order states that are still working at the venue (the blotter shows these)."""

CONTROL_READERS = ("portfolio_risk", "execution", "strategy:")
"""Jobs that read the control table (by the ``job`` label of their metrics)."""


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _ms(seconds: float) -> float | str:
    return "inf" if seconds == float("inf") else round(seconds * 1000, 3)


def _dec(value: Decimal) -> str:
    return format(value, "f")  # never exponent notation ("0E-8")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else _dec(value)


@dataclass
class WrittenControl:
    """A control change this console wrote, and what the jobs' metrics said since."""

    scope: str
    state: str
    ts: datetime
    baseline: dict[str, int]
    """Per job (``job@target``): its ``control`` input count just before the write."""
    written_at: float = 0.0
    """Monotonic clock of the write (seconds)."""
    applied: dict[str, float | None] = field(default_factory=dict)
    """Per job: seconds from the write to the first scrape that saw the row read (None: not yet)."""


def reads_control(job: str, scope: str) -> bool:
    """Tell whether a job (its metrics ``job`` label) reads control rows of ``scope``."""
    if job.startswith("strategy:"):
        return is_relevant_scope(scope, job.removeprefix("strategy:"))
    return job in CONTROL_READERS


def control_counts(statuses: list[Status]) -> dict[str, int]:
    """Return each live control-reading job's ``control`` input count, by ``job@target``."""
    return {
        f"{st.job}@{st.target}": st.items_in_by_stream.get("control", 0)
        for st in statuses
        if st.alive and any(st.job.startswith(j) for j in CONTROL_READERS)
    }


def control_applied(written: WrittenControl, statuses: list[Status], elapsed_s: float) -> bool:
    """Mark the jobs that have read ``written`` since it was written; tell if any changed.

    A job that concerns itself with the scope and whose ``control`` count is above its
    baseline has read the row (it applies a control row as it reads it). A job with no
    baseline (not scraped at write time) is judged from 0, so a freshly started one
    counts once it has read the whole table.
    """
    changed = False
    for key, count in control_counts(statuses).items():
        job = key.split("@", 1)[0]
        if not reads_control(job, written.scope):
            continue
        if written.applied.get(key) is None:
            if count > written.baseline.get(key, 0):
                written.applied[key] = round(elapsed_s, 2)
                changed = True
            elif key not in written.applied:
                written.applied[key] = None
                changed = True
    return changed


class ConsoleView:
    """Fold of the tailed streams into what the console shows."""

    def __init__(self, *, recent: int = 50, equity_points: int = 240, default_venue: str = "paper") -> None:
        self.recent = recent
        self.default_venue = default_venue
        self.portfolios: dict[str, PortfolioState] = {}
        self.equity: dict[str, deque[tuple[str, str]]] = {}
        self._equity_points = equity_points
        self.positions: dict[tuple[str, str], PositionState] = {}
        self.working: dict[str, OrderState] = {}
        self.venue_of: dict[str, str] = {}
        self.fills: deque[VenueFill] = deque(maxlen=recent)
        self.events: deque[RiskEvent] = deque(maxlen=recent * 2)
        self.critical: deque[RiskEvent] = deque(maxlen=recent)
        self.rejects_by_rule: Counter[str] = Counter()
        self.decisions: Counter[str] = Counter()
        self.decision_latency_us: deque[float] = deque(maxlen=2000)
        self.dead_letters: deque[DeadLetter] = deque(maxlen=recent)
        self.dead_by_job: Counter[str] = Counter()
        self.controls: dict[str, Control] = {}
        self.audit: deque[Control] = deque(maxlen=recent * 2)
        self.strategies: dict[str, StrategyConfig] = {}
        self.execution: dict[str, ExecutionMetrics] = {}
        self.undecodable: Counter[str] = Counter()
        self.health: list[Status] = []
        self.written: list[WrittenControl] = []
        self.clock: datetime | None = None
        """The newest market_data tick's time: the pipeline's clock, on which order ages are
        measured (in a replay it is far from the wall clock; control rows, and the events,
        portfolio rows and cancels they cause, carry the wall clock)."""

    # ------------------------------------------------------------------ folding

    def apply(self, stream: str, rec: Record) -> None:  # noqa: C901 - one branch per stream's model
        """Fold one record of ``stream`` into the view."""
        if isinstance(rec, MarketData):
            if self.clock is None or rec.ts > self.clock:
                self.clock = rec.ts
        elif isinstance(rec, PortfolioState):
            self.portfolios[rec.account] = rec
            points = self.equity.setdefault(rec.account, deque(maxlen=self._equity_points))
            points.append((_iso(rec.ts), _dec(rec.equity)))
        elif isinstance(rec, PositionState):
            self.positions[(rec.account, rec.symbol)] = rec
        elif isinstance(rec, OrderState):
            if rec.status in WORKING:
                self.working[rec.order_id] = rec
            else:
                self.working.pop(rec.order_id, None)
        elif isinstance(rec, VenueFill):
            self.venue_of[rec.order_id] = rec.venue
            if rec.last_qty > 0:
                self.fills.append(rec)
        elif isinstance(rec, RiskEvent):
            (self.critical if rec.severity is Severity.CRITICAL else self.events).append(rec)
            if rec.signal_id and rec.severity is not Severity.CRITICAL:
                self.rejects_by_rule[rec.rule] += 1
        elif isinstance(rec, RiskDecision):
            self.decisions[rec.decision.value] += 1
            self.decision_latency_us.append(rec.latency_us)
        elif isinstance(rec, DeadLetter):
            self.dead_letters.append(rec)
            self.dead_by_job[rec.job or "?"] += 1
        elif isinstance(rec, Control):
            self.controls[rec.scope] = rec
            self.audit.append(rec)
        elif isinstance(rec, StrategyConfig):
            self.strategies[rec.strategy_id] = rec
        elif isinstance(rec, ExecutionMetrics):
            self.execution[rec.venue] = rec

    def bad_record(self, stream: str) -> None:
        """Count a record of ``stream`` that did not decode (shown, never fatal)."""
        self.undecodable[stream] += 1

    # ---------------------------------------------------------------- rendering

    def to_json(self) -> dict[str, Any]:
        """Return the whole view as JSON-able data (what the page renders)."""
        return {
            "clock": _iso(self.clock) if self.clock else None,
            "accounts": self._accounts(),
            "positions": [self._position(p) for _, p in sorted(self.positions.items())],
            "working_orders": self._orders(),
            "fills": [self._fill(f) for f in reversed(self.fills)],
            "risk_events": [self._event(e) for e in [*reversed(self.critical), *reversed(self.events)]],
            "rejects_by_rule": dict(self.rejects_by_rule.most_common()),
            "decisions": dict(self.decisions),
            "dead_letters": {
                "total": sum(self.dead_by_job.values()),
                "by_job": dict(self.dead_by_job),
                "recent": [self._letter(d) for d in reversed(self.dead_letters)],
            },
            "controls": {scope: self._control(c) for scope, c in sorted(self.controls.items())},
            "audit": self._audit(),
            "strategies": sorted(self.strategies),
            "health": [self._health(st) for st in self.health],
            "hops": self._hops(),
            "undecodable": dict(self.undecodable),
        }

    def _accounts(self) -> list[dict[str, Any]]:
        out = []
        for acct, p in sorted(self.portfolios.items()):
            out.append({
                "account": acct, "equity": _dec(p.equity), "cash": _dec(p.cash),
                "realized_pnl": _dec(p.realized_pnl), "unrealized_pnl": _dec(p.unrealized_pnl),
                "gross_exposure": _dec(p.gross_exposure), "leverage": _dec(p.leverage),
                "drawdown": _dec(p.drawdown), "open_orders": p.open_orders,
                "trading_state": p.trading_state.value, "ts": _iso(p.ts),
                "equity_series": [list(pt) for pt in self.equity.get(acct, ())],
            })
        return out

    @staticmethod
    def _position(p: PositionState) -> dict[str, Any]:
        return {
            "account": p.account, "symbol": p.symbol, "net_qty": _dec(p.net_qty), "avg_px": _dec(p.avg_px),
            "realized_pnl": _dec(p.realized_pnl), "unrealized_pnl": _dec(p.unrealized_pnl),
            "last_mark": _money(p.last_mark), "market_value": _dec(p.market_value), "ts": _iso(p.ts),
        }

    def _orders(self) -> list[dict[str, Any]]:
        rows = []
        for o in sorted(self.working.values(), key=lambda o: (o.ts, o.order_id)):
            age = max(0.0, (self.clock - o.ts).total_seconds()) if self.clock else 0.0
            rows.append({
                "order_id": o.order_id, "account": o.account, "symbol": o.symbol, "side": o.side.value,
                "qty": _dec(o.qty), "leaves_qty": _dec(o.leaves_qty), "cum_qty": _dec(o.cum_qty),
                "status": o.status.value, "order_type": o.order_type.value, "limit_px": _money(o.limit_px),
                "venue": self.venue_of.get(o.order_id, self.default_venue), "age_s": round(age, 1),
                "strategy_id": o.strategy_id, "ts": _iso(o.ts),
            })
        return rows

    @staticmethod
    def _fill(f: VenueFill) -> dict[str, Any]:
        return {
            "ts": _iso(f.ts), "order_id": f.order_id, "account": f.account, "symbol": f.symbol,
            "side": f.side.value, "last_qty": _dec(f.last_qty), "last_px": _dec(f.last_px),
            "venue": f.venue, "exec_id": f.exec_id,
        }

    @staticmethod
    def _event(e: RiskEvent) -> dict[str, Any]:
        return {
            "event_id": e.event_id, "ts": _iso(e.ts), "account": e.account, "rule": e.rule,
            "severity": e.severity.value, "message": e.message, "symbol": e.symbol,
            "signal_id": e.signal_id, "order_id": e.order_id,
        }

    @staticmethod
    def _letter(d: DeadLetter) -> dict[str, Any]:
        return {
            "ts": _iso(d.ts), "job": d.job or "?", "source_stream": d.source_stream,
            "partition": d.partition, "offset": d.offset, "reason": d.reason, "payload": d.payload[:500],
        }

    @staticmethod
    def _control(c: Control) -> dict[str, Any]:
        return {"scope": c.scope, "state": c.state.value, "reason": c.reason, "updated_by": c.updated_by,
                "ts": _iso(c.ts)}

    def _audit(self) -> list[dict[str, Any]]:
        written = {(w.scope, w.ts): w for w in self.written}
        out = []
        for c in reversed(self.audit):
            row = self._control(c)
            w = written.get((c.scope, c.ts))
            row["applied"] = dict(sorted(w.applied.items())) if w is not None else None
            out.append(row)
        return out

    @staticmethod
    def _health(st: Status) -> dict[str, Any]:
        return {
            "target": st.target, "job": st.job, "shard": st.shard, "alive": st.alive, "lag": st.lag,
            "snapshot_age_s": st.snapshot_age_s, "dead_letters": st.dead_letters,
            "items_in": st.items_in, "error": st.error,
        }

    def _hops(self) -> list[dict[str, Any]]:
        lat = list(self.decision_latency_us)
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        hops: list[dict[str, Any]] = [{
            "hop": "signal -> risk decision (Job C)", "samples": len(lat),
            "p50_ms": None if p50 is None else round(p50 / 1000, 3),
            "p99_ms": None if p99 is None else round(p99 / 1000, 3),
        }]
        for st in self.health:
            for key, buckets in sorted(st.latency_buckets.items()):
                venue, kind = key.split(" ", 1)
                p50, p99 = bucket_quantile(buckets, 0.5), bucket_quantile(buckets, 0.99)
                hops.append({
                    "hop": f"order -> {kind} ({venue}, Job D {st.shard}, since start, bucket bound)",
                    "samples": int(max((c for _, c in buckets), default=0)),
                    "p50_ms": None if p50 is None else _ms(p50), "p99_ms": None if p99 is None else _ms(p99),
                })
        for venue, m in sorted(self.execution.items()):
            window = f"{venue}, Job D, last {m.window_s:g} s window"
            hops.append({"hop": f"order -> ack ({window})", "samples": m.acks,
                         "p50_ms": m.ack_p50_ms, "p99_ms": m.ack_p99_ms})
            hops.append({"hop": f"order -> fill ({window})", "samples": m.fills,
                         "p50_ms": m.fill_p50_ms, "p99_ms": m.fill_p99_ms})
        return hops
