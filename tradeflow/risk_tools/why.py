"""``tradeflow risk explain``: why a signal (or order) was passed or refused.

From the decision's record and the inputs its account's state reflected.
"""

from __future__ import annotations

import json

from connectors.registry import Connectors
from connectors.settings import Settings
from operators.limits import RiskToolError
from operators.replay import Logged
from schemas import (
    Account,
    Control,
    MarketData,
    OrderState,
    Record,
    RiskDecision,
    Scope,
    SymbolLimit,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    decode,
)
from tradeflow.risk_tools.logs import INPUT_STREAMS, read_at, read_logged, ts_text


def find_decisions(conn: Connectors, ident: str) -> list[Logged[RiskDecision]]:
    """Return the recorded decisions for a signal id or an order id."""
    needle = json.dumps(ident).encode()
    found = [d for d in read_logged(conn, "risk_decisions", RiskDecision, lambda raw: needle in raw)
             if ident in (d.record.signal_id, d.record.order_id)]
    if found:
        return found
    orders = read_logged(conn, "validated_orders", ValidatedOrder, lambda raw: needle in raw)
    signal_ids = {o.record.signal_id for o in orders if o.record.order_id == ident and o.record.signal_id}
    return [d for sid in sorted(signal_ids) for d in find_decisions(conn, sid)]


def explain(settings: Settings, ident: str) -> str:
    """Return why the signal (or order) ``ident`` was passed or refused, as text."""
    conn = Connectors(settings)
    decisions = find_decisions(conn, ident)
    if not decisions:
        raise RiskToolError(f"no risk decision for signal or order id {ident!r} in risk_decisions")
    return "\n\n".join(_explain_one(conn, d) for d in decisions)


def _explain_one(conn: Connectors, logged: Logged[RiskDecision]) -> str:
    d = logged.record
    offsets = d.input_offsets
    signal = _signal_of(conn, d)
    lines = [
        f"risk decision for signal {d.signal_id}: {d.decision.value}",
        f"  account      {d.account}",
        f"  decided      {ts_text(d.ts)} (event time of the signal) in {d.latency_us:.1f} us",
        f"  recorded at  risk_decisions:{logged.partition} offset {logged.offset}",
    ]
    if signal is not None:
        s = signal.record
        px = f" limit {s.limit_px}" if s.limit_px is not None else ""
        ref = f", ref px {s.ref_px}" if s.ref_px is not None else ""
        lines.append(f"  signal       {s.side.value} {s.qty} {s.symbol} {s.order_type.value}{px}, "
                     f"strategy {s.strategy_id}{ref} ({signal.where} offset {signal.offset})")
    lines.append(f"  order        {_order_line(conn, d)}")
    lines += _limits_lines(conn, d, signal.record.symbol if signal is not None else None)
    lines += _control_lines(conn, d, signal.record.strategy_id if signal is not None else None)
    failed = [r for r in d.rules if not r.passed]
    lines.append("")
    lines.append(f"rules ({len(failed)} failed, failed first)")
    width = max([len(r.value or "-") for r in d.rules] + [8]) + 2
    lwidth = max([len(r.limit or "-") for r in d.rules] + [8]) + 2
    for r in [*failed, *(r for r in d.rules if r.passed)]:
        lines.append(f"  {'FAIL' if not r.passed else 'pass'}  {r.rule:<22}value {r.value or '-':<{width}}"
                     f"limit {r.limit or '-':<{lwidth}}{r.message}")
    lines.append("")
    lines.append("inputs the account's state reflected (input_offsets: last record applied per partition)")
    symbol = signal.record.symbol if signal is not None else None
    for key in sorted(offsets):
        lines.append(f"  {key:<26}{offsets[key]:>10}   {_describe(conn, key, offsets[key], d, symbol)}")
    return "\n".join(lines)


def _signal_of(conn: Connectors, d: RiskDecision) -> Logged[TradeSignal] | None:
    for key, off in d.input_offsets.items():
        stream, _, part = key.partition(":")
        if stream != "trade_signals" or not part.isdigit():
            continue
        rec = read_at(conn, stream, int(part), off)
        if isinstance(rec, TradeSignal) and rec.signal_id == d.signal_id:
            return Logged(rec, stream, int(part), off)
    return None


def _order_line(conn: Connectors, d: RiskDecision) -> str:
    if d.order_id is None:
        return "none: the signal was refused"
    reader = conn.reader("orders")
    try:
        raw = reader.latest(d.order_id)
    except NotImplementedError:
        raw = None
    finally:
        reader.close()
    if raw is None:
        return f"{d.order_id} (validated; no state in the orders table yet)"
    state = decode(OrderState, raw)
    return (f"{d.order_id} now {state.status.value}: {state.cum_qty} of {state.qty} filled"
            f"{f' at avg {state.avg_px}' if state.cum_qty else ''} (orders table)")


def _limits_lines(conn: Connectors, d: RiskDecision, symbol: str | None) -> list[str]:
    lines = [f"  limits       version {d.limits_version} in force"]
    off = d.input_offsets.get("accounts:0")
    row = read_at(conn, "accounts", 0, off) if off is not None else None
    if isinstance(row, Account):
        limits = {k: v for k, v in row.model_dump().items()
                  if (k.startswith("max_") or k == "price_collar_bps") and v is not None}
        lines.append(f"               accounts row at offset {off}: status {row.status.value}, set by "
                     f"{row.updated_by} at {ts_text(row.ts)}")
        lines.append("               " + ", ".join(f"{k}={v}" for k, v in limits.items()))
    elif off is None:
        lines.append("               no accounts row had been applied (unknown account)")
    sl_off = d.input_offsets.get("symbol_limits:0")
    if symbol is not None and sl_off is not None:
        rows = [r for r in read_logged(conn, "symbol_limits", SymbolLimit)
                if r.offset <= sl_off and r.record.account == d.account and r.record.symbol == symbol]
        if rows:
            sl = rows[-1]
            lines.append(f"               {symbol}: max_position_qty={sl.record.max_position_qty}, "
                         f"max_position_notional={sl.record.max_position_notional} (version "
                         f"{sl.record.limits_version}, offset {sl.offset}, by {sl.record.updated_by})")
    return lines


def _control_lines(conn: Connectors, d: RiskDecision, strategy: str | None) -> list[str]:
    off = d.input_offsets.get("control:0")
    if off is None:
        return []
    scopes = {str(s) for s in Scope.of_order(d.account, strategy)}
    latest: dict[str, Logged[Control]] = {}
    for row in read_logged(conn, "control", Control):
        if row.offset <= off and row.record.scope in scopes:
            latest[row.record.scope] = row
    return [f"  control      {c.record.scope} {c.record.state.value}"
            f"{f' ({c.record.reason})' if c.record.reason else ''}, by {c.record.updated_by} at "
            f"{ts_text(c.record.ts)} (offset {c.offset})" for c in latest.values()]


def _describe(conn: Connectors, key: str, offset: int, d: RiskDecision, symbol: str | None) -> str:
    where, _, held = key.partition("@")
    stream, _, part = where.partition(":")
    if stream not in INPUT_STREAMS or not part.isdigit():
        return ""
    rec = read_at(conn, stream, int(part), offset)
    if rec is None:
        return "(not readable any more: compacted or truncated?)"
    if isinstance(rec, MarketData):
        what = "last mark of the partition"
        if held:
            what = "the position's valuation"
        elif rec.symbol == symbol:
            what = "the mark this signal was priced at"
        return f"{rec.symbol} {rec.price} at {ts_text(rec.ts)} ({what})"
    return _summary(rec, d)


def _summary(rec: Record, d: RiskDecision) -> str:
    if isinstance(rec, TradeSignal):
        return "this signal" if rec.signal_id == d.signal_id else f"signal {rec.signal_id}"
    if isinstance(rec, VenueFill):
        return f"{rec.order_id} {rec.status.value} {rec.last_qty} @ {rec.last_px} ({rec.venue} {rec.exec_id})"
    if isinstance(rec, Account):
        return f"{rec.account}: limits version {rec.limits_version}, by {rec.updated_by} at {ts_text(rec.ts)}"
    if isinstance(rec, SymbolLimit):
        return f"{rec.account} {rec.symbol}: version {rec.limits_version}, by {rec.updated_by}"
    if isinstance(rec, Control):
        reason = f" ({rec.reason})" if rec.reason else ""
        return f"{rec.scope} {rec.state.value}{reason}, by {rec.updated_by} at {ts_text(rec.ts)}"
    return type(rec).__name__
