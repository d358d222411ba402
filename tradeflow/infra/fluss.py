"""A real Apache Fluss cluster: ZooKeeper, one CoordinatorServer, one TabletServer.

The jars come from Maven Central through ``deploy/fluss/pom.xml`` (see
``tradeflow.infra.common.resolve_classpath``); nothing is mocked. ``FlussCluster``
writes ``zookeeper.properties`` and one ``server.yaml`` per server into its data
directory, starts the three JVMs bound to 127.0.0.1 on free ports, the way the
upstream ``bin/local-cluster.sh`` does, and waits until a pyfluss admin client sees
the coordinator and the tablet server. ``restart_tablet_server()`` brings the tablet
server back on the same port and data directory and waits until every bucket of every
table answers again.

Run one by hand::

    python -m tradeflow.infra.fluss up --data-dir /tmp/tradeflow-fluss

and wait for one started elsewhere (deploy/compose-fluss.yaml) to answer::

    python -m tradeflow.infra.fluss wait --bootstrap 127.0.0.1:29123

The Python client is pyfluss (``import fluss``); see ``docs/fluss-client.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tradeflow.infra.common import (
    DEPLOY_DIR,
    DataPath,
    InfraError,
    JvmProcess,
    ManagedServer,
    free_port,
    log_tail,
    loopback_address,
    mark_log,
    port_open,
    resolve_classpath,
    serve_until_signalled,
    server_data_dir,
    up_command,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

FLUSS_DEPLOY_DIR = DEPLOY_DIR / "fluss"
LOG4J2_CONFIG = FLUSS_DEPLOY_DIR / "log4j2.properties"

ZOOKEEPER_MAIN = "org.apache.fluss.shaded.zookeeper3.org.apache.zookeeper.server.quorum.QuorumPeerMain"
COORDINATOR_MAIN = "org.apache.fluss.server.coordinator.CoordinatorServer"
TABLET_SERVER_MAIN = "org.apache.fluss.server.tablet.TabletServer"

#: What ``bin/fluss-daemon.sh`` passes to every Fluss JVM on Java 17+: Arrow needs
#: java.nio opened (the module is shaded, so the JVM warns that it is unknown; the
#: flag is kept as upstream has it), and log4j must not stop before the server's own
#: shutdown hook has logged its clean shutdown.
UPSTREAM_JVM_OPTS: tuple[str, ...] = (
    "-XX:+IgnoreUnrecognizedVMOptions",
    "--add-opens=java.base/java.nio=org.apache.arrow.memory.core,ALL-UNNAMED",
    "-Dlog4j.shutdownHookEnabled=false",
)

#: Heap and GC for a small test/dev server. ``bin/tablet-server.sh`` picks G1.
DEFAULT_SERVER_JVM_OPTS: tuple[str, ...] = (
    "-Xmx384m",
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
DEFAULT_ZOOKEEPER_JVM_OPTS: tuple[str, ...] = ("-Xmx96m", "-XX:+UseSerialGC")

ZOOKEEPER = "zookeeper"
COORDINATOR = "coordinator"
TABLET_SERVER = "tablet-server"
TABLET_SERVER_ID = 0

_PORT_ATTRS = ("zookeeper_port", "coordinator_port", "tablet_server_port")


def run_async(factory: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run the coroutine made by ``factory`` to completion and return its result.

    pyfluss calls return awaitables that need a running event loop when they are
    *created*, so the coroutine is built inside the loop. When the calling thread
    already runs a loop (an async test, a notebook), a short-lived worker thread
    with its own loop is used instead of nesting loops.
    """

    async def _bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    from connectors.fluss.client import note_pyfluss_used  # needs pyfluss, like the caller

    note_pyfluss_used()  # this process waits a moment at exit (see there why)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_bounded())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fluss-probe") as pool:
        return pool.submit(asyncio.run, _bounded()).result()


class FlussCluster(ManagedServer):
    """Start, stop, kill and restart a real single-node Fluss cluster on 127.0.0.1.

    ``data_dir`` holds everything::

        zookeeper.properties, zookeeper/            ZooKeeper config and data
        coordinator/server.yaml, coordinator-data/  CoordinatorServer config and data.dir
        tablet-server/server.yaml, tablet-data/     TabletServer config and data.dir
        remote-data/                                remote.data.dir (KV snapshots, tiered log)
        logs/{zookeeper,coordinator,tablet-server}.log
        cluster.json                                ports and pids

    Ports are picked free at the first ``start()`` and kept in ``cluster.json``, so a
    later ``FlussCluster`` on the same directory comes back on the same ports when they
    are still free. Without ``data_dir`` a new temporary directory is used and kept
    (its logs help when a test fails).

    ``buckets`` is the server default ``default.bucket.number`` for tables created
    without a bucket count. ``extra_config`` adds or overrides ``server.yaml`` keys of
    both servers. The pyfluss package (``import fluss``) must be installed: it is the
    readiness probe.
    """

    STATE_FILE = "cluster.json"

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        buckets: int = 1,
        server_jvm_opts: Sequence[str] = DEFAULT_SERVER_JVM_OPTS,
        zookeeper_jvm_opts: Sequence[str] = DEFAULT_ZOOKEEPER_JVM_OPTS,
        startup_timeout: float = 120.0,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = server_data_dir(data_dir, "tradeflow-fluss-")
        self.buckets = buckets
        self.server_jvm_opts = tuple(server_jvm_opts)
        self.zookeeper_jvm_opts = tuple(zookeeper_jvm_opts)
        self.startup_timeout = startup_timeout
        self.extra_config = dict(extra_config or {})
        self.zookeeper_port: int | None = None
        self.coordinator_port: int | None = None
        self.tablet_server_port: int | None = None
        self._classpath: Path | None = None
        self._jvms: dict[str, JvmProcess] = {}
        self._load_state()

    # ------------------------------------------------------------------ properties

    @property
    def bootstrap_servers(self) -> str:
        """Return ``127.0.0.1:<coordinator port>`` for ``bootstrap.servers``."""
        return loopback_address(self.coordinator_port, "the Fluss cluster has no ports")

    log_dir = DataPath("logs")
    """The directory holding the three servers' log files."""

    @property
    def log_paths(self) -> dict[str, Path]:
        """Return the log file of each server: ``zookeeper``, ``coordinator``, ``tablet-server``."""
        return {name: self.log_dir / f"{name}.log" for name in (ZOOKEEPER, COORDINATOR, TABLET_SERVER)}

    tablet_data_dir = DataPath("tablet-data")
    """The tablet server's ``data.dir`` (log segments and RocksDB of each bucket)."""
    remote_data_dir = DataPath("remote-data")
    """``remote.data.dir`` shared by both servers."""

    @property
    def pids(self) -> dict[str, int]:
        """Return the process id of every server JVM that is alive."""
        return {name: jvm.pid for name, jvm in self._jvms.items() if jvm.alive()}

    @property
    def running(self) -> bool:
        """Tell whether all three JVMs are alive (not whether they are ready)."""
        return all(self._alive(name) for name in (ZOOKEEPER, COORDINATOR, TABLET_SERVER))

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> FlussCluster:
        """Resolve the jars, start ZooKeeper, the coordinator and the tablet server.

        Wait until a pyfluss admin sees the coordinator and tablet server 0. Raise
        ``InfraError`` with a log tail if a JVM dies or is not ready within
        ``startup_timeout`` seconds (everything started is stopped again). Return
        ``self``. Calling it on a running cluster does nothing.
        """
        if self.running:
            return self
        if self._alive(ZOOKEEPER) and self._alive(COORDINATOR):
            self.start_tablet_server()
            return self
        if self._jvms:
            self.stop(timeout=10)  # whatever is left of a half-running cluster
        self._refuse_if_in_use()
        _require_pyfluss()
        self._classpath = resolve_classpath("fluss")
        for sub in ("zookeeper", "coordinator-data", "tablet-data", "remote-data", "logs"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self._launch_all()
                break
            except InfraError:
                self.stop(timeout=10)
                # Another process may have taken a port between free_port() and the bind.
                if attempt == 2 or not self._port_clash():
                    raise
                log.warning("a Fluss port was taken meanwhile; retrying on new ports")
                self.zookeeper_port = self.coordinator_port = self.tablet_server_port = None
            except BaseException:
                self.stop(timeout=10)
                raise
        self._save_state()
        log.info(
            "Fluss cluster ready on %s after %.1fs (logs in %s)",
            self.bootstrap_servers,
            time.monotonic() - started,
            self.log_dir,
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the tablet server, the coordinator, then ZooKeeper (SIGTERM, then SIGKILL).

        The order matters: a tablet server asks the coordinator for a controlled
        shutdown and would wait for it if the coordinator went first.
        """
        atexit.unregister(self.stop)
        for name in (TABLET_SERVER, COORDINATOR, ZOOKEEPER):
            jvm = self._jvms.pop(name, None)
            if jvm is not None:
                jvm.stop(timeout=timeout)
        self._save_state()

    def announce(self) -> None:
        """Print the bootstrap address (stdout) and the log directory (stderr)."""
        print(self.bootstrap_servers, flush=True)
        print(f"fluss logs: {self.log_dir}", file=sys.stderr, flush=True)

    def failure(self) -> str | None:
        """Return which of the cluster's JVMs died, with their logs' tails (None while all run)."""
        if self.running:
            return None
        dead = [n for n in self.log_paths if n not in self.pids]
        return "\n".join(f"fluss {name} died; log:\n{self.tail(name)}" for name in dead)

    def kill(self) -> None:
        """Kill all three JVMs at once with SIGKILL, as a crash would; the data stays."""
        atexit.unregister(self.stop)
        for name in (TABLET_SERVER, COORDINATOR, ZOOKEEPER):
            jvm = self._jvms.pop(name, None)
            if jvm is not None:
                jvm.kill()
                jvm.stop()  # already dead: only closes the log file
        self._save_state()

    def stop_tablet_server(self, *, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop (SIGTERM) or ``kill`` (SIGKILL) the tablet server; the rest keeps running."""
        jvm = self._jvms.pop(TABLET_SERVER, None)
        if jvm is None:
            return
        if kill:
            jvm.kill()
            jvm.stop()
        else:
            jvm.stop(timeout=timeout)
        self._save_state()

    def start_tablet_server(
        self, timeout: float | None = None, *, databases: Collection[str] | None = None
    ) -> None:
        """Start the tablet server on its port and data dir and wait until it serves again.

        "Serves" means the coordinator lists it and every bucket of every table (and
        partition) answers a ``list_offsets`` request, i.e. has a leader again; with
        ``databases``, only the tables of those databases are waited for (a test on a
        shared cluster waits for its own tables, not for whatever others left). After a
        kill, the coordinator keeps the dead server's ZooKeeper registration until its
        session expires (``zookeeper.client.session-timeout``, 10 s here); the new JVM
        is started only once that registration is gone, so it registers at once.
        """
        if self._alive(TABLET_SERVER):
            return
        if not (self._alive(ZOOKEEPER) and self._alive(COORDINATOR)):
            raise InfraError("ZooKeeper and the coordinator must run to start a tablet server")
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        coordinator = self._jvms[COORDINATOR]
        coordinator.wait_until(
            lambda: not self._tablet_server_registered(),
            timeout,
            "coordinator drops the old tablet server registration",
        )
        self._start_server(TABLET_SERVER)
        self._jvms[TABLET_SERVER].wait_until(
            lambda: self.serving(databases=databases),
            max(deadline - time.monotonic(), 1.0),
            "tablet server registered and every bucket has a leader",
        )
        self._save_state()

    def restart_tablet_server(
        self,
        *,
        kill: bool = False,
        timeout: float | None = None,
        databases: Collection[str] | None = None,
    ) -> None:
        """Stop (or with ``kill`` SIGKILL) the tablet server and start it again.

        Same port, same data dir; return once it serves every bucket again, of every
        table or of the tables in ``databases`` (see ``start_tablet_server``). Clients
        keep their connection; see ``docs/fluss-client.md`` for what they must do to
        write again.
        """
        started = time.monotonic()
        self.stop_tablet_server(kill=kill)
        self.start_tablet_server(timeout=timeout, databases=databases)
        log.info(
            "Fluss tablet server %s and back on port %s after %.1fs",
            "killed" if kill else "stopped",
            self.tablet_server_port,
            time.monotonic() - started,
        )

    # -------------------------------------------------------------------- readiness

    def ready(self, timeout: float = 5.0) -> bool:
        """Tell whether the coordinator answers and lists tablet server 0 on its port."""
        if self.coordinator_port is None or not port_open(self.coordinator_port):
            return False
        try:
            nodes = run_async(self._server_nodes, timeout)
        except Exception as exc:  # noqa: BLE001 - FlussError, timeouts: all mean "not yet"
            log.debug("Fluss not ready: %s", exc)
            return False
        kinds = {(kind, port) for kind, _, port in nodes}
        return ("CoordinatorServer", self.coordinator_port) in kinds and (
            "TabletServer",
            self.tablet_server_port,
        ) in kinds

    def serving(self, timeout: float = 15.0, *, databases: Collection[str] | None = None) -> bool:
        """Tell whether the cluster is ready and every bucket of every table has a leader.

        With ``databases``, only the tables of those databases are asked.
        """
        if not self.ready():
            return False
        try:
            run_async(lambda: self._probe_buckets(databases), timeout)
        except Exception as exc:  # noqa: BLE001 - FlussError, timeouts: all mean "not yet"
            log.debug("Fluss not serving every bucket yet: %s", exc)
            return False
        return True

    def tail(self, name: str = TABLET_SERVER, n: int = 80) -> str:
        """Return the last ``n`` lines of one server's log (all runs append to it)."""
        return log_tail(self.log_paths[name], n)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"FlussCluster({self.data_dir}, coordinator_port={self.coordinator_port}, {state})"

    # --------------------------------------------------------------------- helpers

    def _alive(self, name: str) -> bool:
        jvm = self._jvms.get(name)
        return jvm is not None and jvm.alive()

    def _connection_config(self) -> Any:
        import fluss

        config = fluss.Config({"bootstrap.servers": self.bootstrap_servers})
        config.connect_timeout_ms = 3000
        return config

    async def _server_nodes(self) -> list[tuple[str, int, int]]:
        """Return (server type, id, port) of every node the coordinator lists."""
        import fluss

        conn = await fluss.FlussConnection.create(self._connection_config())
        try:
            nodes = await conn.get_admin().get_server_nodes()
            return [(n.server_type, n.id, n.port) for n in nodes]
        finally:
            await conn.close()

    def _tablet_server_registered(self) -> bool:
        nodes = run_async(self._server_nodes, 5.0)
        return any(kind == "TabletServer" and sid == TABLET_SERVER_ID for kind, sid, _ in nodes)

    async def _probe_buckets(self, databases: Collection[str] | None) -> None:
        """Ask every bucket of every table (in ``databases``, or all) for its latest offset.

        Raise if one cannot answer.
        """
        import fluss

        conn = await fluss.FlussConnection.create(self._connection_config())
        try:
            admin = conn.get_admin()
            latest = fluss.OffsetSpec.latest()
            for database in await admin.list_databases() if databases is None else databases:
                for table in await admin.list_tables(database):
                    path = fluss.TablePath(database, table)
                    info = await admin.get_table_info(path)
                    buckets = list(range(info.num_buckets))
                    if not info.is_partitioned():
                        await admin.list_offsets(path, buckets, latest)
                        continue
                    for partition in await admin.list_partition_infos(path):
                        await admin.list_partition_offsets(path, partition.partition_name, buckets, latest)
        finally:
            await conn.close()

    def _choose_ports(self) -> None:
        """Pick a free port for every server whose saved port is missing or taken."""
        taken: set[int] = set()
        for attr in _PORT_ATTRS:
            port: int | None = getattr(self, attr)
            if port is None or port in taken or port_open(port):
                port = free_port()
                while port in taken:
                    port = free_port()
                setattr(self, attr, port)
            taken.add(port)

    def _jvm(self, name: str, main_class: str, args: Sequence[str], opts: Sequence[str]) -> None:
        """Start one JVM with the upstream flags and our log4j2 config."""
        if self._classpath is None:
            self._classpath = resolve_classpath("fluss")
        log_path = self.log_paths[name]
        mark_log(log_path, f"starting {name}")
        jvm_opts = [
            *opts,
            *UPSTREAM_JVM_OPTS,
            f"-Dlog4j.configurationFile={LOG4J2_CONFIG}",
            f"-Dlog.file={log_path}",
        ]
        self._jvms[name] = JvmProcess(
            f"fluss-{name}",
            self._classpath,
            main_class,
            list(args),
            jvm_opts=jvm_opts,
            log_path=log_path,
            cwd=self.data_dir,
        )
        self._save_state()

    def _start_zookeeper(self) -> None:
        """Write ``zookeeper.properties``, start ZooKeeper and wait for its client port."""
        port = self.zookeeper_port
        assert port is not None  # noqa: S101 - set by _choose_ports
        props = {
            "dataDir": str(self.data_dir / "zookeeper"),
            "clientPort": str(port),
            "clientPortAddress": "127.0.0.1",
            "maxClientCnxns": "0",
            "admin.enableServer": "false",
            # Sessions may last 2..20 ticks: the servers ask for 10 s (see _server_yaml).
            "tickTime": "2000",
            "autopurge.purgeInterval": "1",
        }
        path = self.data_dir / "zookeeper.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self._jvm(ZOOKEEPER, ZOOKEEPER_MAIN, [str(path)], self.zookeeper_jvm_opts)
        self._jvms[ZOOKEEPER].wait_until(
            lambda: port_open(port), self.startup_timeout, "ZooKeeper client port"
        )

    def _server_yaml(self, name: str) -> dict[str, str]:
        """Return the ``server.yaml`` keys of the coordinator or the tablet server."""
        port = self.coordinator_port if name == COORDINATOR else self.tablet_server_port
        data = self.data_dir / ("coordinator-data" if name == COORDINATOR else "tablet-data")
        config = {
            # What the upstream local cluster (conf/server.yaml) sets.
            "zookeeper.address": f"127.0.0.1:{self.zookeeper_port}",
            "bind.listeners": f"FLUSS://127.0.0.1:{port}",
            "tablet-server.id": str(TABLET_SERVER_ID),
            "data.dir": str(data),
            "remote.data.dir": str(self.remote_data_dir),
            "default.bucket.number": str(self.buckets),
            "default.replication.factor": "1",
            # A dead tablet server's registration lingers for one ZooKeeper session;
            # 10 s instead of 60 s brings it back sooner after a kill.
            "zookeeper.client.session-timeout": "10 s",
            # A tablet server that comes back after a crash is first told it follows a
            # leaderless bucket and truncates its log to the last *checkpointed* high
            # watermark, dropping acknowledged records newer than that checkpoint
            # (default every 5 s). A short interval keeps that window small.
            "log.replica.high-watermark.checkpoint-interval": "200 ms",
            # With one tablet server there is nobody to hand leadership to: one
            # controlled-shutdown attempt instead of 3 (1 s apart) per stop.
            "tablet-server.controlled-shutdown.max-retries": "1",
        }
        config.update(self.extra_config)
        return config

    def _start_server(self, name: str) -> None:
        """Write ``<name>/server.yaml`` and start the coordinator or the tablet server."""
        conf_dir = self.data_dir / name
        conf_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by tradeflow.infra.fluss.FlussCluster; rewritten on every start."]
        lines += [f"{k}: {v}" for k, v in self._server_yaml(name).items()]
        (conf_dir / "server.yaml").write_text("\n".join(lines) + "\n")
        main = COORDINATOR_MAIN if name == COORDINATOR else TABLET_SERVER_MAIN
        self._jvm(name, main, ["--configDir", str(conf_dir)], self.server_jvm_opts)
        port = self.coordinator_port if name == COORDINATOR else self.tablet_server_port
        assert port is not None  # noqa: S101 - set by _choose_ports
        self._jvms[name].wait_until(lambda: port_open(port), self.startup_timeout, f"{name} RPC port")

    def _launch_all(self) -> None:
        """Choose ports, start the three JVMs in order and wait until the cluster answers."""
        # JVMs run in their own sessions and outlive a crashed parent: stop them at exit.
        atexit.register(self.stop)
        self._choose_ports()
        self._start_zookeeper()
        self._start_server(COORDINATOR)
        self._start_server(TABLET_SERVER)
        self._jvms[TABLET_SERVER].wait_until(
            self.ready, self.startup_timeout, "admin sees coordinator and tablet server"
        )

    def _port_clash(self) -> bool:
        """Tell whether a server of the last run failed to bind its port."""
        return any(
            "Address already in use" in self.tail(name, 200).rpartition("===== tradeflow:")[2]
            for name in self.log_paths
        )

    def _refuse_if_in_use(self) -> None:
        """Fail if JVMs of an earlier cluster on this data dir are still running.

        Two tablet servers on one ``data.dir`` corrupt each other's checkpoints; an
        earlier owner that crashed without ``stop()`` leaves its JVMs behind.
        """
        alive = self._saved_jvms_running(str(self.data_dir).encode())
        if alive:
            raise InfraError(
                f"Fluss JVMs {alive} still run on {self.data_dir}; stop them first "
                "(an earlier FlussCluster there was not stopped)"
            )

    def _load_state(self) -> None:
        """Read the ports saved by an earlier cluster on this data dir."""
        state = self._read_state()
        for attr in _PORT_ATTRS:
            value = state.get(attr)
            if isinstance(value, int):
                setattr(self, attr, value)

    def _save_state(self) -> None:
        """Record ports, bootstrap servers and pids in ``cluster.json``."""
        state: dict[str, object] = {attr: getattr(self, attr) for attr in _PORT_ATTRS}
        state["bootstrap_servers"] = None if self.coordinator_port is None else self.bootstrap_servers
        state["pids"] = self.pids
        self._write_state(state)


def _require_pyfluss() -> None:
    """Fail early with a clear message when the pyfluss client is missing."""
    try:
        import fluss  # noqa: F401
    except ImportError as exc:
        raise InfraError(
            "the pyfluss client is needed to probe the Fluss cluster: pip install pyfluss==1.0.0"
        ) from exc


# ------------------------------------------------------------------------------ CLI


def _add_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument("--data-dir", type=Path, default=None, help="default: a new temp dir")
    up.add_argument("--buckets", type=int, default=1, help="default.bucket.number (default 1)")


def wait_for_cluster(bootstrap: str, timeout: float) -> None:
    """Wait until the cluster at ``bootstrap`` lists a coordinator and a tablet server.

    For a cluster started elsewhere (deploy/compose-fluss.yaml): its ports may accept
    connections before the servers answer, and a Fluss client fails at once then.
    """
    import fluss

    async def kinds() -> set[str]:
        config = fluss.Config({"bootstrap.servers": bootstrap})
        config.connect_timeout_ms = 3000
        conn = await fluss.FlussConnection.create(config)
        try:
            return {n.server_type for n in await conn.get_admin().get_server_nodes()}
        finally:
            await conn.close()

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if {"CoordinatorServer", "TabletServer"} <= run_async(kinds, 10.0):
                return
            last = "no tablet server registered yet"
        except Exception as exc:  # noqa: BLE001 - FlussError, timeouts: all mean "not yet"
            last = exc
        time.sleep(1.0)
    raise InfraError(f"the Fluss cluster at {bootstrap} did not answer within {timeout:.0f}s: {last}")


def _wait_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wait = sub.add_parser("wait", help="wait until a running cluster answers (exit 1 on timeout)")
    wait.add_argument("--bootstrap", required=True, help="the coordinator, host:port")
    wait.add_argument("--timeout", type=float, default=120.0, help="seconds (default 120)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m tradeflow.infra.fluss up`` (a cluster until SIGINT/SIGTERM) or ``wait``."""
    args = up_command(
        "tradeflow.infra.fluss",
        "Run a real Fluss cluster (ZooKeeper, coordinator, tablet server).",
        _add_arguments,
        argv,
        more=_wait_subcommand,
    )
    if args.command == "wait":
        try:
            wait_for_cluster(args.bootstrap, args.timeout)
        except InfraError as exc:
            print(f"fluss: {exc}", file=sys.stderr)
            return 1
        return 0
    return serve_until_signalled(FlussCluster(args.data_dir, buckets=args.buckets))


if __name__ == "__main__":
    sys.exit(main())
