"""``tradeflow status``: a job process's shard, partitions, lag and snapshot age, from its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import load_settings
from tradeflow.infra.common import free_port
from tradeflow.status import bucket_quantile, scrape, summarize

ROOT = Path(__file__).resolve().parents[2]

TEXT = """\
# HELP tradeflow_shard The shard I/N this process runs of its job (value 1)
# TYPE tradeflow_shard gauge
tradeflow_shard{job="portfolio_risk",shard="1/2"} 1.0
# TYPE tradeflow_source_lag gauge
tradeflow_source_lag{partition="1",stream="trade_signals"} 7.0
tradeflow_source_lag{partition="3",stream="trade_signals"} 5.0
tradeflow_source_lag{partition="1",stream="venue_fills"} 0.0
# TYPE tradeflow_last_snapshot_timestamp_seconds gauge
tradeflow_last_snapshot_timestamp_seconds{job="portfolio_risk"} 1000.0
# TYPE tradeflow_dead_letters counter
tradeflow_dead_letters_total{job="portfolio_risk",stream="trade_signals"} 2.0
tradeflow_dead_letters_total{job="portfolio_risk",stream="venue_fills"} 1.0
# TYPE tradeflow_items_in counter
tradeflow_items_in_total{job="portfolio_risk",stream="trade_signals"} 40.0
tradeflow_items_in_total{job="portfolio_risk",stream="control"} 2.0
"""


def test_summarize_reads_shard_partitions_lag_snapshot_age_and_counts() -> None:
    st = summarize("h:1", TEXT, now=1012.5)
    assert (st.job, st.shard, st.alive) == ("portfolio_risk", "1/2", True)
    assert st.partitions == {"trade_signals": [1, 3], "venue_fills": [1]}
    assert st.lag == 12
    assert st.snapshot_age_s == 12.5
    assert (st.dead_letters, st.items_in) == (3, 42)
    assert st.items_in_by_stream == {"trade_signals": 40, "control": 2}


def test_summarize_reads_the_order_latency_histogram_and_bounds_its_quantiles() -> None:
    text = "".join(
        f'tradeflow_order_latency_seconds_bucket{{kind="ack",le="{le}",venue="paper"}} {n}\n'
        for le, n in [("0.001", 2.0), ("0.01", 9.0), ("0.1", 10.0), ("+Inf", 10.0)]
    )
    st = summarize("h:1", "# TYPE tradeflow_order_latency_seconds histogram\n" + text, now=0.0)
    buckets = st.latency_buckets["paper ack"]
    assert (bucket_quantile(buckets, 0.5), bucket_quantile(buckets, 0.99)) == (0.01, 0.1)
    assert bucket_quantile([], 0.5) is None


def test_summarize_of_a_process_without_sources_or_snapshots_says_unknown() -> None:
    st = summarize("h:1", 'tradeflow_shard{job="indicators",shard="0/1"} 1.0\n', now=5.0)
    assert (st.lag, st.snapshot_age_s, st.partitions) == (None, None, {})


def test_a_dead_endpoint_is_not_alive_and_the_command_exits_1() -> None:
    port = free_port()
    assert not scrape(f"127.0.0.1:{port}", 1.0).alive
    out = subprocess.run([sys.executable, "-m", "tradeflow", "status", f"127.0.0.1:{port}", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert json.loads(out.stdout)[0]["alive"] is False


def test_status_of_two_live_shards_of_job_a(tmp_path: Path) -> None:
    """Two shards of Job A, following, with recovery: each shows its partitions and snapshots."""
    data = tmp_path / "data"
    settings = load_settings(data_dir=data, partitions=4)
    w = Connectors(settings).writer("market_data")
    w.write(list(SyntheticMarket(symbols=8, ticks=400, seed=5)))
    w.close()
    ports = [free_port(), free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            env = dict(os.environ, TRADEFLOW_DATA_DIR=str(data), TRADEFLOW_PARTITIONS="4",
                       TRADEFLOW_PROFILE="local", TRADEFLOW_METRICS_PORT=str(port))
            env.pop("TRADEFLOW_SHARD", None)
            cmd = [sys.executable, "-m", "tradeflow", "run", "indicators", "--follow", "--shard", f"{i}/2",
                   "--recovery", str(tmp_path / f"rec-{i}"), "--snapshot-s", "1"]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=open(tmp_path / f"a{i}.log", "wb")))  # noqa: SIM115
        targets = [f"127.0.0.1:{p}" for p in ports]
        deadline = time.monotonic() + 120
        while True:
            rows = [scrape(t) for t in targets]
            done = sum(r.items_in for r in rows) == 400 and all(
                r.alive and r.lag == 0 and r.snapshot_age_s is not None for r in rows)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        logs = "\n".join((tmp_path / f"a{i}.log").read_text(errors="replace")[-2000:] for i in (0, 1))
        assert done, f"{rows}\n{logs}"
        assert [(r.job, r.shard) for r in rows] == [("indicators", "0/2"), ("indicators", "1/2")]
        # each shard reads its own partitions of market_data, and the whole instruments table
        assert [r.partitions for r in rows] == [{"market_data": [0, 2], "instruments": [0]},
                                                {"market_data": [1, 3], "instruments": [0]}]
        assert all(0 <= (r.snapshot_age_s or 0) < 10 for r in rows)
        out = subprocess.run([sys.executable, "-m", "tradeflow", "status", *targets],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert "0/2" in out.stdout
        assert "market_data:1,3" in out.stdout
    finally:
        for p in procs:
            p.kill()
            p.wait(30)
