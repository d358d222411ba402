"""One strategy's decisions: config in force, control state, sizing and trade signals.

Pure domain code (schemas and the standard library only). ``StrategyShard`` is the
state Job B keeps per group of symbols (see ``flows/strategy.py`` for the grouping):

- the config in force (the last *valid* strategy_config row for the strategy id) and
  the next changelog offset it reflects;
- the trading state of the scopes ``global``, ``strategy:<id>`` and
  ``account:<id>`` from the control table, and the next control offset it reflects;
- per symbol, the strategy's own state and the net quantity this strategy has
  signalled so far.

Updates carry their changelog offset; one below the offset a shard already reflects
is a replay and is ignored, so a shard seeded from the changelog and then fed the same
changelog applies each row once. sma_wide rows are de-duplicated the same way, by
``(symbol, seq)``: a row at or below the last ``seq`` evaluated for its symbol is a
replay and is dropped.

For every row of a symbol the strategy is evaluated (its state advances) whenever a
config is in force and the symbol is traded by it; an intent becomes a signal only if
all of these hold:

1. the config is ``enabled``;
2. the control state (most restrictive of the three scopes) is ACTIVE. REDUCING is
   treated as HALTED: Job B does not know positions, so it cannot tell which
   signals would reduce one; Job C, which does, enforces REDUCING;
3. the size is at least one unit (FIXED_NOTIONAL: ``floor(notional / price)``);
4. the signal keeps the strategy's own signalled net quantity within
   ``max_position`` (or moves it toward zero). Job B never sees fills, so this is
   a cap on what the strategy asks for; Job C enforces real position limits;
5. a LIMIT price stays above zero.

A config change that alters the strategy or its params restarts the per-symbol
strategy state (the first row under the new rule only sets it); other changes
(sizing, account, enabled, order type...) keep it. A symbol dropped from the config's
``symbols`` loses its strategy state but keeps its signalled net quantity.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from operators.strategies.base import Intent, Strategy, StrategyError, create
from schemas.base import Side, fits_decimal, quantize8, to_decimal
from schemas.market import SmaWide
from schemas.strategy import OrderType, Sizing, StrategyConfig, TradeSignal
from schemas.trading import Control, Scope, ScopeKind, TradingState

CENT = Decimal("0.01")
BPS = Decimal(10_000)
ZERO = Decimal(0)


@dataclass(frozen=True, eq=False)
class ActiveConfig:
    """A validated strategy_config row with its strategy built (immutable)."""

    config: StrategyConfig
    strategy: Strategy[Any]
    symbols: frozenset[str]
    """Symbols traded; empty means every symbol."""

    @property
    def key(self) -> tuple[str, tuple[tuple[str, int | float], ...]]:
        """Return the strategy key (name and params) of this config."""
        return self.strategy.key

    def trades(self, symbol: str) -> bool:
        """Tell whether this config trades ``symbol``."""
        return not self.symbols or symbol in self.symbols

    def __deepcopy__(self, memo: dict[int, Any]) -> ActiveConfig:
        return self  # immutable: snapshots may share it


def activate(config: StrategyConfig, *, columns: Collection[str] | None = None) -> ActiveConfig:
    """Validate a config row and build its strategy; raise ``StrategyError`` with why.

    ``columns`` are the sma_wide columns Job A produces; when given, a strategy that
    reads another column is refused (it would silently never fire).
    """
    strategy = create(config.strategy, config.params)
    if columns is not None:
        missing = [c for c in strategy.columns() if c not in columns]
        if missing:
            raise StrategyError(
                f"{config.strategy} reads {', '.join(missing)}, which Job A does not "
                f"compute (sma_wide has: {', '.join(sorted(columns)) or 'none'})"
            )
    if config.order_type is OrderType.LIMIT and config.limit_offset_bps >= BPS:
        raise StrategyError(
            f"limit_offset_bps must be below 10000 for LIMIT orders, got {config.limit_offset_bps}"
        )
    return ActiveConfig(config, strategy, frozenset(config.symbols))


def order_qty(config: StrategyConfig, ref_px: Decimal) -> Decimal | None:
    """Return the signal quantity: ``qty``, or ``floor(notional / ref_px)`` (None if 0)."""
    if config.sizing is Sizing.FIXED_QTY:
        return config.qty
    if config.notional is None:  # the schema requires it for FIXED_NOTIONAL
        raise StrategyError("sizing FIXED_NOTIONAL needs notional")
    units = config.notional // ref_px  # exact integer division of positive Decimals
    return units if units > 0 else None


def limit_price(config: StrategyConfig, side: Side, ref_px: Decimal) -> Decimal | None:
    """Return the limit price for a LIMIT config (None for MARKET).

    BUY at ``ref_px * (1 - bps / 1e4)`` rounded down to the cent, SELL at
    ``ref_px * (1 + bps / 1e4)`` rounded up: rounding never makes the order more
    aggressive than the configured offset.
    """
    if config.order_type is OrderType.MARKET:
        return None
    bps = config.limit_offset_bps
    if side is Side.BUY:
        return (ref_px * (BPS - bps) / BPS).quantize(CENT, rounding=ROUND_FLOOR)
    return (ref_px * (BPS + bps) / BPS).quantize(CENT, rounding=ROUND_CEILING)


def signal_id(strategy_id: str, symbol: str, seq: int) -> str:
    """Return the deterministic id of the signal a strategy emits on row ``seq`` of ``symbol``.

    A row yields at most one signal per strategy, and ``seq`` is the row's position
    in its symbol's stream, so a replay yields the same id.
    """
    return f"{strategy_id}:{symbol}:{seq}"


def control_scopes(strategy_id: str, account: str | None) -> tuple[str, ...]:
    """Return the control scopes that apply to a strategy trading for ``account``."""
    return tuple(str(s) for s in Scope.of_order(account, strategy_id))


def is_relevant_scope(scope: str, strategy_id: str) -> bool:
    """Tell whether a control row of ``scope`` can concern this strategy."""
    try:
        target = Scope.parse(scope)
    except ValueError:
        return False
    return target.kind is not ScopeKind.STRATEGY or target.name == strategy_id


_RESTRICTIVENESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


@dataclass
class SymbolState:
    """What a strategy keeps per symbol: its rule state and its signalled net quantity."""

    key: tuple[str, tuple[tuple[str, int | float], ...]] | None = None
    state: Any = None
    net_qty: Decimal = ZERO


@dataclass
class StrategyShard:
    """The state of one strategy over a group of symbols (see the module docstring)."""

    strategy_id: str
    config: ActiveConfig | None = None
    config_offset: int = 0
    """Next strategy_config changelog offset to apply."""
    controls: dict[str, TradingState] = field(default_factory=dict)
    control_offset: int = 0
    """Next control changelog offset to apply."""
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    row_seqs: dict[str, int] = field(default_factory=dict)
    """Per symbol, the ``seq`` of the last sma_wide row evaluated."""
    replayed_rows: int = 0
    """Rows dropped because their ``seq`` was already evaluated (a replay)."""

    def apply_config(self, offset: int, active: ActiveConfig) -> bool:
        """Put a validated config in force from now on; False if ``offset`` was applied."""
        if offset < self.config_offset:
            return False
        self.config_offset = offset + 1
        self.config = active
        return True

    def skip_config(self, offset: int) -> None:
        """Record that a config row was read but refused (the last good one stays)."""
        self.config_offset = max(self.config_offset, offset + 1)

    def apply_control(self, offset: int, control: Control) -> bool:
        """Record a control row's state for its scope; False if ``offset`` was applied."""
        if offset < self.control_offset:
            return False
        self.control_offset = offset + 1
        if is_relevant_scope(control.scope, self.strategy_id):
            self.controls[control.scope] = control.state
        return True

    def skip_control(self, offset: int) -> None:
        """Record that a control row was read but could not be used."""
        self.control_offset = max(self.control_offset, offset + 1)

    def trading_state(self) -> TradingState:
        """Return the most restrictive state of the scopes that apply."""
        account = self.config.config.account if self.config is not None else None
        scopes = control_scopes(self.strategy_id, account)
        states = [self.controls.get(s, TradingState.ACTIVE) for s in scopes]
        return max(states, key=_RESTRICTIVENESS.__getitem__)

    def on_row(self, row: SmaWide) -> TradeSignal | None:
        """Evaluate the strategy on one row; return the signal it yields, if any.

        A row whose ``seq`` is not above the last one evaluated for its symbol is a
        replay (Job A re-emits rows from its snapshot after a restart): it is dropped,
        so a restart upstream never changes the strategy state nor invents a signal.
        """
        if row.seq <= self.row_seqs.get(row.symbol, -1):
            self.replayed_rows += 1
            return None
        self.row_seqs[row.symbol] = row.seq
        active = self.config
        if active is None:
            return None
        sym = self.symbols.get(row.symbol)
        if not active.trades(row.symbol):
            if sym is not None:
                sym.key = sym.state = None
            return None
        if sym is None:
            sym = self.symbols[row.symbol] = SymbolState()
        if sym.key != active.key:
            sym.key = active.key
            sym.state = active.strategy.new_state()
        intent = active.strategy.on_row(sym.state, row)
        if intent is None:
            return None
        return self._signal(active, sym, row, intent)

    def _signal(
        self, active: ActiveConfig, sym: SymbolState, row: SmaWide, intent: Intent
    ) -> TradeSignal | None:
        cfg = active.config
        if not cfg.enabled or self.trading_state() is not TradingState.ACTIVE:
            return None
        ref_px = _price(row.price)
        if ref_px is None:
            return None
        qty = order_qty(cfg, ref_px)
        if qty is None:
            return None
        net = sym.net_qty + qty * intent.side.sign
        limit = cfg.max_position
        if limit is not None and abs(net) > limit and abs(net) >= abs(sym.net_qty):
            return None
        limit_px = limit_price(cfg, intent.side, ref_px)
        if limit_px is not None and limit_px <= 0:
            return None
        if not fits_decimal(qty) or (limit_px is not None and not fits_decimal(limit_px)):
            return None  # beyond DECIMAL(18,8) (a huge notional or offset): no signal
        sym.net_qty = net
        return TradeSignal(
            signal_id=signal_id(self.strategy_id, row.symbol, row.seq),
            strategy_id=self.strategy_id,
            symbol=row.symbol,
            account=cfg.account,
            side=intent.side,
            qty=qty,
            order_type=cfg.order_type,
            limit_px=limit_px,
            ts=row.ts,
            reason=f"{cfg.strategy}: {intent.reason}",
            indicators=intent.indicators,
            ref_px=ref_px,
            entered_at=row.entered_at,
        )


def _price(value: float) -> Decimal | None:
    """Return the row's price as a DECIMAL(18,8) value, or None if it is not one."""
    try:
        px = to_decimal(value)
        if not fits_decimal(px):  # a float's tail beyond 8 places, or out of range
            px = quantize8(px)
    except ValueError:
        return None
    return px if px > 0 and fits_decimal(px) else None
