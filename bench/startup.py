"""How long each job takes to start on Kafka, against the same job on the embedded store.

A restarted job (after a crash, a deploy, a chaos kill) is down for its start-up: it
imports, builds its flow, opens a client per source and sink, creates or looks up its
topics and reads where each partition starts. Measured in one run:

- ``<job>_kafka_start_s``: the median wall time of ``python -m bytewax.run <job>`` as a
  bounded run over its empty topics (``TRADEFLOW_UNTIL_END``: it stops at once where
  they end), process start to exit, over ``--repeat`` runs after a first one that
  creates the topics (not counted);
- ``<job>_embedded_start_s``: the same on the embedded store, the baseline (imports,
  building the flow and Bytewax, without a broker to talk to);
- ``<job>_kafka_vs_embedded``: their ratio (1.0: the broker costs nothing at start-up).

The broker is started here (``tradeflow.infra.kafka.KafkaBroker``, a temp dir) and
stopped at the end, also on error or Ctrl-C. The last line printed is one JSON object.

Usage: ``python bench/startup.py [--repeat N]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _root import ROOT
from tqdm import tqdm

from bench.harness import report, running, workdir
from connectors.settings import Settings, load_settings
from tradeflow.infra.kafka import KafkaBroker
from tradeflow.pipeline import job_env

JOBS = {
    "indicators": "flows.indicators:build_flow()",
    "strategy": "flows.strategy:build_flow('sma_cross')",
    "portfolio_risk": "flows.portfolio_risk:build_flow()",
    "execution": "flows.execution:build_flow()",
}


def start_s(settings: Settings, target: str) -> float:
    """Return the wall time of one bounded run of ``target`` over what its inputs hold."""
    env = job_env(settings) | {"TRADEFLOW_FOLLOW": "false", "TRADEFLOW_UNTIL_END": "true"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bytewax.run", target], cwd=ROOT, env=env,  # noqa: S603
                          capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{target} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per job and data plane")
    args = ap.parse_args()
    result: dict[str, object] = {"repeat": args.repeat}
    with workdir("bench-startup-") as (work, _), running(KafkaBroker(work / "kafka")) as broker:
        planes = {
            "embedded": load_settings(data_dir=work / "embedded"),
            "kafka": load_settings(data_dir=work / "kafka-data", profile="kafka",
                                   kafka={"bootstrap": broker.bootstrap_servers, "topic_prefix": "start."}),
        }
        runs = [(job, plane) for job in JOBS for plane in planes]
        median: dict[tuple[str, str], float] = {}
        with tqdm(total=len(runs) * (args.repeat + 1), desc="start-ups", unit="run") as bar:
            for job, plane in runs:
                times = []
                for i in range(args.repeat + 1):
                    took = start_s(planes[plane], JOBS[job])
                    if i:  # the first run creates the topics and store files
                        times.append(took)
                    bar.update()
                median[job, plane] = statistics.median(times)
                result[f"{job}_{plane}_start_s"] = round(median[job, plane], 2)
    for job in JOBS:
        result[f"{job}_kafka_vs_embedded"] = round(median[job, "kafka"] / median[job, "embedded"], 2)
    report(result)


if __name__ == "__main__":
    main()
