"""The secured Kafka broker (TLS + SASL/SCRAM + ACLs) refuses whoever it should, and the
jobs, each as its own principal, compute there what they compute on the embedded store.

The broker is ``secure_kafka`` (conftest): a SASL_SSL listener with a test CA made at
start, the StandardAuthorizer, ``allow.everyone.if.no.acl.found=false``. Each test gets
fresh topics (a new prefix) and principals provisioned by ``KafkaBroker.provision_jobs``.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from connectors.base import ConnectorError
from connectors.feeds import SyntheticMarket
from connectors.kafka.config import (
    KafkaAuthError,
    admin_config,
    producer_config,
    topic_name,
    verify_connection,
)
from connectors.kafka.settings import KafkaSettings
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from flows import indicators, portfolio_risk, strategy
from schemas import Record, RiskDecision, ValidatedOrder
from tests.helpers import topic_bytes
from tests.integration.profiles import (
    by_id,
    count_records,
    feed,
    local_settings,
    read_stream,
    run_flow,
    unique_name,
)
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue
from tradeflow.infra.fix_venue import VenueTls
from tradeflow.infra.kafka import KafkaBroker
from tradeflow.infra.tls import TestPki
from tradeflow.pipeline import (
    T_SEED,
    demo_accounts,
    demo_strategies,
    demo_symbol_limits,
    listen_port,
    pipeline_jobs,
)

pytestmark = pytest.mark.integration

ORDER = ValidatedOrder(
    order_id="FORGED-1", account="ACC1", symbol="S0", side="BUY", qty=Decimal(1), ts=T_SEED
)


def _settings(kafka: KafkaSettings, data_dir: Path) -> Settings:
    return load_settings(profile="kafka", data_dir=data_dir, kafka=kafka.model_dump(), portfolio=PORTFOLIO)


PORTFOLIO = {"mark_wait_s": 5.0}
"""Job C waits longer for a signal's mark (the whole market is there)."""


def _refused_within(kafka: KafkaSettings, seconds: float) -> str:
    """Assert a first connection with ``kafka`` is refused quickly; return the error text."""
    started = time.monotonic()
    with pytest.raises(KafkaAuthError) as info:
        verify_connection(kafka, timeout=seconds)
    assert time.monotonic() - started < seconds + 5
    return str(info.value)


def test_a_client_without_credentials_or_in_plaintext_is_refused(secure_kafka: KafkaBroker) -> None:
    # TLS but no SASL: the SASL_SSL listener never gets past the handshake it expects.
    no_sasl = KafkaSettings(bootstrap=secure_kafka.bootstrap_servers, security_protocol="SSL",
                            ssl_ca_location=secure_kafka.client_settings().ssl_ca_location)
    _refused_within(no_sasl, 8)
    # Plaintext: no TLS at all.
    plaintext = KafkaSettings(bootstrap=secure_kafka.bootstrap_servers)
    _refused_within(plaintext, 8)
    # A plain librdkafka client gets no metadata either.
    admin = AdminClient({"bootstrap.servers": secure_kafka.bootstrap_servers, "log_level": 0})
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal; no metadata is the point
        admin.list_topics(timeout=3)


def test_wrong_password_is_refused_at_once_with_no_secret_in_the_error(secure_kafka: KafkaBroker) -> None:
    secure_kafka.add_user("alice", SecretStr("alice-right-password"))
    right = secure_kafka.client_settings("alice", password=SecretStr("alice-right-password"))
    verify_connection(right, timeout=20)
    wrong = secure_kafka.client_settings("alice", password=SecretStr("alice-WRONG-password"))
    started = time.monotonic()
    with pytest.raises(KafkaAuthError) as info:
        Connectors(_settings(wrong, Path("unused"))).reader("market_data")
    assert time.monotonic() - started < 10  # one refused attempt, not a retry loop to a timeout
    message = str(info.value)
    assert "alice" in message
    assert "Authentication failed" in message
    assert "alice-WRONG-password" not in message
    assert "alice-right-password" not in message


def test_a_broker_certificate_from_another_ca_is_refused(secure_kafka: KafkaBroker, tmp_path: Path) -> None:
    other = TestPki(tmp_path / "other-ca")
    secure_kafka.add_user("bob", SecretStr("bob-password"))
    kafka = secure_kafka.client_settings(
        "bob", password=SecretStr("bob-password"), ssl_ca_location=other.ca_pem
    )
    message = _refused_within(kafka, 15)
    assert "certificate verify failed" in message or "SSL" in message


def test_job_b_cannot_write_validated_orders_and_the_record_never_lands(
    secure_kafka: KafkaBroker, tmp_path: Path
) -> None:
    prefix = unique_name("sec", ".")
    jobs = secure_kafka.provision_jobs(prefix)
    admin = _settings(secure_kafka.client_settings(topic_prefix=prefix, partitions=2), tmp_path)
    # Through the connectors: a clear error naming the principal and the topic.
    job_b = Connectors(_settings(jobs["strategy"], tmp_path))
    with pytest.raises(ConnectorError, match=r"job-strategy may not use topic .*validated_orders"):
        job_b.writer("validated_orders")
    # Around them, with a raw producer: the broker refuses the record itself.
    errors: list[KafkaError] = []
    conf = producer_config(jobs["strategy"])
    conf["log_level"] = 0
    producer = Producer(conf)
    producer.produce(topic_name(jobs["strategy"], "validated_orders"), b"forged", b"{}",
                     on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(20)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # Job C, whose stream it is, may; the admin then finds only Job C's record there.
    job_c = Connectors(_settings(jobs["portfolio_risk"], tmp_path)).writer("validated_orders")
    job_c.write([ORDER])
    job_c.close()
    assert count_records(admin, "validated_orders") == 1
    assert [r for r in read_stream(admin, "validated_orders")] == [ORDER]
    # Only Job D writes venue_fills; Job C reads them but may not write one.
    with pytest.raises(ConnectorError, match="may not use topic"):
        Connectors(_settings(jobs["indicators"], tmp_path)).writer("venue_fills")


def _chain(settings_of: dict[str, Settings], ticks: list[Record]) -> None:
    """Jobs A, B (sma_cross, rsi_reversion) and C, bounded, each with its own settings."""
    admin = settings_of["admin"]
    configs = demo_strategies()
    accounts = demo_accounts(configs)
    symbols = sorted({t.symbol for t in ticks})  # type: ignore[attr-defined]
    feed(admin, {
        "market_data": ticks,
        "strategy_config": list(configs),
        "control": [],
        "accounts": list(accounts),
        "symbol_limits": list(demo_symbol_limits([a.account for a in accounts], symbols)),
        "venue_fills": [],
    })
    run_flow(indicators.build_flow, settings_of["indicators"])
    for config in configs:
        run_flow(partial(strategy.build_flow, config.strategy_id), settings_of["strategy"])
    feed(admin, {"trade_signals": []})  # closes trade_signals, as the end of Job B's input
    run_flow(portfolio_risk.build_flow, settings_of["portfolio_risk"])


def test_jobs_a_b_c_as_their_own_principals_run_as_the_open_run(
    secure_kafka: KafkaBroker, tmp_path: Path
) -> None:
    ticks: list[Record] = list(SyntheticMarket(symbols=3, ticks=1500, seed=19))
    prefix = unique_name("sec", ".")
    jobs = secure_kafka.provision_jobs(prefix)
    secured = {job: _settings(kafka, tmp_path / "secured") for job, kafka in jobs.items()}
    secured["admin"] = _settings(secure_kafka.client_settings(topic_prefix=prefix, partitions=2), tmp_path)
    _chain(secured, ticks)
    local = local_settings(tmp_path / "local", portfolio=PORTFOLIO)
    _chain(dict.fromkeys([*jobs, "admin"], local), ticks)

    for stream, key in (("sma_wide", lambda r: (r.symbol, r.seq)), ("trade_signals", lambda r: r.signal_id)):
        got = by_id(read_stream(secured["admin"], stream), key)
        want = by_id(read_stream(local, stream), key)
        assert got == want, f"{stream}: secured run differs from the open run"
    # Job C: which signals pass depends on how its inputs interleave (README, "Not yet"),
    # on any profile; what must hold is one decision per signal, an order per pass.
    for settings in (secured["admin"], local):
        signals = {s.signal_id for s in read_stream(settings, "trade_signals")}  # type: ignore[attr-defined]
        decisions = [d for d in read_stream(settings, "risk_decisions") if isinstance(d, RiskDecision)]
        assert sorted(d.signal_id for d in decisions) == sorted(signals)
        passed = {d.order_id for d in decisions if d.order_id}
        orders = {o.order_id for o in read_stream(settings, "validated_orders")}  # type: ignore[attr-defined]
        assert orders == passed
        assert passed
    # Partitions (so dead letters' offsets) differ between the profiles' hashes.
    letters = [sorted((d.source_stream, d.reason) for d in read_stream(s, "dead_letters"))  # type: ignore[attr-defined]
               for s in (secured["admin"], local)]
    assert letters[0] == letters[1]


def test_no_secret_leaks_from_a_whole_pipeline_run_on_the_secured_broker(
    secure_kafka: KafkaBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tradeflow.cli import main as tradeflow_main
    from tradeflow.pipeline import run_pipeline

    prefix = unique_name("leak", ".")
    jobs = secure_kafka.provision_jobs(prefix)
    admin_kafka = secure_kafka.client_settings(topic_prefix=prefix, partitions=2)
    settings = _settings(admin_kafka, tmp_path / "data")
    market = SyntheticMarket(symbols=3, ticks=800, seed=7)
    # Job D trades over FIX with TLS and a logon password (given as a file, *_FILE)
    pki = TestPki(tmp_path / "fix-pki")
    fix_password = "fix-logon-pw-" + unique_name("x", "")
    venue = QuickFixVenue(tmp_path / "venue", tls=VenueTls.of(pki), credentials=("jobd", fix_password))
    password_file = tmp_path / "fix.password"
    password_file.write_text(fix_password + "\n")
    fix_env = {"HOST": venue.host, "TLS": "true", "TLS_CA_FILE": str(pki.ca_pem), "USERNAME": "jobd",
               "PASSWORD_FILE": str(password_file), "HEARTBEAT_S": "5"}
    # every job serves its metrics page; a thread scrapes each while the run goes on
    venues = [("fix", "fix")]
    ports = {job.name: listen_port() for job in pipeline_jobs(demo_strategies(), venues)}
    pages: dict[str, str] = {}
    running = threading.Event()
    running.set()

    def scrape() -> None:
        while running.is_set():
            for name, port in ports.items():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:  # noqa: S310
                        pages[name] = page.read().decode()
                except OSError:
                    pass  # not up yet, or already stopped
            time.sleep(0.3)

    scraper = threading.Thread(target=scrape, daemon=True)
    venue.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRADEFLOW_FIX__PORT", str(venue.port))
            for key, value in fix_env.items():
                mp.setenv(f"TRADEFLOW_FIX__{key}", value)
            scraper.start()
            counts = run_pipeline(settings, iter(market), market.ticks, market.symbol_names(), progress=False,
                                  job_kafka=jobs, venues=venues, metrics_ports=ports)
        fix_orders = len(venue.accepted_orders())
    finally:
        running.clear()
        venue.stop()
    scraper.join()
    assert sorted(pages) == sorted(ports), "every job's metrics page was read"
    assert all("tradeflow_" in page for page in pages.values())
    assert counts.fills > 0
    assert fix_orders == counts.orders > 0  # every order went to the venue over TLS, once
    secrets = {
        f"{job} password": kafka.sasl_password.get_secret_value()  # type: ignore[union-attr]
        for job, kafka in jobs.items()
    }
    secrets["admin password"] = secure_kafka.admin_password_file.read_text()
    secrets["FIX logon password"] = fix_password
    # What a process writes: every job's log, Job D's FIX store (sequence numbers, sent
    # messages, order map), the venue's message logs, this test's own log records.
    texts = {str(p): p.read_bytes() for p in (tmp_path / "data" / "logs").glob("*.log")}
    texts |= {str(p): p.read_bytes() for p in (tmp_path / "data" / "fix").rglob("*") if p.is_file()}
    texts |= {str(p): p.read_bytes() for p in venue.message_log_dir.rglob("*") if p.is_file()}
    texts |= {f"metrics page of {name}": page.encode() for name, page in pages.items()}
    # The run report: every file it writes (HTML, plots, tables).
    from tradeflow.report import build_report

    assert build_report(settings, tmp_path / "report").exists()
    texts |= {str(p): p.read_bytes() for p in (tmp_path / "report").rglob("*") if p.is_file()}
    texts["test log records"] = caplog.text.encode()
    # What the streams hold: every key, value and header of every topic of the run.
    for topic in sorted(t for t in AdminClient(admin_config(admin_kafka)).list_topics(timeout=10).topics
                        if t.startswith(prefix)):
        texts[f"topic {topic}"] = topic_bytes(admin_kafka, topic)
    # What the tools print: `tradeflow show` of the tables, `tradeflow tail` of the decisions.
    capsys.readouterr()
    env = {f"TRADEFLOW_KAFKA__{k.upper()}": str(v) for k, v in admin_kafka.model_dump().items()
           if v is not None and k not in ("sasl_password",)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRADEFLOW_PROFILE", "kafka")
        for key, value in env.items():
            mp.setenv(key, value)
        for argv in (["show", "portfolio_state"], ["show", "accounts"], ["tail", "risk_decisions", "-n", "5"],
                     ["tail", "dead_letters", "-n", "5"]):
            assert tradeflow_main(argv) == 0, argv
    texts["tradeflow show/tail"] = capsys.readouterr().out.encode()
    # The settings objects themselves print no secret.
    texts["settings repr"] = (repr(settings) + str(jobs)).encode()
    assert len(texts) > 10
    leaks = [(where, what) for where, blob in texts.items() for what, value in secrets.items()
             if value.encode() in blob]
    assert leaks == []
