"""Job A over a real Kafka broker vs the embedded store: throughput and latency.

Measured in one run, on the same synthetic ticks (``connectors.feeds.SyntheticMarket``):

- throughput, bounded runs of ``python -m bytewax.run "flows.indicators:build_flow()"`` over N
  ticks already in market_data: embedded store with 1 and 2 processes (the
  baseline), then Kafka with 1 and 2 processes (``-i 0/1 -a "P1;P2"``, topics with
  ``--partitions`` partitions). The rate is taken from the first output row to the
  last (the sink's end offsets polled every 20 ms), so process start-up and
  shutdown are left out; time to the first row is reported apart.
- latency, follow mode on Kafka with 1 process: the flow runs live, ticks are
  produced one at a time at ``--rate`` per second, and a consumer of sma_wide
  stamps each row's arrival; latency = arrival - the moment just before the tick
  was produced (so it includes the producer's acks=all round trip, the source's
  idle poll, the flow, the sink's flush and the downstream fetch). Once with the
  project's default poll interval (50 ms) and once with ``--fast-poll-ms``.

The broker is started here (``tradeflow.infra.kafka.KafkaBroker``, a temp dir) and
stopped at the end, also on error or Ctrl-C, with every flow process. The last line
printed is one JSON object.

Usage: ``python bench/kafka.py [--ticks N] [--symbols N] [--partitions N]
[--latency-ticks N] [--rate R]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from connectors.feeds import SyntheticMarket, replay  # noqa: E402
from connectors.registry import Connectors  # noqa: E402
from connectors.settings import Settings, load_settings  # noqa: E402
from operators.stats import percentile  # noqa: E402
from schemas import MarketData, SmaWide, decode  # noqa: E402
from tradeflow.infra.common import free_port  # noqa: E402
from tradeflow.infra.kafka import KafkaBroker  # noqa: E402

DEFAULT_POLL_MS = 50


@dataclass
class Setup:
    """One data plane to run the flow on: its settings and the env of its processes."""

    name: str
    settings: Settings
    env: dict[str, str] = field(default_factory=dict)


def local_setup(work: Path, name: str, poll_ms: int = DEFAULT_POLL_MS) -> Setup:
    data = work / name
    settings = load_settings(profile="local", data_dir=data, partitions=2, poll_interval_ms=poll_ms)
    env = dict(
        os.environ,
        TRADEFLOW_PROFILE="local",
        TRADEFLOW_DATA_DIR=str(data),
        TRADEFLOW_PARTITIONS="2",
        TRADEFLOW_POLL_INTERVAL_MS=str(poll_ms),
    )
    return Setup(name, settings, env)


def kafka_setup(
    broker: KafkaBroker,
    work: Path,
    name: str,
    partitions: int,
    *,
    follow: bool = False,
    poll_ms: int = DEFAULT_POLL_MS,
) -> Setup:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    kafka = {"bootstrap": broker.bootstrap_servers, "topic_prefix": prefix, "partitions": partitions}
    settings = load_settings(
        profile="kafka", kafka=kafka, data_dir=work / name, follow=follow, poll_interval_ms=poll_ms
    )
    env = dict(
        os.environ,
        TRADEFLOW_PROFILE="kafka",
        TRADEFLOW_DATA_DIR=str(work / name),
        TRADEFLOW_KAFKA__BOOTSTRAP=broker.bootstrap_servers,
        TRADEFLOW_KAFKA__TOPIC_PREFIX=prefix,
        TRADEFLOW_KAFKA__PARTITIONS=str(partitions),
        TRADEFLOW_FOLLOW="true" if follow else "false",
        TRADEFLOW_POLL_INTERVAL_MS=str(poll_ms),
    )
    return Setup(name, settings, env)


class Processes:
    """Every flow process the bench starts, so all of them can be stopped on error."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.peak_kb: dict[int, int] = {}

    def start(self, setup: Setup, processes: int) -> list[subprocess.Popen[bytes]]:
        cmd = [sys.executable, "-m", "bytewax.run", "flows.indicators:build_flow()"]
        if processes > 1:
            addrs = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
            cmds = [[*cmd, "-i", str(i), "-a", addrs] for i in range(processes)]
        else:
            cmds = [cmd]
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

    def stop_all(self) -> None:
        for p in self.running:
            if p.poll() is None:
                p.kill()
                p.wait(30)
        self.running.clear()


def feed(setup: Setup, ticks: list[MarketData], *, close: bool = True) -> None:
    writer = Connectors(setup.settings).writer("market_data")
    try:
        replay(ticks, writer, progress=False, close=close, batch=2000)
    finally:
        writer.close()


def count(setup: Setup, stream: str) -> int:
    reader = Connectors(setup.settings).reader(stream)
    try:
        return sum(reader.end_offsets().values())
    finally:
        reader.close()


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
    """Consume sma_wide from the start; stamp each row's (symbol, seq) on arrival."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(daemon=True)
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        kafka = setup.settings.kafka
        self.topic = f"{kafka.topic_prefix}sma_wide"
        self.consumer = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap,
                "group.id": "bench-latency",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            },
            logger=logging.getLogger("bench.kafka"),
        )
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in range(kafka.partitions)])

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(500, 0.005):
                if msg.error() is None:
                    now = time.time()
                    row = decode(SmaWide, msg.value() or b"")
                    self.seen[(row.symbol, row.seq)] = now
        self.consumer.close()


def latency(
    procs: Processes, setup: Setup, ticks: list[MarketData], rate: float
) -> dict[str, float]:
    """Produce ticks one at a time at ``rate``/s into a live flow; row latency percentiles."""
    writer = Connectors(setup.settings).writer("market_data")
    Connectors(setup.settings).writer("sma_wide").close()  # create the topic for the consumer
    arrivals = Arrivals(setup)
    arrivals.start()
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
            due = started + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            seq = seqs[t.symbol] = seqs.get(t.symbol, -1) + 1
            sent[(t.symbol, seq)] = time.time()
            writer.write([t])  # produce + wait for the ack (acks=all)
        deadline = time.monotonic() + 60
        while not all(k in arrivals.seen for k in sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        lat = [(arrivals.seen[k] - s) * 1000 for k, s in sent.items() if k in arrivals.seen]
        missing = len(sent) - len(lat)
    finally:
        for p in live:
            p.kill()
            p.wait(30)
            procs.running.remove(p)
        arrivals.stop.set()
        arrivals.join(10)
        writer.close()
    if missing:
        raise SystemExit(f"{setup.name}: {missing} rows never arrived")
    return {
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
        "mean_ms": statistics.fmean(lat),
        "samples": len(lat),
    }


def job_c_run(setup: Setup, signals: int, *, journal: bool, logs: Path) -> float:
    """Run Job C (bounded) over ``signals`` signals of 10 accounts; return signals/s.

    The inputs are written and closed first; the time is the process's wall time
    minus its time to the first decision (process start-up and the table gates).
    """
    from decimal import Decimal

    from schemas import Account, TradeSignal

    conn = Connectors(setup.settings)
    t0 = SyntheticMarket(symbols=4, ticks=1, seed=3).start
    accounts = [Account(account=f"A{i}", cash=Decimal(10**9), ts=t0) for i in range(10)]
    ticks = list(SyntheticMarket(symbols=4, ticks=200, seed=3))
    sigs = [
        TradeSignal(signal_id=f"s{i}", strategy_id="st", symbol=ticks[i % 200].symbol, account=f"A{i % 10}",
                    side="BUY" if i % 3 else "SELL", qty=Decimal(1), ts=ticks[-1].ts)
        for i in range(signals)
    ]
    for stream, records in (("accounts", accounts), ("market_data", ticks), ("trade_signals", sigs),
                            ("symbol_limits", []), ("control", []), ("venue_fills", [])):
        w = conn.writer(stream)
        w.write(records)
        w.close_stream()
        w.close()
    env = dict(setup.env, TRADEFLOW_PORTFOLIO__JOURNAL="true" if journal else "false")
    log = open(logs / f"{setup.name}-c.log", "ab")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.portfolio_risk:build_flow()"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    reader = conn.reader("risk_decisions")
    first = None
    try:
        while proc.poll() is None:
            if first is None and sum(reader.end_offsets().values()) > 0:
                first = time.perf_counter()
            time.sleep(0.01)
    finally:
        reader.close()
        log.close()
    end = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"Job C failed on {setup.name}; see {logs}")
    return signals / (end - (first or started))


@contextmanager
def running_broker(work: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(work / "kafka")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--partitions", type=int, default=4, help="partitions of each log topic (>= 2)")
    ap.add_argument("--latency-ticks", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=200.0, help="ticks/s in the latency runs")
    ap.add_argument("--fast-poll-ms", type=int, default=5, help="poll interval of the 2nd latency run")
    ap.add_argument("--c-signals", type=int, default=5000, help="signals in the Job C journal-cost runs")
    args = ap.parse_args()
    if args.partitions < 2:
        ap.error("--partitions must be >= 2 to spread the topics over 2 processes")
    logging.basicConfig(level=logging.ERROR)

    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    procs = Processes(work)
    n = args.ticks
    ticks = list(SyntheticMarket(symbols=args.symbols, ticks=n, seed=1))
    try:
        with running_broker(work) as broker:
            emb = {p: throughput(procs, local_setup(work, f"emb-{p}p"), ticks, p) for p in (1, 2)}
            kaf = {
                p: throughput(procs, kafka_setup(broker, work, f"kafka-{p}p", args.partitions), ticks, p)
                for p in (1, 2)
            }
            lat_ticks = list(SyntheticMarket(symbols=args.symbols, ticks=args.latency_ticks + 50, seed=2))
            lat = latency(
                procs, kafka_setup(broker, work, "lat", args.partitions, follow=True), lat_ticks, args.rate
            )
            fast_setup = kafka_setup(
                broker, work, "lat-fast", args.partitions, follow=True, poll_ms=args.fast_poll_ms
            )
            fast = latency(procs, fast_setup, lat_ticks, args.rate)
            c_rates = {
                on: job_c_run(kafka_setup(broker, work, f"c-journal-{on}", args.partitions), args.c_signals,
                              journal=on, logs=work)
                for on in (False, True)
            }
    except BaseException:
        print(f"bench failed; logs kept in {work}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        procs.stop_all()

    result = {
        "ticks": n,
        "symbols": args.symbols,
        "partitions": args.partitions,
        "kafka_1p_ticks_per_s": round(kaf[1]["ticks_per_s"]),
        "kafka_2p_ticks_per_s": round(kaf[2]["ticks_per_s"]),
        "embedded_1p_ticks_per_s": round(emb[1]["ticks_per_s"]),
        "embedded_2p_ticks_per_s": round(emb[2]["ticks_per_s"]),
        "ratio_vs_embedded": round(kaf[1]["ticks_per_s"] / emb[1]["ticks_per_s"], 3),
        "ratio_2p_vs_embedded_2p": round(kaf[2]["ticks_per_s"] / emb[2]["ticks_per_s"], 3),
        "ratio_kafka_2p_vs_1p": round(kaf[2]["ticks_per_s"] / kaf[1]["ticks_per_s"], 3),
        "kafka_1p_first_row_s": round(kaf[1]["first_row_s"], 2),
        "embedded_1p_first_row_s": round(emb[1]["first_row_s"], 2),
        "kafka_1p_wall_s": round(kaf[1]["wall_s"], 2),
        "embedded_1p_wall_s": round(emb[1]["wall_s"], 2),
        "kafka_1p_peak_rss_mb": round(kaf[1]["peak_rss_mb"], 1),
        "kafka_2p_peak_rss_mb": round(kaf[2]["peak_rss_mb"], 1),
        "embedded_1p_peak_rss_mb": round(emb[1]["peak_rss_mb"], 1),
        "latency_poll_ms": DEFAULT_POLL_MS,
        "latency_rate_per_s": args.rate,
        "latency_samples": lat["samples"],
        "latency_p50_ms": round(lat["p50_ms"], 2),
        "latency_p90_ms": round(lat["p90_ms"], 2),
        "latency_p99_ms": round(lat["p99_ms"], 2),
        "latency_max_ms": round(lat["max_ms"], 2),
        "fast_poll_ms": args.fast_poll_ms,
        "fast_latency_p50_ms": round(fast["p50_ms"], 2),
        "fast_latency_p99_ms": round(fast["p99_ms"], 2),
        "c_signals": args.c_signals,
        "c_journal_off_signals_per_s": round(c_rates[False]),
        "c_journal_on_signals_per_s": round(c_rates[True]),
        "c_journal_cost_ratio": round(c_rates[True] / c_rates[False], 3),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    for k, v in result.items():
        print(f"{k:>26}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
