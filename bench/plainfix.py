"""The baseline Job D's FIX adapter is measured against: a plain simplefix send/ack loop.

One TCP connection to the same QuickFIX/J acceptor, as the same session, with nothing of
ours on the way: no session store, no journal, no outbox, no fsync, no I/O thread. It logs
on with ``ResetSeqNumFlag=Y`` (so it can follow the adapter's session in the same run),
answers TestRequests, and otherwise only writes NewOrderSingles and parses execution
reports with ``simplefix.FixParser``. What our adapter costs over this is the price of
its guarantees (never sent twice, never lost) plus its overhead.
"""

from __future__ import annotations

import select
import socket
import time
from datetime import UTC, datetime

import simplefix

TIMEOUT_S = 300.0


class PlainFix:
    """A minimal FIX 4.4 initiator: logon, orders, execution reports, logout."""

    def __init__(self, host: str, port: int, sender: str, target: str) -> None:
        self._sock = socket.create_connection((host, port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sender, self._target = sender, target
        self._parser = simplefix.FixParser()
        self._seq = 0
        self.ids = 0

    def _frame(self, msg_type: str, fields: list[tuple[int, str]]) -> bytes:
        self._seq += 1
        msg = simplefix.FixMessage()
        msg.append_pair(8, "FIX.4.4", header=True)
        msg.append_pair(35, msg_type, header=True)
        msg.append_pair(49, self._sender, header=True)
        msg.append_pair(56, self._target, header=True)
        msg.append_pair(34, self._seq, header=True)
        msg.append_utc_timestamp(52, precision=3, header=True)
        for tag, value in fields:
            msg.append_pair(tag, value)
        return bytes(msg.encode())

    def send(self, frames: list[bytes]) -> None:
        """Write ``frames`` in one call."""
        self._sock.sendall(b"".join(frames))

    def order(self, cl_ord_id: str, symbol: str, qty: int) -> bytes:
        """Return a market BUY NewOrderSingle."""
        now = datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
        return self._frame("D", [(11, cl_ord_id), (1, "BENCH"), (21, "1"), (55, symbol), (54, "1"),
                                 (60, now), (38, str(qty)), (40, "1"), (59, "0")])

    def receive(self, wait_s: float) -> list[simplefix.FixMessage]:
        """Return the messages that arrive within ``wait_s`` (answering TestRequests)."""
        out: list[simplefix.FixMessage] = []
        readable, _, _ = select.select([self._sock], [], [], wait_s)
        if not readable:
            return out
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("venue closed the connection")
        self._parser.append_buffer(data)
        while (msg := self._parser.get_message()) is not None:
            if msg.get(35) == b"1":
                self.send([self._frame("0", [(112, msg.get(112).decode())])])
            out.append(msg)
        return out

    def logon(self) -> None:
        """Log on with sequence numbers reset; wait for the venue's Logon."""
        self.send([self._frame("A", [(98, "0"), (108, "30"), (141, "Y")])])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(m.get(35) == b"A" for m in self.receive(0.5)):
                return
        raise RuntimeError("plain simplefix: no Logon answer in 30 s")

    def close(self) -> None:
        """Log out and close the socket."""
        try:
            self.send([self._frame("5", [])])
            self.receive(1.0)
        finally:
            self._sock.close()


def status(msg: simplefix.FixMessage) -> tuple[str, bytes] | None:
    """Return ``(ClOrdID, OrdStatus)`` of an execution report, else None."""
    if msg.get(35) != b"8":
        return None
    return msg.get(11).decode(), msg.get(39)


def throughput(fix: PlainFix, prefix: str, n: int, symbol: str) -> float:
    """Send ``n`` orders in one write; return orders per second until every one is FILLED."""
    want = {f"{prefix}{i}" for i in range(n)}
    t0 = time.perf_counter()
    fix.send([fix.order(f"{prefix}{i}", symbol, 10) for i in range(n)])
    deadline = time.monotonic() + TIMEOUT_S
    while want:
        for msg in fix.receive(0.05):
            got = status(msg)
            if got is not None and got[1] == b"2":
                want.discard(got[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"plain simplefix: {len(want)} orders not filled in {TIMEOUT_S}s")
    return n / (time.perf_counter() - t0)


def paced_acks(fix: PlainFix, prefix: str, n: int, rate: float, symbol: str) -> list[float]:
    """Send ``n`` orders at ``rate`` a second; return ms from each send to its NEW report."""
    sent: dict[str, float] = {}
    acks: list[float] = []
    t0 = time.perf_counter()
    filled = 0
    deadline = time.monotonic() + TIMEOUT_S
    while filled < n:
        due = min(n, int((time.perf_counter() - t0) * rate) + 1)
        while len(sent) < due:
            cl = f"{prefix}{len(sent)}"
            sent[cl] = time.perf_counter()
            fix.send([fix.order(cl, symbol, 10)])
        for msg in fix.receive(0.0002):
            got = status(msg)
            if got is None or got[0] not in sent:
                continue
            if got[1] == b"0":
                acks.append((time.perf_counter() - sent[got[0]]) * 1000)
            elif got[1] == b"2":
                filled += 1
        if time.monotonic() > deadline:
            raise RuntimeError(f"plain simplefix: {n - filled} paced orders not filled in {TIMEOUT_S}s")
    return acks
