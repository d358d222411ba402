"""Settings of one FIX 4.4 initiator session, frozen and strict.

The fields are meant to live under ``Settings.fix`` and so be read from
``TRADEFLOW_FIX__<FIELD>`` (``TRADEFLOW_FIX__HOST``, ``TRADEFLOW_FIX__PASSWORD``...);
tests and tools build ``FixSettings(...)`` directly. Credentials are ``SecretStr``, so
they never show in reprs or logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.secrets import resolve_secret


class FixSettings(BaseModel):
    """Where the venue is, who we are, and how the session behaves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    """Venue acceptor host (``TRADEFLOW_FIX__HOST``)."""
    port: int = Field(default=9878, gt=0, lt=65536)
    """Venue acceptor port (``TRADEFLOW_FIX__PORT``)."""
    begin_string: Literal["FIX.4.4"] = "FIX.4.4"
    """Protocol version (tag 8); only FIX 4.4 is spoken."""
    sender_comp_id: str = Field(default="TRADEFLOW", min_length=1)
    """Our CompID, tag 49 on what we send (``TRADEFLOW_FIX__SENDER_COMP_ID``)."""
    target_comp_id: str = Field(default="VENUE", min_length=1)
    """The venue's CompID, tag 56 on what we send (``TRADEFLOW_FIX__TARGET_COMP_ID``)."""
    heartbeat_s: int = Field(default=30, ge=1)
    """HeartBtInt (108) proposed at logon (``TRADEFLOW_FIX__HEARTBEAT_S``)."""
    reset_on_logon: bool = False
    """Send ResetSeqNumFlag=Y (141) and start both sequences at 1 on every logon."""
    username: SecretStr | None = None
    """Username (553) sent at logon (``TRADEFLOW_FIX__USERNAME``)."""
    password: SecretStr | None = None
    """Password (554) sent at logon (``TRADEFLOW_FIX__PASSWORD``)."""
    password_file: Path | None = None
    """File holding the password (a mounted secret, ``TRADEFLOW_FIX__PASSWORD_FILE``); read
    once at start, instead of ``password``."""
    tls: bool = False
    """Speak TLS to the venue (``TRADEFLOW_FIX__TLS``); its certificate is always verified
    (chain and host name), and a certificate refused stops the session: no retry."""
    tls_ca_file: Path | None = None
    """PEM file of the CA(s) the venue's certificate must chain to (None: the system's)."""
    tls_server_name: str | None = None
    """Host name the venue's certificate must carry (None: ``host``)."""
    tls_cert_file: Path | None = None
    """PEM client certificate to present, for venues that ask for one (with ``tls_key_file``)."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""
    tls_key_password: SecretStr | None = None
    """Password of ``tls_key_file``, if it is encrypted."""
    tls_key_password_file: Path | None = None
    """File holding ``tls_key_password`` (read once at start)."""
    stop_on_refused_logon: bool = True
    """A Logout answering our Logon (bad credentials, unknown CompID, sequence refused by
    the venue) stops the session with one CRITICAL ``LOGON_REFUSED`` event instead of
    reconnecting: a retry sends the same Logon and is refused the same way. False: retry
    with backoff, alarming every ``logon_refused_alarm`` failures."""
    store_dir: Path = Path("data/fix")
    """Directory of the session store (sequence numbers, sent messages, order map)."""
    fsync: bool = True
    """Fsync every store write before the bytes go out (off only for tests/benchmarks)."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """TCP connect timeout."""
    logon_timeout_s: float = Field(default=10.0, gt=0)
    """How long to wait for the venue's Logon before dropping the connection."""
    logout_timeout_s: float = Field(default=2.0, gt=0)
    """How long to wait for the venue's Logout after sending ours."""
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    """First reconnect delay; it doubles (``reconnect_multiplier``) up to the maximum."""
    reconnect_max_s: float = Field(default=30.0, gt=0)
    """Largest reconnect delay."""
    reconnect_multiplier: float = Field(default=2.0, ge=1)
    """Growth of the reconnect delay after each failed attempt."""
    pending_order_timeout_s: float = Field(default=30.0, gt=0)
    """Orders waiting for a logged-on session are rejected (never sent) after this."""
    status_after_s: float | None = Field(default=10.0, gt=0)
    """An order sent without any answer for this long gets an OrderStatusRequest, again
    at this interval while it stays unanswered (None: asked only after a logon)."""
    max_latency_s: float | None = Field(default=120.0, gt=0)
    """Inbound SendingTime (52) may differ from our clock by this much (None: no check)."""
    max_seen_exec_ids: int = Field(default=100_000, ge=1)
    """ExecIDs remembered (and persisted) for de-duplication."""
    fill_gaps: bool = True
    """Turn a venue CumQty above the fills received into one synthetic fill of the
    difference, so a fill lost in a crash still reaches venue_fills
    (``TRADEFLOW_FIX__FILL_GAPS``; see ``connectors.fix.application``)."""

    adopt_venue_reset: bool = True
    """When the venue's Logon is numbered below what we expect (it lost its state), take
    its numbering and go on, never re-sending anything sent before; a CRITICAL event is
    raised either way. False: refuse the logon ("MsgSeqNum too low") until an operator
    resets the sequences (``TRADEFLOW_FIX__ADOPT_VENUE_RESET``)."""
    logon_refused_alarm: int = Field(default=3, ge=1)
    """Raise a CRITICAL event after this many failed logons in a row (and every as many
    after)."""
    resend_max_age_s: float = Field(default=10.0, gt=0)
    """A NewOrderSingle or cancel older than this is never re-sent on a ResendRequest
    (a GapFill replaces it), nor one whose order is done or has fills: the venue has
    seen it, or must not see it late."""

    @model_validator(mode="after")
    def _distinct_comp_ids(self) -> FixSettings:
        # secret files are read here, once: a missing one fails at start-up
        for name in ("password", "tls_key_password"):
            secret = resolve_secret(name, getattr(self, name), getattr(self, f"{name}_file"))
            object.__setattr__(self, name, secret)
        if self.sender_comp_id == self.target_comp_id:
            raise ValueError("sender_comp_id and target_comp_id must differ")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if not self.tls and (self.tls_ca_file or self.tls_cert_file or self.tls_server_name):
            raise ValueError("tls_* settings are set but tls is off")
        return self

    @property
    def session_id(self) -> str:
        """Return ``FIX.4.4:SENDER->TARGET``, the session's name in logs and the store."""
        return f"{self.begin_string}:{self.sender_comp_id}->{self.target_comp_id}"

    @property
    def session_dir(self) -> Path:
        """Return the store directory of this session (one per CompID pair)."""
        return self.store_dir / f"{self.sender_comp_id}-{self.target_comp_id}"
