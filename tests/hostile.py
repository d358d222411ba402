"""The hostile-input corpus: well-formed-looking records that are wrong, one per class.

``corpus(ticks)`` builds every class against a clean market (the hostile ticks are
placed relative to the clean ones: a tick 80 % off the last price, a copy of one
already applied...). ``run_hostile`` runs the whole pipeline (A, B x2, C, D paper)
as separate processes on any profile, feeds the first half of the clean market,
writes the corpus into every input stream, feeds the second half, and waits until
everything is drained. ``check_hostile`` then asserts, per class, where the record
ended up, and for the whole run that nothing wrong reached validated_orders,
sma_wide, positions_state or portfolio_state, and that no job crashed or logged a
traceback. docs/rejects.md is the table of these classes.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.registry import Connectors
from connectors.settings import Settings
from schemas import (
    Account,
    Control,
    DeadLetter,
    DecodeError,
    MarketData,
    OrderAction,
    PortfolioState,
    PositionState,
    RiskDecision,
    RiskEvent,
    SmaWide,
    TradeSignal,
    TradingState,
    ValidatedOrder,
    VenueFill,
    decode,
    encode,
    spec,
)
from tradeflow.pipeline import Pipeline, demo_strategies, pipeline_jobs, seed

ACCOUNT = "ACC-SMA"
HALTED_STRATEGY = "halted_strat"
STALE_ACCOUNT = "ACC-STALE"
"""An account with ``max_signal_age_s`` and ``max_signal_lead_s`` (the demo's have none: a
replay at full speed reads market data far ahead of the signals)."""


@dataclass(frozen=True)
class Hostile:
    """One class of bad input and where it must end up."""

    name: str
    stream: str
    key: str | None
    payload: bytes
    dead: str | None = None
    """The record goes to dead_letters with a reason containing this."""
    fails: str | None = None
    """The signal gets a FAIL decision naming this rule."""
    event: str | None = None
    """A risk event of this rule is raised."""
    marker: str | None = None
    """A string only this record's payload holds (finds its dead letter)."""
    signal_id: str | None = None


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _tick(symbol: str, ts: datetime, price: str, volume: str = "100") -> dict[str, Any]:
    return {"symbol": symbol, "ts": ts.isoformat(), "price": price, "volume": volume}


def _signal(sid: str, ts: datetime, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "signal_id": sid, "strategy_id": "sma_cross", "symbol": "SYM000", "account": ACCOUNT,
        "side": "BUY", "qty": "1", "ts": ts.isoformat(), "reason": "hostile corpus",
    }
    data.update(kw)
    return data


def corpus(ticks: list[MarketData]) -> list[Hostile]:
    """Return every class, built against the clean ``ticks`` (written before them: the first half)."""
    half = ticks[: len(ticks) // 2]
    last = {t.symbol: t for t in half}
    sym = half[-1].symbol
    ref = last[sym]
    now = ref.ts
    px = ref.price
    off = (px * Decimal("1.8")).quantize(Decimal("0.01"))
    t_ok = now + timedelta(milliseconds=1)
    out: list[Hostile] = []

    def tick(name: str, payload: bytes, dead: str, marker: str | None = None, key: str = sym) -> None:
        out.append(Hostile(name, "market_data", key, payload, dead=dead, marker=marker))

    # -- market_data (Job A) ------------------------------------------------------------
    tick("not JSON", b"{tick: H01", "bad JSON", "H01")
    tick("JSON array", b'["H02"]', "expected a JSON object", "H02")
    tick("invalid UTF-8", b'{"symbol":"H03\xff\xfe"}', "bad JSON", "H03")
    tick("lone surrogate", b'{"symbol":"H04\\ud800","ts":"x"}', "bad JSON", "H04")
    tick("future schema version", _json({"_v": 2, **_tick("H05", now, "1")}), "unsupported schema version",
         "H05")
    tick("unknown field", _json({**_tick(sym, now, "1"), "h06": 1}), "Extra inputs", "h06")
    tick("missing field", _json({"symbol": "H07", "ts": now.isoformat(), "price": "1"}), "Field required",
         "H07")
    tick("NaN price", _json(_tick(sym, now, "NaN", "8.8808")), "finite number", "8.8808")
    tick("Infinity volume", b'{"symbol":"%s","ts":"%s","price":1,"volume":Infinity,"h09":0}'
         % (sym.encode(), now.isoformat().encode()), "finite number", "h09")
    tick("negative price", _json(_tick(sym, now, "-10.10", "1010")), "greater than zero", "1010")
    tick("poison pill 1e30", _json(_tick(sym, now, "1e30", "1111")), "out of range", "1111")
    tick("30 decimals", _json(_tick(sym, now, "1." + "0" * 29 + "1", "1212")), "decimal places", "1212")
    tick("naive timestamp", _json({**_tick(sym, now, "1", "1313"), "ts": "2026-01-05T14:30:00"}),
         "timezone-aware", "1313")
    tick("NUL in symbol", _json(_tick("H14\x00X", now, "1")), "not allowed in an id", "H14")
    tick("RTL and emoji in symbol", _json(_tick("H15\u202e\U0001f4b0", now, "1")), "not allowed in an id",
         "H15")
    tick("oversized record", _json({**_tick(sym, now, "1"), "pad": "H16" + "x" * 70_000}),
         "record too large", "H16")
    tick("tick dated 2999", _json(_tick(sym, datetime(2999, 1, 1, tzinfo=UTC), str(px), "1717")),
         "future tick", "1717")
    tick("tick of an unknown symbol", _json(_tick("NOSUCH", t_ok, "10", "1818")), "unknown symbol", "1818",
         key="NOSUCH")
    tick("off-precision price", _json(_tick(sym, t_ok, str(px + Decimal("0.005")), "1919")),
         "off-precision price", "1919")
    tick("outlier 80 % away", _json(_tick(sym, t_ok, str(off), "2020")), "outlier", "2020")
    tick("same tick twice", encode(ref), "duplicate tick")
    tick("late tick", _json(_tick(sym, now - timedelta(seconds=30), str(px), "2222")), "late tick", "2222")

    # -- trade_signals (Job C) ----------------------------------------------------------
    def signal(name: str, data: dict[str, Any], *, dead: str | None = None, fails: str | None = None,
               marker: str | None = None) -> None:
        out.append(Hostile(name, "trade_signals", data.get("account", ACCOUNT), _json(data), dead=dead,
                           fails=fails, marker=marker, signal_id=data.get("signal_id")))

    signal("NUL and ESC in signal id", _signal("S23\x00\x1b[31m", now), dead="not allowed in an id",
           marker="S23")
    signal("SOH tag injection in signal id", _signal("S24\x0149=EVIL", now), dead="not allowed in an id",
           marker="S24")
    # 200 KB: over the stream's 64 KiB limit, under the Kafka broker's own 1 MB
    signal("200 KB reason", _signal("S25", now, reason="S25" + "y" * 200_000), dead="record too large",
           marker="S25")
    signal("LIMIT without limit_px", _signal("S26", now, order_type="LIMIT"), dead="needs limit_px",
           marker="S26")
    signal("quantity 1e30", _signal("S27", now, qty="1e30"), dead="out of range", marker="S27")
    signal("unknown account", _signal("S28", now, account="ACC-NOPE"), fails="ACCOUNT_STATUS")
    signal("signal of an unknown symbol", _signal("S29", now, symbol="NOSUCH"), fails="INSTRUMENT_STATUS")
    signal("limit price off the tick grid", _signal("S30", now, order_type="LIMIT", symbol=sym,
                                                    limit_px=str(px + Decimal("0.001"))), fails="TICK_SIZE")
    signal("quantity off the lot grid", _signal("S31", now, qty="1.5"), fails="LOT_SIZE")
    signal("notional below the minimum", _signal("S32", now, order_type="LIMIT", limit_px="1.00"),
           fails="MIN_NOTIONAL")
    signal("quantity over the account's limit", _signal("S33", now, qty="6000"), fails="MAX_ORDER_QTY")
    signal("limit price 10x the mark", _signal("S34", now, order_type="LIMIT", symbol=sym,
                                               limit_px=str(px * 10)), fails="PRICE_COLLAR")
    signal("halted strategy", _signal("S35", now, strategy_id=HALTED_STRATEGY), fails="TRADING_HALTED")
    first = _signal("S36", now, side="BUY", qty="1")
    signal("same signal id, other contents (first copy)", first)
    out.append(Hostile("same signal id, other contents", "trade_signals", ACCOUNT,
                       _json({**first, "side": "SELL", "qty": "999"}),
                       dead="seen before with other contents", event="SIGNAL_ID_CONFLICT"))
    signal("signal dated 2999", _signal("S38", datetime(2999, 1, 1, tzinfo=UTC)), dead="future signal",
           marker="S38")
    signal("signal dated 1970", _signal("S37", datetime(1970, 1, 1, tzinfo=UTC), account=STALE_ACCOUNT),
           fails="STALE_SIGNAL")
    # behind the wall clock (the market is an old one), a month ahead of the market
    signal("signal a month ahead of the market",
           _signal("S39", now + timedelta(days=30), account=STALE_ACCOUNT), fails="FUTURE_SIGNAL")

    # -- tables and the other inputs ----------------------------------------------------
    def other(name: str, stream: str, key: str | None, payload: bytes, **kw: Any) -> None:
        out.append(Hostile(name, stream, key, payload, **kw))

    other("control with a bad scope", "control", "everything",
          _json({"scope": "everything", "state": "HALTED", "reason": "C38", "ts": now.isoformat()}),
          dead="scope must be", marker="C38")
    other("account id with RTL override", "accounts", "ACC\u202eX",
          _json({"account": "ACC\u202eX-C39", "cash": "1", "ts": now.isoformat()}),
          dead="not allowed in an id", marker="C39")
    other("instrument with min_qty above max_qty", "instruments", "C40",
          _json({"symbol": "C40", "tick_size": "0.01", "lot_size": "1", "min_qty": "10", "max_qty": "5",
                 "ts": now.isoformat()}), dead="above max_qty", marker="C40")
    other("symbol limit below zero", "symbol_limits", "ACC-SMA|C41",
          _json({"account": ACCOUNT, "symbol": "C41", "max_position_qty": "-5", "ts": now.isoformat()}),
          dead="must not be negative", marker="C41")
    other("routes row that is not JSON", "routes", "C42", b"C42 not json", dead="bad JSON", marker="C42")
    other("strategy config of a strategy that does not exist", "strategy_config", "sma_cross",
          _json({"strategy_id": "sma_cross", "strategy": "no_such_strategy_C43", "account": ACCOUNT,
                 "qty": "1", "ts": now.isoformat()}), dead="config refused", marker="C43")
    other("sma_wide row with price 0", "sma_wide", "C44",
          _json({"symbol": "C44", "ts": now.isoformat(), "price": 0.0, "volume": 1.0}),
          dead="price must be", marker="C44")
    other("validated order of 1e30", "validated_orders", ACCOUNT,
          _json({"order_id": "C45", "account": ACCOUNT, "symbol": sym, "side": "BUY", "qty": "1e30",
                 "ts": now.isoformat()}), dead="out of range", marker="C45")
    other("fill of an order never validated", "venue_fills", ACCOUNT,
          _json({"order_id": "GHOST-C46", "venue": "paper", "exec_id": "GHOST-C46-1", "status": "FILLED",
                 "account": ACCOUNT, "symbol": sym, "side": "BUY", "last_qty": "10", "last_px": str(px),
                 "cum_qty": "10", "ts": now.isoformat()}), event="UNKNOWN_ORDER")
    other("fill with a negative quantity", "venue_fills", ACCOUNT,
          _json({"order_id": "C47", "venue": "paper", "exec_id": "C47-1", "status": "FILLED",
                 "account": ACCOUNT, "symbol": sym, "side": "BUY", "last_qty": "-10", "last_px": str(px),
                 "cum_qty": "10", "ts": now.isoformat()}), dead="must not be negative", marker="C47")
    return out


@dataclass
class HostileRun:
    """What a run over the corpus left behind."""

    settings: Settings
    corpus: list[Hostile]
    clean: list[MarketData]
    logs: dict[str, str] = field(default_factory=dict)
    streams: dict[str, list[Any]] = field(default_factory=dict)


_READ = ("dead_letters", "risk_decisions", "risk_events", "validated_orders", "venue_fills", "sma_wide",
         "trade_signals")


def run_hostile(settings: Settings, ticks: list[MarketData], *, timeout_s: float = 240.0) -> HostileRun:
    """Run the pipeline over ``ticks`` with the corpus written in the middle (see module doc)."""
    conn = Connectors(settings)
    configs = demo_strategies()
    symbols = sorted({t.symbol for t in ticks})
    seed(conn, configs, symbols)
    extra = conn.writer("accounts")
    extra.write([Account(account=STALE_ACCOUNT, cash=Decimal(1_000_000), max_signal_age_s=Decimal(60),
                         max_signal_lead_s=Decimal(60), ts=ticks[0].ts)])
    extra.close()
    halt = conn.writer("control")
    halt.write([Control(scope=f"strategy:{HALTED_STRATEGY}", state=TradingState.HALTED,
                        reason="hostile corpus", updated_by="test", ts=ticks[0].ts)])
    halt.close()
    bad = corpus(ticks)
    log_dir = settings.data_dir / "logs"
    pipe = Pipeline(settings, pipeline_jobs(configs, None), log_dir)
    pipe.start()
    try:
        market = conn.writer("market_data")
        half = len(ticks) // 2
        market.write(ticks[:half])
        for h in bad:
            writer = market if h.stream == "market_data" else conn.writer(h.stream)
            writer.write_raw([(h.key, h.payload)])
            if writer is not market:
                writer.close()
        market.write(ticks[half:])
        market.close()
        undecided = sum(1 for h in bad if h.stream == "trade_signals" and h.dead)
        _drain(pipe, len(ticks), undecided, timeout_s)
        pipe.check_alive()  # every job still running
        logs = {p.stem: p.read_text(errors="replace") for p in log_dir.glob("*.log")}  # before the stop
    finally:
        pipe.stop()
    run = HostileRun(settings, bad, ticks, logs)
    reader = Connectors(settings)
    for stream in _READ:
        run.streams[stream] = _read(reader, stream)
    for table, model in (("positions_state", PositionState), ("portfolio_state", PortfolioState)):
        r = reader.reader(table)
        run.streams[table] = [decode(model, raw) for _, raw in r.scan_latest()]
        r.close()
    return run


def _read(conn: Connectors, stream: str) -> list[Any]:
    """Return the records of ``stream`` that decode (the corpus wrote bad ones into some)."""
    model = spec(stream).model
    out = []
    for raw in conn.scan(stream, 10_000):
        try:
            out.append(decode(model, raw.value))
        except DecodeError:
            continue
    return out


def _drain(pipe: Pipeline, ticks: int, undecided: int, timeout_s: float, settle_s: float = 4.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: dict[str, int] = {}
    still = time.monotonic()
    while True:
        time.sleep(0.25)
        pipe.check_alive()
        sizes = pipe.sizes()
        if sizes != last:
            last, still = sizes, time.monotonic()
        done = sizes["sma_wide"] > ticks and sizes["risk_decisions"] >= sizes["trade_signals"] - undecided
        if done and time.monotonic() - still >= settle_s:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the pipeline did not drain in {timeout_s:.0f}s: {sizes}")


def check_hostile(run: HostileRun) -> None:
    """Assert where every class ended up, and that nothing wrong got through (module doc)."""
    letters: list[DeadLetter] = [d for d in run.streams["dead_letters"] if isinstance(d, DeadLetter)]
    decisions: dict[str, list[RiskDecision]] = defaultdict(list)
    for d in run.streams["risk_decisions"]:
        if isinstance(d, RiskDecision):
            decisions[d.signal_id].append(d)
    events = [e for e in run.streams["risk_events"] if isinstance(e, RiskEvent)]
    problems: list[str] = []
    for h in run.corpus:
        if h.dead is not None:
            hits = [d for d in letters if d.source_stream == h.stream and h.dead in d.reason
                    and (h.marker is None or h.marker in d.payload)]
            if not hits:
                near = [d.reason for d in letters if d.source_stream == h.stream][:8]
                problems.append(f"{h.name}: no dead letter from {h.stream} with {h.dead!r} (there: {near})")
        if h.fails is not None:
            assert h.signal_id is not None
            got = decisions.get(h.signal_id, [])
            failed = [{r.rule for r in d.rules if not r.passed} for d in got]
            if not any(h.fails in f for f in failed):
                problems.append(f"{h.name}: no FAIL naming {h.fails} for {h.signal_id} ({failed})")
        if h.event is not None and not any(e.rule == h.event for e in events):
            problems.append(f"{h.name}: no {h.event} risk event")
    assert not problems, "\n".join(problems)
    _nothing_wrong_got_through(run, decisions)
    tracebacks = {job: log for job, log in run.logs.items() if "Traceback" in log}
    assert not tracebacks, {job: log[log.index("Traceback"):][:2000] for job, log in tracebacks.items()}


def _nothing_wrong_got_through(run: HostileRun, decisions: dict[str, list[RiskDecision]]) -> None:
    symbols = {t.symbol for t in run.clean}
    accounts = {c.account for c in demo_strategies()} | {STALE_ACCOUNT}
    prices = [t.price for t in run.clean]
    low, high = min(prices) / 2, max(prices) * 2
    written = {h.marker for h in run.corpus if h.stream == "sma_wide"}  # straight into sma_wide
    rows = [r for r in run.streams["sma_wide"] if isinstance(r, SmaWide) and r.symbol not in written]
    assert len(rows) == len(run.clean), "a hostile tick made (or cost) a row"
    assert {r.symbol for r in rows} <= symbols
    assert all(low <= Decimal(str(r.price)) <= high and r.ts.year < 2100 for r in rows)
    hostile_ids = {h.signal_id for h in run.corpus if h.signal_id}
    orders = [o for o in run.streams["validated_orders"] if isinstance(o, ValidatedOrder)]
    passed = {d.order_id for ds in decisions.values() for d in ds if d.order_id}
    news = [o for o in orders if o.action is OrderAction.NEW]
    assert {o.order_id for o in news} == passed, "an order without a PASS decision"
    for sid in hostile_ids:
        if sid == "S36":  # the first copy of the duplicate may pass; the second never does
            assert len([d for d in decisions["S36"] if d.order_id]) <= 1
            assert all(o.side.value == "BUY" and o.qty == 1 for o in news if o.order_id in {
                d.order_id for d in decisions["S36"]})
            continue
        assert not [d for d in decisions.get(sid, []) if d.order_id], f"hostile signal {sid} passed"
    assert {o.account for o in news} <= accounts
    assert {o.symbol for o in news} <= symbols
    fills = [f for f in run.streams["venue_fills"] if isinstance(f, VenueFill)]
    known = {o.order_id for o in news}
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for f in fills:
        if f.order_id in known:
            net[(f.account, f.symbol)] += f.last_qty * f.side.sign
    positions = [p for p in run.streams["positions_state"] if isinstance(p, PositionState)]
    assert {(p.account, p.symbol): p.net_qty for p in positions if p.net_qty} == {
        k: v for k, v in net.items() if v
    }, "positions_state differs from the fills of validated orders"
    for p in positions:
        assert p.account in accounts
        assert p.symbol in symbols
        assert p.ts.year < 2100, p
    for s in run.streams["portfolio_state"]:
        assert isinstance(s, PortfolioState)
        assert s.account in accounts
        assert abs(s.equity) < Decimal(10) ** 9
        assert s.ts.year < 2100, s
    for f in fills:  # never at a hostile tick's price or time
        assert f.last_qty == 0 or low <= f.last_px <= high, f
        assert f.ts.year < 2100, f
    signals = [s for s in run.streams["trade_signals"] if isinstance(s, TradeSignal)]
    assert signals, "the strategies made no signal"
