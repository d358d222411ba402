"""Container figures (issue #18): image sizes, build time, compose up to the first order.

Builds every image from the debootstrap base with ``--no-cache`` (the base itself is
made once and reused; ``base_s`` is how long making it took, 0 when it existed), then
starts the whole system with docker-compose, feeds a synthetic market through the
one-shot feed service and times the first validated order, then ``down -v``.

    .venv/bin/python bench/images.py [--ticks 4000]

Needs a Docker engine (started here when none answers and we are root), docker-compose
and debootstrap. Last line: JSON with ``job_image_mb``, ``tools_image_mb``, ``build_s``,
``compose_up_to_first_order_s`` (and ``job_vs_tools_mb``, the job image against the tools
image built in the same run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import report  # noqa: E402
from connectors.registry import Connectors  # noqa: E402
from connectors.settings import load_settings  # noqa: E402
from tradeflow.infra.containers import Compose, DockerEngine  # noqa: E402
from tradeflow.infra.images import BASE, build_all, default_pip_cert  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=4000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tradeflow-bench-images-"))
    engine = DockerEngine(work / "dockerd.log").ensure()
    try:
        started = time.monotonic()
        built = build_all(pip_cert=default_pip_cert(), no_cache=True)
        build_s = time.monotonic() - started - built[BASE].seconds
        compose = Compose(f"tfbench{int(time.time())}",
                          env={"TRADEFLOW_FEED_ARGS": f"--ticks {args.ticks} --symbols 4"})
        conn = Connectors(load_settings(profile="kafka", data_dir=work / "host",
                                        kafka={"bootstrap": "127.0.0.1:29092"}))
        try:
            up = time.monotonic()
            compose.up()
            feeder = compose.start_run("feed")
            first = None
            while first is None and time.monotonic() - up < 300:
                try:
                    if conn.size("validated_orders") > 0:
                        first = time.monotonic() - up
                except Exception:  # noqa: BLE001, S110 - the broker is still starting
                    pass
                time.sleep(0.2)
            feeder.communicate(timeout=300)
        finally:
            compose.down()
    finally:
        engine.stop()
    job, tools = built["tradeflow-job"].mb, built["tradeflow-tools"].mb
    report({
        "job_image_mb": job,
        "job_fluss_image_mb": built["tradeflow-job-fluss"].mb,
        "tools_image_mb": tools,
        "kafka_image_mb": built["tradeflow-kafka"].mb,
        "fluss_image_mb": built["tradeflow-fluss"].mb,
        "venue_image_mb": built["tradeflow-venue"].mb,
        "base_image_mb": built[BASE].mb,
        "job_vs_tools_mb": round(job / tools, 2),
        "base_s": built[BASE].seconds,
        "build_s": round(build_s, 1),
        "compose_up_to_first_order_s": None if first is None else round(first, 1),
    })


if __name__ == "__main__":
    main()
