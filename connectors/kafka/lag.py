"""``python -m connectors.kafka.lag``: end offsets of every topic and how far flows lag.

Settings come from the environment (``TRADEFLOW_KAFKA__BOOTSTRAP``,
``TRADEFLOW_KAFKA__TOPIC_PREFIX``...). With ``--recovery DIR`` (a Bytewax recovery
directory) it also prints the position each input step would resume from and its
lag. ``--json`` prints the rows as one JSON array instead of a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from connectors.base import ConnectorError
from connectors.kafka.offsets import lag_report
from connectors.settings import load_settings

_COLUMNS = (
    "topic",
    "partition",
    "start_offset",
    "end_offset",
    "closed",
    "step_id",
    "position",
    "lag",
    "snapshot_at",
)


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """Render lag rows as an aligned text table."""
    cols = [c for c in _COLUMNS if any(c in r for r in rows)] or list(_COLUMNS[:5])
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the lag command; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m connectors.kafka.lag",
        description="End offsets of the kafka profile's topics and, given a Bytewax "
        "recovery directory, the position each flow would resume from.",
    )
    parser.add_argument("--recovery", type=Path, default=None, help="Bytewax recovery dir")
    parser.add_argument("--json", action="store_true", help="print a JSON array")
    args = parser.parse_args(argv)
    try:
        rows = lag_report(load_settings(), args.recovery)
    except ConnectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows))
    elif rows:
        print(format_table(rows))
    else:
        print("no topics of the kafka profile exist yet", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
