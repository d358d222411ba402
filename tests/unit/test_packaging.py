"""Packaging (issue 13): every import is declared, the local profile needs only the base.

The base dependencies are what the local profile, Jobs A-D on it, the feeds and the CLI
need; the kafka and fluss backends, the run report and the dev tools are extras.
requirements.lock pins everything `make` installs; requirements-job.lock is the Docker
image's subset (base + kafka + fluss) at the same versions.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "operators", "connectors", "schemas", "tradeflow")
OWN = {*PACKAGES, "tests", "bench", "_root"}
"""Our own top-level modules (``_root``: bench/_root.py, which each bench script imports by name)."""
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """``"confluent-kafka==2.16.1  # x"`` -> ``"confluent-kafka"`` (PEP 503 normalised)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


BASE = {_name(r) for r in PYPROJECT["dependencies"]}
EXTRAS = {extra: {_name(r) for r in reqs} for extra, reqs in PYPROJECT["optional-dependencies"].items()}


def _imports(tree: Path) -> dict[str, set[str]]:
    """Top-level module of every import (module level or lazy) under ``tree`` -> files."""
    found: dict[str, set[str]] = {}
    for path in tree.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def _third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m not in OWN}


def _distributions(module: str) -> set[str]:
    dists = packages_distributions().get(module)
    assert dists, f"{module} is imported but no installed distribution provides it"
    return {_name(d) for d in dists}


def test_the_extras_are_the_ones_the_issue_names() -> None:
    assert {"kafka", "fluss", "report", "console", "dev"} <= set(EXTRAS)
    assert {"confluent-kafka", "pyfluss", "matplotlib"}.isdisjoint(BASE)
    assert "confluent-kafka" in EXTRAS["kafka"]
    assert "pyfluss" in EXTRAS["fluss"]
    assert "pyarrow" in EXTRAS["parquet"]
    assert "pyarrow" not in BASE  # so the job image (base + kafka) has no Arrow
    assert "matplotlib" in EXTRAS["report"]
    assert {"starlette", "uvicorn", "sse-starlette"} <= EXTRAS["console"]


def test_every_import_of_the_code_is_declared_in_the_base_or_an_extra() -> None:
    declared = BASE.union(*(reqs for extra, reqs in EXTRAS.items() if extra != "dev"))
    missing = {}
    for package in PACKAGES:
        for module, files in _third_party(_imports(ROOT / package)).items():
            if not _distributions(module) & declared:
                missing[module] = sorted(files)
    assert missing == {}


def test_every_import_of_the_tests_and_benches_is_declared() -> None:
    declared = BASE.union(*EXTRAS.values())
    missing = {}
    for tree in ("tests", "bench"):
        for module, files in _third_party(_imports(ROOT / tree)).items():
            if not _distributions(module) & declared:
                missing[module] = sorted(files)
    assert missing == {}


def test_backend_and_report_imports_stay_in_their_modules() -> None:
    # an extra is imported only by the modules that need it, so the base never pulls it in
    allowed = {
        "confluent_kafka": ("connectors/kafka/", "tradeflow/infra/kafka.py"),
        "fluss": ("connectors/fluss/", "tradeflow/infra/fluss.py"),
        "matplotlib": ("tradeflow/report",),
        "starlette": ("tradeflow/console/",),
        "sse_starlette": ("tradeflow/console/",),
        "uvicorn": ("tradeflow/console/",),
    }
    for package in PACKAGES:
        found = _imports(ROOT / package)
        for module, prefixes in allowed.items():
            stray = sorted(f for f in found.get(module, ()) if not f.startswith(prefixes))
            assert stray == [], module


BLOCKED = ("confluent_kafka", "fluss", "matplotlib", "starlette", "sse_starlette", "uvicorn", "pyarrow")

BASE_ONLY = """
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())

import flows.execution, flows.indicators, flows.portfolio_risk, flows.strategy
from tradeflow import cli

flows.indicators.build_flow()
flows.strategy.build_flow("sma_cross")
flows.portfolio_risk.build_flow()
flows.execution.build_flow()
assert cli.main(["feed", "--ticks", "50", "--symbols", "2"]) == 0
assert cli.main(["report"]) != 0
open("ticks.parquet", "wb").write(b"PAR1")
assert cli.main(["feed", "--input", "ticks.parquet"]) != 0
assert cli.main(["console"]) != 0
print("ok")
"""


def test_the_local_profile_runs_without_any_extra(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEFLOW_", "BYTEWAX_"))}
    env.update(TRADEFLOW_PROFILE="local", TRADEFLOW_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run(
        [sys.executable, "-c", BASE_ONLY.format(blocked=BLOCKED)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ok"
    assert "tradeflow[report]" in proc.stderr
    assert "tradeflow[console]" in proc.stderr
    assert "tradeflow[parquet]" in proc.stderr


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"([A-Za-z0-9._-]+)==([^ \\;]+)", line):
            pins[_name(match.group(1))] = match.group(2)
    return pins


def test_the_lock_pins_every_declared_package_with_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text()
    pins = _pins(ROOT / "requirements.lock")
    assert BASE.union(*EXTRAS.values()) - {"tradeflow"} <= set(pins)
    for requirement in [*PYPROJECT["dependencies"], *sum(PYPROJECT["optional-dependencies"].values(), [])]:
        if "==" in requirement:
            assert pins[_name(requirement)] == requirement.split("==")[1].split()[0], requirement
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in b for b in blocks if re.match(r"[A-Za-z0-9]", b))


@pytest.mark.parametrize("tool", ["Makefile", "Dockerfile"])
def test_make_and_docker_install_from_a_lock_with_hashes(tool: str) -> None:
    text = (ROOT / tool).read_text()
    assert "--require-hashes -r" in text
    assert "--no-deps" in text


@pytest.mark.parametrize(
    ("lock", "has", "lacks"),
    [
        ("requirements-job-kafka.lock", {"confluent-kafka", "bytewax"}, {"pyfluss"}),
        ("requirements-job.lock", {"confluent-kafka", "pyfluss", "bytewax"}, set()),
        ("requirements-tools.lock", {"confluent-kafka", "matplotlib", "starlette"}, {"pytest", "mypy"}),
    ],
)
def test_the_image_locks_hold_what_each_image_needs_at_the_full_locks_versions(
    lock: str, has: set[str], lacks: set[str]
) -> None:
    assert lock in (ROOT / "Dockerfile").read_text()
    pins, full = _pins(ROOT / lock), _pins(ROOT / "requirements.lock")
    assert has <= set(pins)
    dev = {"pytest", "mypy", "ruff", "selenium"}
    assert (lacks | dev).isdisjoint(pins) if "tools" not in lock else lacks.isdisjoint(pins)
    if "tools" not in lock:
        assert {"matplotlib", "ta-lib", "pillow", "starlette"}.isdisjoint(pins)
    assert {name: full[name] for name in pins} == pins
