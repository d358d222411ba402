"""``checked_decode`` (schemas/fast.py) against the validating decode it stands in for.

It decodes records from outside (feeds, tables, venues' reports), so it must be
``decode`` exactly: for any payload, the same record (equal, same fields set, the same
bytes written back) or the same ``DecodeError`` with the same reason. Checked on every
stream model's sample and on payloads that start as what a writer writes (every field
present, so the fast path is taken) with fields made hostile.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    STREAMS,
    Account,
    DecodeError,
    MarketData,
    Record,
    SymbolLimit,
    ValidatedOrder,
    VenueFill,
    decode,
)
from schemas.base import encode as pydantic_encode
from schemas.fast import _CHECKED_READERS, checked_decode
from tests import fuzzing

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHECKED = (MarketData, VenueFill, ValidatedOrder, Account, SymbolLimit)
"""Models on the hot paths whose payloads the checked fast path reads itself."""

TRICKY: list[Any] = [
    # decimals as text and as numbers (decode reads numbers through a float)
    "1.5", " 1.5", "1.5 ", "1_000", "1e2", "1E+2", "-0", "0", "0E-8", "+1", "-1.5", "NaN", "Infinity", "abc",
    "1.123456789", "99999999999.99999999", "1e30", "0.000000001", 1.5, 100, -3, 0, True, None,
    fuzzing._Raw("1e2"), fuzzing._Raw("1E-3"), fuzzing._Raw("1.50"),
    fuzzing._Raw("0.1000000000000000000001"),
    # times
    "2024-03-01T14:30:00.123Z", "2024-03-01T14:30:00Z", "2024-03-01T14:30:00.0009999Z",
    "2024-03-01T14:30:00.9999999Z", "2024-03-01 14:30:00Z", "2024-03-01T14:30:00+00:00",
    "2024-03-01T14:30:00-00:00", "2024-03-01T14:30:00+01:00", "2024-03-01T14:30:00.123456Z",
    "2024-03-01T14:30Z", "2024-03-01t14:30:00z", "2024-03-01T14:30:00", "2024-03-01T14:30:00,5Z",
    1709303400,
    # texts and ids
    "AAPL", "", " ", "A B", "A|B", "a" * 70, "\u00e9", "BUY", "SELL", "buy", "LIMIT", "MARKET",
    "FILLED", "NEW",
    "ACTIVE", "paper", "\\ud800", [], {}, -1, 2**70,
]


def full_json(model: type[Record]) -> dict[str, Any]:
    """The JSON object a writer writes for the model's fuzz sample: every field present."""
    record = decode(model, fuzzing._dump(fuzzing.SAMPLES[model.__name__]))
    return json.loads(pydantic_encode(record))


def outcome(read: Callable[[type[Record], bytes], Record], model: type[Record], raw: bytes) -> Record | str:
    """The record ``read`` returns, or the reason of the ``DecodeError`` it raises."""
    try:
        return read(model, raw)
    except DecodeError as exc:
        return f"refused: {exc}"


def assert_same_as_decode(model: type[Record], raw: bytes) -> None:
    expected, got = outcome(decode, model, raw), outcome(checked_decode, model, raw)
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
        return
    assert type(got) is model
    assert got == expected
    assert got.model_fields_set == expected.model_fields_set
    assert pydantic_encode(got) == pydantic_encode(expected)  # same digits and exponents, too


@pytest.mark.parametrize("model", sorted({s.model for s in STREAMS.values()}, key=lambda m: m.__name__),
                         ids=lambda m: m.__name__)
def test_every_stream_model_reads_its_sample_as_decode_does(model: type[Record]) -> None:
    assert model.__name__ in fuzzing.SAMPLES, f"add a sample of {model.__name__} to tests/fuzzing.py"
    sample = fuzzing._dump(fuzzing.SAMPLES[model.__name__]).encode()
    assert_same_as_decode(model, sample)
    assert_same_as_decode(model, pydantic_encode(decode(model, sample)))


@pytest.mark.parametrize("model", CHECKED, ids=lambda m: m.__name__)
def test_the_hot_path_models_have_a_checked_reader_of_their_own(model: type[Record]) -> None:
    # a model falling back to pydantic for everything would pass every other test here
    checked_decode(model, fuzzing._dump(full_json(model)).encode())
    assert getattr(_CHECKED_READERS[model], "__name__", "") == "read"


@pytest.mark.parametrize("model", CHECKED, ids=lambda m: m.__name__)
@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_each_field_set_to_a_tricky_value_reads_as_decode_reads_it(model: type[Record], value: Any) -> None:
    base = full_json(model)
    for name in base:
        assert_same_as_decode(model, fuzzing._dump({**base, name: value}).encode())


def test_a_left_out_stamp_and_a_null_one_read_as_decode_reads_them() -> None:
    base = full_json(MarketData)
    base.pop("entered_at", None)
    for stamp in ({}, {"entered_at": None}, {"entered_at": "2024-03-01T14:30:00.001Z"}):
        assert_same_as_decode(MarketData, fuzzing._dump({**base, **stamp}).encode())


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[1,2]", b'{"_v":1,', b'{"_v":2}', b"\xef\xbb\xbf{}", "{}".encode("utf-16"),
    b'{"_v":1.0,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":null}',
    b'{"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":null}',
    b'{"_v":1,"symbol":"A","symbol":"B","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":null}',
    b'{"_v":1,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":null} x',
    b'{"_v":1,"symbol":"\\ud800","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":null}',
    b'{"_v":1,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":-1}',
    b'{"_v":1,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"-1","volume":"1","wm":null,"seq":1}',
    b'{"_v":1,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"-1","wm":null,"seq":1}',
    b'{"_v":1,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"0","volume":"1","wm":null,"seq":1}',
    b'{"_v":1,"symbol":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":1,"x":1}',
    b'{"_v":1,"symbol":"\xff\xfe","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":1}',
    b'{"_v":1,"\xff":"A","ts":"2024-03-01T14:30:00Z","price":"1","volume":"1","wm":null,"seq":1}',
], ids=lambda raw: raw[:60].decode(errors="replace"))
def test_odd_tick_payloads_read_as_decode_reads_them(raw: bytes) -> None:
    assert_same_as_decode(MarketData, raw)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_a_writers_payload_made_hostile_reads_as_decode_reads_it(rng: random.Random) -> None:
    model = rng.choice(CHECKED)
    data = full_json(model)
    fields = list(data)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(10)
        if action < 5:
            data[rng.choice(fields)] = rng.choice(TRICKY)
        elif action < 7:
            data[rng.choice(fields)] = fuzzing.random_value(rng)
        elif action < 8:
            data[rng.choice(fields)] = fuzzing._Raw(rng.choice(fuzzing.HOSTILE_NUMBERS))
        elif action < 9 and data:
            data.pop(rng.choice(list(data)))
        # else: leave it as written
    assert_same_as_decode(model, fuzzing._dump(data).encode("utf-8", "surrogatepass"))
