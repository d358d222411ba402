"""Seeded chaos trials: SIGKILL the pipeline's jobs at random moments, compare with a clean run.

A trial runs the whole pipeline (the feed writer, Jobs A, B per strategy, C and D on
the paper venue) as separate processes with Bytewax recovery, over a seeded synthetic
market. While it runs, a seeded schedule SIGKILLs one job or several at once (the
feed writer included) at random moments and restarts each after a random pause
(jobs from their recovery snapshots, the feed with ``--resume``). When the pipeline
has drained, ``collect`` reads what it wrote and ``compare`` holds it against an
uncrashed run of the same market:

- ``duplicate_ids``: ids written more than once to a stream that has ids (signals,
  decisions, orders by (order id, action), fills by (venue, exec id), risk events);
- ``contradictory_records``: ids whose records differ (a decision's latency aside);
- ``undecided_signals``: signals without a decision;
- ``replay_exact_pct``: how many recorded decisions ``tradeflow risk replay`` reproduces;
- ``differences``: per compared stream or table, the records that differ from the
  uncrashed run (signals, decisions, validated orders, fills, positions, cash), and
  ``differing`` the first few of them, field by field (a failed trial says what differed).

``bench/chaos.py`` runs many trials and prints the figures; tests/recovery runs a few.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from tradeflow.pipeline import (
    ROOT,
    Pipeline,
    PipelineError,
    demo_strategies,
    event_time_settings,
    job_env,
    pipeline_jobs,
    seed,
)
from tradeflow.risk_tools import replay
from tradeflow.settings import Settings

FEED = "feed"
"""The name of the feed writer in a kill schedule."""

IDS: dict[str, tuple[str, ...]] = {
    "trade_signals": ("signal_id",),
    "risk_decisions": ("signal_id",),
    "validated_orders": ("order_id", "action"),
    "venue_fills": ("venue", "exec_id"),
    "risk_events": ("event_id",),
}
"""Streams with ids, and the fields that make a record's id."""

VOLATILE = {
    "risk_decisions": ("latency_us",),
    **dict.fromkeys(("trade_signals", "validated_orders", "venue_fills"), ("entered_at",)),
}
"""Fields that legitimately differ between two writes of one record: the wall clock
(``latency_us``, and the latency stamp ``entered_at``, which a restarted Job D does not
put on the reports of orders sent before its restart)."""

PHYSICAL = {"risk_decisions": ("input_offsets",)}
"""Fields that differ between two runs but not within one: where in the input logs the
inputs a decision saw landed (two Jobs B write into one trade_signals stream, so the
offsets follow their interleaving). Which inputs a decision saw, and every value, are
compared; a record written twice in one run must match in these too."""

COMPARED = ("trade_signals", "risk_decisions", "validated_orders", "venue_fills")
TABLES = ("positions_state", "portfolio_state")


@dataclass(frozen=True)
class Market:
    """The seeded synthetic market a trial replays, and how fast (event time per second)."""

    ticks: int = 3000
    symbols: int = 4
    seed: int = 5
    speed: float = 25.0

    def synthetic(self) -> SyntheticMarket:
        """Return the market's tick generator."""
        return SyntheticMarket(symbols=self.symbols, ticks=self.ticks, seed=self.seed)


@dataclass(frozen=True)
class Kill:
    """One scheduled kill: at ``at_s`` seconds into the run, these processes, down for ``down_s``."""

    at_s: float
    names: tuple[str, ...]
    down_s: float


def schedule(rng: random.Random, names: list[str], *, kills: int, within_s: float) -> list[Kill]:
    """Return a seeded kill schedule: ``kills`` moments, each killing 1 to 3 processes."""
    out = []
    for _ in range(kills):
        k = min(len(names), rng.choice((1, 1, 2, 3)))
        victims = tuple(sorted(rng.sample(names, k)))
        out.append(Kill(rng.uniform(0.5, within_s), victims, rng.uniform(0.1, 2.0)))
    return sorted(out, key=lambda k: k.at_s)


@dataclass
class Collected:
    """What a run wrote: records by id per stream, latest table rows, and the checks."""

    records: dict[str, dict[str, str]] = field(default_factory=dict)
    tables: dict[str, dict[str, str]] = field(default_factory=dict)
    duplicate_ids: int = 0
    contradictory_records: int = 0
    undecided_signals: int = 0
    replay_checked: int = 0
    replay_reproduced: int = 0

    @property
    def replay_exact_pct(self) -> float:
        """Return the share of recorded decisions the replay reproduced, in percent."""
        return 100.0 * self.replay_reproduced / self.replay_checked if self.replay_checked else 100.0


def _id(stream: str, rec: dict[str, object]) -> str:
    return "|".join(str(rec.get(f)) for f in IDS[stream])


def _canonical(stream: str, rec: dict[str, object]) -> str:
    drop = VOLATILE.get(stream, ())
    return json.dumps({k: v for k, v in rec.items() if k not in drop}, sort_keys=True)


def _logical(stream: str, canonical: str) -> str:
    drop = PHYSICAL.get(stream, ())
    if not drop:
        return canonical
    return json.dumps({k: v for k, v in json.loads(canonical).items() if k not in drop}, sort_keys=True)


def collect(settings: Settings) -> Collected:
    """Read a drained run's streams and tables and check them (see the module doc)."""
    conn = Connectors(settings)
    out = Collected()
    for stream in IDS:
        seen: dict[str, list[str]] = {}
        for stored in conn.scan(stream):
            rec = json.loads(stored.value)
            seen.setdefault(_id(stream, rec), []).append(_canonical(stream, rec))
        out.duplicate_ids += sum(len(v) - 1 for v in seen.values())
        out.contradictory_records += sum(len(set(v)) > 1 for v in seen.values())
        out.records[stream] = {k: _logical(stream, v[0]) for k, v in seen.items()}
    for table in TABLES:
        reader = conn.reader(table)
        try:
            out.tables[table] = {k: v.decode() for k, v in reader.scan_latest()}
        finally:
            reader.close()
    out.undecided_signals = len(out.records["trade_signals"].keys() - out.records["risk_decisions"].keys())
    report = replay(settings)
    out.replay_checked, out.replay_reproduced = report.checked, report.reproduced
    return out


def compare(got: Collected, want: Collected) -> dict[str, int]:
    """Return, per compared stream and table, how many records differ from ``want``."""
    diff: dict[str, int] = {}
    for stream in COMPARED:
        a, b = got.records.get(stream, {}), want.records.get(stream, {})
        diff[stream] = sum(a.get(k) != b.get(k) for k in a.keys() | b.keys())
    for table in TABLES:
        a, b = got.tables.get(table, {}), want.tables.get(table, {})
        diff[table] = sum(a.get(k) != b.get(k) for k in a.keys() | b.keys())
    return diff


def differing(got: Collected, want: Collected, *, limit: int = 3) -> dict[str, list[str]]:
    """Return, per compared stream and table, up to ``limit`` records that differ, described.

    What ``compare`` counts, said so that one failed trial can be diagnosed: the id (key),
    and either which run lacks it or which fields differ, with both values (of a list
    field such as a decision's ``rules``, only the items that differ).
    """
    out: dict[str, list[str]] = {}
    pairs = [(s, got.records.get(s, {}), want.records.get(s, {})) for s in COMPARED]
    pairs += [(t, got.tables.get(t, {}), want.tables.get(t, {})) for t in TABLES]
    for name, a, b in pairs:
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if keys:
            out[name] = [_describe(k, a.get(k), b.get(k)) for k in keys[:limit]]
            if len(keys) > limit:
                out[name].append(f"... {len(keys) - limit} more")
    return out


def _describe(key: str, got: str | None, want: str | None) -> str:
    if got is None or want is None:
        return f"{key}: only in the {'reference' if got is None else 'trial'}"
    a, b = json.loads(got), json.loads(want)
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return f"{key}: trial {got} != reference {want}"
    fields = []
    for f in sorted(a.keys() | b.keys()):
        x, y = a.get(f), b.get(f)
        if x == y:
            continue
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            pairs = [(i, j) for i, j in zip(x, y, strict=True) if i != j]
            x, y = [i for i, _ in pairs], [j for _, j in pairs]
        fields.append(f"{f}: trial {json.dumps(x)} != reference {json.dumps(y)}")
    return f"{key}: " + "; ".join(fields)


@dataclass
class TrialResult:
    """One trial's schedule and figures."""

    trial: int
    kills: list[Kill]
    differences: dict[str, int]
    duplicate_ids: int
    contradictory_records: int
    undecided_signals: int
    replay_exact_pct: float
    seconds: float
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Per stream or table that differs, the first differing records described (``differing``)."""

    @property
    def has_diff(self) -> bool:
        """Tell whether anything differs from the uncrashed run."""
        return any(self.differences.values())

    def as_dict(self) -> dict[str, object]:
        """Return the result as plain data (for JSON)."""
        return {**asdict(self), "has_diff": self.has_diff}


class _Feed:
    """The feed writer as a killable process that resumes after the ticks already written."""

    def __init__(self, settings: Settings, market: Market, log: Path) -> None:
        self.settings, self.market, self.log = settings, market, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        m = self.market
        args = [sys.executable, "-c", "from tradeflow.cli import main; raise SystemExit(main())", "feed",
                "--ticks", str(m.ticks), "--symbols", str(m.symbols), "--seed", str(m.seed),
                "--speed", str(m.speed), "--resume", "--keep-open", "--quiet"]
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            args, cwd=ROOT, env=job_env(self.settings), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(30)

    @property
    def done(self) -> bool:
        if self.proc is None or self.proc.poll() is None:
            return False
        if self.proc.returncode != 0:
            tail = self.log.read_text()[-2000:]
            raise PipelineError(f"the feed exited with {self.proc.returncode}: {tail}")
        return True


def run(
    settings: Settings,
    market: Market,
    kills: list[Kill],
    *,
    settle_s: float = 3.0,
    timeout_s: float = 600.0,
    on_kill: Callable[[Kill], None] | None = None,
) -> Collected:
    """Run the pipeline with recovery over ``market``, carrying out ``kills``; collect it."""
    configs = demo_strategies()
    settings = event_time_settings(settings, configs)  # event time decides, not arrival order
    conn = Connectors(settings)
    seed(conn, configs, market.synthetic().symbol_names())
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(settings, pipeline_jobs(configs), logs, recovery_dir=settings.data_dir / "recovery")
    feed = _Feed(settings, market, logs / "feed.log")
    started = time.monotonic()
    pending = list(kills)
    down: dict[str, float] = {}
    pipe.start()
    feed.start()
    try:
        last: dict[str, int] = {}
        still_since = time.monotonic()
        while True:
            time.sleep(0.1)
            now = time.monotonic() - started
            while pending and pending[0].at_s <= now:
                k = pending.pop(0)
                for name in k.names:
                    if name in down:
                        continue
                    feed.kill() if name == FEED else pipe.kill(name)
                    down[name] = now + k.down_s
                if on_kill is not None:
                    on_kill(k)
            for name, until in list(down.items()):
                if until <= now:
                    feed.start() if name == FEED else pipe.spawn(name)
                    del down[name]
            if not down:
                pipe.check_alive()
            sizes = pipe.sizes()
            if sizes != last:
                last, still_since = sizes, time.monotonic()
            settled = (
                not pending and not down and feed.done and time.monotonic() - still_since >= settle_s
                and sizes["sma_wide"] + sizes["dead_letters"] >= market.ticks
            )
            # Counts first (cheap); on Kafka a restarted job's sink may write a record
            # twice (consumers drop the copy), so the counts can stay apart for good:
            # then compare the distinct signal ids with the decided ones.
            if settled and (sizes["risk_decisions"] >= sizes["trade_signals"] or _all_decided(settings)):
                break
            if now > timeout_s:
                raise PipelineError(f"the pipeline did not drain within {timeout_s:.0f}s: {sizes}")
    finally:
        feed.kill()
        pipe.stop()
    return collect(settings)


def _all_decided(settings: Settings) -> bool:
    conn = Connectors(settings)
    signals = {json.loads(r.value)["signal_id"] for r in conn.scan("trade_signals")}
    decided = {json.loads(r.value)["signal_id"] for r in conn.scan("risk_decisions")}
    return signals <= decided


def trial(
    n: int, settings: Settings, market: Market, reference: Collected, *, kills: int = 3,
    within_s: float | None = None, seed_base: int = 20261205,
) -> TrialResult:
    """Run trial ``n`` (its own seeded schedule) and compare it with ``reference``."""
    rng = random.Random(seed_base + n)  # noqa: S311 - a kill schedule, not crypto
    names = [FEED, *(job.name for job in pipeline_jobs(demo_strategies()))]
    horizon = within_s if within_s is not None else 0.8 * market.ticks / (market.symbols * 2.0) / market.speed
    plan = schedule(rng, names, kills=kills, within_s=max(1.0, horizon))
    started = time.monotonic()
    got = run(settings, market, plan)
    return TrialResult(
        trial=n, kills=plan, differences=compare(got, reference), duplicate_ids=got.duplicate_ids,
        contradictory_records=got.contradictory_records, undecided_signals=got.undecided_signals,
        replay_exact_pct=got.replay_exact_pct, seconds=time.monotonic() - started,
        examples=differing(got, reference),
    )


def summary(results: list[TrialResult]) -> dict[str, object]:
    """Return the figures of a set of trials (bench/chaos.py's last line)."""
    diffs: Counter[str] = Counter()
    for r in results:
        diffs.update({k: v for k, v in r.differences.items() if v})
    exact = [r.replay_exact_pct for r in results]
    return {
        "trials": len(results),
        "trials_with_diff": sum(r.has_diff for r in results),
        "duplicate_ids": sum(r.duplicate_ids for r in results),
        "contradictory_records": sum(r.contradictory_records for r in results),
        "undecided_signals": sum(r.undecided_signals for r in results),
        "replay_exact_pct": min(exact) if exact else 100.0,
        "differing_records": dict(diffs),
    }
