"""Job B's join (operators/strategies/sharding.py): shard keys and the start-up seed."""

from __future__ import annotations

from datetime import UTC, datetime

from operators.strategies.sharding import ControlUpdate, seed_shard, shard_keys, shard_of, take
from schemas import Control, StrategyConfig, TradingState, encode

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
COLUMNS = frozenset({"sma_5", "sma_20"})


def cfg(strategy_id: str = "s1", **kw: object) -> bytes:
    fields: dict[str, object] = {"strategy_id": strategy_id, "strategy": "sma_cross",
                                 "params": {"fast": 5, "slow": 20}, "account": "A1", "qty": 10, "ts": T0}
    return encode(StrategyConfig.model_validate(fields | kw))


def test_every_symbol_has_one_stable_shard_among_the_keys() -> None:
    keys = shard_keys(8)
    assert len(set(keys)) == 8
    assert {shard_of(f"SYM{i}", 8) for i in range(200)} == set(keys)
    assert shard_of("AAPL", 8) == shard_of("AAPL", 8)


def test_the_seed_folds_this_strategys_configs_and_counts_every_offset() -> None:
    configs = [(0, "s1", cfg(qty=5)), (1, "other", cfg("other")), (2, "s1", b"{not json"),
               (3, "s1", cfg(params={"fast": 5, "slow": 99}))]  # sma_99 is not computed: refused
    controls = [(0, encode(Control(scope="strategy:s1", state=TradingState.HALTED, ts=T0))), (1, b"\x00")]
    shard = seed_shard("s1", COLUMNS, configs, controls)
    assert shard.config is not None
    assert shard.config.config.qty == 5  # the last good config stays
    assert (shard.config_offset, shard.control_offset) == (4, 2)
    assert shard.trading_state() is TradingState.HALTED
    halt_again = ControlUpdate(0, Control(scope="strategy:s1", state=TradingState.ACTIVE, ts=T0))
    assert take(shard, [halt_again], "strategy:s1") == []
    assert shard.trading_state() is TradingState.HALTED  # offset 0 was applied by the seed
