"""A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM).

The jars come from Maven Central through ``deploy/kafka/pom.xml`` (see
``tradeflow.infra.common.resolve_classpath``); nothing is mocked. ``KafkaBroker``
writes ``server.properties`` into its data directory, formats the KRaft storage once,
starts ``kafka.Kafka`` bound to 127.0.0.1 on free ports and waits until an
``AdminClient`` gets metadata back. ``restart()`` keeps the ports and the data, so
clients created before it reconnect on their own.

Run one by hand::

    python -m tradeflow.infra.kafka up --data-dir /tmp/tradeflow-kafka [--secure]

``KafkaBroker(secure=True)`` is the secured broker (docs/security.md): one SASL_SSL
listener for clients (a test CA and broker certificate generated at start by
``tradeflow.infra.tls``), the KRaft controller listener on mutual TLS (only the
broker's own certificate gets in), SCRAM-SHA-512 users created through the admin API
(``add_user``), PLAIN for the admin principal (a static user in the broker's JAAS
config, so it exists before the metadata log does), and the StandardAuthorizer with
``allow.everyone.if.no.acl.found=false``: a principal may do only what an ACL grants.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from connectors.kafka.acl import JOB_ACCESS, create_scram_user, grant, job_acls
from connectors.kafka.config import admin_config
from connectors.kafka.settings import KafkaSettings, SaslMechanism
from tradeflow.infra.common import (
    DEPLOY_DIR,
    DataPath,
    InfraError,
    JvmProcess,
    SingleJvmServer,
    free_port,
    launch,
    loopback_address,
    mark_log,
    port_open,
    resolve_classpath,
    server_data_dir,
    small_jvm_opts,
)
from tradeflow.infra.tls import TestPki

log = logging.getLogger(__name__)
#: librdkafka's own messages from readiness probes ("connection refused" while the
#: JVM boots) go here instead of stderr.
_PROBE_LOG = logging.getLogger(f"{__name__}.probe")

KAFKA_DEPLOY_DIR = DEPLOY_DIR / "kafka"
LOG4J2_CONFIG = KAFKA_DEPLOY_DIR / "log4j2.xml"

#: A small, fast-starting test/dev broker (see ``small_jvm_opts``).
DEFAULT_JVM_OPTS = small_jvm_opts("512m")

_PROPERTIES_FILE = "server.properties"
_LOG_DIRS = "kraft-logs"
ADMIN_USER = "admin"
BROKER_CN = "kafka-broker"


def write_secret_file(path: Path, value: str) -> Path:
    """Write ``value`` to ``path`` readable by this user only (mode 0600); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return path


def _random_cluster_id() -> str:
    """Return a Kafka cluster id: a UUID in URL-safe base64 without padding.

    Never one starting with ``-``: kafka-storage's argument parser takes ``-t -xb_...``
    for a missing value and an unknown option (1 start in 64 failed that way).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker(SingleJvmServer):
    """Start, stop, kill and restart one real Kafka broker on 127.0.0.1.

    ``data_dir`` holds everything: ``server.properties``, the KRaft log directory,
    the broker's log file and a small ``broker.json`` with the ports and cluster id,
    so a later ``KafkaBroker`` on the same directory comes back on the same ports when
    they are free. Without ``data_dir`` a new temporary directory is used (and kept:
    its logs help when a test fails).

    ``port`` / ``controller_port`` pin the listener ports; left out, free ones are
    picked at the first ``start()`` and kept for every restart. ``extra_properties``
    are appended to ``server.properties`` and override the defaults.
    """

    LOG_FILE = "broker.log"
    STATE_FILE = "broker.json"

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS,
        startup_timeout: float = 90.0,
        extra_properties: Mapping[str, str] | None = None,
        secure: bool = False,
    ) -> None:
        self.data_dir = server_data_dir(data_dir, "tradeflow-kafka-")
        self.jvm_opts = tuple(jvm_opts)
        self.startup_timeout = startup_timeout
        self.extra_properties = dict(extra_properties or {})
        self._pinned_ports = port is not None or controller_port is not None
        self.port: int | None = port
        self.controller_port: int | None = controller_port
        self.cluster_id: str | None = None
        self._jvm: JvmProcess | None = None
        self.secure = secure
        self.pki: TestPki | None = None
        self._load_state()

    # ------------------------------------------------------------------ properties

    @property
    def bootstrap_servers(self) -> str:
        """Return ``127.0.0.1:<port>`` for clients; fail if no port was chosen yet."""
        return loopback_address(self.port, "the Kafka broker has no port")

    properties_path = DataPath(_PROPERTIES_FILE)
    """The generated ``server.properties``."""
    log_dirs = DataPath(_LOG_DIRS)
    """The KRaft log directory (``log.dirs``) holding topics and metadata."""
    secrets_dir = DataPath("secrets")
    """The directory (mode 0700) of the secured broker's secret files."""

    @property
    def admin_password_file(self) -> Path:
        """Return the file holding the admin principal's password (made on first use)."""
        path = self.secrets_dir / f"{ADMIN_USER}.password"
        if not path.exists():
            self.secrets_dir.mkdir(parents=True, exist_ok=True)
            self.secrets_dir.chmod(0o700)
            write_secret_file(path, secrets.token_urlsafe(24))
        return path

    def client_settings(
        self,
        user: str | None = None,
        *,
        password: SecretStr | None = None,
        password_file: Path | None = None,
        mechanism: SaslMechanism = "SCRAM-SHA-512",
        **fields: object,
    ) -> KafkaSettings:
        """Return ``KafkaSettings`` reaching this broker (secured: as ``user``, verifying its CA).

        Without ``user`` on a secured broker: the admin principal (PLAIN, a super user).
        """
        base: dict[str, object] = {"bootstrap": self.bootstrap_servers}
        if self.secure:
            if self.pki is None:
                raise InfraError("the secured broker has no certificates yet; call start() first")
            base["ssl_ca_location"] = self.pki.ca_pem
            if user is None:
                user, mechanism, password_file = ADMIN_USER, "PLAIN", self.admin_password_file
            base.update(sasl_username=user, sasl_mechanism=mechanism, sasl_password=password,
                        sasl_password_file=password_file)
        base.update(fields)
        return KafkaSettings.model_validate(base)

    def add_user(self, user: str, password: SecretStr) -> None:
        """Create (or reset) a SCRAM-SHA-512 user on the secured broker (admin API)."""
        create_scram_user(self.client_settings(), user, password)

    def provision_jobs(
        self, topic_prefix: str = "", partitions: int = 2, streams: Sequence[str] | None = None
    ) -> dict[str, KafkaSettings]:
        """Make each job a principal with only its ACLs; return each job's ``KafkaSettings``.

        As the admin: create every stream's topic under ``topic_prefix`` (jobs hold no
        CREATE), then per job of ``connectors.kafka.acl.JOB_ACCESS`` a SCRAM user
        ``job-<job>`` (a new random password in ``secrets/job-<job>.password``, mode 0600)
        and the ACLs of its streams. The settings read the password from that file.
        """
        from connectors.registry import Connectors
        from connectors.settings import load_settings

        admin = self.client_settings(topic_prefix=topic_prefix, partitions=partitions)
        conn = Connectors(load_settings(profile="kafka", kafka=admin.model_dump()))
        wanted = sorted(set(streams or ()) | {s for a in JOB_ACCESS.values() for s in a.reads | a.writes})
        for stream in wanted:
            conn.reader(stream).close()  # creates the topic with the stream's spec
        out: dict[str, KafkaSettings] = {}
        for job in JOB_ACCESS:
            user = f"job-{job}"
            secret = write_secret_file(self.secrets_dir / f"{user}.password", secrets.token_urlsafe(24))
            self.add_user(user, SecretStr(secret.read_text()))
            settings = self.client_settings(
                user, password_file=secret, topic_prefix=topic_prefix, partitions=partitions
            )
            grant(self.client_settings(), job_acls(job, user, settings))
            out[job] = settings
        return out

    # ------------------------------------------------------------------- lifecycle

    def start(self) -> KafkaBroker:
        """Resolve the jars, format storage once, start the broker and wait until ready.

        Raise ``InfraError`` with the log tail if the JVM dies or does not answer
        metadata requests within ``startup_timeout`` seconds. Return ``self``.
        """
        if self.running:
            return self
        other = self._other_broker_pid()
        if other is not None:
            raise InfraError(
                f"a Kafka broker (pid {other}) already runs on {self.data_dir}; stop it first"
            )
        classpath = resolve_classpath("kafka")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh_ports = self._choose_ports()
        try:
            self._launch(classpath)
        except InfraError:
            # Another process may have taken a port between free_port() and the bind.
            if not fresh_ports or "Address already in use" not in self.tail():
                raise
            log.warning("Kafka ports were taken meanwhile; retrying on new ports")
            self.port = self.controller_port = None
            self._choose_ports()
            self._launch(classpath)
        return self

    def _stopped(self) -> None:
        self._save_state(pid=None)

    def announce(self) -> None:
        """Print the bootstrap address (stdout) and the log file (stderr)."""
        print(self.bootstrap_servers, flush=True)
        print(f"kafka log: {self.log_path}", file=sys.stderr, flush=True)

    def failure(self) -> str | None:
        """Return that the broker died, with its log's tail (None while it runs)."""
        return None if self.running else f"kafka broker died; log:\n{self.tail()}"

    def restart(self, *, hard: bool = False, timeout: float = 30.0) -> None:
        """Stop (or with ``hard`` kill) the broker and start it on the same ports and data."""
        if hard:
            self.kill()
        else:
            self.stop(timeout=timeout)
        self.start()

    def ready(self, timeout: float = 2.0) -> bool:
        """Tell whether the broker answers a metadata request within ``timeout`` seconds."""
        if self.port is None or not port_open(self.port):
            return False
        conf = admin_config(self.client_settings())
        conf["logger"] = _PROBE_LOG
        admin = AdminClient(conf)
        metadata = admin.list_topics(timeout=timeout)
        return bool(metadata.brokers)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"KafkaBroker({self.data_dir}, port={self.port}, {state})"

    # --------------------------------------------------------------------- helpers

    def _launch(self, classpath: Path) -> None:
        """Write the config, format storage if needed, start the JVM and wait for it."""
        if self.secure and self.pki is None:
            self.pki = TestPki(self.data_dir / "tls")
            self._broker_store = self.pki.issue("broker", BROKER_CN)
        self._write_properties()
        self._format_storage(classpath)
        mark_log(self.log_path, f"starting Kafka broker on {self.bootstrap_servers}")
        started = time.monotonic()
        self._jvm = JvmProcess(
            "kafka",
            classpath,
            "kafka.Kafka",
            [str(self.properties_path)],
            jvm_opts=self._jvm_opts(),
            log_path=self.log_path,
            cwd=self.data_dir,
        )
        try:
            self._jvm.wait_until(self.ready, self.startup_timeout, "metadata request")
        except BaseException:
            self._jvm.stop(timeout=10)
            self._jvm = None
            raise
        self._save_state(pid=self._jvm.pid)
        log.info(
            "Kafka broker ready on %s after %.1fs (log %s)",
            self.bootstrap_servers,
            time.monotonic() - started,
            self.log_path,
        )

    def _jvm_opts(self) -> list[str]:
        """Return the JVM flags plus the log4j2 configuration."""
        return [*self.jvm_opts, f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}"]

    def _choose_ports(self) -> bool:
        """Fill in missing ports (reusing saved ones when free); tell if any was new."""
        fresh = False
        for attr in ("port", "controller_port"):
            current: int | None = getattr(self, attr)
            if current is not None and (self._pinned_ports or not port_open(current)):
                continue
            setattr(self, attr, free_port())
            fresh = True
        if self.port == self.controller_port:
            self.controller_port = free_port()
            fresh = True
        return fresh

    def _properties(self) -> dict[str, str]:
        """Return the broker configuration for a single combined KRaft node."""
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (kill()) the restarted controller keeps the dead incarnation's
            # registration until its session times out (default 9 s) and rejects the new
            # one with DUPLICATE_BROKER_REGISTRATION meanwhile; a short session brings the
            # broker back ~3 s after a kill instead of ~12 s.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
        }
        if self.secure:
            props.update(self._secure_properties())
        props.update(self.extra_properties)
        return props

    def _secure_properties(self) -> dict[str, str]:
        """Return the TLS, SASL and authorizer settings of the secured broker."""
        if self.pki is None:
            raise InfraError("no certificates yet")
        admin = self.admin_password_file.read_text()
        store = str(self._broker_store.path)
        plain_jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{ADMIN_USER}" password="{admin}" user_{ADMIN_USER}="{admin}";'
        )
        return {
            "listeners": (
                f"SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": plain_jaas,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": store,
            "ssl.keystore.password": self.pki.password,
            "ssl.key.password": self.pki.password,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(self.pki.truststore),
            "ssl.truststore.password": self.pki.password,
            "ssl.endpoint.identification.algorithm": "https",
            # Clients may present a certificate (SASL names them); the controller
            # listener takes only certificates our CA signed: the broker's own.
            "listener.name.sasl_ssl.ssl.client.auth": "requested",
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN_USER};User:CN={BROKER_CN}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _write_properties(self) -> None:
        """Write ``server.properties`` for the current ports."""
        lines = ["# Written by tradeflow.infra.kafka.KafkaBroker; rewritten on every start."]
        lines += [f"{key}={value}" for key, value in self._properties().items()]
        # The secured broker's file holds its store and admin passwords: owner only.
        write_secret_file(self.properties_path, "\n".join(lines) + "\n")

    def _format_storage(self, classpath: Path) -> None:
        """Format the KRaft log directory once (skipped when ``meta.properties`` exists)."""
        if (self.log_dirs / "meta.properties").exists():
            return
        if self.cluster_id is None:
            self.cluster_id = _random_cluster_id()
        self._save_state(pid=None)
        mark_log(self.log_path, f"formatting {self.log_dirs} (cluster id {self.cluster_id})")
        fmt = JvmProcess(
            "kafka-storage-format",
            classpath,
            "kafka.tools.StorageTool",
            ["format", "-t", self.cluster_id, "-c", str(self.properties_path), "--standalone"],
            jvm_opts=self._jvm_opts(),
            log_path=self.log_path,
            cwd=self.data_dir,
        )
        try:
            code = fmt.proc.wait(timeout=120)
        finally:
            fmt.stop(timeout=5)
        if code != 0:
            raise InfraError(f"formatting Kafka storage failed ({code}); log:\n{fmt.tail()}")

    def _other_broker_pid(self) -> int | None:
        """Return the pid of a broker another process started on this data dir, if alive."""
        pid = self._saved_jvms_running(b"kafka.Kafka").get("pid")
        return None if pid is None else int(pid)

    def _load_state(self) -> None:
        """Read ports and cluster id saved by an earlier broker on this data dir."""
        state = self._read_state()
        if not state:
            return
        if self.port is None and self.controller_port is None:
            self.port = state.get("port")
            self.controller_port = state.get("controller_port")
        self.cluster_id = state.get("cluster_id")

    def _save_state(self, pid: int | None) -> None:
        """Record ports, cluster id and pid in ``broker.json`` for later runs and tools."""
        state = {
            "port": self.port,
            "controller_port": self.controller_port,
            "cluster_id": self.cluster_id,
            "bootstrap_servers": None if self.port is None else self.bootstrap_servers,
            "pid": pid,
        }
        self._write_state(state)


# ------------------------------------------------------------------------------ CLI


def _add_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument("--data-dir", type=Path, default=None, help="default: a new temp dir")
    up.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: free)")
    up.add_argument("--controller-port", type=int, default=None, help="default: free")
    up.add_argument("--secure", action="store_true", help="TLS + SASL + ACLs (docs/security.md)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m tradeflow.infra.kafka up``: a broker until SIGINT/SIGTERM."""
    return launch(
        "tradeflow.infra.kafka",
        "Run a real single-node Kafka broker (KRaft) on 127.0.0.1.",
        _add_arguments,
        lambda args: KafkaBroker(
            args.data_dir, port=args.port, controller_port=args.controller_port, secure=args.secure
        ),
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
