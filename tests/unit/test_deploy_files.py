"""The container files stay consistent with the code (tests/containers runs them for real)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tradeflow.cli import JOBS, job_target

ROOT = Path(__file__).resolve().parents[2]


def assert_docker_compose_accepts(file: Path) -> None:
    """Fail unless ``docker-compose config -q`` accepts the file (it starts nothing)."""
    checked = subprocess.run(  # noqa: S603 - Debian's docker-compose 1.29 must accept the file as written
        [shutil.which("docker-compose") or "docker-compose", "-f", str(file), "config", "-q"],
        capture_output=True, text=True, check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_file_is_valid_for_docker_compose_and_runs_every_job_from_the_one_image() -> None:
    file = ROOT / "deploy" / "compose.yaml"
    assert_docker_compose_accepts(file)
    compose = yaml.safe_load(file.read_text())
    services = compose["services"]
    assert {"kafka", "venue", "feed"} <= set(services)
    assert services["kafka"]["image"] == "tradeflow-kafka:latest"
    assert services["venue"]["image"] == "tradeflow-venue:latest"
    envs = [s.get("environment", {}) for s in services.values()]
    flows = {env["TRADEFLOW_FLOW"] for env in envs if "TRADEFLOW_FLOW" in env}
    assert {job_target(j) for j in JOBS} | {job_target("strategy:sma_cross")} <= flows
    for name, svc in services.items():
        if "TRADEFLOW_FLOW" in svc.get("environment", {}):
            assert svc["image"] == "tradeflow-job:latest", name
            assert svc["environment"]["TRADEFLOW_KAFKA__BOOTSTRAP"] == "kafka:9092"
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port



def test_fluss_compose_file_is_valid_and_runs_the_cluster_from_the_fluss_image() -> None:
    file = ROOT / "deploy" / "compose-fluss.yaml"
    assert_docker_compose_accepts(file)
    services = yaml.safe_load(file.read_text())["services"]
    for role in ("zookeeper", "coordinator", "tablet-server"):
        assert services[role]["image"] == "tradeflow-fluss:latest"
        assert services[role]["command"] == [role]  # deploy/fluss/run.sh's roles
    run_sh = (ROOT / "deploy" / "fluss" / "run.sh").read_text()
    assert "usage: run.sh zookeeper|coordinator|tablet-server" in run_sh
    for name, svc in services.items():
        env = {k: str(v) for k, v in svc.get("environment", {}).items()}
        if "TRADEFLOW_FLOW" in env:
            assert svc["image"] == "tradeflow-job-fluss:latest", name
            assert env["TRADEFLOW_PROFILE"] == "fluss"
            _settings_from(env)  # every variable is a setting
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_dockerfile_is_multi_stage_non_root_takes_its_base_and_uses_the_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert re.search(r"^ARG BASE=", text, re.M)
    assert re.search(r"^USER tradeflow$", text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert "--mount=type=secret,id=pip_cert" in text  # the proxy's CA: never in a layer
    assert "deploy/entrypoint.sh" in text
    for pkg in ("schemas", "connectors", "operators", "flows", "tradeflow"):
        assert f"COPY {pkg} /src/{pkg}" in text


# --------------------------------------------------------------------- sharded deployment

ENTRYPOINT_ONLY = {
    "TRADEFLOW_FLOW", "TRADEFLOW_SHARDS", "TRADEFLOW_SHARD_INDEX", "TRADEFLOW_FIX_SENDER_PREFIX"
}
"""Variables deploy/entrypoint.sh reads (not settings)."""


def _settings_from(env: dict[str, str]) -> object:
    from connectors.settings import Settings

    nested: dict[str, dict[str, str]] = {}
    flat: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith("TRADEFLOW_") or key in ENTRYPOINT_ONLY:
            continue
        name = key.removeprefix("TRADEFLOW_").lower()
        if "__" in name:
            section, field = name.split("__", 1)
            nested.setdefault(section, {})[field] = value
        else:
            flat[name] = value
    return Settings(**flat, **nested)  # extra="forbid": an unknown variable fails here


def test_compose_runs_each_job_as_shards_with_their_own_recovery_directories() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    jobs = [s for s in compose["services"].values() if "TRADEFLOW_FLOW" in s.get("environment", {})]
    by_flow: dict[str, list[str]] = {}
    dirs = [s["environment"]["BYTEWAX_RECOVERY_DIRECTORY"] for s in jobs]
    assert len(dirs) == len(set(dirs))
    for svc in jobs:
        env = {k: str(v) for k, v in svc["environment"].items()}
        settings = _settings_from(env)
        by_flow.setdefault(env["TRADEFLOW_FLOW"], []).append(settings.shard)  # type: ignore[attr-defined]
        assert settings.kafka.partitions >= settings.shard_of_job.count  # type: ignore[attr-defined]
    for flow, shards in by_flow.items():
        n = len(shards)
        assert sorted(shards) == [f"{i}/{n}" for i in range(n)], flow
    senders = [s["environment"]["TRADEFLOW_FIX__SENDER_COMP_ID"] for s in jobs
               if "TRADEFLOW_FIX__SENDER_COMP_ID" in s["environment"]]
    venue = (ROOT / "deploy" / "fix-venue" / "venue.cfg").read_text()
    for sender in senders:  # one FIX session per Job D shard, known to the venue
        assert f"TargetCompID={sender}\n" in venue


def _k8s_objects() -> list[dict]:
    kust = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    on_disk = {p.name for p in (ROOT / "deploy" / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    return [d for f in sorted(listed) for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / f).read_text())]


def _model(obj: dict) -> object:
    import json

    from kubernetes.client import ApiClient

    api = ApiClient()
    kind = {"StatefulSet": "V1StatefulSet", "Service": "V1Service", "ConfigMap": "V1ConfigMap"}[obj["kind"]]
    model = api.deserialize(json.dumps(obj), kind, "application/json")
    # Round trip: a field the client's model does not know (a typo) is lost on the way.
    assert api.sanitize_for_serialization(model) == obj, f"{obj['kind']} {obj['metadata']['name']}"
    return model


def test_k8s_manifests_are_valid_models_and_match_the_code() -> None:
    objs = _k8s_objects()
    models = [(o, _model(o)) for o in objs]
    (config,) = [o for o in objs if o["kind"] == "ConfigMap"]
    cfg = config["data"]
    assert _settings_from(cfg).metrics_host == "0.0.0.0"  # type: ignore[attr-defined]  # noqa: S104
    metrics_port = int(cfg["TRADEFLOW_METRICS_PORT"])
    entrypoint = (ROOT / "deploy" / "entrypoint.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    sets = [(o, m) for o, m in models if o["kind"] == "StatefulSet"]
    flows = set()
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    for _, sts in sets:
        spec = sts.spec  # type: ignore[attr-defined]
        assert spec.service_name in services
        (c,) = spec.template.spec.containers
        assert c.command == ["tradeflow-entrypoint"]
        assert "/usr/local/bin/tradeflow-entrypoint" in dockerfile
        assert c.env_from[0].config_map_ref.name == config["metadata"]["name"]
        env = {e.name: e for e in c.env}
        flows.add(env["TRADEFLOW_FLOW"].value)
        for name in ENTRYPOINT_ONLY & env.keys() - {"TRADEFLOW_FLOW"}:
            assert name in entrypoint, name
        assert env["TRADEFLOW_SHARD_INDEX"].value_from.field_ref.field_path == (
            "metadata.labels['apps.kubernetes.io/pod-index']"
        )
        assert int(env["TRADEFLOW_SHARDS"].value) == spec.replicas <= int(cfg["TRADEFLOW_KAFKA__PARTITIONS"])
        plain = {k: e.value for k, e in env.items() if e.value is not None}
        _settings_from({**cfg, **plain, "TRADEFLOW_SHARD": f"0/{spec.replicas}"})  # every name is a setting
        (port,) = c.ports
        assert port.container_port == metrics_port
        assert c.readiness_probe.http_get.port == port.name
        assert c.readiness_probe.http_get.path == "/metrics"
        (claim,) = spec.volume_claim_templates  # one PersistentVolumeClaim per shard
        assert c.volume_mounts[0].name == claim.metadata.name
        assert env["BYTEWAX_RECOVERY_DIRECTORY"].value.startswith(c.volume_mounts[0].mount_path)
    assert {job_target(j) for j in JOBS} | {job_target("strategy:sma_cross")} <= flows


def test_entrypoint_derives_the_shard_from_the_pod_ordinal(tmp_path: Path) -> None:
    import os
    import subprocess

    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$TRADEFLOW_SHARD $TRADEFLOW_FIX__SENDER_COMP_ID"\n')
    fake.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "TRADEFLOW_PYTHON": str(fake), "TRADEFLOW_SHARDS": "4"}
    run = lambda env: subprocess.run(  # noqa: E731
        ["sh", str(ROOT / "deploy" / "entrypoint.sh")], env={**base, **env}, capture_output=True, text=True,
        check=True,
    ).stdout.strip()
    assert run({"HOSTNAME": "portfolio-risk-3"}) == "3/4"
    by_label = {"HOSTNAME": "x-3", "TRADEFLOW_SHARD_INDEX": "2", "TRADEFLOW_FIX_SENDER_PREFIX": "TF"}
    assert run(by_label) == "2/4 TF2"
    assert run({"HOSTNAME": "x-3", "TRADEFLOW_SHARD": "1/2"}) == "1/2"
