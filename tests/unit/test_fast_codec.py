"""The fast internal codec (schemas/fast.py) against the pydantic path it stands in for.

Every model is checked on the fuzz samples (tests/fuzzing.py) and on mutations of them
that the validating decode accepts: the fast encode writes the same bytes, the fast
decode of those bytes gives the same record. Anything else the fast decode is handed
ends in the validating decode: the same ``DecodeError`` and reason, never a crash.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.feeds import SyntheticMarket
from connectors.settings import load_settings
from flows.indicators import indicator_config, to_sma_wide
from operators.indicators import Row, SymbolIndicators, Tick
from schemas import STREAMS, DecodeError, MarketData, Record, SmaWide, decode, encode
from schemas.base import encode as pydantic_encode
from schemas.fast import fast_decode, fast_encode, supported
from tests import fuzzing

MODELS = sorted({s.model for s in STREAMS.values()}, key=lambda m: m.__name__)
SAMPLED = [fuzzing.MODELS[name] for name in fuzzing.SAMPLES]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_as_pydantic(record: Record) -> None:
    raw = pydantic_encode(record)
    assert fast_encode(record) == raw
    back = fast_decode(type(record), raw)
    assert back == record
    assert back.__pydantic_extra__ == record.__pydantic_extra__
    assert back.model_fields_set == decode(type(record), raw).model_fields_set
    assert pydantic_encode(back) == raw


def test_every_stream_model_but_the_journal_has_a_fast_plan() -> None:
    # JournalEntry.record is dict[str, Any], Progress maps partitions and symbols to ends and
    # times: no typed plan, pydantic both ways (neither is on a hot path)
    assert [m.__name__ for m in MODELS if not supported(m)] == ["JournalEntry", "Progress"]


def test_schemas_encode_is_the_fast_encode() -> None:
    assert encode is fast_encode


@pytest.mark.parametrize("model", SAMPLED, ids=lambda m: m.__name__)
def test_sample_of_every_model_encodes_and_decodes_as_pydantic_does(model: type[Record]) -> None:
    record = decode(model, fuzzing._dump(fuzzing.SAMPLES[model.__name__]))
    assert_same_as_pydantic(record)


def _market() -> tuple[list[MarketData], list[SmaWide]]:
    ticks = list(SyntheticMarket(symbols=4, ticks=800, seed=5))
    config = indicator_config(load_settings())
    states: dict[str, SymbolIndicators] = {}
    rows = []
    for m in ticks:
        st_ = states.setdefault(m.symbol, SymbolIndicators(config))
        out = st_.on_tick(Tick(m.symbol, m.ts, float(m.price), float(m.volume), m.wm))
        rows += [to_sma_wide(r) for r in out if isinstance(r, Row)]
    return ticks, rows


def test_ticks_and_sma_wide_rows_of_a_market_round_trip_exactly() -> None:
    ticks, rows = _market()
    assert any(r.indicator("sma_50") is None for r in rows)  # null columns while windows fill
    assert rows[-1].indicator("sma_50") is not None
    for record in [*ticks, *rows]:
        assert_same_as_pydantic(record)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_what_the_validating_decode_accepts_the_fast_codec_writes_and_reads_alike(rng: random.Random) -> None:
    name = rng.choice(list(fuzzing.SAMPLES))
    text = fuzzing.plausible_json(rng, name)
    try:
        record = decode(fuzzing.MODELS[name], text)
    except DecodeError:
        return
    assert_same_as_pydantic(record)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_fast_decode_of_a_hostile_payload_refuses_as_the_validating_decode_does(rng: random.Random) -> None:
    name = rng.choice(list(fuzzing.SAMPLES))
    model = fuzzing.MODELS[name]
    raw = fuzzing.plausible_json(rng, name).encode("utf-8", "surrogatepass")
    try:
        expected: Any = decode(model, raw)
    except DecodeError as exc:
        expected = exc
    if isinstance(expected, DecodeError):
        try:
            got: Any = fast_decode(model, raw)
        except DecodeError as exc:
            refused: str | None = str(exc)
        else:
            refused = None
        # a refusal is always the validating decode's, with its reason
        assert refused in (str(expected), None)
        if refused is not None:
            return
    else:
        got = fast_decode(model, raw)
    if not isinstance(expected, DecodeError) and pydantic_encode(expected) == raw:
        assert got == expected  # what a job writes reads back the same either way
    # else: trusted on an internal hop, it kept values the validators refuse or round
    # (a negative price, 10 decimal places of a computed average): the shape was right,
    # the values are the writer's to answer for
    assert type(got) is model


def _tick_json(**change: Any) -> bytes:
    data = {"_v": 1, "symbol": "AAPL", "ts": "2024-03-01T14:30:00.123Z", "price": "101.25", "volume": "300",
            "wm": None, "seq": 4, **change}
    return fuzzing._dump(data).encode()


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[1,2]", b'{"_v":1,', _tick_json(price=101.25), _tick_json(price="abc"),
    _tick_json(symbol=5), _tick_json(ts="yesterday"), _tick_json(ts="2024-03-01T14:30:00"),
    _tick_json(_v=2), _tick_json(extra_field=1), _tick_json(seq="4"), _tick_json(seq=1.5),
    b'{"_v":1,"symbol":"AAPL"}', _tick_json(price="NaN"), _tick_json(symbol="A" * 70_000),
    _tick_json(ts="2024-03-01T14:30:00.123+01:00"), _tick_json(ts="2024-03-01T14:30:00.123456Z"),
    _tick_json(symbol="A").replace(b'"A"', b'"\xff\xfe"'),
], ids=lambda raw: raw[:50].decode(errors="replace"))
def test_malformed_or_unusual_tick_goes_through_the_validating_decode(raw: bytes) -> None:
    assert_decoded_as_validated(MarketData, raw)


def assert_decoded_as_validated(model: type[Record], raw: bytes) -> None:
    try:
        expected: Any = decode(model, raw)
    except DecodeError as exc:
        expected = exc
    if isinstance(expected, DecodeError):
        with pytest.raises(DecodeError) as err:
            fast_decode(model, raw)
        assert str(err.value) == str(expected)
        return
    got = fast_decode(model, raw)
    assert got == expected  # normalised by the validators: UTC, ms, lax types
    assert got.__pydantic_extra__ == expected.__pydantic_extra__


@pytest.mark.parametrize("change", [
    {"sma_5": "1.5"}, {"sma_5": [1.0]}, {"sma_5": True}, {"bogus": 1.0}, {"price": "1"}, {"ts": 5},
    {"seq": None}, {"sma_5": 1e400}, {"rsi_0x": None}, {"_v": 2}, {"symbol": "A B"}, {"symbol": "A|B"},
], ids=str)
def test_malformed_sma_wide_row_reads_as_the_validating_decode_reads_it(change: dict[str, Any]) -> None:
    data = {"_v": 1, "symbol": "AAPL", "ts": "2024-03-01T14:30:00.000Z", "price": 1.0, "volume": 2.0,
            "vwap": None, "seq": 0, "sma_5": 1.0, **change}
    raw = fuzzing._dump({k: fuzzing._Raw("1e400") if v == 1e400 else v for k, v in data.items()}).encode()
    assert_decoded_as_validated(SmaWide, raw)


def test_sma_wide_row_with_int_columns_reads_as_pydantic_reads_it() -> None:
    raw = (b'{"_v":1,"symbol":"AAPL","ts":"2024-03-01T14:30:00.000Z","price":1,"volume":2,"vwap":null,'
           b'"seq":0,"sma_5":3}')
    assert fast_decode(SmaWide, raw) == decode(SmaWide, raw)
    assert fast_encode(fast_decode(SmaWide, raw)) == pydantic_encode(decode(SmaWide, raw))


@pytest.mark.parametrize("value", [1e16, 1e22, -1.5e300, 5e-324, 1e-7, 123456789.123, 0.0, -0.0])
def test_float_with_any_exponent_is_written_as_pydantic_writes_it(value: float) -> None:
    row = SmaWide(symbol="AAPL", ts=datetime(2024, 3, 1, tzinfo=UTC), price=1.0, volume=value, sma_5=value)
    assert_same_as_pydantic(row)


@pytest.mark.parametrize("ts", [
    datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    datetime(2024, 3, 1, 14, 30, tzinfo=UTC), datetime(2024, 3, 1, 14, 30, 0, 7000, tzinfo=UTC),
], ids=str)
def test_times_at_the_edges_are_written_as_pydantic_writes_them(ts: datetime) -> None:
    assert_same_as_pydantic(MarketData(symbol="X", ts=ts, price=Decimal(1), volume=Decimal(0), wm=ts))


def test_times_set_around_validation_are_written_as_pydantic_writes_them() -> None:
    # model_construct skips validation: a naive or non-UTC time is printed field by field
    utc = datetime(2024, 3, 1, 14, 30, 0, 123456, tzinfo=UTC)
    for ts in (utc.replace(tzinfo=None), utc + timedelta(microseconds=999),
               utc.astimezone(timezone(timedelta(hours=1)))):
        tick = MarketData.model_construct(symbol="X", ts=ts, price=Decimal(1), volume=Decimal(1),
                                          wm=None, seq=None)
        assert fast_encode(tick) == pydantic_encode(tick)


def test_text_that_cannot_be_written_fails_as_the_pydantic_encode_fails() -> None:
    bad = MarketData.model_construct(symbol="\ud800", ts=datetime(2024, 1, 1, tzinfo=UTC), price=Decimal(1),
                                     volume=Decimal(1), wm=None, seq=None)
    with pytest.raises(ValueError, match="surrogates not allowed"):
        pydantic_encode(bad)
    with pytest.raises(ValueError, match="surrogates not allowed"):
        fast_encode(bad)


T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def test_a_record_without_stamps_encodes_as_before_the_stamps_existed() -> None:
    tick = MarketData(symbol="AAPL", ts=T0, price=Decimal("1.5"), volume=Decimal(100))
    old = (b'{"_v":1,"symbol":"AAPL","ts":"2026-01-05T14:30:00.000Z","price":"1.5","volume":"100",'
           b'"wm":null,"seq":null}')
    assert pydantic_encode(tick) == fast_encode(tick) == old
    assert fast_decode(MarketData, old) == decode(MarketData, old) == tick
    assert fast_decode(MarketData, old).model_fields_set == decode(MarketData, old).model_fields_set


@pytest.mark.parametrize("stamps", [{"entered_at": T0}, {"entered_at": T0 + timedelta(seconds=1)}])
def test_stamped_records_round_trip_on_both_paths(stamps: dict[str, datetime]) -> None:
    tick = MarketData(symbol="AAPL", ts=T0, price=Decimal("1.5"), volume=Decimal(100), entered_at=T0)
    assert b'"entered_at":"2026-01-05T14:30:00.000Z"' in fast_encode(tick)
    assert_same_as_pydantic(tick)
    _, rows = _market()
    for row in rows[:50]:
        assert_same_as_pydantic(decode(SmaWide, pydantic_encode(row.model_copy(update=stamps))))
        assert_same_as_pydantic(row)  # and again without: the decoder is not stuck on a layout


def test_a_stamp_written_as_null_reads_as_pydantic_reads_it() -> None:
    raw = b'{"_v":1,"symbol":"A","ts":"2026-01-05T14:30:00.000Z","price":"1","volume":"1","entered_at":null}'
    assert fast_decode(MarketData, raw) == decode(MarketData, raw)
    assert fast_decode(MarketData, raw).model_fields_set == decode(MarketData, raw).model_fields_set


@pytest.mark.parametrize("symbol", ["X000Z", "T14:30:00.123000Z", "000Z"])
def test_text_ending_as_a_time_msgspec_writes_is_left_as_it_is(symbol: str) -> None:
    # the encode cuts msgspec's ...SS.fff000Z" to ...SS.fffZ" in one replace of the whole
    # JSON; a text that also ends in 000Z makes the count differ: the pydantic path writes it
    ts = datetime(2024, 3, 1, 14, 30, 0, 123000, tzinfo=UTC)
    assert_same_as_pydantic(MarketData(symbol=symbol, ts=ts, price=Decimal(1), volume=Decimal(0), wm=ts))


def test_rows_of_two_column_layouts_in_turn_decode_each_as_written() -> None:
    from schemas import fast

    ts = datetime(2024, 3, 1, 14, 30, 0, 5000, tzinfo=UTC)
    one = SmaWide(symbol="A", ts=ts, price=1.0, volume=2.0, sma_5=1.5, ema_12=None)
    two = SmaWide(symbol="B", ts=ts, price=1.0, volume=2.0, rsi_14=55.0, entered_at=ts)
    for _ in range(3):
        for row in (one, two):
            assert_same_as_pydantic(row)
    # one decoder per layout, made once and kept (not made again at every switch)
    assert len([key for key in fast._LAYOUT_READERS if key[0] is SmaWide]) >= 2
    reader = fast._LAYOUT_READERS[SmaWide, ("sma_5", "ema_12")]
    fast_decode(SmaWide, pydantic_encode(two))
    fast_decode(SmaWide, pydantic_encode(one))
    assert fast._READERS[SmaWide] is reader


@pytest.mark.parametrize("ts", [
    datetime(2024, 3, 1, 14, 30, tzinfo=UTC), datetime(2024, 3, 1, 14, 30, 0, 100000, tzinfo=UTC),
    datetime(2024, 3, 1, 14, 30, 59, 1000, tzinfo=UTC),
], ids=str)
def test_times_of_whole_seconds_or_milliseconds_stay_on_the_fast_encode(
        ts: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    # bars close on whole minutes: such a time, beside one with milliseconds (the entry
    # stamp), must not send the record to pydantic
    stamp = ts + timedelta(milliseconds=7)
    tick = MarketData(symbol="X", ts=ts, price=Decimal(1), volume=Decimal(0), wm=ts, entered_at=stamp)
    row = SmaWide(symbol="X", ts=ts, price=1.0, volume=2.0, sma_5=1.5, entered_at=stamp)
    expected = [pydantic_encode(tick), pydantic_encode(row)]

    def pydantic_path(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the pydantic path")

    monkeypatch.setattr(MarketData, "model_dump_json", pydantic_path)
    monkeypatch.setattr(SmaWide, "model_dump_json", pydantic_path)
    assert [fast_encode(tick), fast_encode(row)] == expected


@pytest.mark.parametrize("column", ["sma_5'] = 0; import os; x = ['", 'ema_1"\\', "sma_", "SMA_5"])
def test_a_column_name_no_model_accepts_never_makes_a_column_layout(column: str) -> None:
    # the reader of a column layout is generated code: only names that passed the
    # model's column rule (INDICATOR_COLUMN) get one, and those only as repr() literals
    from schemas import fast

    before = set(fast._LAYOUT_READERS)
    data = {"_v": 1, "symbol": "AAPL", "ts": "2024-03-01T14:30:00.000Z", "price": 1.0, "volume": 2.0,
            "vwap": None, "seq": 0, column: 1.0}
    assert_decoded_as_validated(SmaWide, fuzzing._dump(data).encode())
    assert set(fast._LAYOUT_READERS) == before


def test_a_column_name_the_model_accepts_with_a_newline_reads_as_validated() -> None:
    # INDICATOR_COLUMN ends in $, which matches before a final newline: the model takes
    # "rsi_14\n" as a column; msgspec takes no struct field of that name, so there is no
    # layout reader for it: the general decode reads it, every time, and nothing escapes
    data = {"_v": 1, "symbol": "AAPL", "ts": "2024-03-01T14:30:00.000Z", "price": 1.0, "volume": 2.0,
            "vwap": None, "seq": 0, "rsi_14\n": 1.0}
    raw = fuzzing._dump(data).encode()
    for _ in range(2):
        assert_decoded_as_validated(SmaWide, raw)
    assert fast_encode(fast_decode(SmaWide, raw)) == pydantic_encode(decode(SmaWide, raw))


_COLUMN_VALUES = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-10, 10),
                           st.just("1.5"), st.just(True))
_ROWS = st.lists(st.dictionaries(st.sampled_from(["sma_5", "sma_10", "ema_12", "rsi_14", "bogus", "vwap"]),
                                 _COLUMN_VALUES, max_size=4), min_size=1, max_size=8)


@FUZZ
@given(_ROWS)
def test_sma_wide_rows_of_changing_columns_read_each_as_validated(rows: list[dict[str, Any]]) -> None:
    # each row's reader is the one of the previous row's columns: a row with other
    # columns, or a bad value, must still read exactly as the validating decode reads it
    for columns in rows:
        data = {"_v": 1, "symbol": "AAPL", "ts": "2024-03-01T14:30:00.000Z", "price": 1.0, "volume": 2.0,
                "vwap": None, "seq": 0, **columns}
        assert_decoded_as_validated(SmaWide, fuzzing._dump(data).encode())


def test_beyond_the_known_layouts_rows_read_the_general_way(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas import fast

    monkeypatch.setattr(fast, "_LAYOUT_READERS", {})
    monkeypatch.setattr(fast, "_LAYOUTS_MAX", 2)
    ts = datetime(2024, 3, 1, 14, 30, 0, 5000, tzinfo=UTC)
    rows = [SmaWide(symbol="A", ts=ts, price=1.0, volume=2.0, **{f"sma_{n}": 1.0}) for n in range(1, 6)]
    for row in rows * 2:
        assert_same_as_pydantic(row)
    assert len(fast._LAYOUT_READERS) == 2  # no code made for the others, at any row
