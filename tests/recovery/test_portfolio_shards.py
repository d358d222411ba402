"""Job C as N shards (``TRADEFLOW_SHARD=I/N``) decides exactly what one process decides.

The input is tests/recovery/test_portfolio_kill.py's scenario (13 accounts and a ghost,
8 symbols, every risk path), written in its four phases so that the order between
streams does not matter (see that module's docstring), plus one account-scoped control
row (a shard must not route it to another shard's account). One embedded store with 4
partitions per log stream; the shards of a phase run at once, each as its own
``python -m bytewax.run`` process with its own recovery store, until the phase ends.

A reshard 2 -> 4 between the signals and the fills phases (``tradeflow reshard
portfolio_risk --from 2 --to 4``: fresh recovery stores, state rebuilt from the journal)
must end in the same outputs too.

Compared with the unsharded run: every risk decision (but its wall-clock latency),
validated_orders and risk_events record for record, and the latest portfolio_state,
positions_state and orders rows byte for byte. Each shard's recovery store holds books
only for the accounts it owns (``partition_for(account) % N == I``), so no shard can
have published a row of another shard's account.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.embedded.store import partition_for
from connectors.registry import Connectors
from schemas import Control, Record, TradingState, VenueFill
from tests.helpers import read_all
from tests.recovery.procs import env_for, init_recovery, start
from tests.recovery.test_portfolio_kill import (
    ACCOUNTS,
    GHOST,
    NORMAL,
    JobCStore,
    Scenario,
    at,
    fills_for,
    scenario,
)

pytestmark = pytest.mark.recovery

PARTITIONS = 4
SIGNALS = 1500
FLOW = ["-m", "bytewax.run", "flows.portfolio_risk:build_flow()"]
TABLES = ["portfolio_state", "positions_state", "orders"]
REDUCED = NORMAL[3]


@dataclass(frozen=True)
class ShardedStore(JobCStore):
    """One embedded store and the Job C shards (each with its recovery store) running on it."""

    partitions: int = PARTITIONS

    def env(self, shard: str | None) -> dict[str, str]:
        extra = {"TRADEFLOW_PARTITIONS": str(self.partitions)}
        if shard is not None:
            extra["TRADEFLOW_SHARD"] = shard
        return env_for(self.data, **extra)

    def recovery(self, shard: str | None) -> Path:
        """Return a shard's recovery store, named as tradeflow reshard does: ``recovery/<i>-of-<n>``."""
        return self.root / "recovery" / ("unsharded" if shard is None else shard.replace("/", "-of-"))

    def phase(self, streams: dict[str, Sequence[Record]], shards: int) -> None:
        """Write one phase's input, run every shard on it at once to its end."""
        self.write(streams)
        names = [None] if shards == 1 else [f"{i}/{shards}" for i in range(shards)]
        procs = []
        for shard in names:
            rec, log = self.recovery(shard), self.root / "flow.log"
            if not rec.exists():
                init_recovery(rec, self.env(shard), log)
            cmd = [*FLOW, "-r", str(rec), "-s", "1", "-b", "0"]
            procs.append((shard, start(cmd, self.env(shard), log)))
        for shard, proc in procs:
            rc = proc.wait(300)
            assert rc == 0, f"shard {shard} exited {rc}:\n{(self.root / 'flow.log').read_text()[-3000:]}"
        self.reopen()

    def book_accounts(self, shard: str) -> set[str]:
        """Return the accounts the shard's recovery store holds a book for."""
        path = self.recovery(shard) / "part-0.sqlite3"
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT DISTINCT state_key FROM snaps WHERE step_id = 'portfolio_risk.books'")
            return {key for (key,) in rows}


@dataclass(frozen=True)
class Outcome:
    decisions: dict[str, dict[str, object]]
    orders: Counter[bytes]
    events: Counter[bytes]
    tables: dict[str, dict[str, bytes]]

    @classmethod
    def of(cls, store: ShardedStore) -> Outcome:
        return cls(store.decisions(), Counter(store.payloads("validated_orders")),
                   Counter(store.payloads("risk_events")), {t: store.latest(t) for t in TABLES})


def _setup(sc: Scenario) -> dict[str, Sequence[Record]]:
    reduce = Control(scope=f"account:{REDUCED}", state=TradingState.REDUCING, reason="desk review", ts=at(0))
    return {"accounts": sc.accounts, "symbol_limits": sc.symbol_limits, "control": [*sc.control, reduce],
            "market_data": sc.ticks}


def run_phases(store: ShardedStore, sc: Scenario, fills: list[VenueFill] | None,
               shards: Sequence[int]) -> list[VenueFill]:
    """Run the four phases with ``shards[i]`` shards in phase i; return the fills used."""
    store.phase(_setup(sc), shards[0])
    store.phase({"trade_signals": sc.signals}, shards[1])
    if fills is None:
        fills = fills_for(read_all(Connectors(store.settings), "validated_orders"), sc.last_px)
    store.phase({"venue_fills": fills}, shards[2])
    store.phase({"market_data": sc.close}, shards[3])
    return fills


@dataclass(frozen=True)
class Reference:
    scenario: Scenario
    fills: list[VenueFill]
    outcome: Outcome


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The unsharded run (one process) over the same store layout."""
    sc = scenario(SIGNALS)
    store = ShardedStore(tmp_path_factory.mktemp("unsharded"))
    fills = run_phases(store, sc, None, [1, 1, 1, 1])
    return Reference(sc, fills, Outcome.of(store))


def assert_same(got: Outcome, want: Outcome, signals: int) -> None:
    assert len(want.decisions) == signals
    assert got.decisions.keys() == want.decisions.keys()
    differ = [k for k in want.decisions if got.decisions[k] != want.decisions[k]]
    assert not differ, f"{len(differ)} decisions differ, e.g. {got.decisions[differ[0]]!r}"
    logs = (("validated_orders", got.orders, want.orders), ("risk_events", got.events, want.events))
    for name, g, w in logs:
        extra, missing = g - w, w - g
        assert (len(extra), len(missing)) == (0, 0), f"{name}: (extra, missing) records"
    for table in TABLES:
        g, w = got.tables[table], want.tables[table]
        assert g.keys() == w.keys(), table
        diff = [k for k in w if g[k] != w[k]]
        assert not diff, f"{table}: {len(diff)} rows differ, e.g. {g[diff[0]]!r} != {w[diff[0]]!r}"


def test_the_reference_exercises_what_sharding_must_keep(reference: Reference) -> None:
    out = reference.outcome
    accounts = {str(d["account"]) for d in out.decisions.values()}
    assert accounts == {*ACCOUNTS, GHOST}
    owners = {partition_for(a, PARTITIONS) for a in accounts}
    assert owners == set(range(PARTITIONS)), "every partition (so every shard of 4) has accounts"
    assert sum(d["decision"] == "PASS" for d in out.decisions.values()) > len(out.decisions) // 5
    reduced = [d for d in out.decisions.values() if d["account"] == REDUCED]
    assert any(not r["passed"] and r["rule"] == "TRADING_HALTED" for d in reduced for r in d["rules"])  # type: ignore[attr-defined]
    assert len(reference.fills) > 300


@pytest.mark.parametrize("shards", [2, 4])
def test_n_shards_decide_exactly_what_one_process_decides(
    reference: Reference, tmp_path: Path, shards: int
) -> None:
    store = ShardedStore(tmp_path)
    run_phases(store, reference.scenario, reference.fills, [shards] * 4)
    assert_same(Outcome.of(store), reference.outcome, len(reference.scenario.signals))
    every = {*ACCOUNTS, GHOST}
    seen: set[str] = set()
    for i in range(shards):
        books = store.book_accounts(f"{i}/{shards}")
        assert books == {a for a in every if partition_for(a, PARTITIONS) % shards == i}, f"shard {i}"
        seen |= books
    assert seen == every
    letters = [json.loads(r)["reason"] for r in store.payloads("dead_letters")]
    assert not [r for r in letters if "belongs in partition" in r]


def test_reshard_2_to_4_mid_run_gives_the_outputs_of_a_run_never_resharded(
    reference: Reference, tmp_path: Path
) -> None:
    sc = reference.scenario
    store = ShardedStore(tmp_path)
    store.phase(_setup(sc), 2)
    store.phase({"trade_signals": sc.signals}, 2)
    proc = subprocess.run(
        [sys.executable, "-m", "tradeflow", "reshard", "portfolio_risk", "--from", "2", "--to", "4",
         "--recovery-root", str(store.root / "recovery")],
        env=store.env(None), capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("state rebuilt from the journal") == 4
    store.phase({"venue_fills": reference.fills}, 4)
    store.phase({"market_data": sc.close}, 4)
    assert_same(Outcome.of(store), reference.outcome, len(sc.signals))
    every = {*ACCOUNTS, GHOST}
    for i in range(4):
        assert store.book_accounts(f"{i}/4") == {a for a in every if partition_for(a, PARTITIONS) % 4 == i}
