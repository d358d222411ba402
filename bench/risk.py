"""Job C: flow throughput vs a plain loop, pre-trade check latency, memory and restore time.

Measured in one run:

- ``flow``: ``python -m bytewax.run "flows.portfolio_risk:build_flow()" -r DIR -s S -b 0`` on the
  embedded store, 1 process, 1 worker, bounded input fed in phases (Job C needs an
  order to exist before its fills arrive, and its inputs are separate streams):
  setup (accounts, symbol limits, ticks), then the signals, then fills for a share
  of the orders, each phase resumed from the previous one's recovery snapshot. Rates
  are **start-up subtracted**: records / (phase wall time - wall time of a run over the
  same recovery state with no new input, taken just before the phase; it covers process
  start, imports, resuming the state and the end of input). The flow and the plain loop
  run ``--repeat`` times each, alternated, each time on a fresh copy of the stores; the
  best time of each is kept (the machine is shared: the best run is the least disturbed).
- ``plain``: a fresh process (like the flow's), no Bytewax, the same books in stream
  order: read the same streams from a copy of the store, decode,
  ``AccountBook.on_mark`` (the symbol's last tick, as the flow's symbol router attaches
  it) + ``on_signal``, or ``on_fill``, and write the same output records to the store.
  ``ratio_*`` are flow rate / plain rate. ``decisions_differing_from_plain`` counts
  signals whose decision (pass/fail, order, every rule's values) differs between the
  two: with stream order kept by both, 0.
- ``check``: in that process first, ``AccountBook.on_signal`` timed per call
  (``perf_counter_ns``) over the same signals in memory: p50/p99
  (``on_signal_only_per_s`` from their sum); plus the ``RiskDecision.latency_us`` the
  flow's books recorded.
- ``10k``: a fresh subprocess builds 10,000 books x 20 positions through the public API
  (``on_account``, then per symbol ``on_mark`` + ``on_signal`` + a FILLED ``on_fill``);
  ``rss_mb_10k_accounts`` is its peak RSS (VmHWM) then, ``rss_mb_baseline`` the same
  before building. Snapshot: pickle ``BookLogic``'s snapshot dict per account, as
  Bytewax stores it; ``restore_s_10k_accounts``: unpickle + ``AccountBook.from_snapshot``
  for all.
- ``flow_resume``: those pickles inserted into a real recovery store of the flow
  (Bytewax 0.21's ``snaps`` table, at the epoch of the flow's own last snapshot), then
  the flow run with no new input: wall time minus the same run without them. It covers
  loading and rebuilding the 10k books and, at the end of the bounded run (which
  touches every key), snapshotting and writing them again.

Usage: ``python bench/risk.py [--signals N] [--accounts N] [--books N] [--positions N]``.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import report  # noqa: E402
from connectors.embedded.store import open_stream  # noqa: E402
from connectors.registry import Connectors  # noqa: E402
from connectors.settings import load_settings  # noqa: E402
from flows.portfolio_risk import records_of  # noqa: E402
from operators.portfolio import AccountBook, InputPos, order_id_for  # noqa: E402
from operators.stats import percentile  # noqa: E402
from schemas import (  # noqa: E402
    Account,
    ExecStatus,
    Kind,
    MarketData,
    OrderAction,
    OrderType,
    Record,
    RiskDecision,
    Side,
    SymbolLimit,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    decode,
    spec,
)

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
INPUTS = ["trade_signals", "venue_fills", "accounts", "symbol_limits", "control", "market_data"]
CENT = Decimal("0.01")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def vm_hwm_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


# --------------------------------------------------------------------- input


def account_row(name: str) -> Account:
    return Account(
        account=name, cash=Decimal(5_000_000), max_order_notional=Decimal(100_000),
        max_order_qty=Decimal(900), max_gross_exposure=Decimal(20_000_000), max_leverage=Decimal(4),
        max_open_orders=500, max_orders_per_second=10, price_collar_bps=Decimal(100),
        daily_loss_limit=Decimal(1_000_000), max_drawdown=Decimal(1_000_000), ts=at(0),
    )


@dataclass(frozen=True)
class Inputs:
    accounts: list[Account]
    limits: list[SymbolLimit]
    ticks: list[MarketData]
    signals: list[TradeSignal]

    def setup(self) -> dict[str, Sequence[Record]]:
        return {"accounts": self.accounts, "symbol_limits": self.limits, "market_data": self.ticks}

    def books(self) -> tuple[dict[str, AccountBook], dict[str, MarketData]]:
        """Return the books after the setup input, and each symbol's last tick."""
        books = {a.account: AccountBook(a.account) for a in self.accounts}
        for a in self.accounts:
            books[a.account].on_account(a)
        for lim in self.limits:
            books[lim.account].on_symbol_limit(lim)
        return books, {t.symbol: t for t in self.ticks}


def scenario(signals: int, accounts: int, symbols: int) -> Inputs:
    rng = random.Random(7)
    names = [f"ACC{i:03d}" for i in range(accounts)]
    syms = [f"SYM{i:03d}" for i in range(symbols)]
    px = {s: Decimal(rng.randrange(20, 400)) for s in syms}
    ticks: list[MarketData] = []
    for i in range(50 * symbols):
        s = syms[i % symbols]
        px[s] = (px[s] * Decimal(1 + rng.gauss(0, 0.001))).quantize(CENT)
        ticks.append(MarketData(symbol=s, ts=at(1 + i * 0.01), price=px[s], volume=Decimal(100)))
    sigs: list[TradeSignal] = []
    for i in range(signals):
        s = rng.choice(syms)
        limit = rng.random() < 0.3
        sigs.append(TradeSignal(
            signal_id=f"sig{i:07d}", strategy_id=rng.choice(["trend", "mr"]), symbol=s,
            account=rng.choice(names), side=Side.BUY if rng.random() < 0.55 else Side.SELL,
            qty=Decimal(rng.randrange(1, 1000)),
            order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            limit_px=(px[s] * Decimal(1 + rng.uniform(-0.012, 0.012))).quantize(CENT) if limit else None,
            ref_px=px[s], ts=at(60 + i * 0.01),
        ))
    limits = [SymbolLimit(account=a, symbol=s, max_position_qty=Decimal(5000), ts=at(0))
              for a in names for s in syms]
    return Inputs([account_row(a) for a in names], limits, ticks, sigs)


def fills_for(orders: list[Record], seed: int = 8) -> list[Record]:
    rng = random.Random(seed)
    out: list[Record] = []
    for o in orders:
        if not isinstance(o, ValidatedOrder) or o.action is not OrderAction.NEW or rng.random() > 0.7:
            continue
        base = {"order_id": o.order_id, "venue": "paper", "account": o.account,
                "symbol": o.symbol, "side": o.side}
        px = o.limit_px or o.ref_px or Decimal(100)
        out.append(VenueFill(**base, exec_id=f"{o.order_id}-a", status=ExecStatus.NEW,  # type: ignore[arg-type]
                             leaves_qty=o.qty, ts=at(1000 + len(out) * 0.001)))
        first = (o.qty / 2).to_integral_value() if o.qty > 1 else o.qty
        for k, (qty, cum) in enumerate(((first, first), (o.qty - first, o.qty))):
            if qty <= 0:
                continue
            out.append(VenueFill(
                **base, exec_id=f"{o.order_id}-{k}",  # type: ignore[arg-type]
                status=ExecStatus.FILLED if cum == o.qty else ExecStatus.PARTIAL,
                last_qty=qty, last_px=px, cum_qty=cum, leaves_qty=o.qty - cum, avg_px=px,
                fee=(qty * px * Decimal("0.0001")).quantize(CENT), ts=at(1000 + len(out) * 0.001),
            ))
    return out


# --------------------------------------------------------------------- flow


class FlowStore:
    """An embedded store plus the flow's recovery directory, driven phase by phase."""

    def __init__(self, root: Path, snapshot_s: int, *, create: bool = True) -> None:
        self.data, self.recovery, self.log = root / "data", root / "recovery", root / "flow.log"
        self.snapshot_s = snapshot_s
        self.peak_mb = 0.0
        self.settings = load_settings(data_dir=self.data, partitions=2)
        self.env = dict(os.environ, TRADEFLOW_DATA_DIR=str(self.data), TRADEFLOW_PARTITIONS="2",
                        TRADEFLOW_PROFILE="local", TRADEFLOW_FOLLOW="false")
        if create:
            self.recovery.mkdir(parents=True)
            self._run(["-m", "bytewax.recovery", str(self.recovery), "1"])

    def _run(self, args: list[str]) -> float:
        started = time.perf_counter()
        with open(self.log, "ab") as log:
            proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT)
            while proc.poll() is None:
                try:
                    self.peak_mb = max(self.peak_mb, vm_hwm_mb(proc.pid))
                except (OSError, RuntimeError):
                    pass
                time.sleep(0.02)
        if proc.returncode != 0:
            raise SystemExit(f"{args} failed:\n{self.log.read_text()[-3000:]}")
        return time.perf_counter() - started

    def phase(self, streams: dict[str, Sequence[Record]]) -> float:
        """Write one phase's input, close the inputs, run the flow; return its wall time."""
        conn = Connectors(self.settings)
        for name in INPUTS:
            writer = conn.writer(name)
            records = streams.get(name, [])
            for i in range(0, len(records), 5000):
                writer.write(records[i : i + 5000])
            writer.close_stream()
            writer.close()
        wall = self._run(["-m", "bytewax.run", "flows.portfolio_risk:build_flow()", "-r", str(self.recovery),
                          "-s", str(self.snapshot_s), "-b", "0"])
        for name in INPUTS:
            f = open_stream(self.data, name, partitions=2, table=spec(name).kind is Kind.TABLE)
            f.set_closed(False)
            f.close()
        return wall


# --------------------------------------------------------------------- plain loop


def read_stream(conn: Connectors, stream: str) -> list[Any]:
    """Decode a whole stream, partition by partition, in offset order."""
    model = spec(stream).model
    reader = conn.reader(stream)
    out: list[Any] = []
    try:
        for part in range(reader.partitions):
            offset = 0
            while batch := reader.read(part, offset, 10_000):
                out += [decode(model, r.value) for r in batch]
                offset = batch[-1].offset + 1
    finally:
        reader.close()
    return out


def write_streams(conn: Connectors, streams: dict[str, Sequence[Record]]) -> None:
    for name, records in streams.items():
        w = conn.writer(name)
        for i in range(0, len(records), 5000):
            w.write(records[i : i + 5000])
        w.close()


class Plain:
    """The same books, order and output records as the flow, without Bytewax."""

    OUTPUTS = ("risk_decisions", "validated_orders", "risk_events", "orders", "positions_state",
               "portfolio_state")

    def __init__(self, conn: Connectors, inputs: Inputs) -> None:
        self.conn = conn
        self.books, self.marks = inputs.books()
        self.writers = {name: conn.writer(name) for name in self.OUTPUTS}

    def run(self, stream: str) -> float:
        """Apply the whole stream to the books, batch by batch; return the time taken."""
        model = spec(stream).model
        reader = self.conn.reader(stream)
        started = time.perf_counter()
        for part in range(reader.partitions):
            offset = 0
            while batch := reader.read(part, offset, 500):
                out: dict[str, list[Record]] = {name: [] for name in self.writers}
                for raw in batch:
                    rec = decode(model, raw.value)
                    pos = InputPos(stream, part, raw.offset)
                    if isinstance(rec, TradeSignal):
                        book, m = self.books[rec.account], self.marks[rec.symbol]
                        outcome = book.on_mark(m.symbol, m.price, m.ts) + book.on_signal(rec, pos=pos)
                    elif isinstance(rec, VenueFill):
                        outcome = self.books[rec.account].on_fill(rec, pos=pos)
                    else:
                        raise TypeError(type(rec).__name__)
                    for name, r in records_of(outcome):
                        out[name].append(r)
                for name, records in out.items():
                    self.writers[name].write(records)
                offset = batch[-1].offset + 1
        return time.perf_counter() - started


def check_latencies(inputs: Inputs) -> list[float]:
    """Time ``on_signal`` per call (microseconds) over the signals, books as in the flow."""
    books, marks = inputs.books()
    out: list[float] = []
    clock = time.perf_counter_ns
    for sig in inputs.signals:
        book, m = books[sig.account], marks[sig.symbol]
        book.on_mark(m.symbol, m.price, m.ts)
        started = clock()
        book.on_signal(sig)
        out.append((clock() - started) / 1000)
    return out


def child_plain(root: Path) -> None:
    """Run in a fresh process (like the flow): check latencies, then the plain loop; print JSON."""
    conn = Connectors(load_settings(data_dir=root, partitions=2))
    inputs = Inputs(read_stream(conn, "accounts"), read_stream(conn, "symbol_limits"),
                    read_stream(conn, "market_data"), read_stream(conn, "trade_signals"))
    lat = check_latencies(inputs)
    del inputs.signals[:]  # the plain loop reads them from the store, as the flow does
    plain = Plain(conn, inputs)
    signals_s = plain.run("trade_signals")
    fills_s = plain.run("venue_fills")
    print(json.dumps({"signals_s": signals_s, "fills_s": fills_s, "latencies_us": lat}))


# --------------------------------------------------------------------- 10k books (child)


def build_books(n: int, positions: int) -> list[AccountBook]:
    books = []
    for a in range(n):
        name = f"B{a:05d}"
        book = AccountBook(name)
        book.on_account(account_row(name).model_copy(update={"account": name}))
        for p in range(positions):
            sym = f"SYM{p:03d}"
            px = Decimal(50 + p)
            book.on_mark(sym, px, at(1))
            sid = f"{name}-{p}"
            book.on_signal(TradeSignal(signal_id=sid, strategy_id="trend", symbol=sym, account=name,
                                       side=Side.BUY, qty=Decimal(10), ts=at(2 + p * 0.2)))
            book.on_fill(VenueFill(
                order_id=order_id_for(name, sid), venue="paper", exec_id=f"{sid}-x",
                status=ExecStatus.FILLED, account=name, symbol=sym, side=Side.BUY,
                last_qty=Decimal(10), last_px=px, cum_qty=Decimal(10), avg_px=px,
                fee=Decimal("0.05"), ts=at(10 + p * 0.2),
            ))
        books.append(book)
    return books


def child_10k(n: int, positions: int, out: Path) -> None:
    """Run in a fresh process: build, measure peak RSS, snapshot, restore; print JSON."""
    baseline = vm_hwm_mb()
    started = time.perf_counter()
    books = build_books(n, positions)
    build_s = time.perf_counter() - started
    held = vm_hwm_mb()
    if any(len(b.ledger.positions) != positions for b in books):
        raise SystemExit("a book does not hold the positions it was built with")
    started = time.perf_counter()
    blobs = [(b.account_id, pickle.dumps({"book": b.snapshot(), "held": [], "ready": True}))
             for b in books]
    snapshot_s = time.perf_counter() - started
    started = time.perf_counter()
    restored = [AccountBook.from_snapshot(pickle.loads(blob)["book"]) for _, blob in blobs]  # noqa: S301
    restore_s = time.perf_counter() - started
    if restored[-1].snapshot() != books[-1].snapshot():
        raise SystemExit("a restored book differs from the one snapshotted")
    out.write_bytes(pickle.dumps(blobs))
    print(json.dumps({
        "rss_mb_baseline": round(baseline, 1), "rss_mb_10k_accounts": round(held, 1),
        "build_s": round(build_s, 2), "snapshot_s": round(snapshot_s, 3),
        "restore_s": round(restore_s, 3), "snapshot_mb": round(sum(len(b) for _, b in blobs) / 2**20, 1),
    }))


# --------------------------------------------------------------------- flow resume


def flow_resume(work: Path, blobs_file: Path, snapshot_s: int) -> dict[str, float]:
    """Resume the real flow on a recovery store holding the 10k books; minus an empty one."""
    seed = FlowStore(work / "seed", snapshot_s)
    seed.phase({"accounts": [account_row("SEED")]})
    results: dict[str, float] = {}
    for label in ("empty", "books"):
        store_dir = work / f"resume_{label}"
        shutil.copytree(work / "seed", store_dir)
        store = FlowStore(store_dir, snapshot_s, create=False)
        db = sqlite3.connect(store.recovery / "part-0.sqlite3")
        (epoch,) = db.execute("SELECT snap_epoch FROM snaps WHERE step_id = 'portfolio_risk.books' "
                              "AND state_key = 'SEED'").fetchone()
        blobs: list[tuple[str, bytes]] = pickle.loads(blobs_file.read_bytes()) if label == "books" else []  # noqa: S301
        with db:
            db.executemany(
                "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
                [("portfolio_risk.books", key, epoch, blob) for key, blob in blobs],
            )
        db.close()
        results[label] = store.phase({})
        results[f"{label}_rss_mb"] = store.peak_mb
        db = sqlite3.connect(store.recovery / "part-0.sqlite3")
        (again,) = db.execute("SELECT COUNT(*) FROM snaps WHERE step_id = 'portfolio_risk.books' "
                              "AND snap_epoch > ?", (epoch,)).fetchone()
        db.close()
        if again < len(blobs):
            raise SystemExit(f"the flow re-snapshotted {again} books of {len(blobs)}: not loaded?")
    return results


# --------------------------------------------------------------------- rounds


def flow_round(base: Path, root: Path, inputs: Inputs, fills: list[Record], snapshot_s: int
               ) -> dict[str, Any]:
    """Run the signals then the fills phase on a copy of the set-up flow store.

    Without ``fills``, build them from the orders this round validated. Each phase's time
    has the wall time of a run with no new input just before it subtracted.
    """
    shutil.copytree(base, root)
    flow = FlowStore(root, snapshot_s, create=False)
    conn = Connectors(flow.settings)
    startup = flow.phase({})
    signals_s = flow.phase({"trade_signals": inputs.signals}) - startup
    fills = fills or fills_for(read_stream(conn, "validated_orders"))
    fills_startup = flow.phase({})
    fills_s = flow.phase({"venue_fills": fills}) - fills_startup
    return {"startup_s": startup, "signals_s": max(signals_s, 1e-9), "fills_s": max(fills_s, 1e-9),
            "fills": fills, "decisions": read_stream(conn, "risk_decisions"), "rss_mb": flow.peak_mb}


def plain_round(base: Path, root: Path) -> dict[str, Any]:
    """Run the plain loop in a fresh process on a copy of the plain store."""
    shutil.copytree(base, root)
    child = subprocess.run([sys.executable, __file__, "--child-plain", str(root)],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"plain loop child failed:\n{child.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    out["decisions"] = read_stream(Connectors(load_settings(data_dir=root, partitions=2)), "risk_decisions")
    return out


# --------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--signals", type=int, default=10_000)
    ap.add_argument("--accounts", type=int, default=50)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--books", type=int, default=10_000)
    ap.add_argument("--positions", type=int, default=20)
    ap.add_argument("--snapshot-interval", type=int, default=5, help="the flow's -s (seconds)")
    ap.add_argument("--repeat", type=int, default=2, help="flow and plain runs, alternated; best kept")
    ap.add_argument("--child-10k", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-plain", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_10k:
        child_10k(args.books, args.positions, args.child_10k)
        return
    if args.child_plain:
        child_plain(args.child_plain)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-risk-"))
    try:
        inputs = scenario(args.signals, args.accounts, args.symbols)
        n_signals = len(inputs.signals)
        base = FlowStore(work / "flow_base", args.snapshot_interval)
        base.phase(inputs.setup())

        flows: list[dict[str, Any]] = []
        plains: list[dict[str, Any]] = []
        fills: list[Record] = []
        for r in range(args.repeat):  # alternate flow and plain; keep the best of each
            flows.append(flow_round(work / "flow_base", work / f"flow{r}", inputs, fills,
                                    args.snapshot_interval))
            if r == 0:
                fills = flows[0]["fills"]
                write_streams(Connectors(load_settings(data_dir=work / "plain_base", partitions=2)),
                              {**inputs.setup(), "trade_signals": inputs.signals, "venue_fills": fills})
            plains.append(plain_round(work / "plain_base", work / f"plain{r}"))
        decisions: list[RiskDecision] = flows[0]["decisions"]
        if len(decisions) != n_signals:
            raise SystemExit(f"{len(decisions)} decisions for {n_signals} signals")
        plain_decisions = {d.signal_id: verdict(d) for d in plains[0]["decisions"]}
        mismatches = sum(plain_decisions[d.signal_id] != verdict(d) for d in decisions)
        signals_s = min(f["signals_s"] for f in flows)
        fills_s = min(f["fills_s"] for f in flows)
        plain_signals_s = min(p["signals_s"] for p in plains)
        plain_fills_s = min(p["fills_s"] for p in plains)
        lat = min((p["latencies_us"] for p in plains), key=sum)
        flow_lat = [d.latency_us for d in decisions]
        flow_rss = max(f["rss_mb"] for f in flows)
        startup_signals = min(f["startup_s"] for f in flows)

        # Issue 9's figure: re-decide the recorded signals from the logs (tradeflow risk
        # replay), against the flow's own decision rate above.
        from tradeflow.risk_tools import replay

        replayed = replay(FlowStore(work / "flow0", args.snapshot_interval, create=False).settings)

        blobs = work / "books.pickle"
        child = subprocess.run([sys.executable, __file__, "--child-10k", str(blobs), "--books",
                                str(args.books), "--positions", str(args.positions)],
                               cwd=ROOT, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise SystemExit(f"10k books child failed:\n{child.stderr[-3000:]}")
        tenk = json.loads(child.stdout.strip().splitlines()[-1])
        resume = flow_resume(work / "resume", blobs, args.snapshot_interval)

        result: dict[str, Any] = {
            "signals": n_signals,
            "fills": len(fills),
            "accounts": args.accounts,
            "rate_method": "startup_subtracted",
            "repeat": args.repeat,
            "signals_per_s": round(n_signals / signals_s),
            "fills_per_s": round(len(fills) / fills_s),
            "plain_signals_per_s": round(n_signals / plain_signals_s),
            "plain_fills_per_s": round(len(fills) / plain_fills_s),
            "ratio_signals_flow_vs_plain": round(plain_signals_s / signals_s, 3),
            "ratio_fills_flow_vs_plain": round(plain_fills_s / fills_s, 3),
            "on_signal_only_per_s": round(len(lat) / (sum(lat) / 1e6)),
            "replay_decisions_per_s": round(replayed.decisions_per_s),
            "replay_reproduced": f"{replayed.reproduced}/{replayed.checked}",
            "ratio_replay_vs_flow_signals": round(replayed.decisions_per_s * signals_s / n_signals, 3),
            "check_p50_us": round(percentile(lat, 50), 1),
            "check_p99_us": round(percentile(lat, 99), 1),
            "flow_decision_latency_p50_us": round(percentile(flow_lat, 50), 1),
            "flow_decision_latency_p99_us": round(percentile(flow_lat, 99), 1),
            "decisions_differing_from_plain": mismatches,
            "flow_rss_mb": round(flow_rss, 1),
            "rss_mb_baseline": tenk["rss_mb_baseline"],
            "rss_mb_10k_accounts": tenk["rss_mb_10k_accounts"],
            "kb_per_book": round((tenk["rss_mb_10k_accounts"] - tenk["rss_mb_baseline"]) * 1024
                                 / args.books, 1),
            "snapshot_mb_10k_accounts": tenk["snapshot_mb"],
            "snapshot_s_10k_accounts": tenk["snapshot_s"],
            "restore_s_10k_accounts": tenk["restore_s"],
            "restore_method": "unpickle + AccountBook.from_snapshot in a plain process",
            "flow_resume_s_10k_accounts": round(resume["books"] - resume["empty"], 2),
            "flow_resume_rss_mb_10k_accounts": round(resume["books_rss_mb"], 1),
            "build_s_10k_accounts": tenk["build_s"],
            "startup_s": round(startup_signals, 2),
            "snapshot_interval_s": args.snapshot_interval,
        }
        report(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verdict(d: RiskDecision) -> tuple[object, ...]:
    """Return what a decision decided: pass/fail, the order, every rule's result."""
    return (d.decision, d.order_id, tuple(d.rules))


if __name__ == "__main__":
    main()
