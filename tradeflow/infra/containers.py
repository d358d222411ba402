"""Run the system under docker-compose: the engine, a compose project, its volumes.

- ``DockerEngine.ensure()``: a reachable Docker engine. When none answers and we may
  start one (root, Debian's ``dockerd`` installed), it starts ``dockerd`` (its log in
  ``log_path``) and ``stop()`` stops it again; an engine that was already running is
  left alone.
- ``Compose(project, file)``: ``up``, ``run`` a one-shot service, ``kill``/``start`` one
  service's containers, ``exec`` into one, ``down -v``, through Debian's
  ``docker-compose`` 1.29 (the file is written for it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tradeflow.infra.common import DEPLOY_DIR, InfraError
from tradeflow.infra.images import docker

COMPOSE_FILE = DEPLOY_DIR / "compose.yaml"
FLUSS_COMPOSE_FILE = DEPLOY_DIR / "compose-fluss.yaml"
"""The Fluss data plane (ZooKeeper, coordinator, tablet server) with Job A on it."""


def _engine_answers() -> bool:
    return subprocess.run(  # noqa: S603
        [docker(), "info", "--format", "{{.ServerVersion}}"], capture_output=True, check=False, timeout=30
    ).returncode == 0


class DockerEngine:
    """A reachable Docker engine, started here when none runs and we may start one."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def ensure(self, timeout: float = 60.0) -> DockerEngine:
        """Make sure an engine answers; start ``dockerd`` if needed and possible."""
        if _engine_answers():
            return self
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(dockerd).exists():
            raise InfraError(
                "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
            )
        if os.geteuid() != 0:
            raise InfraError("no Docker engine answers, and only root can start dockerd here")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603
                [dockerd, "--host", "unix:///var/run/docker.sock"], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise InfraError(f"dockerd exited ({self._proc.returncode}); see {self.log_path}")
            if _engine_answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise InfraError(f"dockerd did not answer within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        """Stop the engine this object started (none started: nothing to do)."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


class Compose:
    """One docker-compose project of ``deploy/compose.yaml`` (or another file: ``file``)."""

    def __init__(self, project: str, env: Mapping[str, str] | None = None, file: Path = COMPOSE_FILE) -> None:
        self.project = project
        self.file = file
        self.env = {**os.environ, **(env or {})}
        binary = shutil.which("docker-compose")
        if binary is None:
            raise InfraError("docker-compose is not installed (apt-get install docker-compose)")
        self._binary = binary

    def __call__(self, *args: str, timeout: float = 600.0) -> str:
        """Run ``docker-compose -p PROJECT -f FILE ARGS``; return its stdout, raise on failure."""
        cmd = [self._binary, "--no-ansi", "-p", self.project, "-f", str(self.file), *args]
        proc = subprocess.run(  # noqa: S603
            cmd, capture_output=True, text=True, check=False, env=self.env, timeout=timeout
        )
        if proc.returncode != 0:
            raise InfraError(f"docker-compose {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return proc.stdout

    def up(self, services: Sequence[str] = ()) -> None:
        """Start the project's services (all, or these) in the background."""
        self("up", "-d", *services)

    def run(self, service: str) -> str:
        """Run a one-shot service to its end; return its output."""
        return self("run", "--rm", service)

    def start_run(self, service: str) -> subprocess.Popen[bytes]:
        """Start a one-shot service in the background; wait for it with ``communicate``."""
        return subprocess.Popen(  # noqa: S603
            [self._binary, "--no-ansi", "-p", self.project, "-f", str(self.file), "run", "--rm", service],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def container(self, service: str) -> str:
        """Return the id of a service's (first) container."""
        ids = self("ps", "-q", service).split()
        if not ids:
            raise InfraError(f"service {service} has no container")
        return ids[0]

    def kill(self, service: str) -> None:
        """SIGKILL a service's containers (``restart: unless-stopped`` does not revive them)."""
        self("kill", "-s", "SIGKILL", service)

    def start(self, service: str) -> None:
        """Start a stopped service's containers again (same volumes)."""
        self("start", service)

    def exec(self, service: str, *command: str) -> str:
        """Run a command in a service's container; return its output."""
        return self("exec", "-T", service, *command)

    def logs(self, *services: str) -> str:
        """Return the logs of the services (all when none is named)."""
        return self("logs", "--no-color", *services)

    def down(self) -> None:
        """Stop and remove the containers, networks and volumes of the project."""
        self("down", "-v", "--remove-orphans", timeout=300)

    def running(self) -> list[str]:
        """Return the ids of the project's containers still there (running or not)."""
        out = subprocess.run(  # noqa: S603
            [docker(), "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
            capture_output=True, text=True, check=False,
        )
        return out.stdout.split()
