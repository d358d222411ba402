"""Seeded chaos trials of the whole pipeline on every profile (tradeflow/chaos.py).

Per profile: one uncrashed reference run of a seeded synthetic market, then N trials
of the same market in which a seeded schedule SIGKILLs one to three processes at once
(Jobs A, B per strategy, C, D, or the feed writer), several times, each restarted from
its recovery snapshot (the feed with --resume). Each trial is compared with the
reference and checked on its own (duplicate ids, contradictory records, undecided
signals, risk replay). The Kafka broker and the Fluss cluster are started here
(tradeflow.infra, temp dirs) and stopped at the end.

    python bench/chaos.py                       # 20 local, 5 kafka, 3 fluss trials
    python bench/chaos.py --local 3 --kafka 0 --fluss 0 --ticks 1500

Last line: one JSON object with ``trials``, ``trials_with_diff``, ``duplicate_ids``,
``contradictory_records``, ``undecided_signals``, ``replay_exact_pct`` (over every
trial), per-profile figures, and which records differed from the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import _root  # noqa: F401 - first: puts the repository root on sys.path

from connectors.settings import Settings, load_settings
from tradeflow import chaos
from tradeflow.infra.fluss import FlussCluster
from tradeflow.infra.kafka import KafkaBroker

SettingsFor = Callable[[Path, str], Settings]


@contextmanager
def local() -> Iterator[SettingsFor]:
    yield lambda data, run: load_settings(data_dir=data)


@contextmanager
def kafka(work: Path) -> Iterator[SettingsFor]:
    with KafkaBroker(work / "kafka") as broker:
        boot = broker.bootstrap_servers
        yield lambda data, run: load_settings(
            data_dir=data, profile="kafka",
            kafka={"bootstrap": boot, "topic_prefix": f"{run}.", "partitions": 2},
        )


@contextmanager
def fluss(work: Path) -> Iterator[SettingsFor]:
    with FlussCluster(work / "fluss", buckets=2) as cluster:
        boot = cluster.bootstrap_servers
        yield lambda data, run: load_settings(
            data_dir=data, profile="fluss", fluss={"bootstrap": boot, "database": run, "buckets": 2}
        )


def run_profile(
    name: str, servers: AbstractContextManager[SettingsFor], trials: int, market: chaos.Market,
    kills: int, work: Path,
) -> list[chaos.TrialResult]:
    if trials <= 0:
        return []
    with servers as settings_for:
        tag = uuid.uuid4().hex[:6]
        started = time.monotonic()
        reference = chaos.run(settings_for(work / name / "reference", f"chaos_{tag}_ref"), market, [])
        print(f"{name}: reference run in {time.monotonic() - started:.1f}s, "
              f"{len(reference.records['risk_decisions'])} decisions", file=sys.stderr, flush=True)
        out = []
        for n in range(trials):
            settings = settings_for(work / name / f"trial{n}", f"chaos_{tag}_t{n}")
            result = chaos.trial(n, settings, market, reference, kills=kills)
            out.append(result)
            diff = {k: v for k, v in result.differences.items() if v}
            print(f"{name} trial {n}: {len(result.kills)} kills "
                  f"({', '.join('+'.join(k.names) for k in result.kills)}), "
                  f"dup {result.duplicate_ids}, contradictory {result.contradictory_records}, "
                  f"undecided {result.undecided_signals}, replay {result.replay_exact_pct:.1f}%, "
                  f"differs {diff or 'nowhere'} ({result.seconds:.0f}s)", file=sys.stderr, flush=True)
            for name, described in result.examples.items():
                for line in described:
                    print(f"  {name} {line}", file=sys.stderr, flush=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local", type=int, default=20, help="trials on the embedded store")
    ap.add_argument("--kafka", type=int, default=5, help="trials on a real Kafka broker")
    ap.add_argument("--fluss", type=int, default=3, help="trials on a real Fluss cluster")
    ap.add_argument("--ticks", type=int, default=2000)
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--speed", type=float, default=25.0, help="feed pace (event time per wall second)")
    ap.add_argument("--kills", type=int, default=3, help="kill moments per trial")
    args = ap.parse_args()
    market = chaos.Market(ticks=args.ticks, symbols=args.symbols, speed=args.speed)
    results: dict[str, list[chaos.TrialResult]] = {}
    with tempfile.TemporaryDirectory(prefix="tradeflow-chaos-") as tmp:
        work = Path(tmp)
        results["local"] = run_profile("local", local(), args.local, market, args.kills, work)
        results["kafka"] = run_profile("kafka", kafka(work) if args.kafka else nullcontext(), args.kafka,
                                       market, args.kills, work)
        results["fluss"] = run_profile("fluss", fluss(work) if args.fluss else nullcontext(), args.fluss,
                                       market, args.kills, work)
    everything = [r for rs in results.values() for r in rs]
    figures = chaos.summary(everything)
    figures["profiles"] = {name: chaos.summary(rs) for name, rs in results.items() if rs}
    figures["ticks"], figures["kills_per_trial"] = args.ticks, args.kills
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
