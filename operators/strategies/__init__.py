"""Job B's domain: strategies behind one interface, a registry, and the signal engine.

``base`` defines the ``Strategy`` interface, ``Param`` validation and the registry
(``register``/``create``/``STRATEGIES``); ``builtin`` registers ``sma_cross``,
``rsi_reversion`` and ``vwap_deviation``; ``engine`` turns intents into
``TradeSignal`` records under the config and control state in force. See
docs/strategies.md.
"""

from operators.strategies import builtin
from operators.strategies.base import (
    STRATEGIES,
    Intent,
    Param,
    ParamError,
    Strategy,
    StrategyError,
    UnknownStrategyError,
    create,
    parse_params,
    register,
)
from operators.strategies.builtin import RsiReversion, SmaCross, VwapDeviation
from operators.strategies.engine import (
    ActiveConfig,
    StrategyShard,
    SymbolState,
    activate,
    is_relevant_scope,
    limit_price,
    order_qty,
    signal_id,
)

__all__ = [
    "STRATEGIES",
    "ActiveConfig",
    "Intent",
    "Param",
    "ParamError",
    "RsiReversion",
    "SmaCross",
    "Strategy",
    "StrategyError",
    "StrategyShard",
    "SymbolState",
    "UnknownStrategyError",
    "VwapDeviation",
    "activate",
    "builtin",
    "create",
    "is_relevant_scope",
    "limit_price",
    "order_qty",
    "parse_params",
    "register",
    "signal_id",
]
