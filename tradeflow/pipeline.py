"""Run the whole pipeline as separate processes, the way production runs it.

``run_pipeline`` seeds the tables (accounts, symbol limits, strategy configs), starts
Job A, one Job B per strategy, Job C and Job D (paper venue) as live Bytewax
processes (``python -m bytewax.run ...`` with ``TRADEFLOW_FOLLOW=true``), feeds the
market, waits until the pipeline has drained (every stage caught up and nothing moved
for ``settle_s``), stops the jobs (SIGINT, then SIGKILL) and returns the counts. It
stops everything on any error or Ctrl-C too.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from bytewax.recovery import init_db_dir
from tqdm import tqdm

from connectors.base import StreamReader
from connectors.feeds import replay
from connectors.kafka.settings import KafkaSettings, kafka_env
from connectors.progress import market_writer
from connectors.registry import Connectors
from schemas import (
    WILDCARD,
    Account,
    AccountType,
    Instrument,
    MarketData,
    OrderAction,
    OrderType,
    PortfolioState,
    Record,
    RiskEvent,
    Route,
    Severity,
    Sizing,
    StrategyConfig,
    SymbolLimit,
    TradeSignal,
    ValidatedOrder,
    Venue,
    VenueFill,
    VenueState,
    decode,
    spec,
)
from schemas.base import utc_ms
from tradeflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
T_SEED = datetime(2026, 1, 1, tzinfo=UTC)


class PipelineError(RuntimeError):
    """A job died or the pipeline did not drain in time."""


def listen_port() -> int:
    """Return a free TCP port on 127.0.0.1 below the kernel's ephemeral range.

    A port from ``bind(0)`` is ephemeral: until the job binds it (a second later, after
    its imports), the kernel may hand the same port to any outgoing connection of this
    machine. A port below that range is only ever taken by an explicit bind.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, max(10_001, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise PipelineError("no free port below the ephemeral range for the jobs' metrics")


@dataclass(frozen=True)
class Job:
    """One Bytewax process of the pipeline."""

    name: str
    target: str
    """The ``python -m bytewax.run`` import string."""
    env: dict[str, str] = field(default_factory=dict)
    """Settings of this process only (e.g. which venue a Job D serves)."""


VENUE_KINDS = ("paper", "fix")


def parse_venues(text: str) -> list[tuple[str, str]]:
    """Parse ``--venues``: comma-separated ``NAME[=KIND]`` (KIND paper or fix; default NAME).

    >>> parse_venues("paper,fix")
    [('paper', 'paper'), ('fix', 'fix')]
    >>> parse_venues("paper,alt=paper")
    [('paper', 'paper'), ('alt', 'paper')]
    """
    venues: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, kind = item.partition("=")
        kind = kind or name
        if kind not in VENUE_KINDS:
            raise ValueError(f"venue {item!r}: the kind must be one of {', '.join(VENUE_KINDS)} (NAME=KIND)")
        if name in (n for n, _ in venues):
            raise ValueError(f"venue {name!r} named twice")
        venues.append((name, kind))
    if not venues:
        raise ValueError("name at least one venue")
    return venues


def demo_routes(accounts: Iterable[str], venues: list[tuple[str, str]]) -> list[Route]:
    """Split the accounts between the venues, in turn (no routes for a single venue)."""
    if len(venues) < 2:
        return []
    return [Route(account=a, symbol=WILDCARD, venue=venues[i % len(venues)][0], ts=T_SEED)
            for i, a in enumerate(accounts)]


def demo_strategies() -> list[StrategyConfig]:
    """Return the two strategies of the demo, each trading its own account."""
    return [
        StrategyConfig(
            strategy_id="sma_cross", strategy="sma_cross", params={"fast": 5, "slow": 20},
            account="ACC-SMA", sizing=Sizing.FIXED_QTY, qty=Decimal(100), ts=T_SEED,
        ),
        StrategyConfig(
            strategy_id="rsi_reversion", strategy="rsi_reversion",
            params={"period": 14, "oversold": 30.0, "overbought": 70.0}, account="ACC-RSI",
            sizing=Sizing.FIXED_NOTIONAL, notional=Decimal(20_000), order_type=OrderType.LIMIT,
            limit_offset_bps=Decimal(5), ts=T_SEED,
        ),
    ]


def demo_accounts(configs: Iterable[StrategyConfig]) -> list[Account]:
    """Return one margin account with sensible limits per strategy account."""
    return [
        Account(
            account=acct, account_type=AccountType.MARGIN, cash=Decimal(1_000_000),
            max_order_notional=Decimal(50_000), max_order_qty=Decimal(5_000),
            max_gross_exposure=Decimal(2_000_000), max_leverage=Decimal(4), max_open_orders=50,
            max_orders_per_second=20, price_collar_bps=Decimal(500),
            daily_loss_limit=Decimal(50_000), max_drawdown=Decimal(100_000), ts=T_SEED,
        )
        for acct in sorted({c.account for c in configs})
    ]


def demo_symbol_limits(accounts: Iterable[str], symbols: Iterable[str]) -> list[SymbolLimit]:
    """Return a position limit per account and symbol."""
    return [
        SymbolLimit(account=a, symbol=s, max_position_qty=Decimal(2_000),
                    max_position_notional=Decimal(250_000), ts=T_SEED)
        for a in accounts for s in symbols
    ]


def demo_instruments(symbols: Iterable[str]) -> list[Instrument]:
    """Return the reference data of the demo symbols (cent prices, whole shares, a 20% band)."""
    return [
        Instrument(symbol=s, tick_size=Decimal("0.01"), lot_size=Decimal(1), min_qty=Decimal(1),
                   max_qty=Decimal(100_000), min_notional=Decimal(10), price_precision=2,
                   qty_precision=0, price_band_pct=Decimal(20), ts=T_SEED)
        for s in symbols
    ]


def pipeline_jobs(
    configs: Iterable[StrategyConfig], venues: list[tuple[str, str]] | None = None
) -> list[Job]:
    """Return the processes of the pipeline: A, one B per strategy, C and one D per venue.

    With one venue (the default: paper) Job D is ``execution``; with several, each is
    ``execution_<name>``, and the first also serves orders no route names.
    """
    jobs = [Job("indicators", "flows.indicators:build_flow()")]
    jobs += [
        Job(f"strategy_{c.strategy_id}", f"flows.strategy:build_flow({c.strategy_id!r})") for c in configs
    ]
    jobs.append(Job("portfolio_risk", "flows.portfolio_risk:build_flow()"))
    venues = venues or [("paper", "paper")]
    if len(venues) == 1:
        name, kind = venues[0]
        return [*jobs, Job("execution", "flows.execution:build_flow()",
                           {"TRADEFLOW_EXECUTION__VENUE": kind, "TRADEFLOW_EXECUTION__VENUE_NAME": name})]
    for i, (name, kind) in enumerate(venues):
        env = {"TRADEFLOW_EXECUTION__VENUE": kind, "TRADEFLOW_EXECUTION__VENUE_NAME": name,
               "TRADEFLOW_EXECUTION__DEFAULT_VENUE": "true" if i == 0 else "false"}
        jobs.append(Job(f"execution_{name}", "flows.execution:build_flow()", env))
    return jobs


@dataclass
class Counts:
    """What went through the pipeline."""

    ticks: int = 0
    rows: int = 0
    signals: Counter[str] = field(default_factory=Counter)
    decisions: int = 0
    orders: int = 0
    cancels: int = 0
    fills: int = 0
    rejects_by_rule: Counter[str] = field(default_factory=Counter)
    critical: int = 0
    dead_letters: int = 0
    portfolios: dict[str, PortfolioState] = field(default_factory=dict)
    seconds: float = 0.0
    warmed_at: datetime | None = None
    """With a ``warmup``: the wall time (UTC) the pipeline had caught up on it; the ticks
    fed after it entered later."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds (user + system) each job used from Job A's first row until it was
    stopped (the settle wait included, start-up not); empty where /proc is not."""


def _records(conn: Connectors, stream: str) -> Iterator[Record]:
    model = spec(stream).model
    return (decode(model, rec.value) for rec in conn.scan(stream))



EVENT_TIME_HISTORY_TICKS = 100_000
"""Event-time mode: ticks per symbol the paper venue keeps (Job D may run this far ahead of
Job C's orders and still fills each at the tick it would have filled at live)."""


def event_time_settings(
    settings: Settings, configs: Iterable[StrategyConfig], venues: list[tuple[str, str]] | None = None
) -> Settings:
    """Return ``settings`` in event-time mode, Job C awaiting this pipeline's producers.

    The producers: the feed, the Job B of each strategy and the Job D of each venue
    (``operators.eventtime``).
    """
    awaited = ("feed", *(f"strategy:{c.strategy_id}" for c in configs),
               *(f"execution:{name}" for name, _ in venues or [("paper", "paper")]))
    portfolio = settings.portfolio.model_copy(update={"await_progress": awaited})
    return settings.model_copy(update={"event_time": True, "portfolio": portfolio})


def job_env(settings: Settings, kafka: KafkaSettings | None = None) -> dict[str, str]:
    """Return the environment a pipeline process runs with (live: sources follow).

    ``kafka``: this job's own Kafka settings (its principal on a secured broker).
    In event-time mode (``settings.event_time``) also that, the producers Job C awaits,
    a paper venue history long enough to run ahead of Job C, and no wall-clock
    reconciliation in Job D.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLOW_KAFKA")}
    env.update(kafka_env(kafka or settings.kafka))
    env.update(
        TRADEFLOW_DATA_DIR=str(settings.data_dir.resolve()),
        TRADEFLOW_PROFILE=settings.profile.value,
        TRADEFLOW_FLUSS=settings.fluss.model_dump_json(),
        TRADEFLOW_FOLLOW="true",
        TRADEFLOW_POLL_INTERVAL_MS="20",
        PYTHONUNBUFFERED="1",
    )
    if settings.event_time:
        env.update(
            TRADEFLOW_EVENT_TIME="true",
            TRADEFLOW_PORTFOLIO__AWAIT_PROGRESS=json.dumps(list(settings.portfolio.await_progress)),
            TRADEFLOW_EXECUTION__PAPER_HISTORY_TICKS=str(EVENT_TIME_HISTORY_TICKS),
            # No wall-clock status requests: their answers would land among the reports
            # at moments no event time decides (the paper venue cannot drift anyway).
            TRADEFLOW_EXECUTION__RECONCILE_S="0",
        )
    return env


class Pipeline:
    """The running jobs of one pipeline and how to watch and stop them."""

    WATCHED = ("sma_wide", "trade_signals", "risk_decisions", "validated_orders", "venue_fills",
               "orders", "portfolio_state", "dead_letters", "progress")
    """What a run is watched by: it has settled once none of these grew for a while. The
    ``progress`` rows (event-time mode) count too: a Job B working through rows that
    give no signal still writes them, so its silence on trade_signals is not taken for
    the end (a chaos reference stopped early would lack decisions the trial has)."""

    def __init__(
        self, settings: Settings, jobs: list[Job], log_dir: Path, *, recovery_dir: Path | None = None,
        job_kafka: Mapping[str, KafkaSettings] | None = None,
        metrics: bool | dict[str, int] = False,
    ) -> None:
        self.settings = settings
        self.job_kafka = dict(job_kafka or {})
        """Per flow module (``indicators``, ``strategy``...), its own Kafka settings: each job
        its own principal on a secured broker (``KafkaBroker.provision_jobs``)."""
        self.jobs = {job.name: job for job in jobs}
        self.log_dir = log_dir
        self.recovery_dir = recovery_dir
        """With a directory, each job keeps Bytewax recovery state in ``<dir>/<job>`` (so a
        killed job resumes where its last snapshot was)."""
        if isinstance(metrics, dict):
            self.metrics_ports = {name: metrics[name] for name in self.jobs if name in metrics}
        else:
            self.metrics_ports = {name: listen_port() for name in self.jobs} if metrics else {}
        """With ``metrics`` (True: free ports; or a port per job name), each job serves its
        metrics on 127.0.0.1 at its port here."""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cpu_s: dict[str, float] = {}
        """CPU seconds each job had used when ``stop`` asked it to stop (Linux: read from
        /proc; empty elsewhere): start-up and the run, not the shutdown."""
        self.conn = Connectors(settings)
        self._readers: dict[str, StreamReader] = {}
        """One reader per watched stream, kept open while the run is watched (``sizes``)."""

    @property
    def metrics_targets(self) -> list[str]:
        """Return the jobs' metrics endpoints (``HOST:PORT``; none without ``metrics``)."""
        return [f"127.0.0.1:{port}" for port in self.metrics_ports.values()]

    def start(self) -> None:
        """Start every job as its own process."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.jobs:
            self.spawn(name)

    def spawn(self, name: str) -> None:
        """Start (or restart, from its recovery state if any) one job."""
        job = self.jobs[name]
        module = job.target.split(":")[0].rsplit(".", 1)[-1]
        env = job_env(self.settings, self.job_kafka.get(module)) | job.env
        if name in self.metrics_ports:
            env["TRADEFLOW_METRICS_PORT"] = str(self.metrics_ports[name])
        args = [sys.executable, "-m", "bytewax.run", job.target, "-s", "1"]
        if self.recovery_dir is not None:
            rdir = self.recovery_dir / name
            if not rdir.exists():
                rdir.mkdir(parents=True)
                init_db_dir(rdir, 1)
            args += ["-r", str(rdir), "-b", "0"]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self, name: str) -> None:
        """SIGKILL one job (its whole process group) and reap it."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def check_alive(self) -> None:
        """Raise ``PipelineError`` with its log tail if a job has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise PipelineError(f"job {name} exited with {proc.returncode}:\n{tail}")

    def sizes(self) -> dict[str, int]:
        """Return the record count of each watched stream.

        Asked a few times a second while the jobs run, so the readers stay open: a reader
        opened for each look (a SQLite connection set up, or a Kafka consumer) cost the
        watcher a quarter of its CPU, taken from the jobs it watches.
        """
        out = {}
        for stream in self.WATCHED:
            reader = self._readers.get(stream)
            if reader is None:
                reader = self._readers[stream] = self.conn.reader(stream)
            out[stream] = sum(reader.end_offsets().values())
        return out

    def close_readers(self) -> None:
        """Close the readers ``sizes`` keeps (opened again by the next ``sizes``)."""
        readers, self._readers = self._readers, {}
        for reader in readers.values():
            reader.close()

    def cpu_snapshot(self) -> dict[str, float]:
        """Return the CPU seconds each live job has used so far (``process_cpu_s``)."""
        out = {}
        for name, proc in self.procs.items():
            used = process_cpu_s(proc.pid) if proc.poll() is None else None
            if used is not None:
                out[name] = used
        return out

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every job: SIGINT, then SIGKILL after ``timeout``; close the watcher's readers."""
        self.close_readers()
        self.cpu_s = self.cpu_snapshot()
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def start_console(settings: Settings, port: int, metrics: Iterable[str]) -> subprocess.Popen[bytes]:
    """Start ``tradeflow console`` over the pipeline's data (it prints its URL and token)."""
    env = job_env(settings)
    env.pop("TRADEFLOW_FOLLOW")
    cmd = [sys.executable, "-m", "tradeflow", "console", "--port", str(port)]
    metrics = list(metrics)
    if metrics:
        cmd += ["--metrics", *metrics]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)  # noqa: S603 - our own interpreter and module


def process_cpu_s(pid: int, *, children: bool = False) -> float | None:
    """Return the CPU seconds (user + system) a live process has used; None if unknown.

    Linux's /proc/<pid>/stat, fields 14 and 15 in clock ticks (the command name, field 2,
    may hold spaces: the fields are counted after its closing parenthesis); with
    ``children`` also 16 and 17, its reaped children's.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child process: SIGINT, then SIGKILL after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def seed(
    conn: Connectors, configs: list[StrategyConfig], symbols: list[str],
    venues: list[tuple[str, str]] | None = None,
) -> None:
    """Write the tables the jobs read, and create every stream they expect.

    With several venues the accounts are split between them by routes, and each venue is
    registered UP (its Job D does so too when it starts), so Job C does not refuse an
    order (NO_ROUTE) for a Job D that is still starting.
    """
    accounts = demo_accounts(configs)
    venues = venues or [("paper", "paper")]
    tables: dict[str, list[Record]] = {
        "accounts": list(accounts),
        "strategy_config": list(configs),
        "symbol_limits": list(demo_symbol_limits([a.account for a in accounts], symbols)),
        "control": [],
        "routes": list(demo_routes([a.account for a in accounts], venues)),
        "venues": [Venue(venue=name, state=VenueState.UP, adapter=kind, updated_by="demo", ts=T_SEED)
                   for name, kind in venues] if len(venues) > 1 else [],
        "instruments": list(demo_instruments(symbols)),
    }
    for stream, records in tables.items():
        writer = conn.writer(stream)
        writer.write(records)
        writer.close()
    for stream in ("trade_signals", "validated_orders", "venue_fills", "sma_wide", "market_data"):
        conn.reader(stream).close()


def run_pipeline(
    settings: Settings,
    ticks: Iterable[MarketData],
    total: int,
    symbols: list[str],
    *,
    speed: float | None = None,
    settle_s: float = 3.0,
    timeout_s: float = 1800.0,
    progress: bool = True,
    out: TextIO | None = None,
    venues: list[tuple[str, str]] | None = None,
    job_kafka: Mapping[str, KafkaSettings] | None = None,
    metrics_ports: dict[str, int] | None = None,
    event_time: bool | None = None,
    warmup: int = 0,
) -> Counts:
    """Run the pipeline over ``ticks``; return what went through it.

    ``warmup``: feed the first ``warmup`` ticks, wait until every job is up and the
    pipeline has caught up on them (each tick a row or a dead letter, each signal a
    decision, the outputs still for half a second), then feed the rest (paced from
    there): what comes after the warm-up meets running jobs, not ones still starting.

    ``event_time``: Job C decides in event time (a backtest: the same every run) or in
    arrival order (as live). None: event time for an unpaced run on paper venues only,
    since a FIX or REST venue fills in wall-clock time and promises no ticks.

    ``settings`` are the operator's (seeding, feeding, watching); ``job_kafka`` gives
    jobs their own Kafka principals (see ``Pipeline``). ``venues``: ``(name, kind)`` of
    each Job D (default one paper venue); a FIX venue needs the venue server running
    (``tradeflow infra up --only fix``) and the ``TRADEFLOW_FIX__*`` settings.
    ``metrics_ports`` (job name -> port) makes the jobs serve their metrics there (the
    console of ``tradeflow demo --console`` reads them).
    """
    configs = demo_strategies()
    if event_time is None:
        event_time = speed is None and all(kind == "paper" for _, kind in venues or [("paper", "paper")])
    if event_time:
        settings = event_time_settings(settings, configs, venues)
    conn = Connectors(settings)
    seed(conn, configs, symbols, venues)
    pipe = Pipeline(settings, pipeline_jobs(configs, venues), settings.data_dir / "logs",
                    job_kafka=job_kafka, metrics=metrics_ports or False)
    started = time.monotonic()
    cpu_at_first_row: dict[str, float] | None = None
    feeder = _Feeder(settings, ticks, total, speed, warmup)
    pipe.start()
    bar = tqdm(total=total, unit="tick", desc="pipeline", disable=not progress, file=out or sys.stderr)
    try:
        feeder.start()
        last: dict[str, int] = {}
        still_since = time.monotonic()
        while True:
            time.sleep(0.25)
            pipe.check_alive()
            if feeder.failure is not None:
                raise PipelineError(f"feeding market data failed: {feeder.failure}")
            sizes = pipe.sizes()
            if cpu_at_first_row is None and sizes["sma_wide"]:
                cpu_at_first_row = pipe.cpu_snapshot()
            bar.n = min(sizes["sma_wide"], total)
            bar.set_postfix(signals=sizes["trade_signals"], orders=sizes["validated_orders"],
                            fills=sizes["venue_fills"], refresh=False)
            bar.refresh()
            if sizes != last:
                last, still_since = sizes, time.monotonic()
            still_s = time.monotonic() - still_since
            if not feeder.warmed.is_set() and _drained(sizes, feeder.warmup) and still_s >= 0.5:
                feeder.warm()
            if not feeder.is_alive() and _drained(sizes, feeder.fed) and still_s >= settle_s:
                break
            if time.monotonic() - started > timeout_s:
                raise PipelineError(f"the pipeline did not drain within {timeout_s:.0f}s: {sizes}")
    finally:
        bar.close()
        pipe.stop()
    counts = summarise(conn)
    counts.ticks = feeder.fed
    counts.seconds = time.monotonic() - started
    first = cpu_at_first_row or {}
    counts.cpu_s = {name: round(used - first.get(name, 0.0), 2) for name, used in pipe.cpu_s.items()}
    counts.warmed_at = feeder.warmed_at
    return counts


def _drained(sizes: dict[str, int], fed: int) -> bool:
    """Tell whether each of ``fed`` ticks is a row or a dead letter, and each signal decided."""
    rows = sizes["sma_wide"] + sizes["dead_letters"]
    return rows >= fed and sizes["risk_decisions"] >= sizes["trade_signals"]


class _Feeder(threading.Thread):
    """Writes a run's ticks to market_data: ``warmup`` of them, then the rest once ``warm``."""

    def __init__(self, settings: Settings, ticks: Iterable[MarketData], total: int, speed: float | None,
                 warmup: int) -> None:
        super().__init__(name="feed", daemon=True)
        self._settings, self._ticks, self._total, self._speed = settings, ticks, total, speed
        self.warmup = warmup
        self.fed = 0
        self.failure: BaseException | None = None
        self.warmed = threading.Event()
        self.warmed_at: datetime | None = None
        """When ``warm`` was called (UTC, whole ms); None without a warm-up. Every tick fed
        after it has an ``entered_at`` at or after it, every warm-up tick one before it."""
        if not warmup:
            self.warmed.set()

    def warm(self) -> None:
        """Feed the rest: the pipeline has caught up on the warm-up."""
        self.warmed_at = utc_ms(datetime.now(UTC))  # as the feed stamps entered_at: whole ms
        self.warmed.set()

    def run(self) -> None:  # noqa: D102 - threading.Thread.run
        try:
            writer = market_writer(Connectors(self._settings))
            stream = iter(self._ticks)
            if self.warmup:
                self.fed = replay(itertools.islice(stream, self.warmup), writer, speed=self._speed,
                                  progress=False, close=False)
                self.warmed.wait()
            self.fed += replay(stream, writer, total=self._total, speed=self._speed, progress=False,
                               close=False)
            writer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.failure = exc


def summarise(conn: Connectors) -> Counts:
    """Count what the output streams and tables hold."""
    c = Counts()
    c.rows = conn.size("sma_wide")
    c.decisions = conn.size("risk_decisions")
    c.dead_letters = conn.size("dead_letters")
    for sig in _records(conn, "trade_signals"):
        assert isinstance(sig, TradeSignal)  # noqa: S101 - the stream's model
        c.signals[sig.strategy_id] += 1
    for order in _records(conn, "validated_orders"):
        assert isinstance(order, ValidatedOrder)  # noqa: S101
        if order.action is OrderAction.NEW:
            c.orders += 1
        else:
            c.cancels += 1
    for fill in _records(conn, "venue_fills"):
        assert isinstance(fill, VenueFill)  # noqa: S101
        c.fills += fill.last_qty > 0
    for event in _records(conn, "risk_events"):
        assert isinstance(event, RiskEvent)  # noqa: S101
        if event.severity is Severity.CRITICAL:
            c.critical += 1
        elif event.signal_id:
            c.rejects_by_rule[event.rule] += 1
    reader = conn.reader("portfolio_state")
    for key, raw in reader.scan_latest():
        c.portfolios[key] = decode(PortfolioState, raw)
    reader.close()
    return c


def print_summary(c: Counts, out: TextIO | None = None) -> None:
    """Print the end-of-run summary a person reads (to stdout by default)."""
    out = out or sys.stdout
    rate = c.ticks / c.seconds if c.seconds else 0.0
    print(f"\nticks            {c.ticks:>10,}  ({rate:,.0f}/s end to end, {c.seconds:.1f}s)", file=out)
    print(f"sma_wide rows    {c.rows:>10,}", file=out)
    for strategy, n in sorted(c.signals.items()):
        print(f"signals {strategy:<16}{n:>6,}", file=out)
    print(f"risk decisions   {c.decisions:>10,}", file=out)
    print(f"orders           {c.orders:>10,}  (+{c.cancels} cancels)", file=out)
    print(f"fills            {c.fills:>10,}", file=out)
    print(f"dead letters     {c.dead_letters:>10,}", file=out)
    print(f"critical events  {c.critical:>10,}", file=out)
    if c.rejects_by_rule:
        print("rejects by rule:", file=out)
        for rule, n in c.rejects_by_rule.most_common():
            print(f"  {rule:<24}{n:>8,}", file=out)
    print(f"\n{'account':<10}{'equity':>16}{'realised':>14}{'unrealised':>14}{'gross':>14}  state", file=out)
    for acct, p in sorted(c.portfolios.items()):
        print(
            f"{acct:<10}{p.equity:>16,.2f}{p.realized_pnl:>14,.2f}{p.unrealized_pnl:>14,.2f}"
            f"{p.gross_exposure:>14,.2f}  {p.trading_state.value}",
            file=out,
        )
