"""Helpers for tests: read whole streams back as records."""

from __future__ import annotations

from connectors.registry import Connectors
from schemas import Record, decode, spec


def read_all(conn: Connectors, stream: str) -> list[Record]:
    """Return every record of a stream, partition by partition, in offset order."""
    model = spec(stream).model
    reader = conn.reader(stream)
    out: list[Record] = []
    try:
        for part in range(reader.partitions):
            offset = 0
            while batch := reader.read(part, offset, 10_000):
                out.extend(decode(model, r.value) for r in batch)
                offset = batch[-1].offset + 1
    finally:
        reader.close()
    return out
