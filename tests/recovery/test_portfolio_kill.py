"""SIGKILL Job C mid-stream, resume it with recovery, compare with an uninterrupted run.

Why the input comes in phases. Bytewax gives no order between the input streams (nor
between partitions of one stream), and Job C's state depends on the order in which an
account sees its inputs: a signal is checked against the mark its symbol had when it
was routed, a fill changes the position the next signal is checked against, and the
peak equity (hence drawdown) is a path, not a sum. An uninterrupted run and a resumed
one may legitimately interleave differently, so the input is built for the final state
not to depend on interleaving, and every phase runs to its end (with recovery) before
the next one is written:

1. **setup**: accounts (with limits, incl. daily loss, drawdown and reject-rate limits),
   symbol_limits, a strategy-scoped control row, and market_data ticks. No signal yet,
   so every signal of phase 2 sees the same last mark of its symbol, its account's row
   and limits, and the control row.
2. **signals** (killed): a few thousand trade_signals over 13 accounts and 8 symbols.
   Signals are keyed by account, so each account's signals sit in one partition in
   one fixed order, and nothing else moves during the phase. One account trips its
   kill switch on its reject rate here.
3. **fills** (killed): venue_fills for a seeded subset of the orders phase 2 emitted,
   plus venue cancels and rejects. Fills are keyed by order id, so one account's fills
   could be spread over both partitions and applied in any interleaving (average-cost
   PnL and the peak equity depend on it): signal ids are chosen so that all orders of
   an account hash to one partition of venue_fills. The symbol router also sends each
   new holder its symbol's last mark; it is the mark the book already has, so it moves
   no figure. One account trips its daily loss limit on bad fills here.
4. **close**: one tick per symbol at a later event time (more than the mark throttle
   after the others), all at the last price but one symbol that drops 10%. Only that
   tick moves equity, so the peak and the kill switch (a second account trips its daily
   loss here) do not depend on the order of the ticks, and every open position gets a
   last row stamped with the same time whatever came before it.

Each trial copies the store and recovery directory as they were after phase 1 and runs
phases 2 and 3 under ``python -m bytewax.run "flows.portfolio_risk:build_flow()" -r DIR -s 1 -b 0``.
The phase's input is fed while the flow runs, and its last tenth only after the kill, so
the kill always lands mid-stream (also asserted from the output counts). The kill comes
once a seeded random share of the phase's output was written; in one of the two phases
also only after the killed run committed a snapshot of its own (read from Bytewax's
recovery store), so the restart resumes from inside the phase (asserted), while in the
other it may come before (the restart replays the phase from the previous snapshot).
The flow is restarted with recovery until it completes, then phase 4 runs. The final
portfolio_state, positions_state and orders tables must equal the uninterrupted run's
byte for byte (exact Decimals and timestamps), every signal must have exactly one risk
decision equal to the reference's (but for its wall-clock latency), and validated_orders
and risk_events must hold the same records, no (order_id, action) twice.

Signals reach the books through the symbol router, a ``stateful`` step keyed by symbol,
and Bytewax runs a stateful step key by key over each batch, so without care an
account's signals for different symbols would reach its book out of stream order,
depending on how the input was batched; decisions depend on that order (open orders,
reserved exposure, the order-rate window). ``BookLogic`` puts each batch's signals back
in (partition, offset) order (``in_source_order``);
``test_each_account_signals_are_decided_in_stream_order`` guards it.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.embedded.store import partition_for
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.portfolio import order_id_for
from schemas import (
    Account,
    AccountType,
    Control,
    Decision,
    ExecStatus,
    MarketData,
    OrderAction,
    OrderType,
    PortfolioState,
    PositionState,
    Record,
    Side,
    SymbolLimit,
    TradeSignal,
    TradingState,
    ValidatedOrder,
    VenueFill,
    decode,
)
from tests.helpers import JOB_C_INPUTS, read_all
from tests.recovery.procs import env_for, init_recovery, kill_when, run, start

pytestmark = pytest.mark.recovery

SEED = 20260105
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
CENT = Decimal("0.01")
PARTITIONS = 2
FLOW = ["-m", "bytewax.run", "flows.portfolio_risk:build_flow()"]

SYMBOLS = [f"S{i:02d}" for i in range(8)]
NORMAL = [f"A{i:02d}" for i in range(8)]
REJECTER = "A08"
"""Reject-rate limit with few open orders allowed: trips its kill switch in phase 2."""
CASH = "A09"
"""A cash account: its buys are bound by BUYING_POWER."""
LOSER = "A10"
"""Fills well off the mark and a small daily loss limit: trips in phase 3."""
CRASHED = "A11"
"""Buys mostly the symbol that drops in phase 4: trips its daily loss limit there."""
GHOST = "GHOST"
"""Signals for an account that has no row: decided (FAIL) at the end of input."""
ACCOUNTS = [*NORMAL, REJECTER, CASH, LOSER, CRASHED]
DROPPING = SYMBOLS[0]
HALTED_STRATEGY = "meanrev"
STRATEGIES = ["trend", "breakout", HALTED_STRATEGY]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _px(value: Decimal) -> Decimal:
    return value.quantize(CENT)


# --------------------------------------------------------------------- the input


@dataclass(frozen=True)
class Scenario:
    """The deterministic input of every phase but the fills (built from phase 2's orders)."""

    accounts: list[Account]
    symbol_limits: list[SymbolLimit]
    control: list[Control]
    ticks: list[MarketData]
    signals: list[TradeSignal]
    last_px: dict[str, Decimal]
    close: list[MarketData]


def _account(name: str, **limits: object) -> Account:
    base: dict[str, object] = {
        "cash": Decimal(1_000_000),
        "max_order_notional": Decimal(40_000),
        "max_order_qty": Decimal(300),
        "max_gross_exposure": Decimal(2_500_000),
        "max_leverage": Decimal(3),
        "max_open_orders": 400,
        "max_orders_per_second": 5,
        "price_collar_bps": Decimal(100),
        "daily_loss_limit": Decimal(25_000),
        "max_drawdown": Decimal(40_000),
        "limits_version": 3,
    }
    base.update(limits)
    return Account(account=name, ts=at(0), **base)  # type: ignore[arg-type]


def _signal_ids(account: str, n: int) -> Iterator[str]:
    """Yield signal ids whose orders all hash to the account's venue_fills partition."""
    want = ACCOUNTS.index(account) % PARTITIONS if account in ACCOUNTS else 0
    i = 0
    made = 0
    while made < n:
        sid = f"{account}-{i:06d}"
        i += 1
        if partition_for(order_id_for(account, sid), PARTITIONS) == want:
            made += 1
            yield sid


def scenario(signals: int) -> Scenario:
    """Build phases 1, 2 and 4 (about ``signals`` trade signals) from a fixed seed."""
    rng = random.Random(SEED)  # noqa: S311 - test data, not crypto
    accounts = [_account(a) for a in NORMAL] + [
        _account(REJECTER, max_open_orders=80, max_reject_rate=Decimal("0.75")),
        _account(CASH, account_type=AccountType.CASH, cash=Decimal(150_000)),
        _account(LOSER, daily_loss_limit=Decimal(1_500)),
        _account(CRASHED, daily_loss_limit=Decimal(4_000), max_order_qty=Decimal(400),
                 max_order_notional=Decimal(60_000)),
    ]
    limits = [
        SymbolLimit(account=a, symbol=s, max_position_qty=Decimal(rng.choice([900, 1500, 3000])),
                    max_position_notional=Decimal(250_000), ts=at(0))
        for a in ACCOUNTS for s in SYMBOLS if rng.random() < 0.6
    ]
    control = [Control(scope=f"strategy:{HALTED_STRATEGY}", state=TradingState.HALTED,
                       reason="paused for review", ts=at(0))]
    px = {s: Decimal(rng.randrange(40, 200)) for s in SYMBOLS}
    ticks: list[MarketData] = []
    for i in range(40 * len(SYMBOLS)):
        s = SYMBOLS[i % len(SYMBOLS)]
        px[s] = _px(px[s] * Decimal(1 + rng.gauss(0, 0.002)))
        ticks.append(MarketData(symbol=s, ts=at(1 + i * 0.05), price=px[s],
                                volume=Decimal(rng.randrange(1, 500))))
    owners = [*ACCOUNTS, GHOST]
    weights = [1.0] * len(ACCOUNTS) + [0.02]
    per_account = Counter(rng.choices(owners, weights, k=signals))
    ids = {a: _signal_ids(a, per_account[a]) for a in owners}
    sigs: list[TradeSignal] = []
    order = [a for a, n in per_account.items() for _ in range(n)]
    rng.shuffle(order)
    for i, acct in enumerate(order):
        sym = DROPPING if acct == CRASHED and rng.random() < 0.8 else rng.choice(SYMBOLS)
        side = Side.BUY if acct == CRASHED or rng.random() < 0.55 else Side.SELL
        mark = px[sym]
        qty = Decimal(rng.randrange(1, 360))
        limit_px = None
        order_type = OrderType.MARKET
        if rng.random() < 0.3:
            order_type = OrderType.LIMIT
            limit_px = _px(mark * Decimal(1 + rng.uniform(-0.013, 0.013)))
        sigs.append(TradeSignal(
            signal_id=next(ids[acct]), strategy_id=rng.choice(STRATEGIES), symbol=sym,
            account=acct, side=side, qty=qty, order_type=order_type, limit_px=limit_px,
            ref_px=mark, ts=at(60 + i * 0.02), reason="test",
        ))
    close = [
        MarketData(symbol=s, ts=at(900), volume=Decimal(1),
                   price=_px(px[s] * Decimal("0.9")) if s == DROPPING else px[s])
        for s in SYMBOLS
    ]
    return Scenario(accounts, limits, control, ticks, sigs, dict(px), close)


def fills_for(orders: Sequence[Record], last_px: dict[str, Decimal]) -> list[VenueFill]:
    """Build phase 3: execution reports for a seeded subset of the orders phase 2 emitted.

    Per chosen order: a venue reject, or an ack then one to three fills that complete
    it, stop part way, or end in a venue cancel. Reports of different orders are
    interleaved (each order's own in sequence); the LOSER account is filled 2% off the
    mark against it.
    """
    rng = random.Random(SEED + 1)  # noqa: S311 - test data, not crypto
    news = sorted(
        (o for o in orders if isinstance(o, ValidatedOrder) and o.action is OrderAction.NEW),
        key=lambda o: (o.ts, o.order_id),
    )
    lanes: list[list[dict[str, object]]] = []
    for o in news:
        if rng.random() > 0.6:
            continue
        base: dict[str, object] = {"order_id": o.order_id, "venue": "paper", "account": o.account,
                                   "symbol": o.symbol, "side": o.side}
        if rng.random() < 0.05:
            lanes.append([{**base, "status": ExecStatus.REJECTED, "reason": "venue says no"}])
            continue
        lane = [{**base, "status": ExecStatus.NEW, "leaves_qty": o.qty}]
        fate = rng.random()
        parts = rng.randint(1, 3)
        target = o.qty if fate < 0.7 else _px(o.qty * Decimal(rng.uniform(0.2, 0.8))).to_integral_value()
        target = max(Decimal(1), min(target, o.qty))
        cuts = sorted({Decimal(rng.randint(1, int(target))) for _ in range(parts - 1)} - {target})
        cum = notional = Decimal(0)
        mark = last_px[o.symbol]
        for upto in [*cuts, target]:
            qty = upto - cum
            if o.account == LOSER:
                px = _px(mark * (Decimal("1.02") if o.side is Side.BUY else Decimal("0.98")))
            else:
                px = _px(mark * Decimal(1 + rng.uniform(-0.002, 0.002)))
            cum += qty
            notional += qty * px
            lane.append({
                **base, "status": ExecStatus.FILLED if cum == o.qty else ExecStatus.PARTIAL,
                "last_qty": qty, "last_px": px, "cum_qty": cum, "leaves_qty": o.qty - cum,
                "avg_px": (notional / cum).quantize(Decimal("0.00000001")),
                "fee": _px(qty * px * Decimal("0.0001")),
            })
        if cum < o.qty and fate > 0.9:
            lane.append({**base, "status": ExecStatus.CANCELED, "cum_qty": cum,
                         "reason": "venue cancel"})
        lanes.append(lane)
    fills: list[VenueFill] = []
    while lanes:
        lane = rng.choice(lanes)
        fields = lane.pop(0)
        n = len(fills)
        fills.append(VenueFill(exec_id=f"X{n:06d}", ts=at(300 + n * 0.01), **fields))  # type: ignore[arg-type]
        if not lane:
            lanes.remove(lane)
    return fills


# --------------------------------------------------------------------- running phases


class Feeder(threading.Thread):
    """Write records into a stream in order, in small chunks, while a flow reads it."""

    CHUNK = 100
    PAUSE_S = 0.04

    def __init__(self, settings: Settings, stream: str, records: Sequence[Record]) -> None:
        super().__init__(daemon=True)
        self.settings, self.stream, self.records = settings, stream, records
        self.error: BaseException | None = None

    def run(self) -> None:
        writer = Connectors(self.settings).writer(self.stream)  # its own connection
        try:
            for i in range(0, len(self.records), self.CHUNK):
                writer.write(self.records[i : i + self.CHUNK])
                time.sleep(self.PAUSE_S)
        except BaseException as exc:  # re-raised by join() in the test's thread
            self.error = exc
        finally:
            writer.close()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


@dataclass(frozen=True)
class JobCStore:
    """One embedded store under ``root/data`` that Job C's inputs are written into, phase by phase."""

    root: Path
    partitions: int = PARTITIONS

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def settings(self) -> Settings:
        return load_settings(data_dir=self.data, partitions=self.partitions)

    def write(self, streams: dict[str, Sequence[Record]], *, keep_open: str | None = None) -> None:
        """Write one phase's input and close every input stream but ``keep_open``."""
        Connectors(self.settings).write_all(streams, JOB_C_INPUTS, batch=2000, keep_open=keep_open)

    def reopen(self) -> None:
        """Reopen the input streams for the next phase."""
        Connectors(self.settings).reopen_all(JOB_C_INPUTS)

    def count(self, stream: str) -> int:
        """Return the records and markers of ``stream``."""
        return Connectors(self.settings).size(stream)

    def latest(self, table: str) -> dict[str, bytes]:
        """Return the table's latest payload per key (exact bytes: Decimals as written)."""
        reader = Connectors(self.settings).reader(table)
        try:
            return dict(reader.scan_latest())
        finally:
            reader.close()

    def payloads(self, stream: str) -> list[bytes]:
        """Return every payload of a log, partition by partition, in offset order."""
        return [r.value for r in Connectors(self.settings).scan(stream, 10_000)]

    def decisions(self) -> dict[str, dict[str, object]]:
        """Return the risk decisions by signal id (as JSON, without the wall-clock latency).

        Fail if a signal has two decisions: the sink keeps one record per signal id.
        """
        out: dict[str, dict[str, object]] = {}
        for raw in self.payloads("risk_decisions"):
            d = json.loads(raw)
            d.pop("latency_us")
            assert d["signal_id"] not in out, f"signal {d['signal_id']} has two decisions"
            out[d["signal_id"]] = d
        return out


@dataclass(frozen=True)
class Store(JobCStore):
    """One embedded store and the recovery directory of the Job C flow running on it."""

    @property
    def recovery(self) -> Path:
        return self.root / "recovery"

    @property
    def log(self) -> Path:
        return self.root / "flow.log"

    @property
    def env(self) -> dict[str, str]:
        return env_for(self.data, TRADEFLOW_PARTITIONS=str(self.partitions))

    @property
    def cmd(self) -> list[str]:
        return [*FLOW, "-r", str(self.recovery), "-s", "1", "-b", "0"]

    def create(self) -> None:
        self.root.mkdir(parents=True)
        init_recovery(self.recovery, self.env, self.log)

    def copy_to(self, root: Path) -> Store:
        shutil.copytree(self.root, root)
        return Store(root)


    def phase(self, streams: dict[str, Sequence[Record]]) -> None:
        """Run one phase to its end without interruption."""
        self.write(streams)
        run(self.cmd, self.env, self.log)
        self.reopen()

    def killed_phase(
        self, stream: str, records: Sequence[Record], progress: str, *, kill_at: int,
        after_snapshot: bool,
    ) -> int:
        """Run one phase, SIGKILL it mid-stream, and resume it with recovery until it ends.

        The phase's input is fed while the flow runs (chunks in order, paced), and its
        last tenth only after the kill, so the killed process cannot have finished. The
        kill comes once ``progress`` holds ``kill_at`` records and, with
        ``after_snapshot``, once the killed run committed a snapshot of its own (so the
        restart resumes from inside the phase, which is then asserted). Return the number
        of ``progress`` records at the kill.
        """
        tail = len(records) // 10
        self.write({}, keep_open=stream)
        runs_before = len(self.resume_epochs())
        feeder = Feeder(self.settings, stream, records[: len(records) - tail])
        proc = start(self.cmd, self.env, self.log)
        feeder.start()

        def due() -> bool:
            if self.count(progress) < kill_at:
                return False
            if not after_snapshot:
                return True
            resumes, committed = self.resume_epochs(), self.committed_epoch()
            return len(resumes) > runs_before and committed >= resumes[-1]

        try:
            kill_when(proc, due, timeout=60)
        finally:
            feeder.join()
        killed = self.count(progress)
        killed_run = self.resume_epochs()[-1]
        self.write({stream: records[len(records) - tail :]})
        run(self.cmd, self.env, self.log)
        if after_snapshot:
            restart = self.resume_epochs()[-1]
            assert restart > killed_run, "the restart did not resume from a snapshot of the phase"
        self.reopen()
        return killed

    def _recovery_db(self) -> sqlite3.Connection:
        # Bytewax 0.21's recovery partition: exs(ex_num, resume_epoch) has one row per
        # execution, commits(commit_epoch) the last epoch whose snapshots are durable.
        path = self.recovery / "part-0.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def resume_epochs(self) -> list[int]:
        """Return the epoch each execution of the flow resumed at, oldest first."""
        with closing(self._recovery_db()) as db:
            return [e for (e,) in db.execute("SELECT resume_epoch FROM exs ORDER BY ex_num")]

    def committed_epoch(self) -> int:
        """Return the last epoch committed to the recovery store."""
        with closing(self._recovery_db()) as db:
            (epoch,) = db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()
        return int(epoch or 0)


    def all(self, stream: str) -> list[Record]:
        return read_all(Connectors(self.settings), stream)



# --------------------------------------------------------------------- the test

SIGNALS = 3000
TRIALS = 5
COMPARED_TABLES = ["portfolio_state", "positions_state", "orders"]


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run: its outputs, and the store after phase 1 to start trials from."""

    scenario: Scenario
    fills: list[VenueFill]
    after_setup: Store
    tables: dict[str, dict[str, bytes]]
    decisions: dict[str, dict[str, object]]
    orders: Counter[bytes]
    events: Counter[bytes]
    phase3_rows: int
    """Rows the fills phase adds to the orders changelog."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Run the four phases once without a kill."""
    root = tmp_path_factory.mktemp("portfolio_kill")
    sc = scenario(SIGNALS)
    setup = Store(root / "setup")
    setup.create()
    setup.phase({"accounts": sc.accounts, "symbol_limits": sc.symbol_limits,
                 "control": sc.control, "market_data": sc.ticks})
    ref = setup.copy_to(root / "reference")
    ref.phase({"trade_signals": sc.signals})
    fills = fills_for(ref.all("validated_orders"), sc.last_px)
    before = ref.count("orders")
    ref.phase({"venue_fills": fills})
    phase3_rows = ref.count("orders") - before
    ref.phase({"market_data": sc.close})
    return Reference(
        scenario=sc,
        fills=fills,
        after_setup=setup,
        tables={t: ref.latest(t) for t in COMPARED_TABLES},
        decisions=ref.decisions(),
        orders=Counter(ref.payloads("validated_orders")),
        events=Counter(ref.payloads("risk_events")),
        phase3_rows=phase3_rows,
    )


def test_reference_run_exercises_the_risk_paths(reference: Reference) -> None:
    sc = reference.scenario
    decisions = list(reference.decisions.values())
    assert len(decisions) == len(sc.signals) > 2500
    passed = [d for d in decisions if d["decision"] == Decision.PASS]
    assert 0.2 * len(decisions) < len(passed) < 0.8 * len(decisions)
    failed = Counter(r["rule"] for d in decisions for r in d["rules"] if not r["passed"])  # type: ignore[attr-defined]
    for rule in ("TRADING_HALTED", "MAX_ORDER_QTY", "MAX_ORDER_NOTIONAL", "PRICE_COLLAR",
                 "MAX_POSITION_QTY", "BUYING_POWER", "ORDER_RATE", "ACCOUNT_STATUS"):
        assert failed[rule] > 0, f"no signal failed {rule}: the input does not exercise it"
    events = [json.loads(e) for e in reference.events]
    trips = {(e["account"], e["values"]["trigger"]) for e in events if e["rule"] == "KILL_SWITCH"}
    assert {(REJECTER, "REJECT_RATE"), (LOSER, "DAILY_LOSS"), (CRASHED, "DAILY_LOSS")} <= trips
    portfolio = {k: decode(PortfolioState, v) for k, v in reference.tables["portfolio_state"].items()}
    halted = {a for a, p in portfolio.items() if p.trading_state is TradingState.HALTED}
    assert {REJECTER, LOSER, CRASHED} <= halted
    assert set(NORMAL) - halted, "every account halted: the input is too harsh"
    positions = [decode(PositionState, v) for v in reference.tables["positions_state"].values()]
    assert sum(p.net_qty != 0 for p in positions) > 20
    assert len(reference.fills) > 1000
    cancels = [o for o in map(json.loads, reference.orders) if o["action"] == OrderAction.CANCEL]
    assert len(cancels) > 10


def test_each_account_signals_are_decided_in_stream_order(reference: Reference) -> None:
    # risk_decisions is keyed by account: an account's decisions sit in one partition in
    # the order the book made them, and each names its signal's offset.
    last: dict[str, int] = {}
    late: list[str] = []
    for d in reference.decisions.values():
        offsets: dict[str, int] = d["input_offsets"]  # type: ignore[assignment]
        acct = str(d["account"])
        offset = offsets[f"trade_signals:{partition_for(acct, PARTITIONS)}"]
        if offset < last.get(acct, -1):
            late.append(str(d["signal_id"]))
        last[acct] = offset
    assert not late, f"{len(late)} of {len(reference.decisions)} signals decided after a later one"


@pytest.mark.parametrize("trial", range(TRIALS))
def test_job_c_killed_mid_stream_ends_in_the_uninterrupted_state(
    reference: Reference, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(SEED + 100 + trial)  # noqa: S311 - kill points, not crypto
    sc = reference.scenario
    store = reference.after_setup.copy_to(tmp_path / "store")

    # Even trials kill phase 2 after a snapshot of its own and phase 3 anywhere (often
    # before its first snapshot: the whole phase is replayed); odd trials the reverse.
    n = len(sc.signals)
    killed = store.killed_phase("trade_signals", sc.signals, "risk_decisions",
                                kill_at=int(n * rng.uniform(0.15, 0.85)),
                                after_snapshot=trial % 2 == 0)
    assert 0 < killed < n

    base = store.count("orders")
    rows = reference.phase3_rows
    killed = store.killed_phase("venue_fills", reference.fills, "orders",
                                kill_at=base + int(rows * rng.uniform(0.15, 0.75)),
                                after_snapshot=trial % 2 == 1)
    assert base < killed < base + rows
    store.phase({"market_data": sc.close})

    for table in COMPARED_TABLES:  # exact bytes: every Decimal and timestamp as written
        got, want = store.latest(table), reference.tables[table]
        assert got.keys() == want.keys(), table
        diff = [k for k in want if got[k] != want[k]]
        assert not diff, f"{table}: {len(diff)} rows differ, e.g. {got[diff[0]]!r} != {want[diff[0]]!r}"

    # Failures report a count and one example: pytest's own diff of thousands of
    # records would take many minutes.
    decisions = store.decisions()  # at most one per signal ...
    assert decisions.keys() == {s.signal_id for s in sc.signals}  # ... and exactly one
    differ = [k for k in reference.decisions if decisions[k] != reference.decisions[k]]
    assert not differ, f"{len(differ)} decisions differ, e.g. {decisions[differ[0]]!r}"

    orders = Counter(store.payloads("validated_orders"))
    ids = Counter((o["order_id"], o["action"]) for o in map(json.loads, orders.elements()))
    assert max(ids.values()) == 1, "an order (or a cancel) was emitted twice"
    extra, missing = orders - reference.orders, reference.orders - orders
    assert (len(extra), len(missing)) == (0, 0), "validated_orders: (extra, missing) records"
    events = Counter(store.payloads("risk_events"))
    extra, missing = events - reference.events, reference.events - events
    assert (len(extra), len(missing)) == (0, 0), "risk_events: (extra, missing) records"
