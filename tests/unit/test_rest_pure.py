"""The pure parts of the REST venue adapter: signing, the rate limiter, gap detection, the codec."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest
from pydantic import SecretStr

from connectors.fix.store import OrderEntry
from connectors.rest.codec import CodecError, decode, entry_body, parse_execution, seq_of
from connectors.rest.ratelimit import DEFAULT_RETRY_AFTER_S, MAX_RETRY_AFTER_S, TokenBucket, retry_after_s
from connectors.rest.sequence import SequenceTracker, Step
from connectors.rest.settings import RestSettings
from connectors.rest.signing import signature, signed_headers, verify
from schemas import ExecStatus

SECRET = SecretStr("s3cret")


# -- signing ---------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_method_path_and_body() -> None:
    want = hmac.new(b"s3cret", b'1700000000000\nPOST\n/api/v1/orders\n{"a":1}', hashlib.sha256).hexdigest()
    assert signature(SECRET, 1700000000000, "post", "/api/v1/orders", '{"a":1}') == want


def test_signed_headers_verify_and_any_change_breaks_them() -> None:
    h = signed_headers("key", SECRET, 1, "GET", "/api/v1/executions?after=3")
    assert h["X-API-Key"] == "key"
    assert verify(SECRET, h, "GET", "/api/v1/executions?after=3", b"")
    assert not verify(SECRET, h, "GET", "/api/v1/executions?after=4", b"")
    assert not verify(SECRET, h, "DELETE", "/api/v1/executions?after=3", b"")
    assert not verify(SecretStr("other"), h, "GET", "/api/v1/executions?after=3", b"")
    assert not verify(SECRET, {**h, "X-Timestamp": "2"}, "GET", "/api/v1/executions?after=3", b"")
    assert not verify(SECRET, {"X-Timestamp": "x"}, "GET", "/", b"")


def test_the_secret_never_shows_in_settings_reprs() -> None:
    s = RestSettings(secret=SecretStr("hunter2"))
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())


def test_secret_from_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert RestSettings(secret_file=f).secret == SecretStr("from-file")


# -- rate limiter ----------------------------------------------------------------------


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    b = TokenBucket(rate=10, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.delay(0.0) == pytest.approx(0.1)
    assert not b.take(0.05)
    assert b.take(0.1)


def test_a_429_blocks_until_retry_after_whatever_the_tokens() -> None:
    b = TokenBucket(rate=1000, burst=100, now=0.0)
    assert b.take(0.0)
    b.penalize(2.0, now=1.0)
    assert b.delay(1.0) == pytest.approx(2.0)
    assert not b.take(2.9)
    assert b.take(3.0 + 0.002)  # after Retry-After, and one token accrued
    assert b.penalties == 1


def test_retry_after_seconds_dates_and_garbage() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("0.5") == 0.5
    assert retry_after_s(None) == DEFAULT_RETRY_AFTER_S
    assert retry_after_s("soon") == DEFAULT_RETRY_AFTER_S
    assert retry_after_s("nan") == DEFAULT_RETRY_AFTER_S
    assert retry_after_s("-4") == 0.0
    assert retry_after_s("86400") == MAX_RETRY_AFTER_S
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert retry_after_s(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0


# -- gap detection ---------------------------------------------------------------------


def test_sequence_tracker_repeat_next_and_gap() -> None:
    t = SequenceTracker(last=4)
    assert t.offer(3).step is Step.REPEAT
    assert t.offer(4).step is Step.REPEAT
    assert t.offer(5).step is Step.NEXT
    gap = t.offer(8)
    assert (gap.step, gap.missing_from, gap.missing_to) == (Step.GAP, 5, 7)
    t.advance(8)
    assert t.last == 8
    assert t.gaps == 1
    assert t.repeats == 2
    t.advance(6)  # never backwards
    assert t.last == 8


def test_hello_above_the_cursor_is_a_gap_to_fetch() -> None:
    t = SequenceTracker(last=10)
    assert t.hello(10).step is Step.REPEAT
    assert t.hello(3).step is Step.REPEAT  # a venue behind us: nothing to fetch
    missed = t.hello(15)
    assert (missed.step, missed.missing_from, missed.missing_to) == (Step.GAP, 11, 15)


# -- codec -----------------------------------------------------------------------------


EXEC = {
    "seq": 3, "execId": "X-1-2", "clientOrderId": "O1", "orderId": "X-1", "execType": "TRADE",
    "status": "PARTIALLY_FILLED", "symbol": "AAPL", "side": "BUY", "qty": "10", "lastQty": "4",
    "lastPx": "101.5", "cumQty": "4", "leavesQty": "6", "avgPx": "101.5", "ts": "2026-01-05T14:30:00.123Z",
}


def test_an_execution_becomes_a_venue_fill_with_decimals_and_utc() -> None:
    fill = parse_execution(EXEC, venue="rest", order_id="O1", account="A")
    assert fill.status is ExecStatus.PARTIAL
    assert (fill.last_qty, fill.last_px, fill.cum_qty, fill.leaves_qty) == (
        Decimal(4), Decimal("101.5"), Decimal(4), Decimal(6))
    assert fill.ts == datetime(2026, 1, 5, 14, 30, 0, 123000, tzinfo=UTC)
    assert fill.venue_order_id == "X-1"
    assert fill.exec_id == "X-1-2"


@pytest.mark.parametrize("change", [
    {"execType": "WHAT"}, {"execId": None}, {"side": "LONG"}, {"lastQty": "lots"}, {"lastQty": "-1"},
    {"lastQty": "Infinity"}, {"ts": "yesterday"}, {"lastPx": "0"},
])
def test_malformed_executions_raise_codec_error_only(change: dict[str, object]) -> None:
    with pytest.raises(CodecError):
        parse_execution({**EXEC, **change}, venue="rest", order_id="O1", account="A")


@pytest.mark.parametrize("raw", [b"", b"[1]", b"{", b"\xff\xfe", b'"x"'])
def test_decode_takes_json_objects_only(raw: bytes) -> None:
    with pytest.raises(CodecError):
        decode(raw)


@pytest.mark.parametrize("seq", [None, 0, -1, "3", True, 1.5])
def test_seq_must_be_a_positive_integer(seq: object) -> None:
    with pytest.raises(CodecError):
        seq_of({"seq": seq})


def test_entry_body_carries_the_client_order_id_and_a_limit_price_only_for_limits() -> None:
    entry = OrderEntry(order_id="O1", cl_ord_id="O1", account="A", symbol="AAPL", side="SELL", qty="2.5",
                       order_type="LIMIT", limit_px="99.5", tif="DAY")
    assert json.loads(entry_body(entry)) == {
        "clientOrderId": "O1", "symbol": "AAPL", "side": "SELL", "type": "LIMIT", "qty": "2.5",
        "timeInForce": "DAY", "account": "A", "price": "99.5"}
    entry.order_type = "MARKET"
    assert "price" not in json.loads(entry_body(entry))
