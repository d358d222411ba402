"""The container files stay consistent with the code (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tradeflow.cli import JOBS, job_target

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_parses_and_runs_every_job_from_the_one_image() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "zookeeper", "fluss-coordinator", "fluss-tablet", "fix-venue"} <= set(services)
    envs = [s.get("environment", {}) for s in services.values()]
    flows = {env["TRADEFLOW_FLOW"] for env in envs if "TRADEFLOW_FLOW" in env}
    assert {job_target(j) for j in JOBS} | {job_target("strategy:sma_cross")} <= flows
    for name, svc in services.items():
        if "TRADEFLOW_FLOW" in svc.get("environment", {}):
            assert svc["image"] == "tradeflow:latest", name
            assert svc["environment"]["TRADEFLOW_KAFKA__BOOTSTRAP"] == "kafka:9092"
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_dockerfile_is_multi_stage_non_root_and_uses_the_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert re.search(r"^USER tradeflow$", text, re.M)
    assert "deploy/entrypoint.sh" in text
    for pkg in ("schemas", "connectors", "operators", "flows", "tradeflow"):
        assert f"COPY {pkg} {pkg}" in text
