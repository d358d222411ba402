"""The FIX market data connector without a venue: parsing W/X, the restart state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import simplefix

from connectors.fix.marketdata import FixMarketDataFeed, market_data_request, parse_market_data
from connectors.fix.settings import FixSettings
from connectors.registry import Connectors
from operators.marketdata import MdEntry
from schemas import DeadLetter, MarketData, decode
from tradeflow.settings import load_settings


def fix(*pairs: tuple[int, str]) -> simplefix.FixMessage:
    msg = simplefix.FixMessage()
    for tag, value in pairs:
        msg.append_pair(tag, value)
    return msg


def trade(seq: int, px: str = "101.5", *, symbol: str | None = None) -> list[tuple[int, str]]:
    out = [(279, "0")] if symbol else []
    out += [(269, "2")] + ([(55, symbol)] if symbol else [])
    return out + [(270, px), (271, "300"), (272, "20260302"), (273, "14:30:01.250"), (83, str(seq))]


def test_snapshot_entries_are_parsed_with_rptseq_decimal_and_utc_time() -> None:
    msg = fix((35, "W"), (262, "R1"), (55, "AAPL"), (268, "2"), *trade(7), *trade(8, "102"))
    parsed = parse_market_data(msg)
    assert parsed.symbol == "AAPL"
    assert [(e.symbol, e.seq, e.price) for e in parsed.entries] == [
        ("AAPL", 7, Decimal("101.5")), ("AAPL", 8, Decimal("102"))]
    assert parsed.entries[0].ts == datetime(2026, 3, 2, 14, 30, 1, 250000, tzinfo=UTC)
    assert parsed.rejects == []


def test_incremental_entries_carry_their_own_symbols() -> None:
    parsed = parse_market_data(fix((35, "X"), (262, "R1"), (268, "2"),
                                   *trade(3, symbol="AAPL"), *trade(9, symbol="MSFT")))
    assert [(e.symbol, e.seq) for e in parsed.entries] == [("AAPL", 3), ("MSFT", 9)]


def test_entry_without_rptseq_or_with_a_bad_price_is_a_reject_not_a_crash() -> None:
    no_seq = [(279, "0"), (269, "2"), (55, "AAPL"), (270, "1"), (271, "1"), (272, "20260302"),
              (273, "14:30:01")]
    bad_px = trade(4, "abc", symbol="AAPL")
    parsed = parse_market_data(fix((35, "X"), (268, "3"), *no_seq, *bad_px, *trade(5, symbol="AAPL")))
    assert [e.seq for e in parsed.entries] == [5]
    reasons = [r.reason for r in parsed.rejects]
    assert len(reasons) == 2
    assert "RptSeq" in reasons[0]
    assert "decimal" in reasons[1]


def test_market_data_request_lists_every_symbol() -> None:
    msg = market_data_request("R9", ["AAPL", "MSFT"], subscribe=True)
    assert msg.msg_type == "V"
    assert ("263", "1") in [(str(t), v) for t, v in msg.fields]
    assert [v for t, v in msg.fields if t == 55] == ["AAPL", "MSFT"]


def _feed(tmp_path: Path, conn: Connectors) -> FixMarketDataFeed:
    settings = FixSettings(port=1, sender_comp_id="TRADEFLOWMD", store_dir=tmp_path / "session", fsync=False)
    return FixMarketDataFeed(settings, ["AAPL"], conn.writer("market_data"), conn.writer("dead_letters"),
                             tmp_path / "state.json", market_data_reader=conn.reader("market_data"))


def test_restart_takes_ticks_written_after_the_last_saved_state(tmp_path: Path) -> None:
    conn = Connectors(load_settings(data_dir=tmp_path / "data", profile="local"))
    feed = _feed(tmp_path, conn)
    t0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)

    def snap(*seqs: int) -> list[MdEntry]:
        return [MdEntry("AAPL", s, Decimal(100), Decimal(1), t0) for s in seqs]

    feed.engine.on_logon(t0)
    out = feed.engine.on_snapshot("AAPL", snap(1, 2), t0)
    feed.handler.outputs.put(out)
    assert feed.pump() == 2
    written = [decode(MarketData, r.value) for r in conn.scan("market_data")]
    assert all(t.entered_at is not None and t.entered_at > t0 for t in written)  # stamped by the feed
    assert json.loads(feed.state_path.read_text())["symbols"]["AAPL"]["seq"] == 2
    # the process dies after writing seq 3 but before saving the state
    conn.writer("market_data").write([MarketData(symbol="AAPL", ts=t0, price=Decimal(100), volume=Decimal(1),
                                                 wm=t0, seq=3)])
    again = _feed(tmp_path, conn)
    assert again.engine.last_seq("AAPL") == 3
    assert again.stats.skipped_on_restore == 1
    again.engine.on_logon(t0)
    out = again.engine.on_snapshot("AAPL", snap(1, 2, 3, 4), t0)
    assert [t.seq for t in out.ticks] == [4]


def test_rejects_are_written_to_dead_letters(tmp_path: Path) -> None:
    conn = Connectors(load_settings(data_dir=tmp_path / "data", profile="local"))
    feed = _feed(tmp_path, conn)
    feed.handler.outputs.put(
        feed.handler._on_app(fix((35, "Y"), (262, "R1"), (58, "unknown symbol ZZZ")), datetime.now(UTC))
    )
    feed.pump()
    dead = [decode(DeadLetter, r.value) for r in conn.scan("dead_letters")]
    assert [d.source_stream for d in dead] == ["fix-md"]
    assert "unknown symbol ZZZ" in dead[0].reason


def test_a_message_that_makes_the_engine_raise_goes_to_dead_letters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = Connectors(load_settings(data_dir=tmp_path / "data", profile="local"))
    feed = _feed(tmp_path, conn)

    def boom(*_: object) -> None:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(feed.engine, "on_incremental", boom)
    out = feed.handler._on_app(fix((35, "X"), (268, "1"), *trade(1, symbol="AAPL")), datetime.now(UTC))
    assert out.ticks == []
    assert "engine bug" in out.rejects[0].reason
