"""The FIX parse fast path makes exactly what simplefix's parser makes, or defers to it."""

from __future__ import annotations

import random

import pytest
import simplefix

from connectors.fix.codec import Message, _parse_slowly, parse, text

GOOD = (
    b"8=FIX.4.4\x019=120\x0135=8\x0149=VENUE\x0156=TRADEFLOW\x0134=7\x0152=20261207-01:02:03.456\x01"
    b"37=V1\x0111=O1\x0117=E1\x01150=0\x0139=0\x0155=AAPL\x0154=1\x0138=10\x0114=0\x016=0\x01"
    b"58=a=b\x0110=123\x01"
)


def outcome(fn: object, raw: bytes) -> tuple[str, object]:
    try:
        msg = fn(raw)  # type: ignore[operator]
    except ValueError as exc:
        return "error", str(exc)
    return "ok", list(msg.pairs)


def test_a_plain_frame_takes_the_fast_path_with_simplefix_pairs() -> None:
    msg = parse(GOOD)
    assert isinstance(msg, Message)
    assert msg.pairs == _parse_slowly(GOOD).pairs
    assert text(msg, 58) == "a=b"
    assert msg.get(35) == msg.get("35") == msg.get(b"35") == b"8"
    assert msg.get(999) is None


def test_the_index_follows_changes() -> None:
    msg = parse(GOOD)
    msg.remove(11)
    assert msg.get(11) is None
    msg.append_pair(11, "O2")
    assert msg.get(11) == b"O2"
    assert msg.get(11, 1) == b"O2"
    assert msg.get(55, 2) is None


@pytest.mark.parametrize("raw", [
    GOOD.replace(b"\x0158=a=b", b"\x0158="),          # empty value
    GOOD.replace(b"\x0155=", b"\x01055="),            # leading zero in a tag
    GOOD.replace(b"\x0155=", b"\x015x="),             # tag not a number
    GOOD.replace(b"\x0155=AAPL", b"\x0155AAPL"),      # no '='
    GOOD[:-1],                                       # no SOH at the end
    GOOD.replace(b"\x0158=a=b", b"\x0195=3\x0196=a\x01b"),  # raw data holding SOH
    b"35=8\x01" + GOOD,                              # junk before BeginString
    GOOD.replace(b"\x0110=123", b"\x0110=123\x0111=X"),  # a field after CheckSum
    GOOD.replace(b"\x0158=a=b", b"\x0110=000\x0158=x"),  # CheckSum in the middle
])
def test_anything_odd_gives_what_simplefix_gives(raw: bytes) -> None:
    assert outcome(parse, raw) == outcome(_parse_slowly, raw)


def test_random_mutations_give_what_simplefix_gives() -> None:
    rng = random.Random(20)  # noqa: S311 - reproducible inputs
    alphabet = b"=\x0108FIX.14359a "
    for _ in range(3000):
        raw = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.4:
                raw[at] = rng.choice(alphabet)
            elif op < 0.7:
                del raw[at]
            else:
                raw.insert(at, rng.choice(alphabet))
        assert outcome(parse, bytes(raw)) == outcome(_parse_slowly, bytes(raw)), bytes(raw)


def test_pairs_compare_with_a_simplefix_message() -> None:
    reference = simplefix.FixParser()
    reference.append_buffer(GOOD)
    assert parse(GOOD) == reference.get_message()


def test_parse_time_matches_strptime() -> None:
    from connectors.fix.codec import parse_time
    from connectors.fix.codec import parse_time_strptime as slow

    samples = ["20261207-01:02:03", "20261207-01:02:03.456", "20261207-01:02:03.456789",
               "20261307-01:02:03.456", "20260230-01:02:03", "20261207-24:00:00", "20261207-01:02:60",
               "2026127-01:02:03", "20261207-01:02:03.4", "20261207 01:02:03", "٢٠٢٦1207-01:02:03",
               "20261207-01:02:03.45a", "+2026120-01:02:03"]
    rng = random.Random(3)  # noqa: S311 - reproducible inputs
    for _ in range(2000):
        base = list(rng.choice(samples))
        base[rng.randrange(len(base))] = rng.choice("0123456789-:. x")
        samples.append("".join(base))
    for value in samples:
        assert parse_time(value) == slow(value), value


def test_encode_writes_what_simplefix_writes() -> None:
    from connectors.fix.codec import encode

    rng = random.Random(7)  # noqa: S311 - reproducible inputs
    printable = [chr(c) for c in range(0x20, 0x7F)]
    for _ in range(2000):
        pairs = [(8, "FIX.4.4"), (35, rng.choice(["D", "8", "0", "AE"]))]
        for _ in range(rng.randint(0, 15)):
            tag = rng.choice([1, 9, 10, 11, 34, 35, 38, 52, 55, 58, 8, 10_000])
            pairs.append((tag, "".join(rng.choice(printable) for _ in range(rng.randint(1, 12)))))
        rng.shuffle(pairs)
        msg = simplefix.FixMessage()
        for tag, value in pairs:
            msg.append_pair(tag, value)
        assert encode(pairs) == bytes(msg.encode()), pairs
