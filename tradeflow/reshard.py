"""``tradeflow reshard JOB --from N --to M``: move a job from N shards to M, offline.

Job C (``portfolio_risk``) is a fold of its input journal (``risk_journal``, per
account, ``operators.sequencing.fold``), so its per-shard state is not moved between
recovery stores: it is rebuilt. With the N old shards stopped, each new shard ``j/M``
gets a fresh recovery store ``<root>/<j>-of-<M>`` and one catch-up run of the flow as
``TRADEFLOW_SHARD=j/M`` over the input as it is now (``TRADEFLOW_UNTIL_END``: every
source stops at its current end). In that run each book of an account the new shard
owns applies the account's journal (``BookLogic._catch_up``), every input re-read is
dropped as already journaled (by input position and signal id), and the router
re-reads the tables and the market data. Its snapshot is then what the new shard
resumes from, so new input after the reshard meets the same state as in a run that
never resharded. Records the catch-up re-emits are identical to the ones already
written (sinks drop repeated ids; table rows are upserts of the same values).

The other jobs are refused: their state is not journaled (A, B: indicator and strategy
windows; D: the venue session and its order map, which must never re-send), so their
shard count is changed by draining them and starting the new shards on fresh input.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from connectors.sharding import Shard

RESHARDABLE = {"portfolio_risk": "flows.portfolio_risk:build_flow()"}


class ReshardError(Exception):
    """The reshard cannot be done as asked (printed as ``error: ...``)."""


def shard_dir(root: Path, shard: Shard) -> Path:
    """Return the recovery store of a shard under a job's recovery root: ``<i>-of-<n>``."""
    return root / f"{shard.index}-of-{shard.count}"


def reshard(
    job: str, old: int, new: int, root: Path, env: dict[str, str],
    say: Callable[[str], None] = print, snapshot_s: int = 1,
) -> list[Path]:
    """Rebuild the state of ``new`` shards of ``job`` under ``root``; return their stores."""
    if job not in RESHARDABLE:
        raise ReshardError(
            f"{job} cannot be resharded offline: only Job C (portfolio_risk) rebuilds its state from a "
            f"journal; drain {job} and start its new shards instead"
        )
    if old < 1 or new < 1:
        raise ReshardError("shard counts must be >= 1")
    if old == new:
        raise ReshardError(f"{job} already runs as {new} shards")
    missing = [d for i in range(old) if not (d := shard_dir(root, Shard(i, old))).exists()]
    if missing:
        raise ReshardError(f"no recovery store of the old shards at {', '.join(map(str, missing))}")
    targets = [shard_dir(root, Shard(j, new)) for j in range(new)]
    if taken := [d for d in targets if d.exists()]:
        raise ReshardError(f"recovery stores of the new shards exist already: {', '.join(map(str, taken))}")
    for j, target in enumerate(targets):
        shard = Shard(j, new)
        started = time.monotonic()
        target.mkdir(parents=True)
        _run([sys.executable, "-m", "bytewax.recovery", str(target), "1"], env)
        catch_up = dict(env, TRADEFLOW_SHARD=str(shard), TRADEFLOW_UNTIL_END="true", TRADEFLOW_FOLLOW="false")
        _run([sys.executable, "-m", "bytewax.run", RESHARDABLE[job], "-r", str(target), "-s",
              str(snapshot_s), "-b", "0"], catch_up)
        took = time.monotonic() - started
        say(f"shard {shard}: state rebuilt from the journal in {took:.1f} s -> {target}")
    say(f"start each with: tradeflow run {job} --follow --shard J/{new} --recovery {root}/J-of-{new}; "
        f"the {old} old stores ({root}/*-of-{old}) are no longer used")
    return targets


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise ReshardError(f"{' '.join(cmd[1:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def environment() -> dict[str, str]:
    """Return this process's environment, without a shard of its own."""
    env = dict(os.environ)
    env.pop("TRADEFLOW_SHARD", None)
    return env
