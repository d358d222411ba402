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
  (``perf_counter_ns``) over the same signals in memory: ``scenario_check_p50_us`` /
  ``scenario_check_p99_us`` (``on_signal_only_per_s`` from their sum); plus the
  ``RiskDecision.latency_us`` the flow's books recorded. The flow's own rates are
  ``flow_signals_per_s`` and ``flow_fills_per_s``.
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

- ``loaded_book`` (issue 20): a fresh subprocess, one book holding ``--working`` (200)
  working orders after ``--history`` (100,000) validated orders, each closed again by a
  cancel (9 in 10) or a fill, with a mark before every signal as the flow does. Then
  ``--loaded-signals`` more signals the same way, ``AccountBook.on_signal`` timed per
  call: ``signals_per_s`` (signals / the sum of those times), ``check_p50_us``,
  ``check_p99_us`` (the top-level keys of the last line); ``history_orders`` is the
  number of orders the book validated before the timed part, ``passed`` how many timed
  signals passed.
- ``empty_book``: the baseline of the same run, another fresh subprocess timing the same
  kind of signals on a book with no working order (each order closed as soon as it is
  opened) after a warm-up of ``EMPTY_BOOK_WARMUP`` (1,000) orders, as many as a book
  keeps closed ones: ``empty_book_*``, and ``ratio_*_loaded_vs_empty`` (1.0: the check
  does not grow with the working orders or the history).
- ``100k``: like ``10k`` with ``--books-100k`` (100,000) books x ``--positions-100k`` (3)
  positions: ``rss_mb_100k_accounts`` (peak RSS, VmHWM, of that fresh process once they
  are built) and ``restore_s_100k_accounts`` (unpickle + ``from_snapshot`` of all,
  timed after the built books are dropped: a restarting process holds the snapshots,
  not the books they came from). Every child runs with the collector thresholds of a job
  process (``connectors.runtime``); ``restore_s_100k_accounts_default_gc`` and
  ``rss_mb_100k_accounts_default_gc`` are the 100k child again with Python's defaults,
  in the same run (``ratio_restore_s_100k_vs_default_gc``).
- ``--baseline-ref REF`` (e.g. the commit before issue 20): the ``empty_book``,
  ``loaded_book`` and ``100k`` children also run on the ``operators/`` package of REF
  (``git archive`` into a temp dir, put first on the child's ``sys.path``; everything
  else is this tree), in the same run, alternated with the current code. Their figures are printed under
  ``baseline`` and ``ratio_*`` keys (``ratio_<key>`` = current / baseline).
  ``--skip-flow`` leaves out the flow, plain-loop, replay, 10k and resume parts.

Usage: ``python bench/risk.py [--signals N] [--accounts N] [--books N] [--positions N]
[--baseline-ref REF] [--skip-flow]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
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
from decimal import Decimal
from pathlib import Path
from typing import Any

from _root import ROOT

EMPTY_BOOK_WARMUP = 1_000
"""Orders the empty-book baseline validates (and closes at once) before it is timed."""

OPERATORS_ENV = "TRADEFLOW_BENCH_OPERATORS"
"""A directory holding another ``operators`` package to measure (the baseline)."""
if os.environ.get(OPERATORS_ENV):
    sys.path.insert(0, os.environ[OPERATORS_ENV])

from bench.harness import CENT, at, random_market, report  # noqa: E402
from connectors.registry import Connectors  # noqa: E402
from connectors.runtime import JOB_GC_THRESHOLDS, tune_gc  # noqa: E402
from connectors.settings import load_settings  # noqa: E402
from operators.account_inputs import AccountInputs, records_of  # noqa: E402
from operators.portfolio import AccountBook, InputPos, order_id_for  # noqa: E402
from operators.stats import percentile  # noqa: E402
from schemas import (  # noqa: E402
    Account,
    ExecStatus,
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
from tests.helpers import JOB_C_INPUTS, read_all  # noqa: E402


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
    syms, px, ticks = random_market(rng, symbols)
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
        Connectors(self.settings).write_all(streams, JOB_C_INPUTS)
        wall = self._run(["-m", "bytewax.run", "flows.portfolio_risk:build_flow()", "-r", str(self.recovery),
                          "-s", str(self.snapshot_s), "-b", "0"])
        Connectors(self.settings).reopen_all(JOB_C_INPUTS)
        return wall


# --------------------------------------------------------------------- plain loop


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
    inputs = Inputs(read_all(conn, "accounts"), read_all(conn, "symbol_limits"),
                    read_all(conn, "market_data"), read_all(conn, "trade_signals"))
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


def book_state(book: AccountBook) -> dict[str, Any]:
    """Return a book's recovery state as Job C's ``books`` step keeps it (``AccountInputs``)."""
    inputs = AccountInputs(book.account_id)
    inputs.book = book
    return inputs.snapshot()


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
    blobs = [(b.account_id, pickle.dumps(book_state(b))) for b in books]
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


# --------------------------------------------------------------------- loaded book (child)


def loaded_account(name: str) -> Account:
    return account_row(name).model_copy(update={
        "max_open_orders": 1_000, "max_orders_per_second": 200,
        "max_gross_exposure": Decimal(1_000_000_000), "max_leverage": Decimal(100),
        "daily_loss_limit": None, "max_drawdown": None,
    })


def child_loaded(history: int, working: int, timed: int) -> None:
    """Run in a fresh process: one book, ``working`` open orders after ``history``; print JSON."""
    rng = random.Random(11)
    name = "LOADED"
    book = AccountBook(name)
    book.on_account(loaded_account(name))
    syms = [f"SYM{i:03d}" for i in range(20)]
    px = {s: Decimal(rng.randrange(20, 400)) for s in syms}
    opened: list[str] = []
    closes = fills = 0
    clock = time.perf_counter_ns
    lat: list[float] = []
    passed = validated = 0

    def step(i: int, timed_step: bool) -> None:
        nonlocal closes, fills, passed, validated
        ts = at(10 + i * 0.01)
        s = syms[i % len(syms)]
        px[s] = (px[s] * Decimal(1 + rng.gauss(0, 0.0005))).quantize(CENT)
        book.on_mark(s, px[s], ts)
        sig = TradeSignal(
            signal_id=f"L{i:07d}", strategy_id="trend", symbol=s, account=name,
            side=Side.BUY if (i // len(syms)) % 2 == 0 else Side.SELL,
            qty=Decimal(rng.randrange(1, 100)), order_type=OrderType.LIMIT,
            limit_px=(px[s] * Decimal(1 + rng.uniform(-0.005, 0.005))).quantize(CENT),
            ref_px=px[s], ts=ts,
        )
        started = clock()
        out = book.on_signal(sig)
        if timed_step:
            lat.append((clock() - started) / 1000)
        if out.decision is None or out.decision.order_id is None:
            return
        validated += 1
        passed += timed_step
        opened.append(out.decision.order_id)
        while len(opened) > working:
            order = book.open_orders[opened.pop(0)]
            base = {"order_id": order.order_id, "venue": "paper", "account": name,
                    "symbol": order.symbol, "side": order.side, "ts": ts}
            if closes % 10 == 9:
                fill_px = order.limit_px or px[order.symbol]
                book.on_fill(VenueFill(**base, exec_id=f"{order.order_id}-f",  # type: ignore[arg-type]
                                       status=ExecStatus.FILLED, last_qty=order.qty,
                                       last_px=fill_px, cum_qty=order.qty, avg_px=fill_px))
                fills += 1
            else:
                book.on_fill(VenueFill(**base, exec_id=f"{order.order_id}-c",  # type: ignore[arg-type]
                                       status=ExecStatus.CANCELED))
            closes += 1

    started_build = time.perf_counter()
    i = 0
    while validated < max(history, working):
        step(i, False)
        i += 1
    build_s = time.perf_counter() - started_build
    history_orders = validated
    for j in range(i, i + timed):
        step(j, True)
    if len(book.open_orders) != working:
        raise SystemExit(f"{len(book.open_orders)} working orders, wanted {working}")
    print(json.dumps({
        "signals_per_s": round(len(lat) / (sum(lat) / 1e6)),
        "check_p50_us": round(percentile(lat, 50) or 0.0, 1),
        "check_p99_us": round(percentile(lat, 99) or 0.0, 1),
        "history_orders": history_orders,
        "working_orders": len(book.open_orders),
        "timed_signals": len(lat),
        "passed": passed,
        "closed_by_fill": fills,
        "build_s": round(build_s, 1),
        "operators": operators_dir(),
    }))


def child_100k(n: int, positions: int) -> None:
    """Run in a fresh process: build ``n`` books, peak RSS, snapshot, restore; print JSON.

    Unlike ``child_10k`` the built books are dropped before the restore is timed: a
    restarting process holds the snapshots, not the books they were taken from.
    """
    baseline = vm_hwm_mb()
    started = time.perf_counter()
    books = build_books(n, positions)
    build_s = time.perf_counter() - started
    held = vm_hwm_mb()
    started = time.perf_counter()
    blobs = [pickle.dumps(book_state(b)) for b in books]
    snapshot_s = time.perf_counter() - started
    last = books[-1].snapshot()
    del books
    gc.collect()
    started = time.perf_counter()
    restored = [AccountBook.from_snapshot(pickle.loads(blob)["book"]) for blob in blobs]  # noqa: S301
    restore_s = time.perf_counter() - started
    if restored[-1].snapshot() != last:
        raise SystemExit("a restored book differs from the one snapshotted")
    print(json.dumps({
        "operators": operators_dir(),
        "rss_mb_baseline": round(baseline, 1), "rss_mb": round(held, 1),
        "build_s": round(build_s, 2), "snapshot_s": round(snapshot_s, 3),
        "restore_s": round(restore_s, 3), "snapshot_mb": round(sum(map(len, blobs)) / 2**20, 1),
    }))


def operators_dir() -> str:
    """Return where the ``operators`` package measured was imported from."""
    return str(Path(sys.modules[AccountBook.__module__].__file__ or "?").parent)


def run_child(args: list[str], operators_dir: Path | None) -> dict[str, Any]:
    """Run this script as a child (on another ``operators`` package if given); its JSON."""
    env = dict(os.environ)
    env.pop(OPERATORS_ENV, None)
    if operators_dir is not None:
        env[OPERATORS_ENV] = str(operators_dir)
    child = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{child.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return out


def baseline_operators(ref: str, work: Path) -> Path:
    """Extract ``operators/`` of git ``ref`` into ``work``; return the dir to put on sys.path."""
    target = work / "baseline"
    target.mkdir()
    archive = subprocess.run(["git", "archive", ref, "operators"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def issue20_figures(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The loaded-book and 100k-book figures, for this tree and the baseline if asked."""
    impls: dict[str, Path | None] = {"current": None}
    if args.baseline_ref:
        impls["baseline"] = baseline_operators(args.baseline_ref, work)
    loaded = [str(a) for a in ("--child-loaded", "--history", args.history, "--working",
                               args.working, "--loaded-signals", args.loaded_signals)]
    empty = [str(a) for a in ("--child-loaded", "--history", EMPTY_BOOK_WARMUP, "--working", 0,
                              "--loaded-signals", args.loaded_signals)]
    figures: dict[str, dict[str, Any]] = {k: {} for k in impls}
    # Each figure for the current code, then at once for the baseline: a pair is
    # measured close in time on this shared machine.
    for label, ops in impls.items():
        figures[label]["empty_book"] = run_child(empty, ops)
        figures[label]["loaded_book"] = run_child(loaded, ops)
    hundred_args = ["--child-100k", "--books", str(args.books_100k), "--positions", str(args.positions_100k)]
    for label, ops in impls.items():
        hundred = run_child(hundred_args, ops)
        figures[label].update({
            "rss_mb_100k_accounts": hundred["rss_mb"],
            "rss_mb_baseline_100k": hundred["rss_mb_baseline"],
            "restore_s_100k_accounts": hundred["restore_s"],
            "snapshot_s_100k_accounts": hundred["snapshot_s"],
            "build_s_100k_accounts": hundred["build_s"],
        })
    # the same children with Python's default collector thresholds, not the jobs' (connectors.runtime)
    default_gc = run_child([*hundred_args, "--default-gc"], None)
    cur = figures["current"]
    cur["restore_s_100k_accounts_default_gc"] = default_gc["restore_s"]
    cur["rss_mb_100k_accounts_default_gc"] = default_gc["rss_mb"]
    cur["ratio_restore_s_100k_vs_default_gc"] = round(
        cur["restore_s_100k_accounts"] / default_gc["restore_s"], 3)
    book, empty_book = cur["loaded_book"], cur["empty_book"]
    out: dict[str, Any] = {
        **{k: book[k] for k in ("signals_per_s", "check_p50_us", "check_p99_us", "history_orders",
                                "working_orders")},
        **{f"empty_book_{k}": empty_book[k] for k in ("signals_per_s", "check_p50_us",
                                                      "check_p99_us")},
        **{f"ratio_{k}_loaded_vs_empty": round(book[k] / empty_book[k], 3)
           for k in ("signals_per_s", "check_p50_us", "check_p99_us")},
        **{k: v for k, v in cur.items() if k not in ("loaded_book", "empty_book")},
        "books_100k": args.books_100k,
        "positions_100k": args.positions_100k,
        "loaded_book": book,
        "empty_book": empty_book,
    }
    if "baseline" in figures:
        base = figures["baseline"]
        out["baseline_ref"] = args.baseline_ref
        out["baseline"] = base
        for key in ("signals_per_s", "check_p50_us", "check_p99_us"):
            out[f"ratio_loaded_{key}"] = round(cur["loaded_book"][key] / base["loaded_book"][key], 3)
        for key in ("rss_mb_100k_accounts", "restore_s_100k_accounts"):
            out[f"ratio_{key}"] = round(cur[key] / base[key], 3)
    return out


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
    fills = fills or fills_for(read_all(conn, "validated_orders"))
    fills_startup = flow.phase({})
    fills_s = flow.phase({"venue_fills": fills}) - fills_startup
    return {"startup_s": startup, "signals_s": max(signals_s, 1e-9), "fills_s": max(fills_s, 1e-9),
            "fills": fills, "decisions": read_all(conn, "risk_decisions"), "rss_mb": flow.peak_mb}


def plain_round(base: Path, root: Path) -> dict[str, Any]:
    """Run the plain loop in a fresh process on a copy of the plain store."""
    shutil.copytree(base, root)
    child = subprocess.run([sys.executable, __file__, "--child-plain", str(root)],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise SystemExit(f"plain loop child failed:\n{child.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    out["decisions"] = read_all(Connectors(load_settings(data_dir=root, partitions=2)), "risk_decisions")
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
    ap.add_argument("--history", type=int, default=100_000, help="loaded book: orders before")
    ap.add_argument("--working", type=int, default=200, help="loaded book: working orders")
    ap.add_argument("--loaded-signals", type=int, default=5_000, help="loaded book: timed signals")
    ap.add_argument("--books-100k", type=int, default=100_000)
    ap.add_argument("--positions-100k", type=int, default=3)
    ap.add_argument("--baseline-ref", help="git ref whose operators/ to measure as the baseline")
    ap.add_argument("--skip-flow", action="store_true",
                    help="only the loaded-book and 100k figures (and the baseline's)")
    ap.add_argument("--child-10k", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-plain", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-loaded", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-100k", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--default-gc", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_100k or args.child_10k or args.child_loaded:
        tune_gc(None if args.default_gc else JOB_GC_THRESHOLDS)  # as a job process runs
    if args.child_100k:
        child_100k(args.books, args.positions)
        return
    if args.child_loaded:
        child_loaded(args.history, args.working, args.loaded_signals)
        return
    if args.child_10k:
        child_10k(args.books, args.positions, args.child_10k)
        return
    if args.child_plain:
        child_plain(args.child_plain)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-risk-"))
    try:
        issue20 = issue20_figures(args, work)
        if args.skip_flow:
            issue20.update({"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)})
            for k, v in issue20.items():
                print(f"{k:>32}: {v}")
            print(json.dumps(issue20))
            return
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
            "flow_signals_per_s": round(n_signals / signals_s),
            "flow_fills_per_s": round(len(fills) / fills_s),
            "plain_signals_per_s": round(n_signals / plain_signals_s),
            "plain_fills_per_s": round(len(fills) / plain_fills_s),
            "ratio_signals_flow_vs_plain": round(plain_signals_s / signals_s, 3),
            "ratio_fills_flow_vs_plain": round(plain_fills_s / fills_s, 3),
            "on_signal_only_per_s": round(len(lat) / (sum(lat) / 1e6)),
            "replay_decisions_per_s": round(replayed.decisions_per_s),
            "replay_reproduced": f"{replayed.reproduced}/{replayed.checked}",
            "ratio_replay_vs_flow_signals": round(replayed.decisions_per_s * signals_s / n_signals, 3),
            "scenario_check_p50_us": round(percentile(lat, 50), 1),
            "scenario_check_p99_us": round(percentile(lat, 99), 1),
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
            **issue20,
        }
        report(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verdict(d: RiskDecision) -> tuple[object, ...]:
    """Return what a decision decided: pass/fail, the order, every rule's result."""
    return (d.decision, d.order_id, tuple(d.rules))


if __name__ == "__main__":
    main()
