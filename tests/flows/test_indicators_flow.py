"""Job A end to end on the embedded store, with 1 and 2 workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bytewax.testing import cluster_main, run_main

from connectors.feeds import SyntheticMarket, replay
from connectors.registry import Connectors
from connectors.settings import Settings
from flows.indicators import build_flow, indicator_config
from operators.indicators import IndicatorSet
from schemas import DeadLetter, MarketData, SmaWide, encode
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
