"""A venue that misbehaves, scripted per symbol, through Job D's engine into Job C's book.

The FIX adapter talks TCP to a scripted acceptor (a loopback socket, no QuickFIX/J:
these are answers a real venue gives rarely and on no one's schedule). Each symbol gets
one kind of misbehaviour; the orders come from an ``AccountBook`` (Job C's engine), go
through the ``ExecutionEngine`` (Job D's) and the venue's reports come back into the
book. Asserted per case (#17 Done-when): the book's position equals what the venue
executed for our order, and the case raised its CRITICAL event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import simplefix

from connectors.fix.codec import text
from connectors.venues import make_venue
from operators.execution import ExecutionEngine
from operators.portfolio import AccountBook
from schemas import (
    Account,
    Control,
    RiskEvent,
    Severity,
    Side,
    TradeSignal,
    TradingState,
    ValidatedOrder,
    VenueFill,
)
from tests.fix_acceptor import ScriptedAcceptor
from tests.unit.test_fix_session import settings_for

T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
QTY = Decimal(100)
PARTIAL = Decimal(40)

SCRIPTS = {
    "PRTS": "partial fill, session Reject (35=3) of the order, then 'unknown order' when asked",
    "PRTJ": "partial fill, BusinessMessageReject (35=j), then 'unknown order' when asked",
    "OVER": "one fill of 150 for an order of 100",
    "WRNG": "a full fill reported with the other side and another account",
}
EXPECTED_EVENT = {"PRTS": "FILLED_ORDER_UNKNOWN", "PRTJ": "FILLED_ORDER_UNKNOWN", "OVER": "OVERFILL",
                  "WRNG": "REPORT_MISMATCH"}


@dataclass
class Order:
    cl: str
    symbol: str
    side: str
    seq: int
    executed: Decimal = Decimal(0)
    """What this venue executed (LastQty sums it sent)."""


class MisbehavingAcceptor(ScriptedAcceptor):
    """Answers Logon and Logout; misbehaves on each order as its symbol's script says."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.execs = 0
        super().__init__()

    def report(self, o: Order, exec_type: str, status: str, last: Decimal, *, cum: Decimal | None = None,
               side: str | None = None, account: str = "A1") -> None:
        o.executed += last
        self.execs += 1
        cum = o.executed if cum is None else cum
        self.send("8", [(1, account), (6, "10" if cum else "0"), (11, o.cl), (14, str(cum)),
                        (17, f"X{self.execs}"), (31, "10"), (32, str(last)), (37, f"V-{o.cl}"),
                        (38, str(QTY)), (39, status), (54, side or o.side), (55, o.symbol),
                        (150, exec_type), (151, str(max(QTY - cum, Decimal(0))))])

    def on_message(self, kind: str | None, msg: simplefix.FixMessage) -> None:
        if kind == "D":
            o = Order(text(msg, 11) or "", text(msg, 55) or "", text(msg, 54) or "", int(text(msg, 34) or 0))
            self.orders[o.symbol] = o
            self.report(o, "0", "0", Decimal(0))
            if o.symbol == "PRTS":
                self.report(o, "F", "1", PARTIAL)
                self.send("3", [(45, str(o.seq)), (58, "Value is incorrect"), (371, "38"), (372, "D")])
            elif o.symbol == "PRTJ":
                self.report(o, "F", "1", PARTIAL)
                self.send("j", [(45, str(o.seq)), (58, "Account blocked"), (372, "D"), (379, o.cl),
                                (380, "0")])
            elif o.symbol == "OVER":
                self.report(o, "F", "2", Decimal(150))
            elif o.symbol == "WRNG":
                self.report(o, "F", "2", QTY, side="2" if o.side == "1" else "1", account="OTHER")
        elif kind == "H":
            o = next(x for x in self.orders.values() if x.cl == text(msg, 11))
            self.execs += 1
            self.send("8", [(6, "0"), (11, o.cl), (14, "0"), (17, f"X{self.execs}"), (37, "NONE"), (39, "8"),
                            (54, o.side), (55, o.symbol), (58, "Unknown order"), (150, "I"), (151, "0")])

    def unsolicited(self) -> None:
        """An execution report for a ClOrdID nobody sent."""
        self.execs += 1
        self.send("8", [(1, "A1"), (6, "10"), (11, "ZZZ-NEVER-SENT"), (14, "5"), (17, f"X{self.execs}"),
                        (31, "10"), (32, "5"), (37, "V-ZZZ"), (38, "5"), (39, "2"), (54, "1"), (55, "PRTS"),
                        (150, "F"), (151, "0")])


def _signal(symbol: str) -> TradeSignal:
    return TradeSignal(signal_id=f"sig-{symbol}", strategy_id="st", symbol=symbol, account="A1",
                       side=Side.BUY, qty=QTY, ts=T0)


def test_a_misbehaving_venue_leaves_positions_equal_to_its_executions_and_raises_each_event(
    tmp_path: Path,
) -> None:
    acceptor = MisbehavingAcceptor()
    book = AccountBook("A1")
    book.on_account(Account(account="A1", cash=Decimal(10_000_000), ts=T0))
    for symbol in SCRIPTS:
        book.on_mark(symbol, Decimal(10), T0)
    venue = make_venue("fix", settings=settings_for(tmp_path, port=acceptor.port), name="scripted")
    engine = ExecutionEngine(venue, control_ends={}, cancel_on_disconnect=set)
    out: list[object] = []
    try:
        engine.start()
        assert venue.wait_logged_on(10)  # type: ignore[attr-defined]
        for i, symbol in enumerate(SCRIPTS):
            (order,) = book.on_signal(_signal(symbol)).orders
            assert isinstance(order, ValidatedOrder)
            out += engine.take(order, "validated_orders", 0, i)

        def events() -> set[str]:
            return {r.rule for r in out if isinstance(r, RiskEvent)}

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not set(EXPECTED_EVENT.values()) <= events():
            out += engine.poll()
            time.sleep(0.02)
        acceptor.unsolicited()
        while time.monotonic() < deadline and "UNKNOWN_ORDER" not in events():
            out += engine.poll()
            time.sleep(0.02)
    finally:
        venue.close()
        acceptor.close()
    for fill in out:
        if isinstance(fill, VenueFill):
            book.on_fill(fill)

    raised = {(e.rule, e.symbol) for e in out if isinstance(e, RiskEvent)}
    assert all(e.severity is Severity.CRITICAL for e in out if isinstance(e, RiskEvent))
    for symbol, rule in EXPECTED_EVENT.items():
        assert (rule, symbol) in raised, (SCRIPTS[symbol], sorted(raised))
    assert any(rule == "UNKNOWN_ORDER" for rule, _ in raised), sorted(raised)
    # an order the venue filled and then denies: the account trades only to reduce until reconciled
    assert any(isinstance(c, Control) and c.scope == "account:A1" and c.state is TradingState.REDUCING
               for c in out)

    positions = {s: book.ledger.position(s).net_qty for s in SCRIPTS}
    executed = {s: o.executed for s, o in acceptor.orders.items()}
    assert executed == {"PRTS": PARTIAL, "PRTJ": PARTIAL, "OVER": Decimal(150), "WRNG": QTY}
    # What the venue executed for our order of 100 (its over-fill capped at the order, the
    # excess in the OVERFILL event), on our side whatever the report said.
    assert positions == {s: min(q, QTY) for s, q in executed.items()}
    over = next(e for e in out if isinstance(e, RiskEvent) and e.rule == "OVERFILL")
    assert over.values["last_qty"] == "150"
    # the unknown order moved nothing: PRTS holds only its own partial fill
    assert positions["PRTS"] == PARTIAL
