"""Reading Bytewax's recovery store for the lag report (no broker needed)."""

from __future__ import annotations

import pickle
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from connectors.base import ConnectorError
from connectors.kafka import SnapshotPosition, recovery_positions
from connectors.kafka.lag import format_table


def fill(path: Path, exs: list[tuple], fronts: list[tuple], snaps: list[tuple]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (?,?,?)", exs)
        conn.executemany(
            "INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (?,?,?)", fronts
        )
        conn.executemany(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?,?,?,?)", snaps
        )
    conn.close()


def test_positions_are_the_newest_snapshots_before_the_resume_epoch(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 2)
    # Latest execution 1 has two workers: worker 0 reached epoch 7, worker 1 wrote no
    # frontier (it counts as the execution's resume epoch, 4): resume at epoch 4.
    fill(
        tmp_path / "part-0.sqlite3",
        exs=[(0, 2, 1), (1, 2, 4)],
        fronts=[(0, 0, 5), (0, 1, 4), (1, 0, 7)],
        snaps=[
            ("f.in", "0-tf.market_data", 2, pickle.dumps(10)),
            ("f.in", "0-tf.market_data", 3, pickle.dumps(20)),
            ("f.state", "SYM001", 3, pickle.dumps({"not": "an offset"})),
        ],
    )
    fill(
        tmp_path / "part-1.sqlite3",
        exs=[],
        fronts=[],
        snaps=[
            ("f.in", "0-tf.market_data", 4, pickle.dumps(30)),  # at the resume epoch: not used
            ("f.in", "1-tf.market_data", 1, pickle.dumps(5)),
            ("f.in", "2-tf.market_data", 3, None),  # discarded state
            ("f.other", "3-x", 3, pickle.dumps(Decimal(1))),  # needs a class: refused
        ],
    )
    got = recovery_positions(tmp_path)
    assert [(p.step_id, p.topic, p.partition, p.offset, p.epoch) for p in got] == [
        ("f.in", "tf.market_data", 0, 20, 3),
        ("f.in", "tf.market_data", 1, 5, 1),
    ]
    assert all(isinstance(p, SnapshotPosition) and p.taken_at for p in got)


def test_a_recovery_store_that_never_ran_has_no_positions(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    assert recovery_positions(tmp_path) == []


def test_a_directory_without_recovery_partitions_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="no Bytewax recovery partitions"):
        recovery_positions(tmp_path)


def test_lag_table_aligns_columns_and_leaves_missing_values_blank() -> None:
    text = format_table(
        [
            {"topic": "tf.market_data", "partition": 0, "end_offset": 12, "position": 10, "lag": 2},
            {"topic": "tf.market_data", "partition": 1, "end_offset": 3, "position": None, "lag": None},
        ]
    )
    assert text.splitlines() == [
        "topic           partition  end_offset  position  lag",
        "tf.market_data  0          12          10        2",
        "tf.market_data  1          3",
    ]
