"""An in-process paper venue: fills validated orders against the market data it is fed.

Everything happens in event time and in the order calls are made, so a run is
reproducible: an order becomes eligible ``latency`` after its own ``ts``; a market
order fills at the first price of its symbol seen after submission whose ``ts`` is at
or past that point; a limit buy fills when the price is at or below the limit, a sell
when it is at or above, at the limit price. With ``fill_fraction`` set, one tick fills
at most that fraction of its volume, shared by the orders of the symbol in time
priority (submission order). Exec ids are ``<order_id>-<n>`` with ``n`` counting the
reports of that order, and every report carries the event time that caused it.

Hostile numbers cannot make it raise: every order and tick it is given has passed the
schemas' DECIMAL(18,8) bounds (``|v| < 10**10``, at most 8 places), and it checks them
again on entry (a record built without validation is rejected or ignored, not computed
with). With bounded inputs, notionals (at most 36 digits) are exact in the 38-digit
``MONEY`` context, average prices are rounded to 8 places, fill quantities are cut down
to 8 places, and a fill whose fee would not fit DECIMAL(18,8) cancels the order instead.

The venue does no I/O, so ``submit`` returning promptly is trivially true; reports
queue up until ``poll_reports``. ``snapshot()``/``restore()`` carry its whole state
(JSON-able) through a Bytewax recovery snapshot.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.venues.base import VenueAdapter, VenueError, VenueHealth, VenueOrder
from operators.accounting import MONEY
from schemas import (
    CANCEL_REJECTED_PREFIX,
    ExecStatus,
    MarketData,
    OrderAction,
    OrderType,
    ValidatedOrder,
    VenueFill,
)
from schemas.base import QUANTUM, decode, fits_decimal, quantize8
from schemas.fast import fast_encode
from schemas.trading import TimeInForce

log = logging.getLogger(__name__)

PX_QUANTUM = Decimal("0.00000001")
"""Average prices are rounded to 8 places, the architecture's DECIMAL(18,8)."""

_TERMINAL = frozenset({ExecStatus.FILLED, ExecStatus.CANCELED, ExecStatus.REJECTED})


class PaperVenueConfig(BaseModel):
    """Behaviour of the paper venue; unknown options are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "paper"
    """Venue name written into every fill."""
    latency_ms: int = Field(default=0, ge=0)
    """Event-time delay between an order's ``ts`` and the first tick that may fill it."""
    fill_fraction: Decimal | None = Field(default=None, gt=0, le=1)
    """At most this fraction of a tick's volume fills (None: orders fill in full)."""
    lot_size: Decimal | None = Field(default=None, gt=0)
    """Partial fill quantities are rounded down to a multiple of this (None: exact)."""
    allowed_symbols: frozenset[str] | None = None
    """Only these symbols are accepted (None: any symbol)."""
    rejected_symbols: frozenset[str] = frozenset()
    """Orders for these symbols are rejected."""
    max_qty: Decimal | None = Field(default=None, gt=0)
    """Orders above this quantity are rejected."""
    fee_bps: Decimal = Field(default=Decimal(0), ge=0)
    """Fee per fill in basis points of its notional."""
    @field_validator("fill_fraction", "lot_size", "max_qty", "fee_bps")
    @classmethod
    def _fits_decimal(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not fits_decimal(value):
            raise ValueError("must fit DECIMAL(18,8): |v| < 10^10, at most 8 decimal places")
        return value

    price_band_pct: Decimal | None = Field(default=Decimal(20), gt=0)
    """A tick more than this % away from the symbol's last tick the venue matched on is
    not matched on (Job A dead-letters it as an outlier): one absurd tick must not fill
    a working order. None: no band."""
    history_ticks: int = Field(default=256, ge=0)
    """Recent ticks kept per symbol: an order that reaches the venue after the ticks it
    is eligible for (market data read ahead of the order flow, as in a replay at full
    speed) is matched against them, so it fills where it would have in real time."""


def _tick(saved: str | dict[str, Any]) -> MarketData:
    """Return a recent tick of a snapshot: JSON text, or a dict (snapshots before 2026-12-07)."""
    return decode(MarketData, saved) if isinstance(saved, str) else MarketData.model_validate(saved)


@dataclass(slots=True)
class _Working:
    order: ValidatedOrder
    eligible_from: datetime
    status: ExecStatus = ExecStatus.NEW
    cum_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    reports: int = 0
    last_ts: datetime = field(init=False)
    order_json: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    """The order as the snapshot writes it, made at the first snapshot (the order never changes)."""

    def __post_init__(self) -> None:
        self.last_ts = self.eligible_from

    def order_as_json(self) -> dict[str, Any]:
        if self.order_json is None:
            self.order_json = self.order.model_dump(mode="json")
        return self.order_json

    @property
    def leaves(self) -> Decimal:
        if self.status in _TERMINAL:
            return Decimal(0)
        return self.order.qty - self.cum_qty

    @property
    def avg_px(self) -> Decimal:
        if self.cum_qty == 0:
            return Decimal(0)
        with localcontext(MONEY):
            return quantize8(self.notional / self.cum_qty)


_LATEST = datetime.max.replace(tzinfo=UTC)


def _after(ts: datetime, delay: timedelta) -> datetime:
    """Return ``ts + delay``, or the latest representable time if that overflows."""
    try:
        return ts + delay
    except OverflowError:
        return _LATEST


def _order_fits(order: ValidatedOrder) -> bool:
    return fits_decimal(order.qty) and (order.limit_px is None or fits_decimal(order.limit_px))


def _tick_fits(tick: MarketData) -> bool:
    return (
        isinstance(tick.price, Decimal)
        and isinstance(tick.volume, Decimal)
        and fits_decimal(tick.price)
        and tick.price > 0
        and fits_decimal(tick.volume)
        and tick.volume >= 0
    )


class PaperVenue(VenueAdapter):
    """A simulated venue that fills orders against market data (see the module doc)."""

    def __init__(self, config: PaperVenueConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise VenueError("pass either a PaperVenueConfig or options, not both")
        self._config = config if config is not None else PaperVenueConfig(**options)
        self._latency = timedelta(milliseconds=self._config.latency_ms)
        self._orders: dict[str, _Working] = {}
        self._book: dict[str, list[str]] = {}
        self._reports: list[VenueFill] = []
        self._unknown_cancels: dict[str, int] = {}
        self._connected = False
        self._counts = {"orders_sent": 0, "acks": 0, "fills": 0, "rejects": 0, "cancels": 0}
        self._recent: dict[str, deque[MarketData]] = {}
        self._recent_json: dict[int, tuple[MarketData, str]] = {}
        """The recent ticks as the last snapshot wrote them, by ``id`` (each tick is written
        once however many snapshots it is in; the tick is held, so its id stays its own)."""
        self._last_px: dict[str, Decimal] = {}
        """Per symbol, the price of the last tick matched on (the band's reference)."""

    @property
    def name(self) -> str:
        """Return the venue name (``paper`` unless configured)."""
        return self._config.name

    @property
    def config(self) -> PaperVenueConfig:
        """Return the venue's configuration."""
        return self._config

    def connect(self) -> None:
        """Mark the venue open; there is nothing to connect to."""
        self._connected = True

    def close(self) -> None:
        """Mark the venue closed; working orders are kept (a paper venue has no session)."""
        self._connected = False

    # -- orders ------------------------------------------------------------------------

    def submit(self, order: ValidatedOrder) -> None:
        """Accept (NEW) or reject (REJECTED with a reason) an order; repeats are ignored."""
        if order.action is not OrderAction.NEW:
            raise VenueError(f"submit takes NEW orders, got {order.action} for {order.order_id}")
        if order.order_id in self._orders:
            log.warning("paper: order %s submitted again; ignored", order.order_id)
            return
        self._counts["orders_sent"] += 1
        work = _Working(order, _after(order.ts, self._latency))
        self._orders[order.order_id] = work
        reason = self._reject_reason(order)
        if reason:
            work.status = ExecStatus.REJECTED
            self._counts["rejects"] += 1
            self._report(work, ExecStatus.REJECTED, work.eligible_from, reason=reason)
            return
        self._counts["acks"] += 1
        self._report(work, ExecStatus.NEW, work.eligible_from)
        self._book.setdefault(order.symbol, []).append(order.order_id)
        eligible = work.eligible_from
        for tick in list(self._recent.get(order.symbol, ())):
            if work.status in _TERMINAL:
                break  # filled by the ticks before: the rest cannot matter
            if tick.ts >= eligible:
                self._match(order.symbol, [order.order_id], tick)

    def cancel(self, order: ValidatedOrder) -> None:
        """Cancel the working order ``order.order_id``; say why when it cannot be canceled."""
        work = self._orders.get(order.order_id)
        at = _after(order.ts, self._latency)
        if work is None:
            log.warning("paper: cancel of unknown order %s", order.order_id)
            self._reports.append(self._unknown_cancel(order, at))
            return
        if work.status in _TERMINAL:
            self._report(
                work,
                ExecStatus.CANCEL_REJECTED,
                max(at, work.last_ts),
                reason=f"{CANCEL_REJECTED_PREFIX}order is {work.status.value}",
            )
            return
        self._cancel(work, max(at, work.last_ts), reason="canceled on request")

    def request_status(self, order_id: str) -> None:
        """Queue a STATUS report of an order (unknown ids are logged, not answered)."""
        work = self._orders.get(order_id)
        if work is None:
            log.warning("paper: status request for unknown order %s", order_id)
            return
        self._report(work, ExecStatus.STATUS, work.last_ts)

    def open_orders(self) -> list[VenueOrder]:
        """Return the working orders in time priority."""
        out: list[VenueOrder] = []
        for ids in self._book.values():
            for order_id in ids:
                work = self._orders[order_id]
                o = work.order
                out.append(
                    VenueOrder(
                        order_id=o.order_id,
                        venue=self.name,
                        account=o.account,
                        symbol=o.symbol,
                        side=o.side,
                        qty=o.qty,
                        cum_qty=work.cum_qty,
                        leaves_qty=work.leaves,
                        avg_px=work.avg_px,
                        status=work.status,
                        venue_order_id=o.order_id,
                    )
                )
        return out

    # -- market data -------------------------------------------------------------------

    def on_market(self, tick: MarketData) -> None:
        """Match the symbol's working orders against one tick, in time priority.

        A tick whose price or volume does not fit DECIMAL(18,8) (only possible for a
        record built without validation) is logged and ignored.
        """
        if not _tick_fits(tick):
            log.error("paper: tick %s %s x %s out of range; ignored", tick.symbol, tick.price, tick.volume)
            return
        if self._outlier(tick):
            return
        if self._config.history_ticks:
            recent = self._recent.get(tick.symbol)
            if recent is None:
                recent = self._recent[tick.symbol] = deque(maxlen=self._config.history_ticks)
            recent.append(tick)
        ids = self._book.get(tick.symbol)
        if ids:
            self._match(tick.symbol, list(ids), tick)

    def _outlier(self, tick: MarketData) -> bool:
        """Tell (and count, and log) a tick beyond ``price_band_pct`` of the symbol's last one."""
        band, last = self._config.price_band_pct, self._last_px.get(tick.symbol)
        if band is not None and last is not None and abs(tick.price - last) * 100 > last * band:
            self._counts["ticks_refused"] = self._counts.get("ticks_refused", 0) + 1
            log.warning("paper: tick %s %s moves more than %s%% from %s; not matched on",
                        tick.symbol, tick.price, band, last)
            return True
        self._last_px[tick.symbol] = tick.price
        return False

    def _match(self, symbol: str, ids: list[str], tick: MarketData) -> None:
        liquidity = self._liquidity(tick)
        for order_id in ids:
            work = self._orders[order_id]
            if tick.ts < work.eligible_from:
                continue
            px = self._match_price(work.order, tick.price)
            if px is not None and liquidity > 0:
                qty = min(work.leaves, liquidity)
                liquidity -= qty
                if qty > 0:
                    self._fill(work, qty, px, tick.ts)
            if work.status not in _TERMINAL and work.order.time_in_force is TimeInForce.IOC:
                self._cancel(work, tick.ts, reason="IOC: remainder canceled")

    def poll_reports(self) -> list[VenueFill]:
        """Return the reports produced since the last call, in the order they happened."""
        out, self._reports = self._reports, []
        return out

    def health(self) -> VenueHealth:
        """Return counts of orders, acks, fills, rejects and working orders."""
        working = sum(len(ids) for ids in self._book.values())
        return VenueHealth(
            self.name,
            session_state="ACTIVE" if self._connected else "DISCONNECTED",
            connected=self._connected,
            details={"working_orders": working, **self._counts},
        )

    # -- recovery ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return the venue's state as plain JSON-able data (a copy, never live state)."""
        return {
            "orders": [
                {
                    "order": w.order_as_json(),
                    "eligible_from": w.eligible_from.isoformat(),
                    "status": w.status.value,
                    "cum_qty": str(w.cum_qty),
                    "notional": str(w.notional),
                    "reports": w.reports,
                    "last_ts": w.last_ts.isoformat(),
                }
                for w in self._orders.values()
            ],
            "book": {symbol: list(ids) for symbol, ids in self._book.items()},
            "unknown_cancels": dict(self._unknown_cancels),
            "counts": dict(self._counts),
            "recent": self._recent_as_json(),
            "pending_reports": [r.model_dump(mode="json") for r in self._reports],
            "last_px": {s: str(px) for s, px in self._last_px.items()},
        }

    def _recent_as_json(self) -> dict[str, list[str]]:
        """Return the recent ticks per symbol as JSON text (``schemas.encode``'s bytes)."""
        old, memo = self._recent_json, {}
        out: dict[str, list[str]] = {}
        for symbol, ticks in self._recent.items():
            texts = out[symbol] = []
            for tick in ticks:
                known = old.get(id(tick))
                if known is None:
                    known = (tick, fast_encode(tick).decode())
                memo[id(tick)] = known
                texts.append(known[1])
        self._recent_json = memo  # only the ticks still held
        return out

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the venue's state with a ``snapshot()`` (after a restart)."""
        orders: dict[str, _Working] = {}
        for item in state["orders"]:
            work = _Working(
                ValidatedOrder.model_validate(item["order"]),
                datetime.fromisoformat(item["eligible_from"]),
                status=ExecStatus(item["status"]),
                cum_qty=Decimal(item["cum_qty"]),
                notional=Decimal(item["notional"]),
                reports=int(item["reports"]),
            )
            work.last_ts = datetime.fromisoformat(item["last_ts"])
            orders[work.order.order_id] = work
        self._orders = orders
        self._book = {symbol: list(ids) for symbol, ids in state["book"].items()}
        self._unknown_cancels = dict(state["unknown_cancels"])
        self._counts = dict(state["counts"])
        self._recent = {
            s: deque((_tick(t) for t in ticks), maxlen=self._config.history_ticks)
            for s, ticks in state.get("recent", {}).items()
        }
        self._reports = [VenueFill.model_validate(r) for r in state["pending_reports"]]
        self._last_px = {s: Decimal(px) for s, px in state.get("last_px", {}).items()}

    # -- internals ---------------------------------------------------------------------

    def _reject_reason(self, order: ValidatedOrder) -> str:
        cfg = self._config
        if not _order_fits(order):
            return f"qty {order.qty} or limit {order.limit_px} does not fit DECIMAL(18,8)"
        if cfg.allowed_symbols is not None and order.symbol not in cfg.allowed_symbols:
            return f"symbol {order.symbol} is not traded here"
        if order.symbol in cfg.rejected_symbols:
            return f"symbol {order.symbol} is rejected"
        if cfg.max_qty is not None and order.qty > cfg.max_qty:
            return f"qty {order.qty} above max {cfg.max_qty}"
        if order.order_type is OrderType.LIMIT and order.limit_px is None:
            return "limit order without limit_px"
        return ""

    def _liquidity(self, tick: MarketData) -> Decimal:
        frac = self._config.fill_fraction
        if frac is None:
            return Decimal("Infinity")
        with localcontext(MONEY):
            qty = (tick.volume * frac).quantize(QUANTUM, ROUND_DOWN)
            lot = self._config.lot_size
            if lot is not None:
                qty = (qty / lot).to_integral_value(ROUND_DOWN) * lot
        return qty

    @staticmethod
    def _match_price(order: ValidatedOrder, price: Decimal) -> Decimal | None:
        if order.order_type is OrderType.MARKET:
            return price
        limit = order.limit_px
        if limit is None:  # rejected on submit; never matches
            return None
        if order.side.sign > 0:
            return limit if price <= limit else None
        return limit if price >= limit else None

    def _fill(self, work: _Working, qty: Decimal, px: Decimal, ts: datetime) -> None:
        with localcontext(MONEY):
            fee = quantize8(qty * px * self._config.fee_bps / Decimal(10_000))
            if not fits_decimal(fee):
                self._cancel(work, ts, reason=f"fill of {qty} at {px}: fee {fee} out of range")
                return
            work.cum_qty += qty
            work.notional += qty * px
        work.status = ExecStatus.FILLED if work.cum_qty >= work.order.qty else ExecStatus.PARTIAL
        self._counts["fills"] += 1
        self._report(work, work.status, ts, last_qty=qty, last_px=px, fee=fee)
        if work.status is ExecStatus.FILLED:
            self._unbook(work)

    def _cancel(self, work: _Working, ts: datetime, reason: str) -> None:
        work.status = ExecStatus.CANCELED
        self._counts["cancels"] += 1
        self._report(work, ExecStatus.CANCELED, ts, reason=reason)
        self._unbook(work)

    def _unbook(self, work: _Working) -> None:
        ids = self._book.get(work.order.symbol, [])
        if work.order.order_id in ids:
            ids.remove(work.order.order_id)

    def _report(
        self,
        work: _Working,
        status: ExecStatus,
        ts: datetime,
        *,
        last_qty: Decimal = Decimal(0),
        last_px: Decimal = Decimal(0),
        fee: Decimal = Decimal(0),
        reason: str = "",
    ) -> None:
        work.reports += 1
        work.last_ts = max(work.last_ts, ts)
        o = work.order
        self._reports.append(
            VenueFill(
                order_id=o.order_id,
                venue=self.name,
                exec_id=f"{o.order_id}-{work.reports}",
                status=status,
                account=o.account,
                symbol=o.symbol,
                side=o.side,
                last_qty=last_qty,
                last_px=last_px,
                cum_qty=work.cum_qty,
                leaves_qty=work.leaves,
                avg_px=work.avg_px,
                fee=fee,
                venue_order_id=o.order_id,
                reason=reason,
                ts=ts,
            )
        )

    def _unknown_cancel(self, order: ValidatedOrder, ts: datetime) -> VenueFill:
        n = self._unknown_cancels.get(order.order_id, 0) + 1
        self._unknown_cancels[order.order_id] = n
        return VenueFill(
            order_id=order.order_id,
            venue=self.name,
            exec_id=f"{order.order_id}-X{n}",
            status=ExecStatus.CANCEL_REJECTED,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            reason=f"{CANCEL_REJECTED_PREFIX}unknown order",
            ts=ts,
        )
