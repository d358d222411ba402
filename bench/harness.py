"""What the bench scripts share: the result lines, data-plane setups, flow processes,
and Job A's throughput and latency measures (``bench/kafka.py``, ``bench/fluss.py``).

Imported as ``bench.harness`` (each script first imports ``bench/_root.py``, which puts the
repository root on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from connectors.base import StoredRecord
from connectors.embedded.store import open_stream
from connectors.feeds import SyntheticMarket, replay
from connectors.kafka.settings import kafka_env
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.stats import percentile
from schemas import MarketData, SmaWide, decode
from tradeflow.infra.common import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POLL_MS = 50
JOB_A = [sys.executable, "-m", "bytewax.run", "flows.indicators:build_flow()"]


PlainStep = Callable[[list[StoredRecord]], list[tuple[str | None, bytes]]]
"""What a plain loop makes of one batch of input records: the (key, payload) pairs to append."""


def plain_loop(data_dir: Path, src_name: str, dst_name: str, step: PlainStep) -> tuple[float, int]:
    """The baseline a flow is measured against: plain Python reading ``src_name`` of the
    embedded store partition by partition, 500 records a batch, and appending what ``step``
    makes of each batch to ``dst_name``. Return the seconds it took and the records written."""
    src = open_stream(data_dir, src_name, partitions=2, table=False)
    dst = open_stream(data_dir, dst_name, partitions=2, table=False)
    written = 0
    started = time.perf_counter()
    for part in range(src.partitions):
        offset = 0
        while batch := src.read(part, offset, 500):
            out = step(batch)
            dst.append(out)
            written += len(out)
            offset = batch[-1].offset + 1
    return time.perf_counter() - started, written


def report(result: dict[str, Any]) -> None:
    """Add the machine's figures, print one aligned line per figure, then the JSON line."""
    result = {**result, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:>{width}}: {v}")
    print(json.dumps(result, default=str))


def embedded_count(data_dir: Path, stream: str, partitions: int = 2) -> int:
    """Return how many records a log stream of the embedded store holds."""
    f = open_stream(data_dir, stream, partitions=partitions, table=False)
    try:
        return sum(f.end_offsets().values())
    finally:
        f.close()


# ----------------------------------------------------------------- data planes


class Startable(Protocol):
    """A real server started for a bench (``KafkaBroker``, ``FlussCluster``, the FIX venue)."""

    def start(self) -> Any: ...  # noqa: D102

    def stop(self) -> None: ...  # noqa: D102


class Server(Startable, Protocol):
    """A data plane: a ``Startable`` clients reach at ``bootstrap_servers``."""

    @property
    def bootstrap_servers(self) -> str: ...  # noqa: D102


S = TypeVar("S", bound=Startable)


@contextmanager
def running(server: S) -> Iterator[S]:
    """Start ``server``; stop it at the end, also on error or Ctrl-C."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class Setup:
    """One data plane to run the flow on: its settings and the env of its processes."""

    name: str
    settings: Settings
    env: dict[str, str] = field(default_factory=dict)


def make_setup(work: Path, name: str, *, follow: bool = False, poll_ms: int = DEFAULT_POLL_MS,
               **settings: Any) -> Setup:
    """Settings under ``work/name`` and the environment that gives a flow process the same."""
    data = work / name
    s = load_settings(data_dir=data, follow=follow, poll_interval_ms=poll_ms, **settings)
    env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLOW_KAFKA")},
        **kafka_env(s.kafka),
        TRADEFLOW_PROFILE=s.profile.value,
        TRADEFLOW_DATA_DIR=str(data),
        TRADEFLOW_PARTITIONS=str(s.partitions),
        TRADEFLOW_FLUSS=s.fluss.model_dump_json(),
        TRADEFLOW_FOLLOW="true" if follow else "false",
        TRADEFLOW_POLL_INTERVAL_MS=str(poll_ms),
        TRADEFLOW_POLL_BUSY_MS=str(s.poll_busy_ms),
        TRADEFLOW_POLL_BUSY_FOR_MS=str(s.poll_busy_for_ms),
    )
    return Setup(name, s, env)


def local_setup(work: Path, name: str, poll_ms: int = DEFAULT_POLL_MS) -> Setup:
    """The embedded store with 2 partitions."""
    return make_setup(work, name, poll_ms=poll_ms, profile="local", partitions=2)


def kafka_setup(broker: Server, work: Path, name: str, partitions: int, **kw: Any) -> Setup:
    """Fresh topics with ``partitions`` partitions on ``broker``."""
    kafka = {"bootstrap": broker.bootstrap_servers, "topic_prefix": f"bench{os.urandom(3).hex()}.",
             "partitions": partitions}
    return make_setup(work, name, profile="kafka", kafka=kafka, **kw)


def fluss_setup(cluster: Server, work: Path, name: str, buckets: int, **kw: Any) -> Setup:
    """A fresh database with ``buckets`` buckets per table on ``cluster``."""
    fluss = {"bootstrap": cluster.bootstrap_servers, "database": f"bench{os.urandom(3).hex()}",
             "buckets": buckets}
    return make_setup(work, name, profile="fluss", fluss=fluss, **kw)


# -------------------------------------------------------------------- processes


class Processes:
    """Every flow process the bench starts, so all of them can be stopped on error."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.peak_kb: dict[int, int] = {}

    def start(self, setup: Setup, processes: int) -> list[subprocess.Popen[bytes]]:
        """Start Job A as ``processes`` processes of one Bytewax cluster (``-i/-a``)."""
        if processes > 1:
            addrs = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
            cmds = [[*JOB_A, "-i", str(i), "-a", addrs] for i in range(processes)]
        else:
            cmds = [JOB_A]
        procs = []
        for i, c in enumerate(cmds):
            log = open(self.logs / f"{setup.name}-{i}.log", "ab")  # noqa: SIM115 - child owns it
            procs.append(
                subprocess.Popen(c, cwd=ROOT, env=setup.env, stdout=log, stderr=subprocess.STDOUT)
            )
            log.close()
        self.running += procs
        return procs

    def sample(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """Record each running process's peak RSS so far (VmHWM, which starts at exec)."""
        for p in procs:
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    kb = int(line.split()[1])
                    self.peak_kb[p.pid] = max(self.peak_kb.get(p.pid, 0), kb)

    def wait(self, procs: list[subprocess.Popen[bytes]], name: str, timeout: float = 900) -> float:
        """Wait for the processes; return the largest peak RSS sampled among them (MB)."""
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: flow processes did not finish")
            self.sample(procs)
            time.sleep(0.02)
        for i, p in enumerate(procs):
            self.running.remove(p)
            if p.returncode != 0:
                tail = (self.logs / f"{name}-{i}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{name}: flow process failed ({p.returncode}):\n{tail}")
        return max((self.peak_kb.get(p.pid, 0) for p in procs), default=0) / 1024

    def kill(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """Kill some of the running processes."""
        for p in procs:
            p.kill()
            p.wait(30)
            self.running.remove(p)

    def stop_all(self) -> None:
        """Kill every process still running."""
        for p in self.running:
            if p.poll() is None:
                p.kill()
                p.wait(30)
        self.running.clear()


@contextmanager
def workdir(prefix: str) -> Iterator[tuple[Path, Processes]]:
    """A temp work directory and the flow processes started in it, for one bench run.

    Every process is stopped at the end; the directory is removed after a clean run and
    kept (and named on stderr) after a failure, for its logs.
    """
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    procs = Processes(work)
    try:
        yield work, procs
    except BaseException:
        print(f"bench failed; logs kept in {work}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        procs.stop_all()


def feed(setup: Setup, ticks: list[MarketData], *, close: bool = True) -> None:
    """Write ``ticks`` into market_data (and close it)."""
    writer = Connectors(setup.settings).writer("market_data")
    try:
        replay(ticks, writer, progress=False, close=close, batch=2000)
    finally:
        writer.close()


def count(setup: Setup, stream: str) -> int:
    """Return the sum of a stream's end offsets."""
    reader = Connectors(setup.settings).reader(stream)
    try:
        return sum(reader.end_offsets().values())
    finally:
        reader.close()


# ---------------------------------------------------------------- Job A figures


def throughput(procs: Processes, setup: Setup, ticks: list[MarketData], processes: int) -> dict[str, float]:
    """Run the bounded flow over ``ticks``; measure its rate from first to last output row.

    The output's end offsets are polled every 20 ms; the rate is taken between the
    first poll that sees a row and the first that sees them all, so process start-up
    and shutdown are left out (reported apart as ``first_row_s`` and ``wall_s``).
    """
    feed(setup, ticks)
    n = len(ticks)
    reader = Connectors(setup.settings).reader("sma_wide")
    started = time.perf_counter()
    running = procs.start(setup, processes)
    first: tuple[float, int] | None = None
    done: float | None = None
    try:
        while done is None and any(p.poll() is None for p in running):
            rows = sum(reader.end_offsets().values())
            now = time.perf_counter()
            if rows and first is None:
                first = (now, rows)
            if rows >= n:
                done = now
            procs.sample(running)
            time.sleep(0.02)
    finally:
        reader.close()
    rss = procs.wait(running, setup.name)
    wall = time.perf_counter() - started
    rows = count(setup, "sma_wide")
    if rows != n or first is None or done is None:
        raise SystemExit(f"{setup.name}: {rows} sma_wide rows for {n} ticks")
    return {
        "ticks_per_s": (n - first[1]) / max(done - first[0], 1e-9),
        "wall_s": wall,
        "first_row_s": first[0] - started,
        "peak_rss_mb": rss,
    }


class Arrivals(threading.Thread):
    """Read sma_wide from the start; stamp each row's (symbol, seq) on arrival.

    A data plane's subclass implements ``consume``: read until ``stop`` is set, call
    ``stamp`` with every payload, and set ``ready`` once it reads.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def stamp(self, payloads: list[bytes], now: float) -> None:
        """Record the arrival time of each row."""
        for payload in payloads:
            row = decode(SmaWide, payload)
            self.seen[(row.symbol, row.seq)] = now

    def run(self) -> None:
        self.consume()

    def consume(self) -> None:
        """Read sma_wide until ``stop`` is set (a data plane's subclass)."""
        raise NotImplementedError


def latency(
    procs: Processes, setup: Setup, ticks: list[MarketData], rate: float, arrivals_type: type[Arrivals]
) -> dict[str, float]:
    """Write ticks one at a time at ``rate``/s into a live Job A; row latency percentiles.

    From just before a tick is written (and acknowledged) until its sma_wide row reaches
    a reader of sma_wide: the write, the source's fetch, the flow, the sink's
    acknowledged write and the downstream fetch.
    """
    writer = Connectors(setup.settings).writer("market_data")
    Connectors(setup.settings).writer("sma_wide").close()  # the stream the reader reads
    arrivals = arrivals_type(setup.settings)
    arrivals.start()
    arrivals.ready.wait(60)
    live = procs.start(setup, 1)
    try:
        # Warm up: the first rows prove the flow is connected and running.
        seqs: dict[str, int] = {}
        warm = ticks[:50]
        for t in warm:
            seqs[t.symbol] = seqs.get(t.symbol, -1) + 1
        writer.write(warm)
        deadline = time.monotonic() + 120
        while len(arrivals.seen) < len(warm):
            if time.monotonic() > deadline or live[0].poll() is not None:
                raise SystemExit(f"{setup.name}: the live flow produced no rows")
            time.sleep(0.01)
        sent: dict[tuple[str, int], float] = {}
        started = time.monotonic()
        for i, t in enumerate(ticks[len(warm) :]):
            pause = started + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            seq = seqs[t.symbol] = seqs.get(t.symbol, -1) + 1
            sent[(t.symbol, seq)] = time.time()
            writer.write([t])  # written and acknowledged
        deadline = time.monotonic() + 60
        while not all(k in arrivals.seen for k in sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        lat = [(arrivals.seen[k] - s) * 1000 for k, s in sent.items() if k in arrivals.seen]
        missing = len(sent) - len(lat)
    finally:
        procs.kill(live)
        arrivals.stop.set()
        arrivals.join(30)
        writer.close()
    if missing:
        raise SystemExit(f"{setup.name}: {missing} rows never arrived")
    return {
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
        "mean_ms": sum(lat) / len(lat),
        "samples": len(lat),
    }


def job_a_options(ap: argparse.ArgumentParser, *, ticks: int, latency_ticks: int) -> None:
    """Add the options of Job A's server benches: the ticks of the throughput runs and of
    the latency runs, how many symbols they cover and the latency runs' pace."""
    ap.add_argument("--ticks", type=int, default=ticks, help="ticks of the throughput runs")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--latency-ticks", type=int, default=latency_ticks)
    ap.add_argument("--rate", type=float, default=200.0, help="ticks/s in the latency runs")


def job_a_markets(args: argparse.Namespace) -> tuple[list[MarketData], list[MarketData]]:
    """Return the ticks of the throughput runs (seed 1) and of the latency runs (seed 2,
    50 more than ``--latency-ticks``: the first ones warm the flow up)."""
    ticks = list(SyntheticMarket(symbols=args.symbols, ticks=args.ticks, seed=1))
    live = list(SyntheticMarket(symbols=args.symbols, ticks=args.latency_ticks + 50, seed=2))
    return ticks, live


def latency_figures(lat: dict[str, float], rate: float) -> dict[str, float]:
    """Return a ``latency()`` result as the report's ``latency_*`` figures (ms to 0.01)."""
    return {
        "latency_poll_ms": DEFAULT_POLL_MS,
        "latency_rate_per_s": rate,
        "latency_samples": lat["samples"],
        **{f"latency_{k}": round(lat[k], 2) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    }


# --------------------------------------------------------------------- Job C input

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
CENT = Decimal("0.01")


def at(seconds: float) -> datetime:
    """Return the event time ``seconds`` after ``T0``."""
    return T0 + timedelta(seconds=seconds)


def random_market(rng: random.Random, symbols: int) -> tuple[list[str], dict[str, Decimal], list[MarketData]]:
    """Return ``SYM000``.. names, each one's last price, and a random walk of 50 ticks a symbol
    (round robin from ``at(1)``, 10 ms apart, prices in cents)."""
    syms = [f"SYM{i:03d}" for i in range(symbols)]
    px = {s: Decimal(rng.randrange(20, 400)) for s in syms}
    ticks: list[MarketData] = []
    for i in range(50 * symbols):
        s = syms[i % symbols]
        px[s] = (px[s] * Decimal(1 + rng.gauss(0, 0.001))).quantize(CENT)
        ticks.append(MarketData(symbol=s, ts=at(1 + i * 0.01), price=px[s], volume=Decimal(100)))
    return syms, px, ticks
