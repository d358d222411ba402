"""A scripted FIX 4.4 acceptor on a loopback socket, for tests of the initiator side.

It takes one connection, answers Logon and Logout itself and hands every other
message to ``on_message``, which a test's subclass scripts (ack and fill, misbehave).
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import simplefix

from connectors.fix.codec import FixFramer, parse, text


class ScriptedAcceptor:
    """One loopback connection: Logon and Logout answered, the rest left to ``on_message``."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        """The raw messages received, in order."""
        self.seq = 1
        self.conn: socket.socket | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def send(self, msg_type: str, fields: list[tuple[int, str]]) -> None:
        """Send one message with the next MsgSeqNum, from VENUE to TRADEFLOW."""
        with self.lock:
            m = simplefix.FixMessage()
            for tag, value in [(8, "FIX.4.4"), (35, msg_type), (34, str(self.seq)), (49, "VENUE"),
                               (52, datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.000")),
                               (56, "TRADEFLOW"), *fields]:
                m.append_pair(tag, value)
            self.seq += 1
            assert self.conn is not None
            self.conn.sendall(m.encode())

    def on_message(self, kind: str | None, msg: simplefix.FixMessage) -> None:
        """Answer a message other than Logon and Logout (``kind`` is its MsgType)."""

    def close(self) -> None:
        """Stop listening."""
        self.server.close()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        self.conn = conn
        framer = FixFramer()
        with conn:
            while data := conn.recv(65536):
                for frame in framer.feed(data):
                    self.received.append(frame.raw)
                    self._answer(parse(frame.raw))

    def _answer(self, msg: simplefix.FixMessage) -> None:
        kind = text(msg, 35)
        if kind == "A":
            self.send("A", [(98, "0"), (108, "30")])
        elif kind == "5":
            self.send("5", [])
        else:
            self.on_message(kind, msg)
