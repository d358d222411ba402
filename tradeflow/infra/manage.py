"""``tradeflow infra up|down|status``: the real servers for a development environment.

``up`` starts Kafka (KRaft), the Fluss cluster and the QuickFIX/J venue (with its
REST/WebSocket order API over the same book) from
``deploy/`` on 127.0.0.1, leaves them running in the background, and writes their
addresses and process ids to ``<dir>/infra.json``; it prints the environment that
points tradeflow at them. ``down`` stops them (SIGTERM, then SIGKILL); ``status``
says which are alive.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tradeflow.infra.common import port_open

SERVERS = ("kafka", "fluss", "fix")
ALIASES = {"venue": "fix"}
"""Other names ``--only`` takes."""

MD_SYMBOLS = ("SYM000", "SYM001", "SYM002", "SYM003")
"""The venue publishes market data over FIX for these (the demo market's first symbols)."""


@dataclass
class InfraState:
    """What ``infra up`` started."""

    pids: dict[str, list[int]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def _state_path(root: Path) -> Path:
    return root / "infra.json"


def load_state(root: Path) -> InfraState:
    """Read ``infra.json`` (an empty state if there is none)."""
    path = _state_path(root)
    if not path.exists():
        return InfraState()
    return InfraState(**json.loads(path.read_text()))


def up(root: Path, servers: tuple[str, ...] = SERVERS, *, secure: bool = False) -> InfraState:
    """Start the servers under ``root`` and return what was started.

    ``secure``: Kafka with TLS, SASL and ACLs (docs/security.md). The exports are the
    admin principal's (its password in a file, never in the environment); each job's
    principal and password file are listed in ``state.env`` as ``#job <name>`` lines.
    """
    root.mkdir(parents=True, exist_ok=True)
    state = load_state(root)
    running = status(root)
    for name in (ALIASES.get(s, s) for s in servers):
        if running.get(name):
            continue
        if name == "kafka":
            from tradeflow.infra.kafka import KafkaBroker

            broker = KafkaBroker(root / "kafka", secure=secure).start()
            state.pids["kafka"] = [broker.pid or 0]
            state.ports["kafka"] = broker.port or 0
            state.env["TRADEFLOW_KAFKA__BOOTSTRAP"] = broker.bootstrap_servers
            if secure:
                admin = broker.client_settings()
                state.env.update({
                    "TRADEFLOW_KAFKA__SASL_USERNAME": admin.sasl_username or "",
                    "TRADEFLOW_KAFKA__SASL_MECHANISM": admin.sasl_mechanism,
                    "TRADEFLOW_KAFKA__SASL_PASSWORD_FILE": str(admin.sasl_password_file),
                    "TRADEFLOW_KAFKA__SSL_CA_LOCATION": str(admin.ssl_ca_location),
                })
                for job, kafka in broker.provision_jobs(partitions=4).items():
                    state.env[f"#job {job}"] = (
                        f"TRADEFLOW_KAFKA__SASL_USERNAME={kafka.sasl_username} "
                        f"TRADEFLOW_KAFKA__SASL_PASSWORD_FILE={kafka.sasl_password_file}"
                    )
        elif name == "fluss":
            from tradeflow.infra.fluss import FlussCluster

            cluster = FlussCluster(root / "fluss").start()
            atexit.unregister(cluster.stop)  # it outlives this command, until `infra down`
            state.pids["fluss"] = list(cluster.pids.values())
            state.ports["fluss"] = int(cluster.bootstrap_servers.rsplit(":", 1)[1])
            state.env["TRADEFLOW_FLUSS__BOOTSTRAP"] = cluster.bootstrap_servers
        elif name == "fix":
            from tradeflow.infra.fix_venue import FixVenue, VenueMarketData
            from tradeflow.infra.rest_venue import SECRET_FILE, VenueRest

            rest = VenueRest()  # the same book over HTTP and a WebSocket user stream too
            venue = FixVenue(root / "fix", rest=rest, market_data=VenueMarketData(MD_SYMBOLS)).start()
            state.pids["fix"] = [venue.pid or 0]
            state.ports["fix"] = venue.port
            state.env["TRADEFLOW_FIX__PORT"] = str(venue.port)
            state.env["TRADEFLOW_FIX__SENDER_COMP_ID"] = venue.target_comp_id
            state.env["TRADEFLOW_FIX__TARGET_COMP_ID"] = venue.sender_comp_id
            state.env["TRADEFLOW_REST__BASE_URL"] = rest.base_url
            state.env["TRADEFLOW_REST__WS_URL"] = rest.ws_url
            state.env["TRADEFLOW_REST__API_KEY"] = rest.api_key
            state.env["TRADEFLOW_REST__SECRET_FILE"] = str(venue.data_dir / SECRET_FILE)
            state.env["#market data over FIX"] = (
                f"tradeflow feed --fix --fix-symbols {','.join(MD_SYMBOLS)} "
                f"--fix-comp-id {venue.md_comp_id}"
            )
        else:
            raise ValueError(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
        _state_path(root).write_text(json.dumps(asdict(state), indent=2))
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(root: Path) -> dict[str, bool]:
    """Return, per server recorded in ``infra.json``, whether it is up and answering."""
    state = load_state(root)
    return {
        name: all(_alive(p) for p in pids) and port_open(state.ports.get(name, 0))
        for name, pids in state.pids.items()
    }


def down(root: Path, timeout: float = 20.0) -> list[str]:
    """Stop every server recorded in ``infra.json``; return their names."""
    state = load_state(root)
    stopped = []
    for name, pids in state.pids.items():
        for pid in pids:
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
        stopped.append(name)
    _state_path(root).unlink(missing_ok=True)
    return stopped
