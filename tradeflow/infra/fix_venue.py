"""A real FIX 4.4 venue: a QuickFIX/J acceptor built from Maven Central artifacts.

``deploy/fix-venue`` holds a pom (quickfixj-core and quickfixj-messages-fix44) and a
small acceptor application of our own (``io.tradeflow.venue.Main``). ``FixVenue``
compiles it once per machine through ``resolve_classpath``, writes a QuickFIX/J
settings file into its data directory, starts the JVM bound to 127.0.0.1 on a free
port and waits until the port accepts connections.

What the venue does (see ``deploy/fix-venue/src/main/java/io/tradeflow/venue``):

- NewOrderSingle (D): ExecutionReport NEW (150=0, 39=0) with a venue OrderID, then
  fills (150=F) at the limit price (LIMIT), or at tag 44 / ``default_price``
  (MARKET), in ``partial_fills`` slices, each with its own ExecID. Rejects (150=8,
  39=8, 103, 58) symbols in ``reject_symbols`` and quantities above
  ``max_order_qty``. Orders in ``resting_symbols`` are acked and stay open. Orders in
  ``drop_ack_symbols`` are processed but no ExecutionReport is ever sent for them.
- A known ClOrdID is refused (150=8, 103=6) unless the message is a possible
  duplicate (43=Y or 97=Y): then it is ignored.
- OrderCancelRequest (F): ExecutionReport CANCELED, or OrderCancelReject (9).
- OrderStatusRequest (H): ExecutionReport 150=I with the current state; an unknown
  ClOrdID gets 39=8 and 58="unknown order".
- MarketDataRequest (V), with ``market_data`` (a ``VenueMarketData``): one
  MarketDataSnapshotFullRefresh (W) per symbol with its last ``snapshot_depth`` trades,
  then (263=1) every new trade as a MarketDataIncrementalRefresh (X); each MD entry
  carries the symbol's trade sequence number RptSeq (83). Trades are a seeded random
  walk at ``rate`` per second over all symbols (at most ``max_ticks``), each one JSON
  line in ``md-published.jsonl``; ``drop_every`` N leaves every Nth trade out of the
  incrementals (a gap the subscriber must repair from a snapshot). Market data
  subscribers log on as ``comp_id`` (default ``TRADEFLOWMD``), their own session.
  The venue uses ``FIX44-MD.xml`` (in its jar): QuickFIX/J's FIX44.xml with RptSeq
  added to the MD entry groups.
- Orders are journalled under the store directory, so a restarted venue (also after
  SIGKILL) knows them and never fills them again; every NewOrderSingle that reaches
  the application is one JSON line in the audit log.

Run one by hand::

    python -m tradeflow.infra.fix_venue up --data-dir /tmp/tradeflow-venue
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from tradeflow.infra.common import (
    DataPath,
    InfraError,
    JvmProcess,
    SingleJvmServer,
    free_port,
    launch,
    port_open,
    read_json_lines,
    resolve_classpath,
    small_jvm_opts,
)
from tradeflow.infra.rest_venue import SECRET_FILE as REST_SECRET_FILE
from tradeflow.infra.rest_venue import VenueRest
from tradeflow.infra.tls import KeyStore, TestPki

log = logging.getLogger(__name__)

MAIN_CLASS = "io.tradeflow.venue.Main"
HOST = "127.0.0.1"

#: A FIX acceptor needs little heap.
DEFAULT_JVM_OPTS = small_jvm_opts("256m")

_SETTINGS_FILE = "venue.cfg"
_STORE_DIR = "store"
_MESSAGE_LOG_DIR = "messages"
_AUDIT_FILE = "audit.jsonl"
_JOURNAL_FILE = "orders.journal"
_MD_PUBLISHED_FILE = "md-published.jsonl"

DATA_DICTIONARY = "FIX44-MD.xml"
"""The venue's FIX dictionary: QuickFIX/J's FIX44.xml plus RptSeq (83) in the MD entry
groups of W and X (``deploy/fix-venue/src/main/resources``, on the venue's classpath)."""


_LOGON_PASSWORD_FILE = "logon.password"  # noqa: S105 - a file name


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by this user only (mode 0600)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


@dataclass(frozen=True)
class VenueTls:
    """TLS of the venue's acceptor: its keystore, and the CA client certificates need."""

    keystore: KeyStore
    password: str
    """The keystore's (and truststore's) password (``TestPki.password``)."""
    client_ca: Path | None = None
    """A PKCS12 truststore: set, the venue asks for a client certificate it signed."""

    @classmethod
    def of(cls, pki: TestPki, *, name: str = "venue", client_auth: bool = False) -> VenueTls:
        """Issue the venue's certificate (for 127.0.0.1 and localhost) from ``pki``."""
        store = pki.issue(name, "tradeflow test venue")
        return cls(store, pki.password, pki.truststore if client_auth else None)

    def settings(self) -> dict[str, str]:
        """Return QuickFIX/J's SSL settings for this keystore."""
        out = {
            "SocketUseSSL": "Y",
            "SocketKeyStore": str(self.keystore.path),
            "SocketKeyStorePassword": self.password,
            "KeyStoreType": "PKCS12",
        }
        if self.client_ca is not None:
            out |= {
                "NeedClientAuth": "Y",
                "SocketTrustStore": str(self.client_ca),
                "SocketTrustStorePassword": self.password,
                "TrustStoreType": "PKCS12",
            }
        return out


@dataclass(frozen=True)
class VenueMarketData:
    """The trades the venue publishes to market data subscribers (MarketDataRequest V)."""

    symbols: Sequence[str]
    """Symbols with market data (kept as an upper-case tuple; none: the venue refuses V)."""
    rate: float = 20.0
    """Trades a second over all symbols."""
    max_ticks: int = 0
    """Stop publishing after this many trades (0: never)."""
    snapshot_depth: int = 1000
    """Trades a snapshot (W) carries per symbol."""
    drop_every: int = 0
    """Leave every Nth trade out of the incrementals (0: none): a gap to repair."""
    seed: int = 1
    """Seed of the random walk."""
    start_on_subscribe: bool = False
    """Publish nothing before the first subscription (benchmarks)."""
    comp_id: str = "TRADEFLOWMD"
    """The CompID subscribers log on with (their own session)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(s.strip().upper() for s in self.symbols if s.strip()))

    def settings(self, published: Path) -> dict[str, str]:
        """Return the venue's Md* settings; each trade published is a line in ``published``."""
        return {
            "MdSymbols": _csv(self.symbols),
            "MdRate": str(self.rate),
            "MdMaxTicks": str(self.max_ticks),
            "MdSnapshotDepth": str(self.snapshot_depth),
            "MdDropEvery": str(self.drop_every),
            "MdSeed": str(self.seed),
            "MdStartOnSubscribe": "Y" if self.start_on_subscribe else "N",
            "MdPublishedLogPath": str(published),
        }


def _csv(symbols: Iterable[str]) -> str:
    return ",".join(s.strip() for s in symbols if s.strip())


class FixVenue(SingleJvmServer):
    """Start, stop, kill and restart one QuickFIX/J FIX 4.4 acceptor on 127.0.0.1.

    ``data_dir`` holds the settings file (``venue.cfg``), the JVM log (``venue.log``),
    QuickFIX/J's file store (``store/``: sequence numbers and sent messages, plus the
    venue's ``orders.journal``), its message logs (``messages/``) and the order audit
    log (``audit.jsonl``). Everything survives ``restart()`` and ``kill()``.

    CompIDs are named from the venue's side: the venue sends with ``sender_comp_id``
    (default ``"VENUE"``) to ``target_comp_id`` (default ``"TRADEFLOW"``), so an
    initiator uses ``SenderCompID=venue.target_comp_id`` and
    ``TargetCompID=venue.sender_comp_id``.

    ``extra_settings`` are added to the [DEFAULT] section of the QuickFIX/J settings
    and override the ones written here (e.g. ``{"ValidateUserDefinedFields": "N"}``).

    ``tls`` makes it a TLS acceptor (QuickFIX/J's SSL with the keystore of a
    ``tradeflow.infra.tls.TestPki``; with ``tls.client_ca`` it also asks for a client
    certificate signed by it). ``credentials`` (username, password) makes it refuse any
    Logon without them; the password goes to the venue in a file of mode 0600 and its
    message logs show ``554=***``.
    """

    LOG_FILE = "venue.log"
    host: ClassVar[str] = HOST
    """The address the venue listens on (always 127.0.0.1)."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        sender_comp_id: str = "VENUE",
        target_comp_id: str = "TRADEFLOW",
        reject_symbols: Sequence[str] = ("BADSYM",),
        resting_symbols: Sequence[str] = (),
        drop_ack_symbols: Sequence[str] = (),
        partial_fills: int = 1,
        default_price: Decimal | str | float = Decimal("100"),
        max_order_qty: Decimal | str | float = Decimal("1000000"),
        reset_on_logon: bool = False,
        port: int | None = None,
        extra_settings: Mapping[str, str] | None = None,
        jvm_opts: Sequence[str] = DEFAULT_JVM_OPTS,
        start_timeout: float = 60.0,
        tls: VenueTls | None = None,
        credentials: tuple[str, str] | None = None,
        rest: VenueRest | None = None,
        market_data: VenueMarketData | None = None,
    ) -> None:
        if partial_fills < 1:
            raise ValueError("partial_fills must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.sender_comp_id = sender_comp_id
        """The venue's SenderCompID (the initiator's TargetCompID)."""
        self.target_comp_id = target_comp_id
        """The venue's TargetCompID (the initiator's SenderCompID)."""
        self.reject_symbols = tuple(reject_symbols)
        self.resting_symbols = tuple(resting_symbols)
        self.drop_ack_symbols = tuple(drop_ack_symbols)
        self.partial_fills = partial_fills
        self.default_price = Decimal(str(default_price))
        self.max_order_qty = Decimal(str(max_order_qty))
        self.reset_on_logon = reset_on_logon
        self.extra_settings = dict(extra_settings or {})
        self.jvm_opts = tuple(jvm_opts)
        self.start_timeout = start_timeout
        self.tls = tls
        self._credentials = credentials
        self.rest = rest
        """The REST/WebSocket order API over the same book (``tradeflow.infra.rest_venue``)."""
        self.market_data = market_data if market_data is not None and market_data.symbols else None
        """What the venue publishes to market data subscribers (None: no market data)."""
        self._port = port
        self._jvm: JvmProcess | None = None

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """Return the TCP port of the acceptor (chosen at the first ``start()``)."""
        if self._port is None:
            raise InfraError("the FIX venue has no port yet; call start() first")
        return self._port

    @property
    def md_comp_id(self) -> str:
        """Return the CompID market data subscribers log on with."""
        if self.market_data is None:
            raise InfraError("the FIX venue publishes no market data (no market_data)")
        return self.market_data.comp_id

    settings_path = DataPath(_SETTINGS_FILE)
    """The QuickFIX/J settings file written by ``start()``."""
    store_dir = DataPath(_STORE_DIR)
    """QuickFIX/J's FileStorePath (sequence numbers, sent messages, journal)."""
    message_log_dir = DataPath(_MESSAGE_LOG_DIR)
    """QuickFIX/J's FileLogPath (raw messages and session events)."""
    journal_path = DataPath(_STORE_DIR, _JOURNAL_FILE)
    """The venue's append-only order journal."""
    audit_log_path = DataPath(_AUDIT_FILE)
    """The order audit log: one JSON line per NewOrderSingle received."""
    md_published_path = DataPath(_MD_PUBLISHED_FILE)
    """Market data published: one JSON line per trade (``published_ticks``)."""

    # ------------------------------------------------------------------ settings

    def settings(self) -> dict[str, str]:
        """Return the [DEFAULT] settings the venue is started with."""
        values: dict[str, str] = {
            "ConnectionType": "acceptor",
            "SocketAcceptAddress": HOST,
            "SocketAcceptPort": str(self.port),
            "StartTime": "00:00:00",
            "EndTime": "00:00:00",
            "UseDataDictionary": "Y",
            "DataDictionary": DATA_DICTIONARY,
            "FileStorePath": str(self.store_dir),
            "FileLogPath": str(self.message_log_dir),
            "FileIncludeMilliseconds": "Y",
            "FileIncludeTimeStampForMessages": "Y",
            "FileLogHeartbeats": "Y",
            "PersistMessages": "Y",
            "ResetOnLogon": "Y" if self.reset_on_logon else "N",
            "ResetOnLogout": "N",
            "ResetOnDisconnect": "N",
            "TimeStampPrecision": "MILLIS",
            # the venue's own keys (io.tradeflow.venue.VenueConfig)
            "AuditLogPath": str(self.audit_log_path),
            "OrderJournalPath": str(self.journal_path),
            "RejectSymbols": _csv(self.reject_symbols),
            "RestingSymbols": _csv(self.resting_symbols),
            "DropAckSymbols": _csv(self.drop_ack_symbols),
            "PartialFills": str(self.partial_fills),
            "DefaultPrice": str(self.default_price),
            "MaxOrderQty": str(self.max_order_qty),
        }
        if self.market_data is not None:
            values |= self.market_data.settings(self.md_published_path)
        if self.tls is not None:
            values.update(self.tls.settings())
        if self._credentials is not None:
            values["LogonUsername"] = self._credentials[0]
            values["LogonPasswordFile"] = str(self.data_dir / _LOGON_PASSWORD_FILE)
        if self.rest is not None:
            values.update(self.rest.settings(self.data_dir))
        values.update(self.extra_settings)
        return values

    def _write_settings(self) -> None:
        lines = ["# written by tradeflow.infra.fix_venue.FixVenue", "[DEFAULT]"]
        lines += [f"{k}={v}" for k, v in self.settings().items()]
        lines += [
            "",
            "[SESSION]",
            "BeginString=FIX.4.4",
            f"SenderCompID={self.sender_comp_id}",
            f"TargetCompID={self.target_comp_id}",
            "",
        ]
        if self.market_data is not None:
            # market data subscribers: their own session, nothing stored for resends
            # (a lost incremental is repaired from a snapshot, by RptSeq)
            lines += [
                "[SESSION]",
                "BeginString=FIX.4.4",
                f"SenderCompID={self.sender_comp_id}",
                f"TargetCompID={self.md_comp_id}",
                "PersistMessages=N",
                "",
            ]
        # the keystore password may be in it: readable by this user only
        write_private(self.settings_path, "\n".join(lines))
        if self._credentials is not None:
            write_private(self.data_dir / _LOGON_PASSWORD_FILE, self._credentials[1])
        if self.rest is not None:
            write_private(self.data_dir / REST_SECRET_FILE, self.rest.secret)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FixVenue:
        """Build the venue if needed, start the JVM and wait until its port is open."""
        if self.alive():
            return self
        t0 = time.monotonic()
        lib = resolve_classpath("fix-venue", compile_sources=True)
        t_resolved = time.monotonic()
        if self._port is None:
            self._port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(exist_ok=True)
        self.message_log_dir.mkdir(exist_ok=True)
        self._write_settings()
        port = self.port
        if port_open(port):
            raise InfraError(f"port {port} is already taken; cannot start the FIX venue")
        self._jvm = JvmProcess(
            "fix-venue",
            lib,
            MAIN_CLASS,
            [str(self.settings_path)],
            jvm_opts=self.jvm_opts,
            log_path=self.log_path,
            cwd=self.data_dir,
        )
        try:
            self._jvm.wait_until(
                lambda: self._ports_open(port), self.start_timeout, f"acceptor on {HOST}:{port}"
            )
        except BaseException:
            self.kill()
            raise
        log.info(
            "FIX venue up on %s:%d (classpath %.1fs, JVM %.1fs)",
            HOST,
            port,
            t_resolved - t0,
            time.monotonic() - t_resolved,
        )
        return self

    def _ports_open(self, port: int) -> bool:
        rest = self.rest
        if rest is None or rest.http_port is None or rest.ws_port is None:
            return port_open(port)
        return port_open(port) and port_open(rest.http_port) and port_open(rest.ws_port)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop with SIGTERM (sessions are logged out), then SIGKILL after ``timeout``."""
        super().stop(timeout)

    def announce(self) -> None:
        """Print host:port, the session's CompIDs, and where the logs are."""
        print(f"{self.host}:{self.port}", flush=True)
        print(
            f"venue SenderCompID={self.sender_comp_id} TargetCompID={self.target_comp_id} "
            f"(initiator: SenderCompID={self.target_comp_id} "
            f"TargetCompID={self.sender_comp_id}, BeginString=FIX.4.4)",
            flush=True,
        )
        print(f"log {self.log_path}; audit {self.audit_log_path}", flush=True)

    def failure(self) -> str | None:
        """Return that the venue exited, with its log's tail (None while it runs)."""
        return None if self.alive() else f"venue exited; log:\n{self.tail()}"

    def restart(self, *, kill: bool = False) -> FixVenue:
        """Stop (or kill) and start again on the same port with the same store."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    # ------------------------------------------------------------------ inspection

    def audit_orders(self, cl_ord_id: str | None = None) -> list[dict[str, Any]]:
        """Return the audit log: one dict per NewOrderSingle that reached the venue.

        Keys: ``ts``, ``session``, ``msg_seq_num``, ``cl_ord_id``, ``symbol``, ``side``,
        ``ord_type``, ``qty``, ``price``, ``poss_dup``, ``poss_resend``, ``accepted``
        (a new order was booked), ``outcome`` (``NEW``, ``REJECTED``, ``DUPLICATE``,
        ``IGNORED_POSSDUP``), ``order_id``, ``reason``. Quantities and prices are
        strings (exact decimals). With ``cl_ord_id`` only that order's lines.
        A line being written at that very moment is skipped.
        """
        rows = read_json_lines(self.audit_log_path)
        return [r for r in rows if cl_ord_id is None or r.get("cl_ord_id") == cl_ord_id]

    def published_ticks(self) -> list[dict[str, Any]]:
        """Return the market data published: one dict per trade, in publishing order.

        Keys: ``seq`` (RptSeq, per symbol from 1), ``symbol``, ``price``, ``size``
        (strings, exact decimals), ``ts`` (the trade's time as sent, ISO-8601 UTC),
        ``published_us`` (epoch microseconds when the venue handed it to the sessions),
        ``sent`` (false: left out of the incrementals by ``VenueMarketData.drop_every``). A line being
        written at that very moment is skipped.
        """
        return read_json_lines(self.md_published_path)

    def accepted_orders(self, cl_ord_id: str | None = None) -> list[dict[str, Any]]:
        """Return the audit lines of orders the venue booked (``accepted`` is true)."""
        return [r for r in self.audit_orders(cl_ord_id) if r.get("accepted")]

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "-"
        return (
            f"FixVenue({HOST}:{port}, {self.sender_comp_id}->{self.target_comp_id}, "
            f"data_dir={str(self.data_dir)!r}, alive={self.alive()})"
        )


# ---------------------------------------------------------------------- CLI


def _split(value: str) -> list[str]:
    return [s for s in (p.strip() for p in value.split(",")) if s]


def _add_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument("--data-dir", required=True, type=Path)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--sender-comp-id", default="VENUE")
    up.add_argument("--target-comp-id", default="TRADEFLOW")
    up.add_argument("--reject-symbols", default="BADSYM", help="comma-separated")
    up.add_argument("--resting-symbols", default="", help="comma-separated")
    up.add_argument("--drop-ack-symbols", default="", help="comma-separated")
    up.add_argument("--partial-fills", type=int, default=1)
    up.add_argument("--default-price", default="100")
    up.add_argument("--max-order-qty", default="1000000")
    up.add_argument("--md-symbols", default="", help="comma-separated; publish market data for them")
    up.add_argument("--md-rate", type=float, default=20.0, help="trades per second over all symbols")
    up.add_argument("--md-max-ticks", type=int, default=0, help="stop publishing after N (0: never)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``up``: start a venue, print where it listens, stop it on Ctrl-C/SIGTERM."""
    return launch("tradeflow.infra.fix_venue", "Run a FIX 4.4 venue.", _add_arguments, _venue, argv, poll=0.5)


def _venue(args: argparse.Namespace) -> FixVenue:
    return FixVenue(
        args.data_dir,
        port=args.port,
        sender_comp_id=args.sender_comp_id,
        target_comp_id=args.target_comp_id,
        reject_symbols=_split(args.reject_symbols),
        resting_symbols=_split(args.resting_symbols),
        drop_ack_symbols=_split(args.drop_ack_symbols),
        partial_fills=args.partial_fills,
        default_price=Decimal(args.default_price),
        max_order_qty=Decimal(args.max_order_qty),
        market_data=VenueMarketData(_split(args.md_symbols), rate=args.md_rate, max_ticks=args.md_max_ticks),
    )


if __name__ == "__main__":
    sys.exit(main())
