"""TCP (or TLS) transport of a FIX initiator: one thread per session, reconnecting with backoff.

The thread owns the socket and is the only one that touches the ``FixSession`` and the
handler's state: other threads hand it work through ``call_soon`` (a queue plus a
wake-up socket), so nothing the Bytewax worker calls ever waits on the network. The
loop connects, sends Logon, then pumps: bytes in -> ``session.receive``, time ->
``session.tick``, queued calls, and ``handler.on_idle``. When the connection ends it
waits ``reconnect_initial_s``, doubling up to ``reconnect_max_s`` while attempts keep
failing, and resets the delay after a successful logon. ``stop`` logs out politely.
A failure retrying cannot mend (the TLS handshake refused, with ``stop_on_refused_logon``
a Logout answering our Logon) halts it instead: one CRITICAL ``LOGON_REFUSED`` event,
``halted`` says why, and it never connects again (queued calls still get answers).

Each read (session, then the handler with its output), each burst of queued calls
(up to ``MAX_BATCH``) and each tick runs inside ``FixSession.batch()``: the store is
saved and fsynced once, after the handler is done and before the bytes are written.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Protocol

from connectors.fix.session import EventKind, FixSession, SessionEvent, SessionOutput, SessionState
from connectors.fix.settings import FixSettings

log = logging.getLogger(__name__)

POLL_S = 0.05
"""Longest the loop sleeps between looks at the clock (timers, pending timeouts)."""

MAX_BATCH = 256
"""Queued calls run as one session batch (one store save and fsync) at most."""

Command = Callable[[], list[bytes]]
"""Work run on the I/O thread; it returns wire messages to write."""


class SessionHandler(Protocol):
    """What the initiator calls on its thread besides the session."""

    def on_output(self, out: SessionOutput) -> list[bytes]:
        """Handle a session output (reports, events); return more messages to send."""
        ...

    def on_idle(self) -> list[bytes]:
        """Run periodic work (pending-order timeouts); return messages to send."""
        ...

    def on_disconnected(self) -> None:
        """Note that the connection ended."""
        ...


def tls_context(settings: FixSettings) -> ssl.SSLContext | None:
    """Return the TLS context of a session with ``tls`` on (None: plain TCP).

    The venue's certificate is verified (chain to ``tls_ca_file`` or the system's CAs, and
    the host name); TLS 1.2 at least; the client certificate when one is configured.
    """
    if not settings.tls:
        return None
    ctx = ssl.create_default_context(cafile=settings.tls_ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_cert_file is not None:
        password = settings.tls_key_password.get_secret_value() if settings.tls_key_password else None
        ctx.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password)
    return ctx


class FixInitiator:
    """Run one ``FixSession`` over TCP on a dedicated thread (see the module doc)."""

    def __init__(self, session: FixSession, handler: SessionHandler) -> None:
        self._session = session
        self._handler = handler
        self._s = session.settings
        self.lock = threading.RLock()
        """Held while the I/O thread works on the session; readers on other threads take it."""
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_pending = False
        """A wake-up byte is on its way and not yet drained: later calls need not send one."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.connects = 0
        self.connect_failures = 0
        self.last_error = ""
        self.halted: str | None = None
        """Why the initiator stopped connecting for good (TLS refused, logon refused)."""
        self._tls = tls_context(self._s)

    @property
    def connected(self) -> bool:
        """Tell whether a TCP connection is up (logged on or not)."""
        return self._sock is not None

    @property
    def running(self) -> bool:
        """Tell whether the I/O thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the I/O thread (returns at once)."""
        if self._thread is not None:
            raise RuntimeError("initiator already started")
        self._thread = threading.Thread(
            target=self._run, name=f"fix-{self._s.sender_comp_id}", daemon=True
        )
        self._thread.start()

    def call_soon(self, command: Command) -> None:
        """Run ``command`` on the I/O thread and send what it returns (non-blocking)."""
        self._commands.put(command)
        if not self._wake_pending:  # a burst of orders costs one wake-up, not a syscall each
            self._wake_pending = True
            self._wake()

    def stop(self, timeout: float | None = None) -> None:
        """Log out (when logged on), close the connection and join the thread."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self._s.logout_timeout_s + 5)
            if self._thread.is_alive():
                log.error("%s: I/O thread did not stop in time", self._s.session_id)
        self._wake_r.close()
        self._wake_w.close()

    # -- the I/O thread ------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (a wake-up is already pending) or closed at shutdown

    def _run(self) -> None:
        delay = self._s.reconnect_initial_s
        while not self._stopping.is_set():
            if self.halted is None:
                sock = self._connect()
                if sock is not None:
                    logged_on = self._pump(sock)
                    if logged_on:
                        delay = self._s.reconnect_initial_s
                refused = self._session.refused
                if refused is not None and self._s.stop_on_refused_logon:
                    self._halt(refused, event=False)  # the session raised LOGON_REFUSED
            if self._stopping.is_set():
                break
            # halted: never connect again, but queued calls and idle work still run
            # (orders waiting for a session are refused, not left hanging)
            self._wait(delay if self.halted is None else POLL_S * 10)
            delay = min(delay * self._s.reconnect_multiplier, self._s.reconnect_max_s)
        self._run_commands(None)  # late calls still get their local answers

    def _halt(self, why: str, *, event: bool) -> None:
        """Stop connecting for good: retrying would fail the same way.

        A bad certificate, a refused logon. ``event``: raise the CRITICAL
        ``LOGON_REFUSED`` event here (the session raised it for a refused logon).
        """
        self.halted = why
        self.last_error = why
        log.critical("%s: %s; the session is stopped, no reconnect", self._s.session_id, why)
        if event:
            with self.lock:
                self._handler.on_output(SessionOutput(events=[SessionEvent(EventKind.LOGON_REFUSED, why)]))

    def _connect(self) -> socket.socket | None:
        where = f"{self._s.host}:{self._s.port}"
        try:
            sock = socket.create_connection((self._s.host, self._s.port), timeout=self._s.connect_timeout_s)
        except OSError as exc:
            self.connect_failures += 1
            self.last_error = f"connect {where}: {exc}"
            log.warning("%s: %s", self._s.session_id, self.last_error)
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._s.connect_timeout_s)  # bounds the handshake and sendall on a stuck peer
        self.connects += 1
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self._s.tls_server_name or self._s.host)
            except ssl.SSLError as exc:  # the venue's certificate, or ours, refused: fatal
                sock.close()
                self.connect_failures += 1
                self._halt(f"TLS handshake with {where} failed: {exc.reason or exc}", event=True)
                return None
            except OSError as exc:  # the network, not TLS: retried
                sock.close()
                self.connect_failures += 1
                self.last_error = f"TLS handshake with {where}: {exc}"
                log.warning("%s: %s", self._s.session_id, self.last_error)
                return None
        log.info("%s: connected to %s%s", self._s.session_id, where, " (TLS)" if self._tls else "")
        return sock

    def _pump(self, sock: socket.socket) -> bool:
        """Run one connection until it ends; tell whether it reached a logon.

        Session work happens under ``lock``; the bytes it produced are written after
        the lock is released, so readers on other threads never wait on the socket.
        Only this thread writes, so the order of messages is kept.
        """
        self._sock = sock
        logged_on = False
        logout_sent = False
        try:
            with self.lock:
                frames = self._handle(self._session.connected())
            if not self._send(sock, frames):
                return False
            while True:
                if self._stopping.is_set() and not logout_sent:
                    logout_sent = True
                    with self.lock:
                        out = self._session.logout("shutting down")
                        frames = self._handle(out)
                    if not self._send(sock, frames) or out.disconnect:
                        return logged_on
                if not self._run_commands(sock):
                    return logged_on
                readable, _, _ = select.select([sock, self._wake_r], [], [], POLL_S)
                if self._wake_r in readable:
                    self._drain_wake()
                if sock in readable and not self._read(sock):
                    return logged_on
                with self.lock, self._session.batch():
                    out = self._session.tick()
                    frames = self._handle(out) + self._handler.on_idle()
                    logged_on = logged_on or self._session.state is SessionState.ACTIVE
                if not self._send(sock, frames) or out.disconnect:
                    return logged_on
        finally:
            self._sock = None
            sock.close()
            with self.lock:
                self._session.disconnected()
                self._handler.on_disconnected()
            log.info("%s: disconnected", self._s.session_id)

    def _read(self, sock: socket.socket) -> bool:
        try:
            data = sock.recv(65536)
            if isinstance(sock, ssl.SSLSocket):  # bytes TLS already decrypted wake no select()
                while data and sock.pending():
                    data += sock.recv(sock.pending())
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:  # the connection ended
            self.last_error = f"recv: {exc}"
            log.warning("%s: %s", self._s.session_id, self.last_error)
            return False
        except ssl.SSLError as exc:  # a TLS alert: with TLS 1.3 a refused client certificate
            self._halt(f"TLS: the venue ended the session: {exc.reason or exc}", event=True)
            return False
        except OSError as exc:
            self.last_error = f"recv: {exc}"
            log.warning("%s: %s", self._s.session_id, self.last_error)
            return False
        if not data:
            self.last_error = "venue closed the connection"
            log.warning("%s: %s", self._s.session_id, self.last_error)
            return False
        with self.lock, self._session.batch():  # saved after the handler, before sending
            out = self._session.receive(data)
            frames = self._handle(out)
        return self._send(sock, frames) and not out.disconnect

    def _handle(self, out: SessionOutput) -> list[bytes]:
        return out.outbound + self._handler.on_output(out)

    def _send(self, sock: socket.socket, frames: list[bytes]) -> bool:
        if not frames:
            return True
        try:
            sock.sendall(b"".join(frames))
        except OSError as exc:
            self.last_error = f"send: {exc}"
            log.warning("%s: %s", self._s.session_id, self.last_error)
            return False
        return True

    def _run_commands(self, sock: socket.socket | None) -> bool:
        while True:
            frames: list[bytes] = []
            ran = 0
            with self.lock, self._session.batch():
                while ran < MAX_BATCH:
                    try:
                        command = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    frames += command()
                    ran += 1
            if not ran:
                return True
            if sock is None:
                if frames:
                    log.error("%s: %d messages with no connection", self._s.session_id, len(frames))
                continue
            if not self._send(sock, frames):
                return False

    def _wait(self, delay: float) -> None:
        """Wait before reconnecting, still running queued calls and idle work."""
        until = time.monotonic() + delay
        while not self._stopping.is_set():
            self._run_commands(None)
            with self.lock, self._session.batch():
                self._handler.on_idle()
            left = until - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([self._wake_r], [], [], min(left, POLL_S))
            if readable:
                self._drain_wake()

    def _drain_wake(self) -> None:
        """Read the wake-up bytes; queued calls run after this (``_run_commands``)."""
        self._wake_pending = False  # before draining: a call queued from now on wakes us again
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            return
