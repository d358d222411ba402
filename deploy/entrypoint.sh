#!/bin/sh
# Run one tradeflow job with the Bytewax CLI. TRADEFLOW_FLOW names the flow
# (e.g. flows.indicators:build_flow() or "flows.strategy:build_flow('sma_cross')");
# extra arguments go to bytewax.run (e.g. -r /recovery -s 5 -b 0).
set -eu
: "${TRADEFLOW_FLOW:=flows.indicators:build_flow()}"
PYTHON="${TRADEFLOW_PYTHON:-python}"
# A replica of a StatefulSet of TRADEFLOW_SHARDS shards: its pod ordinal (the downward
# API's apps.kubernetes.io/pod-index label in TRADEFLOW_SHARD_INDEX, else the suffix
# of the pod name) is its shard; TRADEFLOW_SHARD set by hand wins.
if [ -z "${TRADEFLOW_SHARD:-}" ] && [ -n "${TRADEFLOW_SHARDS:-}" ]; then
  index="${TRADEFLOW_SHARD_INDEX:-${HOSTNAME##*-}}"
  export TRADEFLOW_SHARD="$index/$TRADEFLOW_SHARDS"
  # Job D on FIX: one session per shard (SenderCompID <prefix><index>, its own store).
  if [ -n "${TRADEFLOW_FIX_SENDER_PREFIX:-}" ]; then
    export TRADEFLOW_FIX__SENDER_COMP_ID="${TRADEFLOW_FIX_SENDER_PREFIX}${index}"
  fi
fi
if [ -n "${BYTEWAX_RECOVERY_DIRECTORY:-}" ] && [ ! -e "$BYTEWAX_RECOVERY_DIRECTORY/part-0.sqlite3" ]; then
  mkdir -p "$BYTEWAX_RECOVERY_DIRECTORY"
  "$PYTHON" -m bytewax.recovery "$BYTEWAX_RECOVERY_DIRECTORY" "${TRADEFLOW_RECOVERY_PARTITIONS:-1}"
fi
exec "$PYTHON" -m bytewax.run "$TRADEFLOW_FLOW" "$@"
