"""Shards: parsing ``I/N``, which partitions and keys a shard owns, the profiles' hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.embedded.store import partition_for
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from connectors.sharding import (
    SHARDED_INPUTS,
    UNSHARDED,
    KeyOwnership,
    Shard,
    ShardedSource,
    ShardError,
    check_resumed_shard,
    crc32_partition,
    murmur2,
    murmur2_partition,
)
from schemas import Kind, spec
from tradeflow.cli import main


@pytest.mark.parametrize(
    ("text", "want"), [("0/1", Shard(0, 1)), ("1/4", Shard(1, 4)), (" 3 / 4 ", Shard(3, 4))]
)
def test_parse_i_of_n(text: str, want: Shard) -> None:
    assert Shard.parse(text) == want
    assert str(want) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "1", "4/4", "5/4", "-1/2", "0/0", "a/b", "1/2/3", "1:2"])
def test_parse_refuses_what_is_not_i_of_n(text: str) -> None:
    with pytest.raises(ShardError):
        Shard.parse(text)


def test_setting_is_read_from_the_environment_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEFLOW_SHARD", "1/2")
    assert load_settings().shard == "1/2"
    assert load_settings().shard_of_job == Shard(1, 2)
    monkeypatch.setenv("TRADEFLOW_SHARD", "2/2")
    with pytest.raises(ValidationError, match="shard index must be in 0..1"):
        load_settings()
    monkeypatch.delenv("TRADEFLOW_SHARD")
    assert load_settings().shard is None
    assert load_settings().shard_of_job == UNSHARDED


def test_shard_and_source_partitions_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(shard="0/2", source_partitions=(0,))


def test_shard_i_of_n_owns_the_partitions_p_mod_n_equal_i() -> None:
    assert Shard(0, 2).owned(4) == [0, 2]
    assert Shard(1, 2).owned(4) == [1, 3]
    assert Shard(1, 3).owned(4) == [1]
    assert UNSHARDED.owned(3) == [0, 1, 2]
    for n in (1, 2, 3, 4):  # every partition has exactly one owner
        owners = [[i for i in range(n) if Shard(i, n).owns(p)] for p in range(8)]
        assert all(len(o) == 1 for o in owners)


def test_more_shards_than_partitions_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ShardError, match="4 shards need at least 4 partitions of trade_signals, which has 2"):
        Shard(3, 4).owned(2, "trade_signals")


def test_the_embedded_hash_is_the_store_s() -> None:
    for key in ("ACC1", "A07", "", "AAPL|x", "ünïcode"):
        for n in (1, 2, 3, 4, 16):
            assert crc32_partition(key, n) == partition_for(key, n)


def test_kafka_hash_is_the_java_client_s_murmur2() -> None:
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, want in vectors.items():
        assert murmur2(data) == want
    assert murmur2_partition("foobar", 50) == (-790332482 & 0x7FFFFFFF) % 50


def test_key_ownership_follows_the_stream_s_hash_and_partition_count() -> None:
    looked: list[int] = []

    def lookup() -> int:
        looked.append(1)
        return 4

    own = KeyOwnership(Shard(1, 2), crc32_partition, lookup, "trade_signals")
    assert looked == []  # nothing looked up before the first key
    keys = [f"A{i:02d}" for i in range(40)]
    mine = [k for k in keys if own.owns(k)]
    assert mine == [k for k in keys if partition_for(k, 4) % 2 == 1]
    assert 0 < len(mine) < len(keys)
    assert looked == [1]
    too_many = KeyOwnership(Shard(0, 8), crc32_partition, lambda: 4, "trade_signals")
    with pytest.raises(ShardError):
        too_many.owns("A00")


def test_a_sharded_source_lists_only_owned_partitions(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, partitions=4, shard="1/2")
    conn = Connectors(settings)
    src = conn.source("market_data", sharded=True)
    assert isinstance(src, ShardedSource)
    assert src.owned_parts() == ["1", "3"]
    assert src.list_parts() == ["0", "1", "2", "3"]  # the others end at once, reading nothing
    with pytest.raises(StopIteration):
        src.build_part("market_data", "0", 17).next_batch()
    assert src.build_part("market_data", "0", 17).snapshot() == 17
    whole = conn.source("market_data")  # not sharded for this job: read whole
    assert whole.list_parts() == ["0", "1", "2", "3"]  # type: ignore[attr-defined]
    table = conn.source("accounts", sharded=True)  # tables are always read whole
    assert not isinstance(table, ShardedSource)
    over = Connectors(load_settings(data_dir=tmp_path, partitions=4, shard="2/8"))
    with pytest.raises(ShardError, match="8 shards need at least 8 partitions of market_data"):
        over.source("market_data", sharded=True).list_parts()  # type: ignore[attr-defined]


def test_sharded_inputs_are_keyed_log_streams() -> None:
    keys = {"market_data": ("symbol",), "sma_wide": ("symbol",), "trade_signals": ("account",),
            "venue_fills": ("account",), "validated_orders": ("order_id",)}
    for streams in SHARDED_INPUTS.values():
        for name in streams:
            assert spec(name).kind is Kind.LOG
            assert spec(name).key_fields == keys[name]
    for table in ("accounts", "symbol_limits"):  # Job C filters their rows by account
        assert spec(table).key_fields[0] == "account"


def test_a_recovery_store_of_another_shard_is_refused_naming_both() -> None:
    check_resumed_shard("indicators", None, Shard(1, 2))  # a new store
    check_resumed_shard("indicators", "1/2", Shard(1, 2))  # its own
    with pytest.raises(ShardError, match=r"written by shard 0/2, this process is shard 1/2"):
        check_resumed_shard("indicators", "0/2", Shard(1, 2))
    with pytest.raises(ShardError, match=r"written by shard 1/2, this process is shard 0/1"):
        check_resumed_shard("indicators", "1/2", UNSHARDED)


def test_run_refuses_a_malformed_shard(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "indicators", "--shard", "2/2"]) == 2
    assert "shard index must be in 0..1" in capsys.readouterr().err


def test_reshard_refuses_what_it_cannot_rebuild(tmp_path: Path) -> None:
    from tradeflow.reshard import ReshardError, reshard, shard_dir

    root = tmp_path / "recovery"
    with pytest.raises(ReshardError, match="only Job C"):
        reshard("execution", 2, 4, root, {})
    with pytest.raises(ReshardError, match="already runs as 2 shards"):
        reshard("portfolio_risk", 2, 2, root, {})
    with pytest.raises(ReshardError, match="no recovery store of the old shards"):
        reshard("portfolio_risk", 2, 4, root, {})
    for i in range(2):
        shard_dir(root, Shard(i, 2)).mkdir(parents=True)
    shard_dir(root, Shard(3, 4)).mkdir()
    with pytest.raises(ReshardError, match="3-of-4"):
        reshard("portfolio_risk", 2, 4, root, {})


def test_reshard_command_reports_a_refusal_as_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["reshard", "indicators", "--from", "1", "--to", "2", "--recovery-root", str(tmp_path)]
    assert main(args) == 2
    assert "cannot be resharded offline" in capsys.readouterr().err
