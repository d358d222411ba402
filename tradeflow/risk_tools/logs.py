"""Read Job C's logs through the connectors registry (any profile).

The decisions, the signals and the input journal, each record with where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

from connectors.base import StoredRecord
from connectors.registry import Connectors
from connectors.settings import Settings
from operators.replay import Logged, RecordedLog
from schemas import DecodeError, Record, decode, spec

R = TypeVar("R", bound=Record)

READ_BATCH = 5000
LOG_STREAMS: dict[str, str] = {
    "risk_journal": "journal",
    "trade_signals": "signals",
    "risk_decisions": "decisions",
}
"""Stream -> ``RecordedLog`` field: Job C's journal, the signals and its decisions."""
INPUT_STREAMS = ("trade_signals", "venue_fills", "accounts", "symbol_limits", "control", "market_data",
                 "instruments")
"""Job C's input streams, as named in ``RiskDecision.input_offsets``."""


def _scan(conn: Connectors, stream: str, keep: Callable[[bytes], bool] | None = None
          ) -> Iterator[tuple[int, StoredRecord]]:
    for rec in conn.scan(stream, READ_BATCH):
        if keep is None or keep(rec.value):
            yield rec.partition, rec


def read_logged(conn: Connectors, stream: str, model: type[R],
                keep: Callable[[bytes], bool] | None = None) -> list[Logged[R]]:
    """Return every record of a stream that decodes, with its position, partition by partition.

    Records that do not decode are left out, as Job C left them out (dead letters).
    """
    out: list[Logged[R]] = []
    for part, rec in _scan(conn, stream, keep):
        try:
            out.append(Logged(decode(model, rec.value), stream, part, rec.offset))
        except DecodeError:
            continue
    return out


def load_log(settings: Settings) -> RecordedLog:
    """Read Job C's input logs and its recorded decisions, whole."""
    conn = Connectors(settings)
    log = RecordedLog()
    for stream, name in LOG_STREAMS.items():
        setattr(log, name, read_logged(conn, stream, spec(stream).model))
    return log


def read_at(conn: Connectors, stream: str, partition: int, offset: int) -> Record | None:
    """Return the record at ``offset`` of a stream's partition (None: gone, or it does not decode)."""
    reader = conn.reader(stream)
    try:
        got = reader.read(partition, offset, 1)
    finally:
        reader.close()
    if not got or got[0].offset != offset:
        return None
    try:
        return decode(spec(stream).model, got[0].value)
    except DecodeError:
        return None


def ts_text(ts: datetime) -> str:
    """Return an event time as ``2026-01-05T14:30:00.123Z`` (milliseconds, UTC)."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
