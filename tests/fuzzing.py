"""Hostile-input generators and fuzz targets shared by tests/unit/test_fuzz.py and bench/fuzz.py.

Every target takes a ``random.Random`` (hypothesis hands one in the test; the bench
seeds its own) and runs one case. A target returns normally when the input was used
or refused the documented way; anything else it raises is a crash:

- ``decode_bytes`` / ``decode_json``: ``schemas.decode`` of every stream model, from
  arbitrary bytes and from a valid record of that model with fields mutated, dropped
  or added. Documented refusal: ``DecodeError``. A record that *is* accepted must
  encode and decode back to itself (or it could not be written downstream).
- ``fix_frame``: ``FixFramer.feed`` on arbitrary bytes and mutated messages, then
  ``codec.parse`` of every frame that passed the checks. Documented refusal: the
  frame's ``problem``, and ``ValueError`` from ``parse``.
- ``fix_session``: a logged-on ``FixSession.receive`` of mutated, correctly framed
  messages (sequence numbers mostly right, so they reach dispatch) and the
  ``FixApplication`` turning what comes out into fills. Documented refusal: none
  raises; a bad message is an event, a Reject, a Logout or a dropped report.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import simplefix

from connectors.fix.application import FixApplication
from connectors.fix.codec import FixFramer, checksum, parse
from connectors.fix.session import FixSession, SessionState
from connectors.fix.settings import FixSettings
from connectors.fix.store import OrderJournal, SessionStore
from schemas import STREAMS, DecodeError, OrderType, Side, ValidatedOrder, decode, encode

TS = "2024-03-01T14:30:00.000Z"

SAMPLES: dict[str, dict[str, Any]] = {
    "MarketData": {"symbol": "AAPL", "ts": TS, "price": "101.25", "volume": "300", "wm": TS},
    "SmaWide": {"symbol": "AAPL", "ts": TS, "price": 101.25, "volume": 300.0, "vwap": 101.0,
                "seq": 7, "sma_5": 100.5, "rsi_14": None},
    "StrategyConfig": {"strategy_id": "sma-1", "strategy": "sma_cross",
                       "params": {"fast": 5, "slow": 20}, "symbols": ["AAPL"], "account": "ACC-1",
                       "qty": "10", "order_type": "LIMIT", "limit_offset_bps": "5", "ts": TS},
    "TradeSignal": {"signal_id": "sma-1:AAPL:7", "strategy_id": "sma-1", "symbol": "AAPL",
                    "account": "ACC-1", "side": "BUY", "qty": "10", "order_type": "LIMIT",
                    "limit_px": "101.2", "ts": TS, "reason": "cross", "indicators": {"sma_5": 1.5},
                    "ref_px": "101.25"},
    "Account": {"account": "ACC-1", "cash": "100000", "max_order_notional": "50000",
                "max_open_orders": 10, "price_collar_bps": "100", "ts": TS},
    "SymbolLimit": {"account": "ACC-1", "symbol": "AAPL", "max_position_qty": "1000", "ts": TS},
    "Instrument": {"symbol": "AAPL", "tick_size": "0.01", "lot_size": "1", "min_qty": "1",
                   "max_qty": "10000", "min_notional": "10", "price_precision": 2, "qty_precision": 0,
                   "status": "HALTED", "price_band_pct": "15", "ts": TS},
    "ValidatedOrder": {"order_id": "O-0123456789abcdef0123", "account": "ACC-1", "symbol": "AAPL",
                       "side": "SELL", "qty": "10", "order_type": "LIMIT", "limit_px": "101.2",
                       "time_in_force": "IOC", "signal_id": "sma-1:AAPL:7", "strategy_id": "sma-1",
                       "ts": TS},
    "VenueFill": {"order_id": "O-0123456789abcdef0123", "venue": "paper",
                  "exec_id": "O-0123456789abcdef0123-2", "status": "PARTIAL", "account": "ACC-1",
                  "symbol": "AAPL", "side": "BUY", "last_qty": "4", "last_px": "101.2",
                  "cum_qty": "4", "leaves_qty": "6", "avg_px": "101.2", "fee": "0.01", "ts": TS},
    "OrderState": {"order_id": "O-1", "account": "ACC-1", "symbol": "AAPL", "side": "BUY",
                   "qty": "10", "order_type": "MARKET", "status": "NEW", "ts": TS},
    "PositionState": {"account": "ACC-1", "symbol": "AAPL", "net_qty": "-4", "avg_px": "101.2",
                      "realized_pnl": "1.5", "unrealized_pnl": "-0.25", "last_mark": "101.3",
                      "market_value": "-405.2", "ts": TS},
    "PortfolioState": {"account": "ACC-1", "cash": "1", "equity": "2", "realized_pnl": "0",
                       "unrealized_pnl": "0", "gross_exposure": "0", "net_exposure": "0",
                       "margin_used": "0", "leverage": "0", "open_orders": 0, "peak_equity": "2",
                       "drawdown": "0", "day_start_equity": "2", "ts": TS},
    "RiskEvent": {"event_id": "E-1a2b3c", "account": "ACC-1", "rule": "KILL_SWITCH",
                  "severity": "CRITICAL", "message": "halted", "values": {"a": "1"}, "ts": TS},
    "RiskDecision": {"signal_id": "sma-1:AAPL:7", "account": "ACC-1", "decision": "FAIL",
                     "rules": [{"rule": "MAX_ORDER_NOTIONAL", "passed": False, "value": "2",
                                "limit": "1", "message": "too big"}],
                     "input_offsets": {"trade_signals": 3}, "latency_us": 12.5, "ts": TS},
    "ExecutionMetrics": {"venue": "paper", "window_s": 60.0, "orders_sent": 3, "ts": TS},
    "DeadLetter": {"source_stream": "market_data", "partition": 0, "offset": 5, "reason": "bad",
                   "payload": "{", "job": "A", "ts": TS},
    "Control": {"scope": "account:ACC-1", "state": "HALTED", "reason": "ops", "ts": TS},
    "Route": {"account": "*", "symbol": "AAPL", "venue": "fix-1", "ts": TS},
    "Venue": {"venue": "fix-1", "state": "UP", "adapter": "fix", "ts": TS},
    "JournalEntry": {"account": "ACC-1", "seq": 3, "kind": "SIGNAL", "stream": "trade_signals",
                     "partition": 0, "offset": 9, "record": {"signal_id": "sma-1:AAPL:7"},
                     "mark": {"symbol": "AAPL", "price": "101.25", "ts": TS, "partition": 0,
                              "offset": 4}, "ts": TS},
    "Progress": {"producer": "execution:paper", "stream": "venue_fills", "ends": {"0": 12, "1": 7},
                 "symbols": {"AAPL": TS}, "orders": {"ACC-1": 4}, "ts": TS},
}

HOSTILE_NUMBERS = [
    "1e30", "-1e30", "1e400", "-1e-400", "NaN", "Infinity", "-Infinity", "0", "-0.0", "1e-30",
    "9999999999.99999999", "10000000000", "0.000000001", "1.000000000000000000000000000001",
    "123456789012345678901234567890", "18446744073709551616", "-1", "1E+5", "0.1", "2",
    "1" * 5000, "1e999999999", "-1E+999999999", "0E+99999999", "1E-1000000000000", "1.000000000000",
]
HOSTILE_STRINGS = [
    "", " ", "\x00", "abc\x0149=EVIL", "A\nB", "É", "\ud800", "\U0001f600", "A|B", "X" * 65,
    "Y" * 161, "Z" * 3000, "BUY", "SELL", "LIMIT", "MARKET", "NEW", "FILLED", "HALTED", "global",
    "account:", "strategy:x", "1e30", "NaN", "2024-03-01T14:30:00", "2024-03-01T14:30:00+14:00",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00", "9999-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "sma_5", "rsi_0", "_v",
]


def _random_text(rng: random.Random, n: int = 12) -> str:
    alphabet = rng.choice(["ascii", "control", "unicode"])
    if alphabet == "ascii":
        return "".join(chr(rng.randint(32, 126)) for _ in range(rng.randint(0, n)))
    if alphabet == "control":
        return "".join(chr(rng.randint(0, 40)) for _ in range(rng.randint(0, n)))
    return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, n)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Return a JSON-able hostile value (numbers come back as ``_Raw`` number text)."""
    pick = rng.randrange(12 if depth < 3 else 9)
    if pick == 0:
        return _Raw(rng.choice(HOSTILE_NUMBERS))
    if pick == 1:
        return rng.choice(HOSTILE_STRINGS)
    if pick == 2:
        return _random_text(rng)
    if pick == 3:
        return rng.choice([None, True, False])
    if pick == 4:
        return rng.randint(-(2**70), 2**70)
    if pick == 5:
        return rng.uniform(-1e12, 1e12)
    if pick == 6:
        return str(Decimal(rng.randint(-(10**20), 10**20)).scaleb(-rng.randint(0, 30)))
    if pick == 7:
        return rng.choice(HOSTILE_NUMBERS)  # a number as a string
    if pick == 8:
        return (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(-1e10, 1e10))).isoformat()
    if pick == 9:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if pick == 10:
        return {_random_text(rng, 6): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return "[" * 60 + "]" * 60


class _Raw(str):
    """Number text written into the JSON as is (``1e400``, ``NaN``, 5000 digits...)."""


def _dump(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


MODELS = {spec.model.__name__: spec.model for spec in STREAMS.values()}


def plausible_json(rng: random.Random, name: str) -> str:
    """Return a valid record of model ``name`` as JSON with a few fields made hostile."""
    data: dict[str, Any] = dict(SAMPLES[name])
    fields = list(MODELS[name].model_fields)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(10)
        if action < 6:
            data[rng.choice(fields)] = random_value(rng)
        elif action < 7 and data:
            data.pop(rng.choice(list(data)))
        elif action < 8:
            data[rng.choice(["_v", _random_text(rng, 8), "sma_5", "x"])] = random_value(rng)
        elif action < 9:
            data[rng.choice(fields)] = _Raw(rng.choice(HOSTILE_NUMBERS))
        # else: leave the record valid
    text = _dump(data)
    if rng.random() < 0.05:  # truncate or splice
        cut = rng.randrange(len(text) + 1)
        text = text[:cut] + rng.choice(["", "}", "\x00", ",", '"'])
    return text


class Crash(AssertionError):
    """A target raised something other than its documented refusal."""


def _roundtrip(model: Any, record: Any) -> None:
    try:
        again = decode(model, encode(record))
    except Exception as exc:
        raise Crash(f"{model.__name__} accepted a record it cannot read back: {exc!r}") from exc
    if again != record:
        raise Crash(f"{model.__name__} record changed on a round trip: {record!r} -> {again!r}")


def decode_bytes(rng: random.Random) -> str:
    """Decode random bytes as a random stream's model."""
    model = rng.choice(list(MODELS.values()))
    n = rng.choice([0, 1, 8, 64, 512])
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, n)))
    if rng.random() < 0.3:
        raw = b'{"_v":1,' + raw
    try:
        record = decode(model, raw)
    except DecodeError:
        return "refused"
    _roundtrip(model, record)
    return "accepted"


def decode_json(rng: random.Random) -> str:
    """Decode a structurally plausible, mutated record of a random stream's model."""
    name = rng.choice(list(SAMPLES))
    text = plausible_json(rng, name)
    raw: bytes | str = text if rng.random() < 0.5 else text.encode("utf-8", "surrogatepass")
    try:
        record = decode(MODELS[name], raw)
    except DecodeError:
        return "refused"
    _roundtrip(MODELS[name], record)
    return "accepted"


# -- FIX -----------------------------------------------------------------------------------

FIX_TAGS = [1, 6, 7, 11, 14, 16, 17, 31, 32, 34, 35, 36, 37, 38, 39, 41, 43, 44, 45, 49, 52, 54,
            55, 56, 58, 60, 98, 102, 103, 108, 112, 122, 123, 141, 150, 151, 371, 372, 373, 379,
            380, 434, 0, -1, 99999999999]
FIX_VALUES = [b"", b"0", b"1", b"-5", b"Y", b"N", b"8", b"2", b"4", b"A", b"5", b"F", b"j", b"9",
              b"1e30", b"NaN", b"99999999999999999999", b"20240301-14:30:00.000", b"garbage",
              b"O-1", b"O-1-C1", b"x\x02y", b"\xff\xfe", b"1.000000000000000000000001", b"-0",
              b"VENUE", b"TRADEFLOW", b"FIX.4.4", b"=", b"10=000"]
FIX_BASES: list[list[tuple[int, bytes]]] = [
    [(35, b"8"), (37, b"V1"), (11, b"O-1"), (17, b"V1-1"), (150, b"F"), (39, b"1"), (55, b"AAPL"),
     (54, b"1"), (38, b"100"), (32, b"40"), (31, b"10.5"), (14, b"40"), (151, b"60"), (6, b"10.5"),
     (60, b"20240301-14:30:00.000")],
    [(35, b"8"), (37, b"V1"), (11, b"O-1"), (17, b"V1-0"), (150, b"0"), (39, b"0"), (55, b"AAPL"),
     (54, b"1"), (14, b"0"), (151, b"100"), (6, b"0")],
    [(35, b"9"), (37, b"V1"), (11, b"O-1-C1"), (41, b"O-1"), (39, b"0"), (434, b"1"), (102, b"1")],
    [(35, b"j"), (45, b"3"), (372, b"D"), (379, b"O-1"), (380, b"3"), (58, b"no")],
    [(35, b"3"), (45, b"2"), (371, b"55"), (372, b"D"), (373, b"5"), (58, b"bad")],
    [(35, b"0")],
    [(35, b"1"), (112, b"T1")],
    [(35, b"2"), (7, b"1"), (16, b"0")],
    [(35, b"4"), (123, b"Y"), (36, b"9")],
    [(35, b"4"), (36, b"2")],
    [(35, b"5"), (58, b"bye")],
    [(35, b"A"), (98, b"0"), (108, b"30")],
]


def fix_message(rng: random.Random, seq: int, now: datetime) -> bytes:
    """Return one correctly framed FIX message from the venue, mutated."""
    body = [list(p) for p in rng.choice(FIX_BASES)]
    header = [[34, str(seq).encode()], [49, b"VENUE"], [56, b"TRADEFLOW"],
              [52, now.strftime("%Y%m%d-%H:%M:%S.000").encode()]]
    if rng.random() < 0.2:
        header.append([43, b"Y"])
    fields = header + body
    for field in fields:  # fresh exec ids, so reports are not all dropped as repeats
        if field[0] == 17:
            field[1] = b"V1-%d" % rng.randrange(10_000)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        action = rng.randrange(4)
        if action == 0:
            rng.choice(fields)[1] = rng.choice(FIX_VALUES)
        elif action == 1:
            rng.choice(fields)[1] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
        elif action == 2 and len(fields) > 1:
            fields.pop(rng.randrange(len(fields)))
        else:
            fields.insert(rng.randrange(len(fields) + 1), [rng.choice(FIX_TAGS), rng.choice(FIX_VALUES)])
    body = b"".join(str(tag).encode() + b"=" + value + b"\x01" for tag, value in fields)
    begin = b"FIX.4.4" if rng.random() > 0.02 else b"FIX.9"
    head = b"8=" + begin + b"\x019=" + str(len(body)).encode() + b"\x01"
    return head + body + b"10=%03d\x01" % checksum(head + body)


def fix_frame(rng: random.Random) -> str:
    """Feed the framer random bytes or a mutated (maybe corrupted) message; parse frames."""
    framer = FixFramer()
    if rng.random() < 0.3:
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    else:
        data = fix_message(rng, rng.randint(-5, 50), datetime(2024, 3, 1, 14, 30, tzinfo=UTC))
        if rng.random() < 0.5:  # corrupt a byte, or cut it
            i = rng.randrange(len(data))
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :] if rng.random() < 0.7 else data[:i]
    out = "frames"
    for piece in (data[: len(data) // 2], data[len(data) // 2 :]):
        for frame in framer.feed(piece):
            if frame.problem is None:
                try:
                    parse(frame.raw)
                except ValueError:
                    out = "refused"
            else:
                out = "refused"
    return out


class FixRig:
    """A logged-on FIX session and its application, with one order in flight."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._n = 0
        self.now = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
        self.open()

    def clock(self) -> datetime:
        return self.now

    def open(self) -> None:
        self._n += 1
        directory = self._root / f"s{self._n}"
        settings = FixSettings(sender_comp_id="TRADEFLOW", target_comp_id="VENUE", heartbeat_s=30,
                               store_dir=directory, fsync=False)
        self.store = SessionStore(settings.session_dir, fsync=False)
        self.journal = OrderJournal(settings.session_dir, fsync=False)
        self.session = FixSession(settings, self.store, self.clock)
        self.app = FixApplication("fixvenue", self.journal, self.clock)
        self.session.connected()
        logon = simplefix.FixMessage()
        for tag, value in [(8, "FIX.4.4"), (35, "A"), (34, 1), (49, "VENUE"), (56, "TRADEFLOW"),
                           (52, self.now.strftime("%Y%m%d-%H:%M:%S.000")), (98, "0"), (108, "30")]:
            logon.append_pair(tag, value)
        self.session.receive(bytes(logon.encode()))
        assert self.session.state is SessionState.ACTIVE
        order = ValidatedOrder(order_id="O-1", account="ACC-1", symbol="AAPL", side=Side.BUY,
                               qty=Decimal(100), order_type=OrderType.LIMIT, limit_px=Decimal(11),
                               ts=self.now)
        for message in self.app.new_order(order).messages:
            self.session.send_app(message)

    def close(self) -> None:
        self.store.close()
        self.journal.close()

    def case(self, rng: random.Random) -> str:
        if self.session.state is not SessionState.ACTIVE:
            self.close()
            self.open()
        self.now += timedelta(milliseconds=rng.randint(0, 2000))
        expected = self.session.next_target_seq
        seq = expected if rng.random() < 0.8 else rng.choice([expected + 1, expected - 1, 1, 10**12])
        raw = fix_message(rng, seq, self.now)
        out = self.session.receive(raw)
        fills = [f for event in out.events for f in self.app.on_event(event)]
        fills += [f for message in out.app_messages for f in self.app.on_message(message)]
        if rng.random() < 0.05:
            out = out.merge(self.session.tick())
        if out.disconnect:
            self.session.disconnected()  # as the initiator does; the next case logs on again
            return "disconnected"
        if fills:
            return "reports"
        return "events" if out.events else "quiet"

