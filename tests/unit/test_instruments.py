"""Instrument reference data: the row's own checks and Job A's per-symbol tick gate."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.registry import Connectors
from connectors.settings import load_settings
from operators.instruments import DUPLICATES_KEPT, TickGate, beyond_band, on_grid, places, qty_off_lot
from schemas import DecodeError, Instrument, InstrumentStatus, decode, encode, validate
from tradeflow.cli import main
from tradeflow.instruments import InstrumentFileError, parse_instruments

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def inst(**kw: object) -> Instrument:
    fields: dict[str, object] = dict(symbol="X", tick_size=D("0.05"), lot_size=D(10), min_qty=D(10),
                                     max_qty=D(1000), min_notional=D(100), price_precision=2,
                                     qty_precision=0, price_band_pct=D(10), ts=T0)
    fields.update(kw)
    return Instrument(**fields)  # type: ignore[arg-type]


def test_an_instrument_row_round_trips_and_refuses_inconsistent_reference_data() -> None:
    row = inst(status=InstrumentStatus.HALTED)
    assert decode(Instrument, encode(row)) == row
    with pytest.raises(DecodeError, match="tick_size 0.001 has more than price_precision 2"):
        validate(Instrument, {**row.model_dump(), "tick_size": D("0.001")})
    with pytest.raises(DecodeError, match="min_qty 10 is above max_qty 5"):
        validate(Instrument, {**row.model_dump(), "max_qty": D(5)})
    with pytest.raises(DecodeError, match="tick_size"):
        validate(Instrument, {**row.model_dump(), "tick_size": D(0)})
    with pytest.raises(DecodeError, match="status"):
        validate(Instrument, {**row.model_dump(), "status": "OPEN"})


def test_grid_helpers_are_exact() -> None:
    assert on_grid(D("100.05"), D("0.05"))
    assert not on_grid(D("100.07"), D("0.05"))
    assert on_grid(D("9999999999.99999995"), D("0.00000005"))
    assert places(D("1.2300")) == 2
    assert places(D(100)) == 0
    assert beyond_band(D("110.01"), D(100), D(10))
    assert not beyond_band(D(110), D(100), D(10))
    assert not beyond_band(D(90), D(100), D(10))
    assert beyond_band(D("89.99"), D(100), D(10))
    row = inst()
    assert qty_off_lot(D(20), row) is None
    assert qty_off_lot(D(25), row) == "is not a multiple of lot_size 10"
    assert qty_off_lot(D("20.5"), row) == "has more than qty_precision 0 decimal places"
    assert qty_off_lot(D(2000), row) == "is above max_qty 1000"
    assert qty_off_lot(D(10), inst(min_qty=D(20))) == "is below min_qty 20"


def tick(gate: TickGate, price: str, i: int = 0, volume: str = "1") -> str | None:
    return gate.check("X", T0 + timedelta(seconds=i), D(price), D(volume))


def test_an_empty_table_checks_nothing_but_duplicates() -> None:
    gate = TickGate()
    assert tick(gate, "123.4567", 0) is None
    assert tick(gate, "999999", 1) is None  # no band without a row
    assert tick(gate, "999999", 1) == ("duplicate tick: X at 2024-01-02T09:30:01+00:00 price 999999 "
                                       "volume 1 was already applied")
    assert tick(gate, "999999", 1, volume="2") is None  # another trade at the same time and price


def test_unknown_halted_and_closed_symbols_are_refused() -> None:
    assert tick(TickGate(enforce=True), "100") == "unknown symbol X: the instruments table has no row for it"
    gate = TickGate()
    gate.on_instrument(inst(status=InstrumentStatus.HALTED))
    assert tick(gate, "100") == "instrument X is HALTED: no tick accepted"
    gate.on_instrument(inst(status=InstrumentStatus.CLOSED))
    assert tick(gate, "100", 1) == "instrument X is CLOSED: no tick accepted"
    gate.on_instrument(inst())  # resumed
    assert tick(gate, "100", 2) is None


def test_off_precision_prices_are_refused() -> None:
    gate = TickGate()
    gate.on_instrument(inst())
    assert tick(gate, "100.07") == "off-precision price: 100.07 of X is not a multiple of tick_size 0.05"
    assert tick(gate, "100.055") == ("off-precision price: 100.055 of X has more than price_precision "
                                     "2 decimal places")
    assert tick(gate, "100.05") is None


def test_outliers_beyond_the_band_from_the_last_accepted_price_are_refused() -> None:
    gate = TickGate()
    gate.on_instrument(inst())
    assert tick(gate, "100", 0) is None
    assert tick(gate, "180", 1) == ("outlier: price 180 of X moves 80.00% from the last accepted price "
                                    "100, beyond the band of 10%")
    assert gate.last_price == D(100)  # a refused tick is no reference
    assert tick(gate, "110", 2) is None  # exactly at the band
    assert tick(gate, "121", 3) is None  # 10% from 110, the last accepted
    gate.on_instrument(inst())  # ops acknowledge a real gap: the next tick sets the reference
    assert tick(gate, "300", 4) is None
    assert tick(gate, "301", 5) is None


def test_duplicates_are_remembered_up_to_a_bound() -> None:
    gate = TickGate()
    for i in range(DUPLICATES_KEPT + 1):
        assert tick(gate, "100", i) is None
    assert len(gate.recent) == DUPLICATES_KEPT
    assert tick(gate, "100", 0) is None  # forgotten: the oldest went first
    assert tick(gate, "100", DUPLICATES_KEPT) is not None
    copy = gate.copy()
    assert tick(copy, "100", 5) is not None
    assert copy.recent is not gate.recent


def test_the_cli_loads_a_csv_of_instruments_whole_or_not_at_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "instruments.csv"
    good.write_text("symbol,tick_size,lot_size,min_notional,price_precision,qty_precision,status,price_band_pct\n"
                    "AAPL,0.01,1,10,2,0,TRADING,15\n"
                    "BRK.A,1,1,,0,0,HALTED,\n")
    data = tmp_path / "store"
    assert main(["instruments", "load", str(good), "--data-dir", str(data)]) == 0
    assert "loaded 2 instruments into instruments (1 not TRADING)" in capsys.readouterr().out
    rows = Connectors(load_settings(data_dir=data)).table("instruments", Instrument)
    assert rows["AAPL"].tick_size == D("0.01")
    assert rows["AAPL"].price_band_pct == D(15)
    assert rows["BRK.A"].status is InstrumentStatus.HALTED
    assert rows["BRK.A"].min_notional is None  # an empty cell: not checked

    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,tick_size,lot_size\nMSFT,0.01,1\nbad symbol,0.01,1\nAAPL,0,1\nMSFT,0.01,1\n")
    assert main(["instruments", "load", str(bad), "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "3 bad row(s), nothing loaded" in err
    assert "line 3: symbol: Value error, character ' ' not allowed" in err
    assert "line 4: tick_size" in err
    assert "line 5: symbol MSFT already on line 2" in err
    assert "MSFT" not in Connectors(load_settings(data_dir=data)).table("instruments", Instrument)


def test_a_csv_without_the_required_columns_is_refused() -> None:
    rows = csv.DictReader(io.StringIO("symbol,tick,lot_size\nX,1,1\n"))
    with pytest.raises(InstrumentFileError, match="missing column.s. tick_size; unknown column.s. tick"):
        parse_instruments(rows, T0)
