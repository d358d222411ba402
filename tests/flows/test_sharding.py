"""Shards of a job (``TRADEFLOW_SHARD=I/N``): disjoint partitions, their own recovery stores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.embedded.store import partition_for
from connectors.feeds import SyntheticMarket, replay
from connectors.registry import Connectors
from connectors.settings import Settings
from flows.indicators import build_flow
from tests.helpers import read_all

PARTITIONS = 4


def _recovery(path: Path) -> RecoveryConfig:
    if not path.exists():
        path.mkdir(parents=True)
        init_db_dir(path, 1)
    return RecoveryConfig(str(path))


def test_job_a_shards_read_disjoint_partitions_and_together_write_every_row(
    settings: Settings, tmp_path: Path
) -> None:
    base = settings.model_copy(update={"partitions": PARTITIONS})
    conn = Connectors(base)
    ticks = list(SyntheticMarket(symbols=9, ticks=900, seed=5))
    replay(ticks, conn.writer("market_data"), progress=False)
    got: dict[str, set[str]] = {}
    for shard in ("0/2", "1/2"):
        sharded = base.model_copy(update={"shard": shard})
        before = {r.symbol for r in read_all(conn, "sma_wide")}  # type: ignore[attr-defined]
        run_main(build_flow(sharded), recovery_config=_recovery(tmp_path / shard.replace("/", "of")))
        got[shard] = {r.symbol for r in read_all(conn, "sma_wide")} - before  # type: ignore[attr-defined]
    assert got["0/2"].isdisjoint(got["1/2"])
    for shard, symbols in got.items():
        index = int(shard[0])
        assert symbols
        assert all(partition_for(s, PARTITIONS) % 2 == index for s in symbols)
    assert len(read_all(conn, "sma_wide")) == len(ticks)


def test_a_shard_refuses_a_recovery_store_written_by_another(settings: Settings, tmp_path: Path) -> None:
    base = settings.model_copy(update={"partitions": PARTITIONS})
    replay(list(SyntheticMarket(symbols=3, ticks=50, seed=1)), Connectors(base).writer("market_data"),
           progress=False)
    store = tmp_path / "recovery"
    run_main(build_flow(base.model_copy(update={"shard": "0/2"})), recovery_config=_recovery(store),
             epoch_interval=timedelta(seconds=0.1))
    run_main(build_flow(base.model_copy(update={"shard": "0/2"})), recovery_config=_recovery(store))
    with pytest.raises(BytewaxRuntimeError) as err:
        run_main(build_flow(base.model_copy(update={"shard": "1/2"})), recovery_config=_recovery(store))
    cause = str(err.value.__cause__)
    assert "written by shard 0/2, this process is shard 1/2" in cause
    with pytest.raises(BytewaxRuntimeError) as err:
        run_main(build_flow(base), recovery_config=_recovery(store))
    assert "this process is shard 0/1" in str(err.value.__cause__)
