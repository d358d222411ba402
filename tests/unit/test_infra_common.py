"""Helpers shared by the server launchers (tradeflow/infra/common.py), without servers."""

from __future__ import annotations

from pathlib import Path

from tradeflow.infra.common import read_json_lines


def test_read_json_lines_skips_blank_and_half_written_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text('{"a": 1}\n\n  \n{"a": 2}\n{"a": 3, "b"')
    assert read_json_lines(log) == [{"a": 1}, {"a": 2}]


def test_read_json_lines_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_json_lines(tmp_path / "not-yet.jsonl") == []
