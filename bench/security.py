"""Security figures on the secured Kafka broker (docs/security.md).

Starts ``KafkaBroker(secure=True)`` (TLS, SASL/SCRAM, ACLs), then:

- ``unauthenticated_refused``: of 4 clients that must not get in (plaintext, TLS without
  SASL, a wrong password, a broker certificate from another CA), how many were refused;
- ``acl_denied_write_refused``: Job B's principal producing to validated_orders was
  refused and the topic holds no record (1) or not (0);
- ``secret_leaks``: after the whole pipeline (A, B x2, C, D paper) ran with each job as
  its own principal, how many (place, secret) pairs were found: every job log and
  every key, value and header of every topic searched for every password;
- ``fix_tls_orders``: of ``--fix-orders`` orders sent over FIX with TLS and a logon
  password to the QuickFIX/J venue, how many were filled; ``fix_tls_vs_plain`` is the
  rate of that burst against the same burst in plaintext to a second venue (same run);
- ``fix_bad_password_refused``: a logon with a wrong password was refused, the session
  stopped after that one attempt with one CRITICAL ``LOGON_REFUSED`` (1) or not (0);
- ``audit_vulnerabilities``: null: pip-audit needs a vulnerability database this machine
  cannot reach (docs/security.md).

    .venv/bin/python bench/security.py [--ticks 1000] [--fix-orders 500]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import _root  # noqa: F401 - first: puts the repository root on sys.path
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from bench.harness import report, running
from connectors.feeds import SyntheticMarket
from connectors.fix.settings import FixSettings
from connectors.kafka.config import (
    KafkaAuthError,
    admin_config,
    producer_config,
    topic_name,
    verify_connection,
)
from connectors.kafka.settings import KafkaSettings
from connectors.settings import load_settings
from connectors.venues.fix import FixVenue
from schemas import ExecStatus, Side, ValidatedOrder
from tests.helpers import topic_bytes
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue
from tradeflow.infra.fix_venue import VenueTls
from tradeflow.infra.kafka import KafkaBroker
from tradeflow.infra.tls import TestPki
from tradeflow.pipeline import run_pipeline


def refused(kafka: KafkaSettings) -> bool:
    try:
        verify_connection(kafka, timeout=8)
    except KafkaAuthError:
        return True
    return False


FIX_USER = "bench-jobd"
FIX_PASSWORD = "bench-fix-password"  # noqa: S105 - a throwaway value for the bench venue


def fix_settings(venue: QuickFixVenue, store: Path, **extra: object) -> FixSettings:
    return FixSettings(host=venue.host, port=venue.port, sender_comp_id=venue.target_comp_id,
                       target_comp_id=venue.sender_comp_id, store_dir=store, heartbeat_s=5,
                       reconnect_initial_s=0.2, reconnect_max_s=1.0, **extra)  # type: ignore[arg-type]


def fix_burst(settings: FixSettings, orders: int, tag: str) -> tuple[int, float]:
    """Send ``orders`` market orders at once; return how many filled and the orders/s."""
    adapter = FixVenue(settings, name=tag)
    adapter.connect()
    try:
        if not adapter.wait_logged_on(30):
            raise SystemExit(f"{tag}: no logon: {adapter.health().as_dict()}")
        now = datetime.now(UTC)
        started = time.monotonic()
        for i in range(orders):
            adapter.submit(ValidatedOrder(order_id=f"{tag}-{i}", account="B1", symbol="S0", side=Side.BUY,
                                          qty=Decimal(1), ts=now))
        filled: set[str] = set()
        deadline = started + 120
        while len(filled) < orders and time.monotonic() < deadline:
            filled |= {r.order_id for r in adapter.poll_reports() if r.status is ExecStatus.FILLED}
            time.sleep(0.005)
        return len(filled), orders / (time.monotonic() - started)
    finally:
        adapter.close()


def fix_refused(settings: FixSettings) -> int:
    """Log on with a wrong password; 1 if refused once, stopped, with one CRITICAL event."""
    adapter = FixVenue(settings, name="refused")
    adapter.connect()
    try:
        deadline = time.monotonic() + 20
        while not adapter.health().figure("halted") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # a reconnect would come within 0.2 s
        health = adapter.health()
        findings = [f.rule for f in adapter.poll_findings()]
    finally:
        adapter.close()
    return int(health.figure("connects") == 1 and findings == ["LOGON_REFUSED"]
               and "bad username or password" in str(health.figure("halted")))


def fix_figures(work: Path, orders: int) -> dict[str, object]:
    pki = TestPki(work / "fix-pki")
    tls = {"tls": True, "tls_ca_file": pki.ca_pem, "username": SecretStr(FIX_USER)}
    with running(QuickFixVenue(work / "venue-plain")) as plain, \
            running(QuickFixVenue(work / "venue-tls", tls=VenueTls.of(pki),
                                  credentials=(FIX_USER, FIX_PASSWORD))) as secured:
        # one store per venue: a session resumes its sequence numbers (a fresh store would
        # log on with 1, and the venue refuses a sequence below what it expects)
        fix_burst(fix_settings(plain, work / "fix-plain", fsync=False), 50, "warm")  # JIT, caches
        _, plain_rate = fix_burst(fix_settings(plain, work / "fix-plain", fsync=False), orders, "plain")
        filled, tls_rate = fix_burst(fix_settings(secured, work / "fix-tls", fsync=False,
                                                  password=SecretStr(FIX_PASSWORD), **tls), orders, "tls")
        refused = fix_refused(fix_settings(secured, work / "fix-tls", password=SecretStr("wrong"), **tls))
    return {
        "fix_tls_orders": filled,
        "fix_orders_sent": orders,
        "fix_tls_orders_per_s": round(tls_rate, 1),
        "fix_plain_orders_per_s": round(plain_rate, 1),
        "fix_tls_vs_plain": round(tls_rate / plain_rate, 2),
        "fix_bad_password_refused": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--fix-orders", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="tradeflow-bench-security-"))
    fix = fix_figures(work, args.fix_orders)
    started = time.monotonic()
    with running(KafkaBroker(work / "kafka", secure=True)) as broker:
        start_s = time.monotonic() - started
        ca = broker.client_settings().ssl_ca_location
        broker.add_user("bench-user", SecretStr("bench-right-password"))
        attempts = [
            KafkaSettings(bootstrap=broker.bootstrap_servers),
            KafkaSettings(bootstrap=broker.bootstrap_servers, security_protocol="SSL", ssl_ca_location=ca),
            broker.client_settings("bench-user", password=SecretStr("bench-wrong-password")),
            broker.client_settings("bench-user", password=SecretStr("bench-right-password"),
                                   ssl_ca_location=TestPki(work / "other-ca").ca_pem),
        ]
        unauthenticated = sum(refused(k) for k in attempts)

        jobs = broker.provision_jobs("bench.")
        admin = broker.client_settings(topic_prefix="bench.", partitions=2)
        errors: list[KafkaError | None] = []
        producer = Producer({**producer_config(jobs["strategy"]), "log_level": 0})
        producer.produce(topic_name(admin, "validated_orders"), b"{}", b"forged",
                         on_delivery=lambda err, _m: errors.append(err))
        producer.flush(20)
        orders = topic_name(admin, "validated_orders")
        landed = sum(topic_bytes(admin, orders, log_level=0) != b"" for _ in [0])
        acl_refused = int(
            [e.code() if e else None for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
            and landed == 0
        )

        settings = load_settings(profile="kafka", data_dir=work / "data",
                                 kafka=broker.client_settings(topic_prefix="run.", partitions=2).model_dump())
        run_jobs = broker.provision_jobs("run.")
        market = SyntheticMarket(symbols=3, ticks=args.ticks, seed=19)
        t0 = time.monotonic()
        counts = run_pipeline(settings, iter(market), market.ticks, market.symbol_names(),
                              progress=False, job_kafka=run_jobs)
        pipeline_s = time.monotonic() - t0
        secrets = [k.sasl_password.get_secret_value() for k in run_jobs.values() if k.sasl_password]
        secrets.append(broker.admin_password_file.read_text())
        places = {str(p): p.read_bytes() for p in (work / "data" / "logs").glob("*.log")}
        topics = AdminClient(admin_config(settings.kafka)).list_topics(timeout=10).topics
        for topic in sorted(t for t in topics if t.startswith("run.")):
            places[topic] = topic_bytes(settings.kafka, topic, log_level=0)
        leaks = sum(s.encode() in blob for blob in places.values() for s in secrets)

    report({
        "unauthenticated_refused": unauthenticated,
        "unauthenticated_attempts": len(attempts),
        "acl_denied_write_refused": acl_refused,
        **fix,
        "secret_leaks": leaks,
        "secret_places_searched": len(places),
        "secrets_searched": len(secrets),
        "audit_vulnerabilities": None,
        "pipeline_ticks": counts.ticks,
        "pipeline_fills": counts.fills,
        "pipeline_s": round(pipeline_s, 1),
        "secure_broker_start_s": round(start_s, 1),
    })


if __name__ == "__main__":
    main()
