"""A job process's collector thresholds (connectors.runtime, Settings.gc_thresholds)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from connectors.runtime import JOB_GC_THRESHOLDS, tune_gc
from connectors.settings import load_settings
from flows.common import job_process


@pytest.fixture(autouse=True)
def thresholds_restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_a_job_process_raises_the_collector_thresholds(tmp_path) -> None:
    gc.set_threshold(700, 10, 10)
    job_process(load_settings(data_dir=tmp_path))
    assert gc.get_threshold() == JOB_GC_THRESHOLDS
    assert gc.isenabled()  # collected less often, never turned off


def test_the_thresholds_come_from_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEFLOW_GC_THRESHOLDS", "[700, 10, 10]")
    gc.set_threshold(5_000, 5, 5)
    job_process(load_settings(data_dir=tmp_path))
    assert gc.get_threshold() == (700, 10, 10)


def test_none_leaves_the_thresholds_alone() -> None:
    gc.set_threshold(1_234, 5, 6)
    tune_gc(None)
    assert gc.get_threshold() == (1_234, 5, 6)
