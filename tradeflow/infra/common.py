"""Shared plumbing for the real JVM servers under deploy/.

Each server (Kafka, Fluss, the QuickFIX/J venue) keeps a Maven pom under
``deploy/<name>/``. Its dependencies are the server's full runtime classpath, which
``resolve_classpath`` copies once per machine into a cache directory keyed by the
pom's hash, so only the first run pays the download. ``JvmProcess`` starts one JVM
bound to 127.0.0.1, keeps its log, and stops it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, Protocol, Self, overload

log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
CACHE_DIR = Path(os.environ.get("TRADEFLOW_CACHE_DIR", Path.home() / ".cache" / "tradeflow"))


class InfraError(RuntimeError):
    """A server could not be resolved, started or reached."""


def small_jvm_opts(heap: str) -> tuple[str, ...]:
    """Return the JVM flags of a small, fast-starting test/dev server with ``heap`` (``"256m"``).

    SerialGC plus C1 only (TieredStopAtLevel=1) start faster on 2 cores (a broker answers
    its first metadata request in ~1.8 s instead of ~2.4 s with G1 and the full JIT);
    throughput is irrelevant at this scale.
    """
    return (
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
    )


def server_data_dir(data_dir: Path | str | None, temp_prefix: str) -> Path:
    """Return ``data_dir`` resolved, or a new temporary directory (kept: its logs help)."""
    return Path(data_dir if data_dir is not None else tempfile.mkdtemp(prefix=temp_prefix)).resolve()


def loopback_address(port: int | None, no_port: str) -> str:
    """Return ``127.0.0.1:<port>`` for clients; before ``start()`` chose a port, fail saying ``no_port``."""
    if port is None:
        raise InfraError(f"{no_port} yet; call start() first")
    return f"127.0.0.1:{port}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, n: int = 60, missing: str = "") -> str:
    """Return the last ``n`` lines of a log file (``missing`` if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return missing


def resolve_classpath(name: str, *, compile_sources: bool = False) -> Path:
    """Copy the runtime jars of ``deploy/<name>/pom.xml`` into a cache dir; return it.

    With ``compile_sources`` the pom's own sources are packaged too and the jar is
    put beside its dependencies. The result is cached by the hash of the pom and of
    everything under ``src/``.
    """
    project = DEPLOY_DIR / name
    pom = project / "pom.xml"
    if not pom.exists():
        raise InfraError(f"no pom at {pom}")
    digest = hashlib.sha256(pom.read_bytes())
    src = project / "src"
    if src.exists():
        for f in sorted(src.rglob("*")):
            if f.is_file():
                digest.update(str(f.relative_to(project)).encode())
                digest.update(f.read_bytes())
    lib = CACHE_DIR / "jars" / f"{name}-{digest.hexdigest()[:16]}"
    if (lib / ".complete").exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is not on PATH; install it to fetch the servers' jars")
    tmp = lib.with_name(lib.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log.info("resolving %s jars from Maven Central into %s", name, lib)
    goals = ["package", "-DskipTests"] if compile_sources else []
    cmd = [
        mvn, "-q", "-B", "-f", str(pom), *goals,
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise InfraError(f"mvn failed for {name}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    if compile_sources:
        for jar in (project / "target").glob("*.jar"):
            shutil.copy2(jar, tmp / jar.name)
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    return lib


def java_bin() -> str:
    """Return the java executable (JAVA_HOME first, then PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise InfraError("java is not on PATH; Java 17 is needed for the real servers")
    return java


class JvmProcess:
    """One JVM started in the background with its output in a log file."""

    def __init__(
        self,
        name: str,
        classpath: Path,
        main_class: str,
        args: Sequence[str] = (),
        *,
        jvm_opts: Sequence[str] = ("-Xmx512m",),
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        cmd = [java_bin(), *jvm_opts, "-cp", f"{classpath}/*", main_class, *args]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        log.info("starting %s: %s", name, " ".join(cmd))
        self.proc = subprocess.Popen(  # noqa: S603
            cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )

    @property
    def pid(self) -> int:
        """Return the process id of the JVM."""
        return self.proc.pid

    def alive(self) -> bool:
        """Tell whether the JVM is still running."""
        return self.proc.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail with the log tail if the JVM dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise InfraError(f"{self.name} exited early ({what}); log:\n{self.tail()}")
            try:
                if ready():
                    return
            except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
                log.debug("%s not ready yet: %s", self.name, exc)
            time.sleep(0.25)
        raise InfraError(f"{self.name} not ready after {timeout}s ({what}); log:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        """Return the last ``n`` lines of the log."""
        return log_tail(self.log_path, n, "(no log)")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop with SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        self._log.close()

    def kill(self) -> None:
        """Kill the JVM at once (SIGKILL), as a crash would."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._log.close()


def mark_log(path: Path, message: str) -> None:
    """Append a ``===== tradeflow: message =====`` line to a server log, so runs can be told apart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(f"===== tradeflow: {message} =====\n")


def read_state(path: Path) -> dict[str, Any]:
    """Return the JSON object a launcher saved (ports, pids), or ``{}``."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Return the objects of a JSON-lines log a server is writing, oldest first.

    A missing file is an empty log; a line that does not parse (blank, or being written
    at that very moment) is skipped.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_state(path: Path, state: Mapping[str, object]) -> None:
    """Save a launcher's state as JSON, if its directory exists."""
    if path.parent.exists():
        path.write_text(json.dumps(state, indent=2) + "\n")


def process_running_with(pid: object, marker: bytes) -> bool:
    """Tell whether process ``pid`` is alive and its command line contains ``marker``."""
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()  # type: ignore[call-overload]
    except (OSError, ValueError, TypeError):
        return False
    return marker in cmdline


class _HasDataDir(Protocol):
    data_dir: Path


class DataPath:
    """A read-only attribute of a server: the path ``parts`` below its ``data_dir``.

    One line per file or directory a launcher keeps (``store_dir = DataPath("store")``)
    instead of a property each; read on the class, it is the descriptor itself.
    """

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...

    @overload
    def __get__(self, obj: _HasDataDir, owner: type | None = None) -> Path: ...

    def __get__(self, obj: _HasDataDir | None, owner: type | None = None) -> Path | Self:
        if obj is None:
            return self
        return obj.data_dir.joinpath(*self.parts)


class ManagedServer:
    """A real server (JVMs) started by ``start()`` and stopped by ``stop()``; a context manager.

    A launcher keeps its ports and pids in ``data_dir/STATE_FILE`` (JSON), so a later one
    on the same directory comes back on the same ports and sees JVMs left running.
    """

    STATE_FILE: ClassVar[str]
    data_dir: Path

    def _read_state(self) -> dict[str, Any]:
        """Return what the last launcher on this data dir saved (``{}`` if nothing)."""
        return read_state(self.data_dir / self.STATE_FILE)

    def _write_state(self, state: Mapping[str, object]) -> None:
        """Save ``state`` in ``STATE_FILE`` for later launchers and tools."""
        write_state(self.data_dir / self.STATE_FILE, state)

    def _saved_jvms_running(self, marker: bytes) -> dict[str, Any]:
        """Return the JVMs the saved state names that still run with ``marker`` in their command line.

        The state names one JVM as ``pid`` (returned under that key) or several as ``pids``.
        """
        state = self._read_state()
        pids = state.get("pids")
        named = dict(pids) if isinstance(pids, dict) else {}
        if state.get("pid") is not None:
            named["pid"] = state["pid"]
        return {name: pid for name, pid in named.items() if process_running_with(pid, marker)}

    def start(self) -> Self:
        """Start the server and wait until it is ready; return ``self``."""
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        raise NotImplementedError

    def announce(self) -> None:
        """Print where the started server listens (stdout: what clients need) and where it logs."""
        raise NotImplementedError

    def failure(self) -> str | None:
        """Return why the server is down, with its log's tail, while it should run; else None."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class SingleJvmServer(ManagedServer):
    """A server that is one JVM (the Kafka broker, the FIX venue) logging to ``data_dir/LOG_FILE``."""

    LOG_FILE: ClassVar[str]
    data_dir: Path
    _jvm: JvmProcess | None = None

    @property
    def log_path(self) -> Path:
        """Return the JVM's log file (its stdout and stderr, every run appended)."""
        return self.data_dir / self.LOG_FILE

    @property
    def pid(self) -> int | None:
        """Return the JVM's process id while it runs, else ``None``."""
        return self._jvm.pid if self._jvm is not None and self._jvm.alive() else None

    @property
    def running(self) -> bool:
        """Tell whether the JVM is alive (not whether it is ready)."""
        return self._jvm is not None and self._jvm.alive()

    def alive(self) -> bool:
        """Tell whether the JVM is alive (``running``)."""
        return self.running

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the JVM with SIGTERM (a clean shutdown), then SIGKILL after ``timeout``."""
        if self._jvm is not None:
            self._jvm.stop(timeout=timeout)
            self._jvm = None
        self._stopped()

    def kill(self) -> None:
        """Kill the JVM at once with SIGKILL, as a crash would; its data stays."""
        if self._jvm is not None:
            self._jvm.kill()
            self._jvm = None
        self._stopped()

    def _stopped(self) -> None:
        """Run after the JVM stopped or was killed (a subclass records its state)."""

    def tail(self, n: int = 80) -> str:
        """Return the last ``n`` lines of the JVM log (all runs append to it)."""
        return log_tail(self.log_path, n, "(no log)")


# ------------------------------------------------------------------------------ CLI


def launch(
    prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
    server: Callable[[argparse.Namespace], ManagedServer], argv: Sequence[str] | None, *,
    poll: float = 1.0,
) -> int:
    """Run ``python -m <prog> up [...]``: the ``server`` its arguments ask for, until SIGINT/SIGTERM."""
    return serve_until_signalled(server(up_command(prog, description, add_arguments, argv)), poll)


def up_command(
    prog: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
    argv: Sequence[str] | None,
    more: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None,
) -> argparse.Namespace:
    """Parse ``python -m <prog> up [...]`` (``add_arguments`` adds the server's options).

    ``more`` adds the server's other subcommands, if it has any.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the server and keep it running until Ctrl-C/SIGTERM")
    add_arguments(up)
    if more is not None:
        more(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args


def serve_until_signalled(server: ManagedServer, poll: float = 1.0) -> int:
    """Start ``server``, announce it, run until SIGINT/SIGTERM, stop it; return an exit code.

    Every ``poll`` seconds the server's ``failure()`` is asked whether it died; if it names
    a failure, that is printed and the exit code is 1.
    """
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        server.start()
        server.announce()
        while not done.wait(poll):
            why = server.failure()
            if why is not None:
                print(why, file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0
