#!/bin/sh
# Run one tradeflow job with the Bytewax CLI. TRADEFLOW_FLOW names the flow
# (e.g. flows.indicators:build_flow() or "flows.strategy:build_flow('sma_cross')");
# extra arguments go to bytewax.run (e.g. -r /recovery -s 5 -b 0).
set -eu
: "${TRADEFLOW_FLOW:=flows.indicators:build_flow()}"
PYTHON="${TRADEFLOW_PYTHON:-python}"
if [ -n "${BYTEWAX_RECOVERY_DIRECTORY:-}" ] && [ ! -e "$BYTEWAX_RECOVERY_DIRECTORY/part-0.sqlite3" ]; then
  mkdir -p "$BYTEWAX_RECOVERY_DIRECTORY"
  "$PYTHON" -m bytewax.recovery "$BYTEWAX_RECOVERY_DIRECTORY" "${TRADEFLOW_RECOVERY_PARTITIONS:-1}"
fi
exec "$PYTHON" -m bytewax.run "$TRADEFLOW_FLOW" "$@"
