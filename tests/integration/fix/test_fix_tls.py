"""FIX over TLS with logon credentials, against the real QuickFIX/J venue (#19 item 2).

The venue is deploy/fix-venue with QuickFIX/J's SSL on (a keystore issued at start by a
throwaway ``TestPki``, nothing checked in) and a Username/Password it requires. Our
initiator verifies the venue's certificate and host name, can present a client
certificate, and stops with one CRITICAL event, never a reconnect storm, when the
certificate or the password is refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.fix.settings import FixSettings
from connectors.venues import make_venue
from connectors.venues.fix import FixVenue
from operators.execution import venue_alarm
from schemas import ExecStatus, RiskEvent, Severity
from tradeflow.infra.fix_venue import FixVenue as QuickFixVenue
from tradeflow.infra.fix_venue import VenueTls
from tradeflow.infra.tls import TestPki

from .conftest import VenueFactory
from .test_initiator import Collector, _has, order, settings

pytestmark = pytest.mark.integration

USER = "tradeflow-d"
PASSWORD = "fix-pw-7Qe2-known-for-the-leak-check"  # noqa: S105 - a test value searched for below
WATCH_S = 3.0
"""How long a refused session is watched for reconnects (reconnect_initial_s is 0.2 s)."""


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


def tls_settings(venue: QuickFixVenue, store: Path, pki: TestPki, **overrides: object) -> FixSettings:
    values: dict[str, object] = {
        "tls": True, "tls_ca_file": pki.ca_pem, "username": SecretStr(USER), "password": SecretStr(PASSWORD),
    }
    return settings(venue, store, **(values | overrides))


def started(s: FixSettings) -> FixVenue:
    adapter = make_venue("fix", settings=s, name="tlsvenue")
    assert isinstance(adapter, FixVenue)
    adapter.connect()
    return adapter


def files_under(*dirs: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for d in dirs for p in d.rglob("*") if p.is_file()}


def watch_refusal(adapter: FixVenue) -> tuple[dict[str, object], list[RiskEvent]]:
    """Wait out ``WATCH_S``; return the adapter's health and the CRITICAL events it raised."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not adapter.health().figure("halted"):
        time.sleep(0.05)
    time.sleep(WATCH_S)
    findings = adapter.poll_findings()
    now = datetime.now(UTC)
    events = [r for f in findings for r in venue_alarm("tlsvenue", f, now) if isinstance(r, RiskEvent)]
    return adapter.health().as_dict(), events


def test_orders_flow_over_tls_with_credentials_and_the_password_stays_out_of_every_log(
    fix_venue_factory: VenueFactory, pki: TestPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    venue = fix_venue_factory(tls=VenueTls.of(pki), credentials=(USER, PASSWORD))
    adapter = started(tls_settings(venue, tmp_path / "store", pki))
    try:
        assert adapter.wait_logged_on(20), adapter.health()
        ids = [f"tls-{i}" for i in range(20)]
        for oid in ids:
            adapter.submit(order(oid))
        got = Collector(adapter)
        got.until(lambda r: all(_has(oid, ExecStatus.FILLED)(r) for oid in ids), "20 fills over TLS")
    finally:
        adapter.close()
    assert len(venue.accepted_orders()) == 20
    secret = PASSWORD.encode()
    logs = files_under(venue.data_dir, tmp_path / "store")
    assert any(b"554=***" in body for body in logs.values())  # the venue's message log masked it
    # the password file the venue reads is the one place it is written
    leaks = [p for p, body in logs.items() if secret in body and p.name != "logon.password"]
    assert leaks == []
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(adapter.settings)


def test_a_client_certificate_is_presented_when_the_venue_asks_for_one(
    fix_venue_factory: VenueFactory, pki: TestPki, tmp_path: Path
) -> None:
    venue = fix_venue_factory(tls=VenueTls.of(pki, client_auth=True), credentials=(USER, PASSWORD))
    client = pki.issue("jobd", "tradeflow job D")
    adapter = started(tls_settings(venue, tmp_path / "store", pki, tls_cert_file=client.cert_pem,
                                   tls_key_file=pki.pem_key(client)))
    try:
        assert adapter.wait_logged_on(20), adapter.health()
        adapter.submit(order("mtls-1"))
        Collector(adapter).until(_has("mtls-1", ExecStatus.FILLED), "a fill over mutual TLS")
    finally:
        adapter.close()


@pytest.mark.parametrize("case", ["venue certificate from another CA", "no client certificate",
                                  "wrong password", "wrong username"])
def test_a_refused_session_stops_with_one_critical_event_and_no_reconnect_storm(
    fix_venue_factory: VenueFactory, pki: TestPki, tmp_path: Path, case: str
) -> None:
    venue = fix_venue_factory(tls=VenueTls.of(pki, client_auth=case == "no client certificate"),
                              credentials=(USER, PASSWORD))
    overrides: dict[str, object] = {
        "venue certificate from another CA": {"tls_ca_file": TestPki(tmp_path / "other-ca").ca_pem},
        "no client certificate": {},
        "wrong password": {"password": SecretStr("not-the-password")},
        "wrong username": {"username": SecretStr("mallory")},
    }[case]
    adapter = started(tls_settings(venue, tmp_path / "store", pki, **overrides))
    try:
        adapter.submit(order("refused-1"))
        health, events = watch_refusal(adapter)
        rejected = Collector(adapter).until(_has("refused-1", ExecStatus.REJECTED), "the order refused here")
    finally:
        adapter.close()
    assert health["connects"] == 1, health  # one attempt, not one every backoff step
    assert health["session_state"] != "ACTIVE"
    why = str(health["halted"])
    expected = {
        "venue certificate from another CA": ("CERTIFICATE_VERIFY_FAILED",),
        "no client certificate": ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE"),  # the JDK's alert
        "wrong password": ("bad username or password",),
        "wrong username": ("bad username or password",),
    }[case]
    assert any(e in why for e in expected), why
    assert [(e.rule, e.severity) for e in events] == [("LOGON_REFUSED", Severity.CRITICAL)], events
    assert events[0].account == "venue:tlsvenue"  # no order of any account reached the venue
    reason = next(r.reason for r in rejected if r.order_id == "refused-1")
    assert reason.startswith("not sent: FIX session stopped"), reason
    assert venue.accepted_orders() == []
    assert "not-the-password" not in why
    assert PASSWORD not in why
