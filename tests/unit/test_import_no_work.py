"""Importing a flow module does no work (DESIGN §1, issue 13).

Each flows module is imported in a fresh interpreter, in an empty directory, with the
kafka profile pointed at a broker that does not exist. A module that built its flow at
import time would create ./data, open the broker, or start a thread there; this one
must only define things. ``bytewax.run`` calls ``build_flow()`` itself.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import flows

MODULES = sorted(f"flows.{m.name}" for m in pkgutil.iter_modules(flows.__path__))

CHILD = """
import importlib, json, os, sys, threading
importlib.import_module(sys.argv[1])
fds = []
for fd in os.listdir("/proc/self/fd"):
    try:
        fds.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass  # the fd of the listing itself, closed by now
print(json.dumps({
    "threads": [t.name for t in threading.enumerate() if t is not threading.main_thread()],
    "sockets": [f for f in fds if f.startswith("socket:")],
}))
"""


def test_every_flow_module_is_checked() -> None:
    assert {"flows.indicators", "flows.strategy", "flows.portfolio_risk", "flows.execution"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_flow_module_does_no_work(module: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEFLOW_", "BYTEWAX_"))}
    # a broker that is not there, and a metrics port that would start a server if anything served it
    env.update(
        TRADEFLOW_PROFILE="kafka", TRADEFLOW_KAFKA__BOOTSTRAP="127.0.0.1:1", TRADEFLOW_METRICS_PORT="0"
    )
    # an import takes well under a second; a module that contacted the broker would hang past this
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, module],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"threads": [], "sockets": []}


def test_the_settings_load_no_backend_client(tmp_path: Path) -> None:
    # the local profile never needs confluent-kafka or pyfluss; a bench script run as
    # `python bench/X.py` has bench/ (with kafka.py and fluss.py) first on sys.path
    code = (
        "import sys, connectors.settings, connectors.registry, tradeflow.settings\n"
        "print(sorted(m for m in ('confluent_kafka', 'fluss') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=20
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
