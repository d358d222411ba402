"""Job A end to end on the embedded store, with 1 and 2 workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from bytewax.testing import cluster_main, run_main

from connectors.feeds import SyntheticMarket, replay
from connectors.registry import Connectors
from connectors.settings import Settings
from flows.common import Decoded
from flows.indicators import GateLogic, build_flow, indicator_config
from operators.indicators import IndicatorSet
from operators.instruments import StartupTable, TickGate
from schemas import DeadLetter, Instrument, InstrumentStatus, MarketData, SmaWide, encode
from tests.helpers import read_all

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)

BAD_PAYLOADS = {
    b"{not json": "bad JSON",
    b'{"symbol":"X","ts":"2026-01-05T14:30:00Z","price":"NaN","volume":"1"}': "price",
    b'{"symbol":"X","ts":"2026-01-05T14:30:00Z","price":"-3","volume":"1"}': "greater than zero",
    b'{"symbol":"X","ts":"2026-01-05T14:30:00","price":"3","volume":"1"}': "timezone-aware",
    b'{"symbol":"X","ts":"2026-01-05T14:30:00Z","price":"3","volume":"1","zz":1}': "zz",
    b'{"_v":99,"symbol":"X","ts":"2026-01-05T14:30:00Z","price":"3","volume":"1"}': "schema version",
}


def expected_rows(ticks: list[MarketData], settings: Settings) -> dict[tuple[str, int], dict]:
    sets: dict[str, IndicatorSet] = {}
    seqs: dict[str, int] = {}
    out = {}
    for t in ticks:
        ind = sets.setdefault(t.symbol, IndicatorSet(indicator_config(settings)))
        seq = seqs.get(t.symbol, 0)
        seqs[t.symbol] = seq + 1
        values = ind.update(float(t.price), float(t.volume), t.ts)
        out[(t.symbol, seq)] = {"price": float(t.price), **values}
    return out


def row_values(row: SmaWide) -> dict:
    return {"price": row.price, **row.indicators()}


@pytest.mark.parametrize("workers", [1, 2])
def test_indicators_flow_matches_direct_computation(
    settings: Settings, connectors: Connectors, workers: int
) -> None:
    ticks = list(SyntheticMarket(symbols=7, ticks=3000, seed=3))
    replay(ticks, connectors.writer("market_data"), progress=False)
    flow = build_flow(settings)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    rows = read_all(connectors, "sma_wide")
    got = {(r.symbol, r.seq): row_values(r) for r in rows}  # type: ignore[attr-defined]
    assert len(rows) == len(ticks) == len(got)
    assert got == expected_rows(ticks, settings)
    assert read_all(connectors, "dead_letters") == []


def test_bad_records_go_to_dead_letters_and_the_flow_goes_on(
    settings: Settings, connectors: Connectors
) -> None:
    writer = connectors.writer("market_data")
    good = [MarketData(symbol="X", ts=T0 + timedelta(seconds=i), price=10 + i, volume=5) for i in range(3)]
    bad = [("X", p) for p in BAD_PAYLOADS]
    writer.write_raw([("X", encode(good[0])), *bad, *[("X", encode(g)) for g in good[1:]]])
    writer.close_stream()
    run_main(build_flow(settings))
    rows = read_all(connectors, "sma_wide")
    assert [r.price for r in rows] == [10.0, 11.0, 12.0]  # type: ignore[attr-defined]
    letters = read_all(connectors, "dead_letters")
    assert len(letters) == len(BAD_PAYLOADS)
    for letter, (payload, why) in zip(letters, BAD_PAYLOADS.items(), strict=True):
        assert isinstance(letter, DeadLetter)
        assert letter.source_stream == "market_data"
        assert letter.job == "indicators"
        assert letter.offset is not None
        assert letter.partition is not None
        assert why in letter.reason, letter.reason
        assert letter.payload == payload.decode()


@pytest.mark.parametrize("where", ["gate", "indicators"])
def test_a_tick_job_a_raises_on_is_dead_lettered_and_the_flow_goes_on(
    settings: Settings, connectors: Connectors, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A poison pill no check refused (here: a bug in the gate or the indicator math) never
    stops Job A; the tick goes to dead_letters with the error and its position (#17 item 1)."""
    target = (TickGate, "check") if where == "gate" else (IndicatorSet, "update")
    real = getattr(*target)

    def fragile(self: object, *args: object) -> object:
        price = args[2] if where == "gate" else args[0]
        if float(price) == 13.0:  # type: ignore[arg-type]
            raise ArithmeticError(f"a {where} bug only this price finds")
        return real(self, *args)

    monkeypatch.setattr(*target, fragile)
    ticks = [MarketData(symbol="X", ts=T0 + timedelta(seconds=i), price=p, volume=5)
             for i, p in enumerate([10, 11, 13, 12, 13, 14])]
    replay(ticks, connectors.writer("market_data"), progress=False)
    run_main(build_flow(settings))
    rows = read_all(connectors, "sma_wide")
    assert [r.price for r in rows] == [10.0, 11.0, 12.0, 14.0]  # type: ignore[attr-defined]
    dead = sorted(read_all(connectors, "dead_letters"), key=lambda d: d.offset)  # type: ignore[attr-defined]
    assert [(d.source_stream, d.offset, d.job) for d in dead] == [  # type: ignore[attr-defined]
        ("market_data", 2, "indicators"), ("market_data", 4, "indicators")]
    for d in dead:
        assert f"ArithmeticError: a {where} bug only this price finds" in d.reason  # type: ignore[attr-defined]


def test_late_tick_is_dead_lettered_with_its_position(
    settings: Settings, connectors: Connectors
) -> None:
    ticks = [
        MarketData(symbol="X", ts=T0 + timedelta(seconds=s), price=p, volume=1)
        for s, p in [(0, 10), (5, 11), (2, 99), (6, 12)]
    ]
    replay(ticks, connectors.writer("market_data"), progress=False)
    run_main(build_flow(settings))
    assert [r.price for r in read_all(connectors, "sma_wide")] == [10.0, 11.0, 12.0]  # type: ignore[attr-defined]
    (letter,) = read_all(connectors, "dead_letters")
    assert isinstance(letter, DeadLetter)
    assert "late tick" in letter.reason
    assert letter.offset == 2
    assert '"price":"99.0"' in letter.payload  # the tick as parsed, re-encoded


def test_watermarked_feed_reorders_out_of_order_ticks(
    settings: Settings, connectors: Connectors
) -> None:
    lag = timedelta(seconds=10)
    order = [(0, 10), (5, 11), (2, 99), (30, 12)]
    ticks = []
    for i, (s, p) in enumerate(order):
        high = max(x for x, _ in order[: i + 1])
        wm = T0 + timedelta(seconds=high) - lag
        ticks.append(MarketData(symbol="X", ts=T0 + timedelta(seconds=s), price=p, volume=1, wm=wm))
    replay(ticks, connectors.writer("market_data"), progress=False)
    run_main(build_flow(settings))
    assert [r.price for r in read_all(connectors, "sma_wide")] == [10.0, 99.0, 11.0, 12.0]  # type: ignore[attr-defined]
    assert read_all(connectors, "dead_letters") == []


def test_two_sharded_runs_over_partition_subsets_equal_one_run(
    settings: Settings, connectors: Connectors
) -> None:
    ticks = list(SyntheticMarket(symbols=7, ticks=2000, seed=4))
    replay(ticks, connectors.writer("market_data"), progress=False)
    for subset in ([0], [1]):  # what two independent processes would each run
        run_main(build_flow(settings.model_copy(update={"source_partitions": tuple(subset)})))
    rows = read_all(connectors, "sma_wide")
    got = {(r.symbol, r.seq): row_values(r) for r in rows}  # type: ignore[attr-defined]
    assert len(rows) == len(got) == len(ticks)
    assert got == expected_rows(ticks, settings)


def test_a_tick_from_the_future_is_dead_lettered_and_moves_no_watermark(
    settings: Settings, connectors: Connectors
) -> None:
    ticks = [
        MarketData(symbol="X", ts=T0 + timedelta(seconds=s), price=p, volume=1)
        for s, p in [(0, 10), (1, 11), (36_000, 99), (2, 12), (3, 13)]
    ]
    replay(ticks, connectors.writer("market_data"), progress=False)
    run_main(build_flow(settings))
    # the tick 10 h ahead did not make the honest ticks after it late
    assert [r.price for r in read_all(connectors, "sma_wide")] == [10.0, 11.0, 12.0, 13.0]  # type: ignore[attr-defined]
    (letter,) = read_all(connectors, "dead_letters")
    assert isinstance(letter, DeadLetter)
    assert "future tick" in letter.reason
    assert "60 s ahead" in letter.reason
    assert letter.offset == 2  # its own position, though it was refused a tick later
    assert '"price":"99.0"' in letter.payload


def test_daily_bars_are_not_mistaken_for_future_ticks(settings: Settings, connectors: Connectors) -> None:
    ticks = [
        MarketData(symbol="X", ts=T0 + timedelta(days=d), price=10 + d, volume=1) for d in range(5)
    ]
    replay(ticks, connectors.writer("market_data"), progress=False)
    run_main(build_flow(settings))
    assert [r.price for r in read_all(connectors, "sma_wide")] == [10.0, 11.0, 12.0, 13.0, 14.0]  # type: ignore[attr-defined]
    assert read_all(connectors, "dead_letters") == []


def instrument(symbol: str, **kw: object) -> Instrument:
    fields: dict[str, object] = dict(symbol=symbol, tick_size=Decimal("0.05"), lot_size=Decimal(1),
                                     price_precision=2, qty_precision=0, price_band_pct=Decimal(10), ts=T0)
    fields.update(kw)
    return Instrument(**fields)  # type: ignore[arg-type]


def test_ticks_the_instruments_table_does_not_allow_are_dead_lettered_and_move_nothing(
    settings: Settings, connectors: Connectors
) -> None:
    table = connectors.writer("instruments")
    table.write([instrument("X"), instrument("H", status=InstrumentStatus.HALTED)])
    table.close()
    ticks = [
        MarketData(symbol=sym, ts=T0 + timedelta(seconds=s), price=Decimal(p), volume=1)
        for sym, s, p in [("X", 0, "10"), ("X", 1, "10.05"), ("X", 2, "10.07"), ("X", 3, "18"),
                          ("ZZZ", 4, "10"), ("H", 5, "10"), ("X", 6, "10.10"), ("X", 6, "10.10")]
    ]
    replay(ticks, connectors.writer("market_data"), progress=False)
    run_main(build_flow(settings))
    rows = read_all(connectors, "sma_wide")
    assert [(r.symbol, r.price, r.seq) for r in rows] == [  # type: ignore[attr-defined]
        ("X", 10.0, 0), ("X", 10.05, 1), ("X", 10.1, 2)]
    letters = read_all(connectors, "dead_letters")
    reasons = sorted(letter.reason for letter in letters)  # type: ignore[attr-defined]
    assert reasons == sorted([
        "off-precision price: 10.07 of X is not a multiple of tick_size 0.05",
        "outlier: price 18 of X moves 79.10% from the last accepted price 10.05, beyond the band of 10%",
        "unknown symbol ZZZ: the instruments table has no row for it",
        "instrument H is HALTED: no tick accepted",
        "duplicate tick: X at 2026-01-05T14:30:06+00:00 price 10.10 volume 1 was already applied",
    ])
    for letter in letters:
        assert isinstance(letter, DeadLetter)
        assert letter.source_stream == "market_data"
        assert letter.job == "indicators"


def test_without_instruments_only_duplicate_ticks_are_refused(
    settings: Settings, connectors: Connectors
) -> None:
    tick = MarketData(symbol="X", ts=T0, price=Decimal("10.123"), volume=1)
    later = MarketData(symbol="X", ts=T0 + timedelta(seconds=1), price=Decimal(500), volume=1)
    writer = connectors.writer("market_data")
    writer.write_raw([("X", encode(tick)), ("X", encode(tick)), ("X", encode(later))])
    writer.close_stream()
    run_main(build_flow(settings))
    assert [r.price for r in read_all(connectors, "sma_wide")] == [10.123, 500.0]  # type: ignore[attr-defined]
    (letter,) = read_all(connectors, "dead_letters")
    assert isinstance(letter, DeadLetter)
    assert letter.reason.startswith("duplicate tick: X at 2026-01-05T14:30:00+00:00 price 10.123")
    assert letter.offset == 1


def test_the_gate_follows_instrument_rows_written_after_start_up() -> None:
    t0 = Instrument(symbol="X", tick_size=Decimal("0.01"), lot_size=Decimal(1), ts=T0)
    table = StartupTable({0: 1}, {"X": t0})
    logic = GateLogic(table, None)

    def tick(i: int, price: str) -> Decoded[MarketData]:
        return Decoded(MarketData(symbol="X", ts=T0 + timedelta(seconds=i), price=Decimal(price), volume=1),
                       "market_data", 0, i)

    def row(offset: int, status: InstrumentStatus) -> Decoded[Instrument]:
        return Decoded(t0.model_copy(update={"status": status}), "instruments", 0, offset)

    out, _ = logic.on_batch([row(0, InstrumentStatus.TRADING), tick(0, "10")])  # offset 0: known
    assert out == [tick(0, "10")]
    out, _ = logic.on_batch([row(1, InstrumentStatus.HALTED), tick(1, "10")])  # news: a halt
    (letter,) = out
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "instrument X is HALTED: no tick accepted"
    out, _ = logic.on_batch([row(2, InstrumentStatus.TRADING), tick(2, "10")])  # resumed
    assert out == [tick(2, "10")]
    resumed = GateLogic(table, logic.snapshot())  # a restart: the snapshot's rows and ticks
    out, _ = resumed.on_batch([tick(2, "10"), tick(3, "10")])
    assert isinstance(out[0], DeadLetter)
    assert out[1] == tick(3, "10")
