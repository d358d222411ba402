"""Fuzz every decoder (issue 17): only the documented refusal may escape.

The generators and targets live in tests/fuzzing.py and are shared with bench/fuzz.py,
which runs >= 100,000 cases; here each target gets a few hundred examples so CI stays
quick. hypothesis drives the targets through a ``random.Random`` it controls, so a
failure shrinks and replays like any hypothesis failure.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.fix.codec import FixFramer, parse
from schemas import STREAMS, DecodeError, decode, encode
from tests import fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = sorted({s.model for s in STREAMS.values()}, key=lambda m: m.__name__)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # the targets log every refusal
    yield
    logging.disable(logging.NOTSET)


def _decoded_or_refused(model: type, raw: bytes | str) -> None:
    try:
        record = decode(model, raw)
    except DecodeError:
        return
    assert decode(model, encode(record)) == record  # what is accepted can be written back


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@FUZZ
@given(raw=st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_raises_only_decode_error(model: type, raw: bytes) -> None:
    _decoded_or_refused(model, raw)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=100, deadline=None)
@given(raw=st.text(max_size=200))
def test_decode_of_arbitrary_text_raises_only_decode_error(model: type, raw: str) -> None:
    _decoded_or_refused(model, raw)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(fuzzing.HOSTILE_STRINGS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@pytest.mark.parametrize("name", sorted(fuzzing.SAMPLES))
@FUZZ
@given(rng=st.randoms(use_true_random=False), field=st.data())
def test_decode_of_plausible_hostile_records_raises_only_decode_error(
    name: str, rng: random.Random, field: st.DataObject
) -> None:
    model = fuzzing.MODELS[name]
    _decoded_or_refused(model, fuzzing.plausible_json(rng, name))
    # and a hypothesis-chosen value in one hypothesis-chosen field of a valid record
    data = dict(fuzzing.SAMPLES[name])
    data[field.draw(st.sampled_from(sorted(model.model_fields)))] = field.draw(JSON)
    _decoded_or_refused(model, fuzzing._dump(data))


def test_every_stream_model_has_a_valid_sample() -> None:
    assert set(fuzzing.SAMPLES) == set(fuzzing.MODELS)
    for name, data in fuzzing.SAMPLES.items():
        _decoded_or_refused(fuzzing.MODELS[name], fuzzing._dump(data))
        decode(fuzzing.MODELS[name], fuzzing._dump(data))  # valid: not refused


@FUZZ
@given(chunks=st.lists(st.binary(max_size=120), max_size=4))
def test_fix_framer_and_parser_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    framer = FixFramer()
    for chunk in chunks:
        for frame in framer.feed(chunk):
            if frame.problem is None:
                try:
                    parse(frame.raw)
                except ValueError:
                    pass


@FUZZ
@given(rng=st.randoms(use_true_random=False))
def test_fix_framer_and_parser_on_mutated_messages(rng: random.Random) -> None:
    fuzzing.fix_frame(rng)


def test_fix_session_and_application_on_mutated_messages(tmp_path: Path) -> None:
    @FUZZ
    @given(rng=st.randoms(use_true_random=False))
    def run(rng: random.Random) -> None:
        for _ in range(3):
            rig.case(rng)

    rig = fuzzing.FixRig(tmp_path)
    try:
        run()
    finally:
        rig.close()
