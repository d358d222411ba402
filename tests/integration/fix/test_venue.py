"""The QuickFIX/J venue, driven by a tiny raw-socket FIX 4.4 client built on simplefix.

The client here is deliberately minimal (no resend handling beyond what a test sets
up by hand): it is a probe of the venue's behaviour, not the project's initiator.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import pytest
import simplefix

from tradeflow.infra.fix_venue import FixVenue

from .conftest import (
    DROP_ACK_SYMBOL,
    REJECT_SYMBOL,
    RESTING_SYMBOL,
    VenueFactory,
)

pytestmark = pytest.mark.integration

Fields = Sequence[tuple[int, str]]
TIMEOUT = 10.0


def f(msg: simplefix.FixMessage, tag: int) -> str | None:
    """Return a field of a received message as str (None when absent)."""
    value = msg.get(tag)
    return None if value is None else value.decode()


def mtype(msg: simplefix.FixMessage) -> str | None:
    return f(msg, 35)


class FixClient:
    """A FIX 4.4 initiator in a few lines: logon, send, receive, answer TestRequests."""

    def __init__(self, venue: FixVenue, *, next_seq: int = 1) -> None:
        self.sender = venue.target_comp_id
        self.target = venue.sender_comp_id
        self.next_seq = next_seq
        self.sock = socket.create_connection((venue.host, venue.port), timeout=TIMEOUT)
        self.parser = simplefix.FixParser()
        self.inbox: list[simplefix.FixMessage] = []
        self.received: list[simplefix.FixMessage] = []
        self.closed = False

    # -- sending
    def send(
        self,
        msg_type: str,
        fields: Fields = (),
        *,
        seq: int | None = None,
        poss_dup: bool = False,
    ) -> int:
        now = datetime.now(UTC)
        number = self.next_seq if seq is None else seq
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.4", header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(49, self.sender, header=True)
        m.append_pair(56, self.target, header=True)
        m.append_pair(34, number, header=True)
        m.append_utc_timestamp(52, now, precision=3, header=True)
        if poss_dup:
            m.append_pair(43, "Y", header=True)
            m.append_utc_timestamp(122, now, precision=3, header=True)
        for tag, value in fields:
            m.append_pair(tag, value)
        self.sock.sendall(m.encode())
        if seq is None:
            self.next_seq += 1
        return number

    def new_order(
        self,
        cl_ord_id: str,
        symbol: str,
        qty: str,
        *,
        side: str = "1",
        ord_type: str = "1",
        price: str | None = None,
        poss_dup: bool = False,
        seq: int | None = None,
    ) -> int:
        fields: list[tuple[int, str]] = [
            (11, cl_ord_id),
            (21, "1"),
            (55, symbol),
            (54, side),
            (60, transact_time()),
            (38, qty),
            (40, ord_type),
        ]
        if price is not None:
            fields.append((44, price))
        return self.send("D", fields, poss_dup=poss_dup, seq=seq)

    def cancel(self, cl_ord_id: str, orig_cl_ord_id: str, symbol: str, qty: str) -> None:
        self.send(
            "F",
            [
                (41, orig_cl_ord_id),
                (11, cl_ord_id),
                (55, symbol),
                (54, "1"),
                (60, transact_time()),
                (38, qty),
            ],
        )

    def status(self, cl_ord_id: str, symbol: str) -> None:
        self.send("H", [(790, f"REQ-{cl_ord_id}"), (11, cl_ord_id), (55, symbol), (54, "1")])

    # -- receiving
    def _read_one(self, deadline: float) -> simplefix.FixMessage | None:
        while True:
            msg = self.parser.get_message()
            if msg is not None:
                self.received.append(msg)
                if mtype(msg) == "1":  # TestRequest -> Heartbeat with its TestReqID
                    self.send("0", [(112, f(msg, 112) or "")])
                return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                self.closed = True
                return None
            self.parser.append_buffer(data)

    def expect(
        self,
        match: Callable[[simplefix.FixMessage], bool],
        what: str,
        timeout: float = TIMEOUT,
    ) -> simplefix.FixMessage:
        """Return the first message (inbox first) that matches; fail after timeout."""
        for i, msg in enumerate(self.inbox):
            if match(msg):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(deadline)
            if msg is None:
                seen = [m.to_string("|") for m in self.received[-8:]]
                pytest.fail(f"no {what} within {timeout}s (closed={self.closed}); last: {seen}")
            if match(msg):
                return msg
            if mtype(msg) not in ("0", "1"):
                self.inbox.append(msg)

    def quiet(self, seconds: float) -> list[simplefix.FixMessage]:
        """Collect application messages arriving within ``seconds`` (nothing expected)."""
        deadline = time.monotonic() + seconds
        while (msg := self._read_one(deadline)) is not None:
            if mtype(msg) not in ("0", "1"):
                self.inbox.append(msg)
        got, self.inbox = self.inbox, []
        return got

    def report(
        self, cl_ord_id: str, exec_type: str, timeout: float = TIMEOUT
    ) -> simplefix.FixMessage:
        return self.expect(
            lambda m: mtype(m) == "8" and f(m, 11) == cl_ord_id and f(m, 150) == exec_type,
            f"ExecutionReport 150={exec_type} for {cl_ord_id}",
            timeout,
        )

    # -- session
    def logon(self, *, reset: bool = True, heartbeat: int = 30) -> simplefix.FixMessage:
        fields = [(98, "0"), (108, str(heartbeat))]
        if reset:
            fields.append((141, "Y"))
        self.send("A", fields)
        return self.expect(lambda m: mtype(m) == "A", "Logon reply")

    def logout(self) -> None:
        self.send("5")
        self.expect(lambda m: mtype(m) == "5", "Logout reply")
        self.close()

    def close(self) -> None:
        self.sock.close()


def transact_time() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


@pytest.fixture
def client(fix_venue: FixVenue) -> Iterator[FixClient]:
    c = FixClient(fix_venue)
    c.logon()
    yield c
    c.close()


# ---------------------------------------------------------------------- session


def test_logon_accepted(fix_venue: FixVenue) -> None:
    c = FixClient(fix_venue)
    reply = c.logon(heartbeat=17)
    assert f(reply, 49) == fix_venue.sender_comp_id
    assert f(reply, 56) == fix_venue.target_comp_id
    assert f(reply, 34) == "1"
    assert f(reply, 108) == "17"  # the acceptor takes the initiator's HeartBtInt
    assert f(reply, 141) == "Y"  # and answers a reset with a reset
    c.logout()


# ---------------------------------------------------------------------- orders


def test_market_order_is_acked_then_filled(client: FixClient, fix_venue: FixVenue) -> None:
    client.new_order("MKT-1", "AAPL", "100")
    new = client.report("MKT-1", "0")
    assert f(new, 39) == "0"
    assert f(new, 37)
    assert (f(new, 14), f(new, 151), f(new, 6)) == ("0", "100", "0")

    fill = client.report("MKT-1", "F")
    assert f(fill, 39) == "2"
    assert f(fill, 37) == f(new, 37)
    assert f(fill, 17) != f(new, 17)
    assert (f(fill, 32), f(fill, 31)) == ("100", "100")  # default price
    assert (f(fill, 14), f(fill, 151), f(fill, 6)) == ("100", "0", "100")

    # a MARKET order with tag 44 is filled at that price
    client.new_order("MKT-2", "MSFT", "5", price="123.45")
    client.report("MKT-2", "0")
    fill2 = client.report("MKT-2", "F")
    assert (f(fill2, 31), f(fill2, 6), f(fill2, 14)) == ("123.45", "123.45", "5")

    accepted = fix_venue.accepted_orders()
    assert [r["cl_ord_id"] for r in accepted] == ["MKT-1", "MKT-2"]


def test_limit_order_in_partial_fills(fix_venue_factory: VenueFactory) -> None:
    venue = fix_venue_factory(partial_fills=3)
    c = FixClient(venue)
    c.logon()
    c.new_order("LMT-1", "IBM", "10", ord_type="2", price="50.5", side="2")
    c.report("LMT-1", "0")
    fills = [c.report("LMT-1", "F") for _ in range(3)]
    assert [f(m, 32) for m in fills] == ["3", "3", "4"]
    assert [f(m, 14) for m in fills] == ["3", "6", "10"]
    assert [f(m, 151) for m in fills] == ["7", "4", "0"]
    assert [f(m, 39) for m in fills] == ["1", "1", "2"]
    assert {f(m, 31) for m in fills} == {"50.5"}
    assert {f(m, 6) for m in fills} == {"50.5"}
    assert len({f(m, 17) for m in fills}) == 3
    assert {f(m, 54) for m in fills} == {"2"}
    c.logout()


def test_reject_symbol_and_oversized_order(client: FixClient, fix_venue: FixVenue) -> None:
    client.new_order("REJ-1", REJECT_SYMBOL, "10")
    rej = client.report("REJ-1", "8")
    assert f(rej, 39) == "8"
    assert f(rej, 103) == "1"  # unknown symbol
    assert REJECT_SYMBOL in (f(rej, 58) or "")

    client.new_order("REJ-2", "AAPL", "1000001")
    rej2 = client.report("REJ-2", "8")
    assert f(rej2, 103) == "3"  # exceeds limit
    assert client.quiet(0.5) == []  # no fill follows a reject

    rows = fix_venue.audit_orders()
    assert [(r["cl_ord_id"], r["accepted"], r["outcome"]) for r in rows] == [
        ("REJ-1", False, "REJECTED"),
        ("REJ-2", False, "REJECTED"),
    ]


def test_resting_order_is_cancelled(client: FixClient) -> None:
    client.new_order("REST-1", RESTING_SYMBOL, "7", ord_type="2", price="10")
    new = client.report("REST-1", "0")
    assert client.quiet(0.7) == []  # acked, never filled

    client.cancel("CXL-1", "REST-1", RESTING_SYMBOL, "7")
    done = client.report("CXL-1", "4")
    assert (f(done, 39), f(done, 41), f(done, 37)) == ("4", "REST-1", f(new, 37))
    assert (f(done, 14), f(done, 151)) == ("0", "0")

    # cancelling again is too late; cancelling an unknown order is refused
    client.cancel("CXL-2", "REST-1", RESTING_SYMBOL, "7")
    too_late = client.expect(lambda m: mtype(m) == "9" and f(m, 11) == "CXL-2", "cancel reject")
    assert (f(too_late, 102), f(too_late, 39), f(too_late, 434)) == ("0", "4", "1")
    client.cancel("CXL-3", "NOPE", RESTING_SYMBOL, "7")
    unknown = client.expect(lambda m: mtype(m) == "9" and f(m, 11) == "CXL-3", "cancel reject")
    assert f(unknown, 102) == "1"

    client.status("REST-1", RESTING_SYMBOL)
    st = client.report("REST-1", "I")
    assert f(st, 39) == "4"


def test_cancel_of_filled_order_is_rejected(client: FixClient) -> None:
    client.new_order("FILL-1", "AAPL", "1")
    client.report("FILL-1", "F")
    client.cancel("CXL-F", "FILL-1", "AAPL", "1")
    rej = client.expect(lambda m: mtype(m) == "9" and f(m, 11) == "CXL-F", "cancel reject")
    assert (f(rej, 39), f(rej, 41), f(rej, 102)) == ("2", "FILL-1", "0")


def test_status_request(client: FixClient) -> None:
    client.new_order("ST-1", "AAPL", "20", ord_type="2", price="99.5")
    fill = client.report("ST-1", "F")
    client.status("ST-1", "AAPL")
    st = client.report("ST-1", "I")
    assert (f(st, 39), f(st, 14), f(st, 151), f(st, 6)) == ("2", "20", "0", "99.5")
    assert f(st, 37) == f(fill, 37)
    assert f(st, 790) == "REQ-ST-1"

    client.status("UNKNOWN-1", "AAPL")
    unknown = client.report("UNKNOWN-1", "I")
    assert f(unknown, 39) == "8"
    assert f(unknown, 58) == "unknown order"


def test_duplicate_clordid_is_refused_and_possdup_ignored(
    client: FixClient, fix_venue: FixVenue
) -> None:
    client.new_order("DUP-1", "AAPL", "3")
    client.report("DUP-1", "0")
    first = client.report("DUP-1", "F")
    client.new_order("DUP-1", "AAPL", "3")
    dup = client.report("DUP-1", "8")
    assert (f(dup, 39), f(dup, 103)) == ("8", "6")
    assert f(dup, 37) != f(first, 37)

    # a possible-duplicate resend under a new sequence number: no second order, no reply
    client.new_order("DUP-1", "AAPL", "3", poss_dup=True)
    client.status("DUP-1", "AAPL")
    st = client.report("DUP-1", "I")
    assert f(st, 39) == "2"
    assert client.quiet(0.3) == []

    assert [r["outcome"] for r in fix_venue.audit_orders("DUP-1")] == [
        "NEW",
        "DUPLICATE",
        "IGNORED_POSSDUP",
    ]
    assert len(fix_venue.accepted_orders("DUP-1")) == 1

    # 43=Y on an order the venue never saw: it is a new order like any other
    client.new_order("DUP-2", "AAPL", "1", poss_dup=True)
    client.report("DUP-2", "0")
    client.report("DUP-2", "F")
    [row] = fix_venue.audit_orders("DUP-2")
    assert (row["poss_dup"], row["accepted"], row["outcome"]) == (True, True, "NEW")


def test_drop_ack_symbol_sends_nothing_but_knows_the_order(
    client: FixClient, fix_venue: FixVenue
) -> None:
    client.new_order("LOST-1", DROP_ACK_SYMBOL, "4")
    assert client.quiet(0.7) == []
    client.status("LOST-1", DROP_ACK_SYMBOL)
    st = client.report("LOST-1", "I")
    assert (f(st, 39), f(st, 14), f(st, 151)) == ("2", "4", "0")
    assert len(fix_venue.accepted_orders("LOST-1")) == 1


# ---------------------------------------------------------------------- validation / gaps


def test_new_order_without_transact_time_is_rejected_at_session_level(
    client: FixClient, fix_venue: FixVenue
) -> None:
    seq = client.send("D", [(11, "BAD-1"), (55, "AAPL"), (54, "1"), (38, "1"), (40, "1")])
    rej = client.expect(lambda m: mtype(m) == "3", "session Reject")
    assert (f(rej, 45), f(rej, 371), f(rej, 373)) == (str(seq), "60", "1")
    assert fix_venue.audit_orders() == []


def test_sequence_gap_triggers_resend_request(client: FixClient, fix_venue: FixVenue) -> None:
    expected = client.next_seq
    client.new_order("GAP-1", "AAPL", "2", seq=expected + 2)
    rr = client.expect(lambda m: mtype(m) == "2", "ResendRequest")
    assert (f(rr, 7), f(rr, 16)) == (str(expected), "0")
    assert fix_venue.audit_orders() == []  # queued until the gap is closed
    # close the gap with a SequenceReset-GapFill; the queued order is then processed
    client.send("4", [(123, "Y"), (36, str(expected + 2))], seq=expected, poss_dup=True)
    client.next_seq = expected + 3
    client.report("GAP-1", "F")
    assert len(fix_venue.accepted_orders("GAP-1")) == 1


# ---------------------------------------------------------------------- restart


def test_restart_remembers_orders_and_sequence_numbers(fix_venue: FixVenue) -> None:
    c = FixClient(fix_venue)
    c.logon()
    c.new_order("RS-1", "AAPL", "10")
    fill = c.report("RS-1", "F")
    c.new_order("RS-2", RESTING_SYMBOL, "5", ord_type="2", price="1")
    c.report("RS-2", "0")
    c.logout()
    next_out = c.next_seq
    venue_next = int(f(c.received[-1], 34) or 0) + 1

    fix_venue.restart()

    c2 = FixClient(fix_venue, next_seq=next_out)
    reply = c2.logon(reset=False)  # sequence numbers continue: the store survived
    assert f(reply, 34) == str(venue_next)
    c2.status("RS-1", "AAPL")
    st = c2.report("RS-1", "I")
    assert (f(st, 39), f(st, 14), f(st, 37)) == ("2", "10", f(fill, 37))
    # a resend of the filled order is not a second order
    c2.new_order("RS-1", "AAPL", "10", poss_dup=True)
    c2.status("RS-2", RESTING_SYMBOL)
    assert f(c2.report("RS-2", "I"), 39) == "0"
    c2.close()

    fix_venue.restart(kill=True)  # SIGKILL this time

    c3 = FixClient(fix_venue)
    c3.logon()  # 141=Y resets the FIX sequence numbers, not the order book
    c3.cancel("RS-2-CXL", "RS-2", RESTING_SYMBOL, "5")
    assert f(c3.report("RS-2-CXL", "4"), 39) == "4"
    c3.status("RS-1", "AAPL")
    assert f(c3.report("RS-1", "I"), 39) == "2"
    assert c3.quiet(0.3) == []  # nothing was filled again
    c3.logout()

    for cl_ord_id in ("RS-1", "RS-2"):
        assert len(fix_venue.accepted_orders(cl_ord_id)) == 1
    assert [r["outcome"] for r in fix_venue.audit_orders("RS-1")] == ["NEW", "IGNORED_POSSDUP"]


def test_torn_journal_line_is_ignored_after_a_crash(fix_venue: FixVenue) -> None:
    c = FixClient(fix_venue)
    c.logon()
    c.new_order("TJ-1", RESTING_SYMBOL, "3", ord_type="2", price="2")
    c.report("TJ-1", "0")
    c.close()
    fix_venue.kill()
    with fix_venue.journal_path.open("a") as journal:  # as if killed mid-write
        journal.write("O\tsession=FIX.4.4:VENUE->TRADEFLOW\tclOrdId=TJ-1\torderId=X\tstatus=2")
    fix_venue.start()

    c2 = FixClient(fix_venue)
    c2.logon()
    c2.status("TJ-1", RESTING_SYMBOL)
    assert f(c2.report("TJ-1", "I"), 39) == "0"  # the torn "filled" line did not count
    c2.new_order("TJ-2", "AAPL", "1")
    assert f(c2.report("TJ-2", "F"), 39) == "2"  # and the journal goes on after it
    c2.logout()
    fix_venue.restart()
    c3 = FixClient(fix_venue)
    c3.logon()
    c3.status("TJ-2", "AAPL")
    assert f(c3.report("TJ-2", "I"), 39) == "2"
    c3.logout()
