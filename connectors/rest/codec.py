"""JSON bodies of the venue's REST API, to and from the project's records.

``entry_body`` builds the POST of a journaled order; ``parse_execution`` turns one
execution object (from a POST answer, a status query, the gap query or the user stream)
into a ``VenueFill``, raising ``CodecError`` on anything malformed: the adapter counts
and logs it, never lets it through.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from connectors.fix.store import OrderEntry
from schemas import ExecStatus, OrderType, Side, VenueFill


class CodecError(ValueError):
    """A venue message that does not have the expected shape."""


_EXEC_STATUS = {
    ("NEW", "NEW"): ExecStatus.NEW,
    ("TRADE", "PARTIALLY_FILLED"): ExecStatus.PARTIAL,
    ("TRADE", "FILLED"): ExecStatus.FILLED,
    ("CANCELED", "CANCELED"): ExecStatus.CANCELED,
    ("REJECTED", "REJECTED"): ExecStatus.REJECTED,
}


def entry_body(entry: OrderEntry) -> bytes:
    """Return the JSON body of ``POST /api/v1/orders`` for a journaled order.

    Built from the journal entry, so an order resent after a restart carries exactly
    what went the first time (its client order id is the ClOrdID the journal holds).
    """
    body: dict[str, Any] = {
        "clientOrderId": entry.cl_ord_id,
        "symbol": entry.symbol,
        "side": entry.side,
        "type": entry.order_type,
        "qty": entry.qty,
        "timeInForce": entry.tif,
        "account": entry.account,
    }
    if entry.order_type == OrderType.LIMIT.value and entry.limit_px is not None:
        body["price"] = entry.limit_px
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes | str) -> dict[str, Any]:
    """Return a JSON object, or raise ``CodecError``."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CodecError("not a JSON object")
    return value


def _dec(e: dict[str, Any], name: str) -> Decimal:
    try:
        value = Decimal(str(e.get(name, "0")))
    except InvalidOperation:
        raise CodecError(f"{name} is not a decimal: {e.get(name)!r}") from None
    if not value.is_finite() or value < 0:
        raise CodecError(f"{name} must be a finite, non-negative decimal: {value}")
    return value


def _ts(e: dict[str, Any]) -> datetime:
    raw = e.get("ts")
    if not isinstance(raw, str):
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise CodecError(f"ts is not ISO-8601: {raw!r}") from None
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def seq_of(e: dict[str, Any]) -> int:
    """Return an execution's number, or raise ``CodecError``."""
    seq = e.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise CodecError(f"seq must be a positive integer: {seq!r}")
    return seq


def parse_execution(
    e: dict[str, Any], *, venue: str, order_id: str, account: str
) -> VenueFill:
    """Turn one execution object into a ``VenueFill`` of our order ``order_id``."""
    exec_type, status = e.get("execType"), e.get("status")
    exec_status = _EXEC_STATUS.get((str(exec_type), str(status)))
    if exec_status is None:
        raise CodecError(f"unknown execType/status {exec_type!r}/{status!r}")
    exec_id = e.get("execId")
    if not isinstance(exec_id, str) or not exec_id:
        raise CodecError("execId missing")
    try:
        side = Side(str(e.get("side")))
    except ValueError:
        raise CodecError(f"bad side {e.get('side')!r}") from None
    try:
        return VenueFill(
            order_id=order_id,
            venue=venue,
            exec_id=exec_id,
            status=exec_status,
            account=account,
            symbol=str(e.get("symbol", "")),
            side=side,
            last_qty=_dec(e, "lastQty"),
            last_px=_dec(e, "lastPx"),
            cum_qty=_dec(e, "cumQty"),
            leaves_qty=_dec(e, "leavesQty"),
            avg_px=_dec(e, "avgPx"),
            venue_order_id=e.get("orderId") if isinstance(e.get("orderId"), str) else None,
            reason=str(e.get("reason") or "")[:400],
            ts=_ts(e),
        )
    except ValidationError as exc:
        raise CodecError(f"execution does not make a VenueFill: {exc.errors()[:2]}") from None
