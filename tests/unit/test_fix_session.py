"""The FIX 4.4 session and application layers, against recorded transcripts.

Transcripts (tests/unit/fix_transcripts/*.fix, format in its README) are replayed
through a real ``FixSession`` on a real file store with a test clock: every message we
send must match the recorded one byte for byte.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import simplefix

from connectors.fix.application import FixApplication, exec_status
from connectors.fix.codec import (
    AppMessage,
    FixFramer,
    FrameProblem,
    from_wire_log,
    parse,
    parse_time,
    text,
    to_wire_log,
)
from connectors.fix.session import EventKind, FixSession, SessionOutput, SessionState
from connectors.fix.settings import FixSettings
from connectors.fix.store import OrderJournal, OrderPhase, SessionStore, read_seqnums
from connectors.venues import make_venue
from connectors.venues.fix import FixVenue
from schemas import ExecStatus, OrderAction, OrderType, Side, ValidatedOrder, VenueFill
from tests import builders
from tests.fix_acceptor import ScriptedAcceptor

TRANSCRIPTS = Path(__file__).parent / "fix_transcripts"
T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def settings_for(tmp_path: Path, **overrides: object) -> FixSettings:
    base: dict[str, object] = {
        "sender_comp_id": "TRADEFLOW",
        "target_comp_id": "VENUE",
        "heartbeat_s": 30,
        "store_dir": tmp_path / "fix",
        "fsync": False,
    }
    base.update(overrides)
    return FixSettings(**base)  # type: ignore[arg-type]


# -- transcript runner ------------------------------------------------------------------


@dataclass
class Replay:
    settings: FixSettings
    clock: FakeClock
    store: SessionStore
    session: FixSession
    last: SessionOutput = field(default_factory=SessionOutput)
    sent: deque[bytes] = field(default_factory=deque)

    def act(self, out: SessionOutput) -> None:
        assert not self.sent, f"unexpected outbound: {[to_wire_log(m) for m in self.sent]}"
        self.last = out
        self.sent.extend(out.outbound)


def _option(value: str) -> object:
    if value in ("true", "false"):
        return value == "true"
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value


def replay(name: str, tmp_path: Path, directory: Path = TRANSCRIPTS) -> Replay:
    lines = (directory / name).read_text().splitlines()
    overrides = {}
    for line in lines:
        if line.startswith("% "):
            overrides.update(
                {k: _option(v) for k, v in (kv.split("=", 1) for kv in line[2:].split())}
            )
    settings = settings_for(tmp_path, **overrides)
    clock = FakeClock()
    store = SessionStore(settings.session_dir, fsync=False)
    r = Replay(settings, clock, store, FixSession(settings, store, clock))
    for number, line in enumerate(lines, 1):
        try:
            _step(r, line)
        except AssertionError as exc:
            raise AssertionError(f"{name}:{number}: {line}\n{exc}") from None
    assert not r.sent, f"{name}: unexpected outbound at end: {[to_wire_log(m) for m in r.sent]}"
    return r


def _step(r: Replay, line: str) -> None:
    if not line.strip() or line[0] in "#%":
        return
    verb, _, rest = line.partition(" ")
    if verb == "@":
        r.clock.now = parse_time(rest) or pytest.fail(f"bad time {rest}")
    elif verb == "<":
        r.act(r.session.receive(from_wire_log(rest)))
    elif verb == ">":
        assert r.sent, f"expected us to send {rest}, but nothing was sent"
        got = to_wire_log(r.sent.popleft())
        assert got == rest
    elif verb == "!":
        _command(r, rest)
    elif verb == "?":
        _check(r, rest)
    else:
        pytest.fail(f"unknown transcript verb {verb!r}")


def _command(r: Replay, rest: str) -> None:
    cmd, _, arg = rest.partition(" ")
    if cmd == "connect":
        r.act(r.session.connected())
    elif cmd == "tick":
        r.act(r.session.tick())
    elif cmd == "logout":
        r.act(r.session.logout())
    elif cmd == "disconnected":
        r.session.disconnected()
        r.act(SessionOutput())
    elif cmd == "restart":
        r.act(SessionOutput())
        r.store.close()
        r.store = SessionStore(r.settings.session_dir, fsync=False)
        r.session = FixSession(r.settings, r.store, r.clock)
    elif cmd == "send":
        msg_type, _, body = arg.partition(" ")
        fields = tuple(
            (int(t), v) for t, v in (f.split("=", 1) for f in body.split("|") if f)
        )
        r.act(SessionOutput([r.session.send_app(AppMessage(msg_type, fields))]))
    else:
        pytest.fail(f"unknown command {cmd!r}")


def _check(r: Replay, rest: str) -> None:
    what, _, arg = rest.partition(" ")
    if what == "state":
        assert r.session.state.value == arg
    elif what == "next_sender":
        assert r.session.next_sender_seq == int(arg)
    elif what == "next_target":
        assert r.session.next_target_seq == int(arg)
    elif what == "events":
        want = [] if arg == "-" else arg.split()
        assert [e.kind.value for e in r.last.events] == want, r.last.events
    elif what == "text":
        assert any(arg in e.text for e in r.last.events), r.last.events
    elif what == "app":
        want = [] if arg == "-" else arg.split()
        assert [text(m, 35) for m in r.last.app_messages] == want
    elif what == "disconnect":
        assert r.last.disconnect
    elif what == "no_disconnect":
        assert not r.last.disconnect
    else:
        pytest.fail(f"unknown check {what!r}")


# -- session transcripts ----------------------------------------------------------------


def test_logon_handshake_sends_heartbeat_interval_and_credentials_then_is_active(
    tmp_path: Path,
) -> None:
    r = replay("logon_handshake.fix", tmp_path)
    assert r.session.state is SessionState.ACTIVE


def test_logon_with_reset_flag_starts_both_sequences_at_one_on_every_logon(
    tmp_path: Path,
) -> None:
    replay("logon_reset.fix", tmp_path)


def test_silence_triggers_heartbeat_then_test_request_then_disconnect(tmp_path: Path) -> None:
    r = replay("heartbeat_test_request.fix", tmp_path)
    assert "heartbeat timeout" in r.last.events[0].text


def test_inbound_gap_queues_early_messages_sends_one_resend_request_and_drains(
    tmp_path: Path,
) -> None:
    replay("inbound_gap.fix", tmp_path)


def test_possdup_below_expected_is_ignored_and_low_seq_without_possdup_logs_out(
    tmp_path: Path,
) -> None:
    replay("possdup_duplicates.fix", tmp_path)


def test_resend_request_is_answered_with_possdup_copies_and_gap_fills_for_admin(
    tmp_path: Path,
) -> None:
    replay("answer_resend_request.fix", tmp_path)


def test_garbled_messages_are_dropped_and_session_survives_until_wrong_comp_ids(
    tmp_path: Path,
) -> None:
    r = replay("garbled.fix", tmp_path)
    assert r.session.next_target_seq == 5  # the CompID offender did not count


def test_sequence_numbers_and_sent_messages_persist_across_session_restart(
    tmp_path: Path,
) -> None:
    replay("restart_persists_seqnums.fix", tmp_path)


def test_logon_answer_above_expected_seq_logs_on_and_requests_resend(tmp_path: Path) -> None:
    replay("logon_gap.fix", tmp_path)


def test_logon_refused_by_logout_is_an_error_with_the_reason(tmp_path: Path) -> None:
    r = replay("logon_refused.fix", tmp_path)
    assert [e.text for e in r.last.events] == [
        "venue refused the logon: Invalid password; not retrying",
        "expected Logon, got 35=5 Invalid password",
    ]
    assert r.session.refused == "venue refused the logon: Invalid password"


def test_a_refused_logon_with_retries_on_only_alarms_every_few_failures(tmp_path: Path) -> None:
    r = replay("logon_refused_retry.fix", tmp_path)
    assert [e.kind for e in r.last.events] == [EventKind.ERROR]
    assert r.session.refused is not None


def test_logon_without_answer_times_out(tmp_path: Path) -> None:
    replay("logon_timeout.fix", tmp_path)


def test_transcript_runner_fails_on_a_wrong_expected_message(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.fix"
    text_ = (TRANSCRIPTS / "logon_handshake.fix").read_text().replace("108=30", "108=31", 1)
    wrong.write_text(text_)
    with pytest.raises(AssertionError, match="wrong.fix:5"):
        replay("wrong.fix", tmp_path / "run", directory=tmp_path)


def test_send_app_before_logon_is_refused(tmp_path: Path) -> None:
    from connectors.fix.session import SessionNotReady

    settings = settings_for(tmp_path)
    session = FixSession(settings, SessionStore(settings.session_dir, fsync=False), FakeClock())
    with pytest.raises(SessionNotReady):
        session.send_app(AppMessage("D", ((11, "o1"),)))


def test_sending_time_far_from_our_clock_is_rejected_and_logged_out(tmp_path: Path) -> None:
    v = Venue(tmp_path)
    v.logon()
    v.clock.advance(500)  # the venue's clock is 500 s behind ours
    out = v.session.receive(v.msg("0", [], sending=v.clock.now - timedelta(seconds=500)))
    kinds = [e.kind for e in out.events]
    assert kinds == [EventKind.REJECT_SENT, EventKind.ERROR]
    assert b"373=10" in out.outbound[0]
    assert out.disconnect


# -- framing ----------------------------------------------------------------------------


def _wire(line: str) -> bytes:
    return from_wire_log(line)


GOOD = [
    line[2:]
    for line in (TRANSCRIPTS / "inbound_gap.fix").read_text().splitlines()
    if line.startswith("< ")
]


def test_framer_cuts_messages_split_at_every_byte_boundary() -> None:
    data = b"".join(_wire(m) for m in GOOD[:3])
    framer = FixFramer()
    frames = []
    for i in range(len(data)):
        frames += framer.feed(data[i : i + 1])
    assert [f.raw for f in frames] == [_wire(m) for m in GOOD[:3]]
    assert all(f.problem is None for f in frames)


def test_framer_bad_body_length_does_not_swallow_the_next_message() -> None:
    bad = _wire(GOOD[0]).replace(b"\x019=69\x01", b"\x019=300\x01")
    frames = FixFramer().feed(bad + _wire(GOOD[1]))
    assert [f.problem for f in frames] == [FrameProblem.BODY_LENGTH, None]


def test_framer_truncated_message_followed_by_a_new_one_is_garbled_then_good() -> None:
    cut = _wire(GOOD[1])[:60]
    frames = FixFramer().feed(cut + _wire(GOOD[0]))
    assert [f.problem for f in frames] == [FrameProblem.GARBLED, None]


# -- a scripted venue for application-level tests ---------------------------------------


class Venue:
    """Build venue-side messages with the right sequence numbers, and drive a session."""

    def __init__(self, tmp_path: Path, **overrides: object) -> None:
        self.settings = settings_for(tmp_path, **overrides)
        self.clock = FakeClock()
        self.seq = 1
        self.open()

    def open(self) -> None:
        self.store = SessionStore(self.settings.session_dir, fsync=False)
        self.journal = OrderJournal(self.settings.session_dir, fsync=False)
        self.session = FixSession(self.settings, self.store, self.clock)
        self.app = FixApplication(
            "fixvenue", self.journal, self.clock, resend_max_age_s=self.settings.resend_max_age_s
        )

    def crash(self) -> None:
        self.store.close()
        self.journal.close()
        self.open()

    def msg(self, msg_type: str, fields: list[tuple[int, str]], *, seq: int | None = None,
            poss_dup: bool = False, sending: datetime | None = None) -> bytes:
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.4")
        m.append_pair(35, msg_type)
        m.append_pair(34, self.seq if seq is None else seq)
        if poss_dup:
            m.append_pair(43, "Y")
            m.append_pair(122, "20240301-14:29:59.000")
        m.append_pair(49, "VENUE")
        m.append_pair(52, (sending or self.clock.now).strftime("%Y%m%d-%H:%M:%S.000"))
        m.append_pair(56, "TRADEFLOW")
        for tag, value in fields:
            m.append_pair(tag, value)
        if seq is None:
            self.seq += 1
        return bytes(m.encode())

    def logon(self) -> list[bytes]:
        """Connect and log on; return what the application sends right after logon."""
        self.session.connected()
        out = self.session.receive(self.msg("A", [(98, "0"), (108, "30")]))
        assert self.session.state is SessionState.ACTIVE, out.events
        return [self.session.send_app(m) for m in self.app.on_logon()]

    def deliver(self, raw: bytes) -> list[VenueFill]:
        out = self.session.receive(raw)
        fills = [f for e in out.events for f in self.app.on_event(e)]
        return fills + [f for m in out.app_messages for f in self.app.on_message(m)]

    def er(self, label: str, *, poss_dup: bool = False, seq: int | None = None) -> bytes:
        """Re-sequence a labelled execution report for this conversation."""
        original = parse(ER[label])
        fields = [(t, v.decode()) for t, v in original if t not in (8, 9, 10, 34, 35, 49, 52, 56)]
        return self.msg(text(original, 35) or "8", fields, poss_dup=poss_dup, seq=seq)


def _load_reports() -> dict[str, bytes]:
    out = {}
    for line in (TRANSCRIPTS / "execution_reports.fix").read_text().splitlines():
        if line and not line.startswith("#"):
            label, msg = line.split(" ", 1)
            out[label] = from_wire_log(msg)
    return out


ER = _load_reports()


def new_order(order_id: str = "o1", **kw: object) -> ValidatedOrder:
    return builders.order(order_id, **{"account": "acc1", "qty": Decimal(100), "ts": T0, **kw})


def sent_types(frames: list[bytes]) -> list[str]:
    return [text(parse(f), 35) or "" for f in frames]


@pytest.fixture
def app(tmp_path: Path) -> FixApplication:
    journal = OrderJournal(tmp_path / "store", fsync=False)
    application = FixApplication("fixvenue", journal, FakeClock())
    routed = application.new_order(new_order())
    assert [m.msg_type for m in routed.messages] == ["D"]
    return application


# -- ExecutionReport mapping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "status", "last", "cum", "leaves", "avg"),
    [
        ("new", ExecStatus.NEW, ("0", "0"), "0", "100", "0"),
        ("pending_new", ExecStatus.ACK, ("0", "0"), "0", "100", "0"),
        ("partial", ExecStatus.PARTIAL, ("40", "10.5"), "40", "60", "10.5"),
        ("fill", ExecStatus.FILLED, ("60", "11"), "100", "0", "10.8"),
        ("canceled", ExecStatus.CANCELED, ("0", "0"), "40", "0", "10.5"),
        ("rejected", ExecStatus.REJECTED, ("0", "0"), "0", "0", "0"),
        ("expired", ExecStatus.EXPIRED, ("0", "0"), "0", "0", "0"),
        ("pending_cancel", ExecStatus.ACK, ("0", "0"), "40", "60", "10.5"),
        ("status", ExecStatus.STATUS, ("0", "0"), "40", "60", "10.5"),
        ("status_unknown", ExecStatus.REJECTED, ("0", "0"), "0", "0", "0"),
        ("restated", ExecStatus.STATUS, ("0", "0"), "0", "100", "0"),
        ("fix42_fill", ExecStatus.FILLED, ("100", "10"), "100", "0", "10"),
    ],
)
def test_execution_report_maps_exec_type_to_venue_fill(
    app: FixApplication,
    label: str,
    status: ExecStatus,
    last: tuple[str, str],
    cum: str,
    leaves: str,
    avg: str,
) -> None:
    (fill,) = app.on_message(parse(ER[label]))
    assert fill.status is status
    assert (fill.order_id, fill.venue, fill.account, fill.symbol) == ("o1", "fixvenue", "acc1", "AAPL")
    assert fill.side is Side.BUY
    assert (fill.last_qty, fill.last_px) == (Decimal(last[0]), Decimal(last[1]))
    assert (fill.cum_qty, fill.leaves_qty, fill.avg_px) == (Decimal(cum), Decimal(leaves), Decimal(avg))
    assert fill.exec_id == text(parse(ER[label]), 17)


def test_execution_report_carries_venue_order_id_text_fee_and_transact_time(
    app: FixApplication,
) -> None:
    (fill,) = app.on_message(parse(ER["fill"]))
    assert fill.venue_order_id == "V1"
    assert fill.fee == Decimal("0.25")
    assert fill.ts == datetime(2024, 3, 1, 14, 30, 2, 999000, tzinfo=UTC)
    (rej,) = app.on_message(parse(ER["rejected"]))
    assert rej.reason == "Exceeds limit (OrdRejReason=3)"


def test_status_answer_for_unknown_order_is_rejected_with_venue_text(app: FixApplication) -> None:
    (fill,) = app.on_message(parse(ER["status_unknown"]))
    assert fill.status is ExecStatus.REJECTED
    assert fill.reason == "Unknown order"
    assert app.journal.get("o1").phase is OrderPhase.DONE  # type: ignore[union-attr]


def test_cumulative_quantity_above_order_qty_is_capped(app: FixApplication) -> None:
    (fill,) = app.on_message(parse(ER["over_fill"]))
    assert fill.cum_qty == Decimal(100)


def test_report_found_by_venue_order_id_when_clordid_missing(app: FixApplication) -> None:
    app.on_message(parse(ER["new"]))  # records V1
    (fill,) = app.on_message(parse(ER["by_venue_id"]))
    assert fill.order_id == "o1"


def test_report_for_an_order_we_never_sent_is_dropped(app: FixApplication) -> None:
    assert app.on_message(parse(ER["unknown_order"])) == []
    assert app.counts["unknown_reports"] == 1


def test_report_that_makes_no_valid_fill_is_dropped_and_counted(app: FixApplication) -> None:
    assert app.on_message(parse(ER["zero_px_fill"])) == []
    assert app.counts["bad_reports"] == 1


def test_same_exec_id_twice_gives_one_fill(app: FixApplication) -> None:
    assert len(app.on_message(parse(ER["partial"]))) == 1
    assert app.on_message(parse(ER["partial"])) == []
    assert app.counts["duplicates"] == 1


def test_order_cancel_reject_becomes_cancel_rejected_notice_with_reason(app: FixApplication) -> None:
    app.on_message(parse(ER["partial"]))
    (notice,) = app.on_message(parse(ER["cancel_reject"]))
    assert notice.status is ExecStatus.CANCEL_REJECTED
    assert notice.reason == "cancel rejected: Too late to cancel (CxlRejReason=0)"
    assert (notice.cum_qty, notice.leaves_qty) == (Decimal(40), Decimal(60))
    assert notice.exec_id == "CXLREJ-o1-C1"


def test_business_reject_of_new_order_asks_the_venue_and_its_answer_decides(app: FixApplication) -> None:
    assert app.on_message(parse(ER["business_reject"])) == []
    (ask,) = app.take_requests()
    assert ask.msg_type == "H"
    assert ("11", "o1") in [(str(t), v) for t, v in ask.fields]
    (fill,) = app.on_message(parse(ER["status_unknown"]))  # the venue never took it
    assert fill.status is ExecStatus.REJECTED
    assert app.take_findings() == []


def test_reject_after_a_partial_fill_never_makes_the_order_rejected(app: FixApplication) -> None:
    """35=j after a fill: asked about; an 'unknown order' answer is a CRITICAL finding."""
    (partial,) = app.on_message(parse(ER["partial"]))
    assert app.on_message(parse(ER["business_reject"])) == []
    assert [m.msg_type for m in app.take_requests()] == ["H"]
    assert app.on_message(parse(ER["status_unknown"])) == []
    (finding,) = app.take_findings()
    assert finding.rule == "FILLED_ORDER_UNKNOWN"
    assert finding.accounts == ("acc1",)
    assert finding.reduce
    assert app.journal.get("o1").phase is not OrderPhase.DONE  # type: ignore[union-attr]
    (fill,) = app.on_message(parse(ER["fill"]))  # the venue's real fill still counts
    assert (fill.status, fill.cum_qty) == (ExecStatus.FILLED, Decimal(100))


def test_over_fill_caps_last_and_cum_qty_together_and_is_a_finding(app: FixApplication) -> None:
    app.on_message(parse(ER["partial"]))  # 40 of 100
    (fill,) = app.on_message(parse(ER["over_fill"]))  # says LastQty 150, CumQty 150
    assert (fill.last_qty, fill.cum_qty) == (Decimal(60), Decimal(100))
    (finding,) = app.take_findings()
    assert finding.rule == "OVERFILL"
    assert finding.values["last_qty"] == "150"


def test_report_of_an_order_we_never_sent_is_a_finding(app: FixApplication) -> None:
    assert app.on_message(parse(ER["unknown_order"])) == []
    (finding,) = app.take_findings()
    assert finding.rule == "UNKNOWN_ORDER"
    assert finding.accounts == ("acc1",)
    assert "zzz" in finding.message


def test_side_account_and_symbol_come_from_our_order_map(app: FixApplication) -> None:
    wrong = from_wire_log(
        to_wire_log(ER["partial"]).replace("|1=acc1|", "|1=acc2|").replace("|54=1|", "|54=2|")
    )
    (fill,) = app.on_message(parse(wrong))
    assert (fill.account, fill.side, fill.symbol) == ("acc1", Side.BUY, "AAPL")
    (finding,) = app.take_findings()
    assert finding.rule == "REPORT_MISMATCH"
    assert finding.values == {"account": "acc2", "side": "SELL"}


def test_resend_filter_withholds_done_filled_and_old_orders(tmp_path: Path) -> None:
    v = Venue(tmp_path, resend_max_age_s=5.0)
    v.session.resend_filter = v.app.safe_to_resend
    v.logon()

    def send(oid: str) -> None:
        for m in v.app.new_order(new_order(oid)).messages:
            v.session.send_app(m)

    send("old")
    v.clock.advance(3)
    send("filled")
    send("young")
    fill = to_wire_log(ER["fill"]).replace("|11=o1|", "|11=filled|").replace("|17=E-f1|", "|17=E-x|")
    v.deliver(v.msg("8", [(t, val.decode()) for t, val in parse(from_wire_log(fill))
                          if t not in (8, 9, 10, 34, 35, 49, 52, 56)]))
    v.clock.advance(3)  # 'old' is 6 s old (over 5), 'filled' and 'young' 3 s
    out = v.session.receive(v.msg("2", [(7, "1"), (16, "0")]))
    resent = [parse(f) for f in out.outbound]
    assert [text(m, 11) for m in resent if text(m, 35) == "D"] == ["young"]
    assert all(text(m, 43) == "Y" for m in resent)
    assert "2 unsafe to send again replaced by GapFill" in out.events[-1].text


def test_venue_that_lost_its_state_is_adopted_and_gets_nothing_resent(tmp_path: Path) -> None:
    v = Venue(tmp_path)
    v.logon()
    for m in v.app.new_order(new_order("o1")).messages:
        v.session.send_app(m)
    v.session.disconnected()
    v.seq = 1  # the venue restarts with an empty store
    v.session.connected()
    out = v.session.receive(v.msg("A", [(98, "0"), (108, "30")]))
    assert v.session.state is SessionState.ACTIVE
    assert [e.kind for e in out.events] == [EventKind.VENUE_STATE_LOST, EventKind.LOGON]
    v.app.on_event(out.events[0])
    (finding,) = v.app.take_findings()
    assert (finding.rule, finding.accounts, finding.reduce) == ("VENUE_STATE_LOST", ("acc1",), True)
    # its ResendRequest from 1 gets a single GapFill: o1 is never sent again
    out = v.session.receive(v.msg("2", [(7, "1"), (16, "0")]))
    (gap,) = [parse(f) for f in out.outbound]
    assert (text(gap, 35), text(gap, 123), text(gap, 36)) == ("4", "Y", str(v.session.next_sender_seq))


def test_logons_refused_in_a_row_raise_an_alarm(tmp_path: Path) -> None:
    v = Venue(tmp_path, logon_refused_alarm=2)
    kinds = []
    for _ in range(4):
        out = v.session.connected()
        kinds.append([e.kind for e in out.events])
        v.session.disconnected()  # the venue hangs up before its Logon
    assert kinds == [[], [], [EventKind.LOGON_REFUSED], []]


def test_exec_status_table_covers_trade_without_ord_status() -> None:
    assert exec_status("F", "", Decimal(0)) is ExecStatus.FILLED
    assert exec_status("F", "", Decimal(5)) is ExecStatus.PARTIAL
    assert exec_status("Z", "0", None) is None


# -- application messages out -----------------------------------------------------------


def test_new_order_single_carries_every_required_field(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path, fsync=False)
    application = FixApplication("v", journal, FakeClock())
    order = new_order(
        "o9", side=Side.SELL, order_type=OrderType.LIMIT, limit_px=Decimal("101.250"),
        qty=Decimal("12.5"),
    )
    (msg,) = application.new_order(order).messages
    assert msg.msg_type == "D"
    assert dict(msg.fields) == {
        11: "o9", 1: "acc1", 21: "1", 55: "AAPL", 54: "2", 60: "20240301-14:30:00.000",
        38: "12.5", 40: "2", 44: "101.25", 59: "0",
    }


def test_cancels_get_numbered_clordids_and_reference_venue_order_id(app: FixApplication) -> None:
    app.on_message(parse(ER["new"]))
    cancel = new_order(action=OrderAction.CANCEL, ts=T0 + timedelta(seconds=1))
    (first,) = app.cancel_order(cancel).messages
    assert first.msg_type == "F"
    assert (first.get(11), first.get(41), first.get(37)) == ("o1-C1", "o1", "V1")
    assert app.cancel_order(cancel).messages == []  # one cancel pending at a time
    app.on_message(parse(ER["cancel_reject"].replace(b"39=2", b"39=0")))  # still working
    (second,) = app.cancel_order(cancel).messages
    assert second.get(11) == "o1-C2"


# -- restarts: ID map, IN_FLIGHT, exec-id de-duplication ---------------------------------


def test_restarted_session_does_not_resend_a_stored_order_but_requests_its_status(
    tmp_path: Path,
) -> None:
    v = Venue(tmp_path)
    v.logon()
    (nos,) = [v.session.send_app(m) for m in v.app.new_order(new_order()).messages]
    assert text(parse(nos), 35) == "D"
    v.crash()  # no answer ever came: the order's outcome is unknown

    assert v.app.in_flight() == ["o1"]
    v.seq = 2
    after_logon = v.logon()
    replayed = [v.session.send_app(m) for m in v.app.new_order(new_order()).messages]
    assert sent_types(after_logon) == ["H"]
    assert sent_types(replayed) == []  # never re-sent; its status is already being asked
    assert v.app.counts["status_requests_held"] == 1
    assert text(parse(after_logon[0]), 11) == "o1"
    assert v.app.counts["not_resent"] == 1

    (status,) = v.deliver(v.er("status"))
    assert status.status is ExecStatus.STATUS
    assert status.cum_qty == Decimal(40)
    assert v.app.in_flight() == []


def test_order_id_map_and_venue_order_id_survive_restart(tmp_path: Path) -> None:
    v = Venue(tmp_path)
    v.logon()
    for m in v.app.new_order(new_order()).messages:
        v.session.send_app(m)
    v.deliver(v.er("new"))
    v.crash()
    entry = v.journal.get("o1")
    assert entry is not None
    assert (entry.cl_ord_id, entry.venue_order_id) == ("o1", "V1")
    assert entry.phase is OrderPhase.IN_FLIGHT  # unconfirmed since the restart
    assert v.journal.by_cl_ord_id("o1") is entry
    (cancel,) = v.app.cancel_order(new_order(action=OrderAction.CANCEL)).messages
    assert cancel.get(37) == "V1"


def test_possdup_resend_of_an_already_counted_fill_is_not_counted_again(tmp_path: Path) -> None:
    v = Venue(tmp_path)
    v.logon()
    for m in v.app.new_order(new_order()).messages:
        v.session.send_app(m)
    assert len(v.deliver(v.er("partial"))) == 1
    # Crash before the inbound sequence number reached the disk: the venue resends.
    v.crash()
    v.store.next_target_seq = 2
    v.store.save()
    v.seq = 2
    v.logon()  # logon answer comes as 2; the resent report is 3 ... so re-sequence:
    v.seq = 3
    fills = v.deliver(v.er("partial", poss_dup=True))
    assert fills == []
    assert v.app.counts["duplicates"] == 1
    assert len(v.deliver(v.er("fill"))) == 1


def test_session_reject_of_our_new_order_is_settled_by_a_status_request(tmp_path: Path) -> None:
    v = Venue(tmp_path)
    v.logon()
    (nos,) = [v.session.send_app(m) for m in v.app.new_order(new_order()).messages]
    seq = text(parse(nos), 34)
    fills = v.deliver(v.msg("3", [(45, seq or ""), (371, "40"), (372, "D"), (373, "5"),
                                  (58, "bad OrdType")]))
    assert fills == []
    assert [m.msg_type for m in v.app.take_requests()] == ["H"]
    (fill,) = v.deliver(v.er("status_unknown"))
    assert fill.status is ExecStatus.REJECTED
    assert v.journal.get("o1").phase is OrderPhase.DONE  # type: ignore[union-attr]


def test_locally_rejected_order_is_never_sent_on_replay(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path, fsync=False)
    application = FixApplication("v", journal, FakeClock())
    rej = application.reject_unsent(new_order(), "not sent: no FIX session for 30s")
    journal.close()
    again = FixApplication("v", OrderJournal(tmp_path, fsync=False), FakeClock())
    routed = again.new_order(new_order())
    assert routed.messages == []
    assert routed.reports == [rej]
    assert rej.status is ExecStatus.REJECTED


def test_seen_exec_ids_persist_and_stay_bounded(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path, fsync=False, max_seen=3)
    for i in range(10):
        journal.mark_seen(f"E{i}")
    journal.close()
    again = OrderJournal(tmp_path, fsync=False, max_seen=3)
    assert [again.seen(f"E{i}") for i in range(10)] == [False] * 7 + [True] * 3
    assert len((tmp_path / "execids.log").read_text().splitlines()) <= 6


# -- store ------------------------------------------------------------------------------


def test_store_cuts_a_torn_last_line_and_keeps_the_rest(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path, fsync=False)
    journal.mark_seen("E1")
    journal.close()
    with open(tmp_path / "execids.log", "ab") as fh:
        fh.write(b'"E2')  # crash mid-write
    again = OrderJournal(tmp_path, fsync=False)
    assert again.seen("E1")
    assert not again.seen("E2")
    again.mark_seen("E3")
    again.close()
    assert (tmp_path / "execids.log").read_text().splitlines() == ['"E1"', '"E3"']


def test_store_never_reuses_a_sequence_number_found_in_the_message_log(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, fsync=False)
    store.store_message(7, b"8=FIX.4.4\x01")
    store.close()  # seqnums.log still says next sender 1
    assert SessionStore(tmp_path, fsync=False).next_sender_seq == 8


def test_store_appends_seqnums_and_the_last_whole_line_counts(tmp_path: Path) -> None:
    store = SessionStore(tmp_path, fsync=True)
    store.next_sender_seq = 5
    store.next_target_seq = 9
    store.save()
    store.save()  # unchanged: nothing appended
    store.next_sender_seq = 6
    store.save()
    store.close()
    lines = (tmp_path / "seqnums.log").read_text().splitlines()
    assert [(json.loads(x)["next_sender"], json.loads(x)["next_target"]) for x in lines] == [(5, 9), (6, 9)]
    with open(tmp_path / "seqnums.log", "ab") as fh:
        fh.write(b'{"next_sender": 99, "next_ta')  # crash mid-write
    again = SessionStore(tmp_path, fsync=False)
    assert (again.next_sender_seq, again.next_target_seq) == (6, 9)


def test_store_compacts_the_seqnums_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.fix.store.session_store.COMPACT_SEQNUMS_AT", 3)
    store = SessionStore(tmp_path, fsync=False)
    for seq in range(2, 9):
        store.next_sender_seq = seq
        store.save()
    store.close()
    assert len((tmp_path / "seqnums.log").read_text().splitlines()) <= 3
    assert SessionStore(tmp_path, fsync=False).next_sender_seq == 8


def test_store_reads_the_seqnums_json_of_older_versions(tmp_path: Path) -> None:
    (tmp_path / "seqnums.json").write_text(
        '{"next_sender": 12, "next_target": 9, "created": "2026-12-01T00:00:00+00:00"}'
    )
    store = SessionStore(tmp_path, fsync=False)
    assert (store.next_sender_seq, store.next_target_seq) == (12, 9)
    store.next_target_seq = 10
    store.save()
    assert read_seqnums(tmp_path) == {
        "next_sender": 12, "next_target": 10, "created": "2026-12-01T00:00:00+00:00"
    }


# -- settings ---------------------------------------------------------------------------


def test_fix_settings_are_frozen_strict_and_hide_the_password(tmp_path: Path) -> None:
    s = settings_for(tmp_path, password="s3cret")  # noqa: S106 - a test credential
    assert "s3cret" not in repr(s)
    with pytest.raises(ValueError, match="extra"):
        FixSettings(hostname="x")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="differ"):
        FixSettings(sender_comp_id="A", target_comp_id="A")
    with pytest.raises(ValueError, match="frozen"):
        s.port = 1  # type: ignore[misc]


# -- the adapter over a loopback socket -------------------------------------------------


class LoopbackAcceptor(ScriptedAcceptor):
    """A minimal scripted acceptor: answers Logon, acks and fills every order."""

    def on_message(self, kind: str | None, msg: simplefix.FixMessage) -> None:
        if kind == "D":
            cl, qty = text(msg, 11) or "", text(msg, 38) or ""
            common = [(11, cl), (37, f"V-{cl}"), (54, "1"), (55, text(msg, 55) or "")]
            self.send("8", [*common, (17, f"{cl}-0"), (150, "0"), (39, "0"),
                            (14, "0"), (151, qty), (6, "0")])
            self.send("8", [*common, (17, f"{cl}-1"), (150, "F"), (39, "2"),
                            (31, "10"), (32, qty), (14, qty), (151, "0"), (6, "10")])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def loopback() -> Iterator[LoopbackAcceptor]:
    acceptor = LoopbackAcceptor()
    yield acceptor
    acceptor.close()


def test_fix_venue_submits_over_tcp_and_polls_ack_then_fill(
    tmp_path: Path, loopback: LoopbackAcceptor
) -> None:
    venue = make_venue("fix", settings=settings_for(tmp_path, port=loopback.port), name="lb")
    assert isinstance(venue, FixVenue)
    reports: list[VenueFill] = []
    with venue:
        assert venue.wait_logged_on(10)
        venue.submit(new_order())
        assert wait_for(lambda: bool(reports.extend(venue.poll_reports())) or len(reports) >= 2)
        health = venue.health().as_dict()
    assert [f.status for f in reports] == [ExecStatus.NEW, ExecStatus.FILLED]
    assert reports[1].venue == "lb"
    assert health["session_state"] == "ACTIVE"
    assert health["orders_sent"] == 1
    assert health["ack_p50_ms"] is not None
    assert wait_for(lambda: any(b"35=5" in m for m in loopback.received))  # logged out


def test_fix_venue_rejects_orders_waiting_too_long_for_a_session(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    venue = FixVenue(
        settings_for(tmp_path, port=port, pending_order_timeout_s=0.2, reconnect_initial_s=0.05,
                     reconnect_max_s=0.1, connect_timeout_s=0.2),
    )
    venue.connect()
    try:
        venue.submit(new_order())
        reports: list[VenueFill] = []
        assert wait_for(lambda: bool(reports.extend(venue.poll_reports())) or bool(reports))
        assert venue.health().figure("connect_failures") >= 1
    finally:
        venue.close()
    (rej,) = reports
    assert rej.status is ExecStatus.REJECTED
    assert rej.reason.startswith("not sent: no FIX session")
    # The rejection is durable: a replay of the same order is rejected again, not sent.
    again = FixApplication("fix", OrderJournal(venue.settings.session_dir, fsync=False))
    assert again.new_order(new_order()).messages == []


def test_fix_venue_cancel_of_an_order_still_waiting_cancels_it_locally(tmp_path: Path) -> None:
    venue = FixVenue(settings_for(tmp_path, port=1, reconnect_initial_s=0.05,
                                  connect_timeout_s=0.2))
    venue.connect()
    try:
        venue.submit(new_order())
        venue.cancel(new_order(action=OrderAction.CANCEL))
        reports: list[VenueFill] = []
        assert wait_for(lambda: bool(reports.extend(venue.poll_reports())) or bool(reports))
    finally:
        venue.close()
    assert [f.status for f in reports] == [ExecStatus.CANCELED]


# -- issue 17: the encoder refuses tag injection ------------------------------------------


def test_a_clordid_with_soh_cannot_inject_a_tag(tmp_path: Path) -> None:
    from connectors.fix.codec import FixEncodeError

    v = Venue(tmp_path)
    v.logon()
    seq_before = v.store.next_sender_seq
    evil = "abc\x0149=EVIL"
    with pytest.raises(FixEncodeError, match=r"tag 11: .*SOH \(tag injection\)"):
        AppMessage("D", ((11, evil), (55, "AAPL")))
    # a message built around the check still does not reach the wire
    message = AppMessage("D", ((11, "ok"),))
    object.__setattr__(message, "fields", ((11, evil),))
    with pytest.raises(FixEncodeError, match="tag 11"):
        v.session.send_app(message)
    assert v.store.next_sender_seq == seq_before  # nothing stored, no sequence number used


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "\x00", "tab\there", "del\x7f", "é", ""])
def test_every_control_or_non_ascii_value_is_refused(value: str) -> None:
    from connectors.fix.codec import FixEncodeError, check_value

    with pytest.raises(FixEncodeError, match="tag 55"):
        check_value(55, value)


def test_an_order_built_without_validation_is_rejected_not_sent(tmp_path: Path) -> None:
    journal = OrderJournal(tmp_path / "store", fsync=False)
    application = FixApplication("fixvenue", journal, FakeClock())
    order = new_order("o9").model_copy(update={"symbol": "AAPL\x0155=MSFT"})  # no validation
    routed = application.new_order(order)
    assert routed.messages == []  # never sent; no valid fill can name that symbol either,
    assert routed.reports == []  # so the refusal is logged
    entry = journal.get("o9")  # journalled NOT_SENT: a replay never sends it either
    assert entry is not None
    assert entry.phase is OrderPhase.NOT_SENT
    assert application.new_order(order).messages == []


def test_session_text_quoting_the_venue_is_made_safe() -> None:
    from connectors.fix.codec import check_value, safe_text

    assert check_value(58, safe_text("bad value 'x\x02y' in tag 55")) == "bad value 'x?y' in tag 55"


def test_venue_exec_ids_that_break_the_id_pattern_get_a_stable_valid_id() -> None:
    from connectors.fix.application import safe_exec_id
    from schemas.base import RECORD_ID_MAX

    assert safe_exec_id("V1-7") == "V1-7"
    for bad in ("V 1", "x\x02y", "É", "Z" * 129):
        out = safe_exec_id(bad)
        assert out == safe_exec_id(bad)  # stable: de-duplication by exec id still holds
        assert out.startswith("X-")
        assert len("E-REC-" + out) <= RECORD_ID_MAX


def test_status_requests_are_one_at_a_time_per_order_with_a_growing_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    app = FixApplication("v", OrderJournal(tmp_path, fsync=False), clock)
    app.new_order(new_order())
    asks = [len(app.status_request("o1").messages) for _ in range(5)]
    assert asks == [1, 0, 0, 0, 0]  # one in flight: a restart, reconciliation and a timer asking
    clock.advance(1)
    assert len(app.status_request("o1").messages) == 1  # unanswered for 1 s: again...
    clock.advance(1)
    assert app.status_request("o1").messages == []  # ...then it waits 2 s
    clock.advance(1)
    assert len(app.status_request("o1").messages) == 1
    app.on_message(parse(ER["status"]))  # an answer: it may be asked at once
    assert len(app.status_request("o1").messages) == 1
    assert app.counts["status_requests_held"] == 5


def test_an_order_entry_journals_every_field_but_the_in_memory_ones() -> None:
    from dataclasses import fields

    from connectors.fix.store import OrderEntry

    entry = OrderEntry("O1", "C1", "A1", "AAPL", "BUY", "10", "LIMIT", "1.5", "DAY", cancel_ids=["X"])
    in_memory = {"cum_qty", "avg_px", "leaves_qty", "pending_cancel"}
    assert set(entry.persisted()) == {f.name for f in fields(OrderEntry)} - in_memory
    assert OrderEntry(**entry.persisted()) == entry


def _fill(exec_id: str = "E1") -> VenueFill:
    return VenueFill(
        order_id="O1", venue="fix", exec_id=exec_id, status=ExecStatus.FILLED, account="A1", symbol="AAPL",
        side=Side.BUY, last_qty=Decimal(10), last_px=Decimal("1.25"), cum_qty=Decimal(10),
        leaves_qty=Decimal(0), avg_px=Decimal("1.25"), ts=datetime(2026, 12, 7, 15, 0, tzinfo=UTC),
    )


def test_a_held_group_writes_and_hands_on_a_batch_only_at_its_commit(tmp_path: Path) -> None:
    from connectors.fix.store import SyncGroup

    group = SyncGroup()
    journal = OrderJournal(tmp_path, fsync=True, group=group)
    with group.hold():
        journal.log_report(_fill())
        journal.mark_seen("E0")
        assert group.held
        # a process killed now loses the batch's lines, and nothing of it has been handed on
        assert journal.reports.take() == []
        assert journal.reports.queued == 1
        assert (tmp_path / "reports.jsonl").read_bytes() == b""
        assert (tmp_path / "execids.log").read_bytes() == b""
    assert not group.held
    group.commit()
    assert journal.reports.take() == [(0, _fill())]
    assert journal.reports.queued == 0
    assert (tmp_path / "execids.log").read_text() == '"E0"\n'
    journal.log_report(_fill("E2"))  # not held: written and handed on at once
    assert (tmp_path / "reports.jsonl").read_text().count("\n") == 2
    assert journal.reports.take() == [(1, _fill("E2"))]
    journal.close()
    again = OrderJournal(tmp_path, fsync=False)
    assert again.reports.exec_ids() == ["E1", "E2"]
    assert again.seen("E0")
    assert again.seen("E1")


def test_the_outbox_reads_reports_logged_before_they_were_written_as_stream_json(tmp_path: Path) -> None:
    old = json.dumps({"o": 0, "r": _fill().model_dump(mode="json")})  # as written before
    (tmp_path / "reports.jsonl").write_text(old + "\n")
    journal = OrderJournal(tmp_path, fsync=False)
    assert journal.replay_reports(0) == 0
    journal.log_report(_fill("E2"))
    assert journal.reports.take() == [(0, _fill()), (1, _fill("E2"))]
    journal.close()
    again = OrderJournal(tmp_path, fsync=False)
    again.replay_reports(0)
    assert again.reports.take() == [(0, _fill()), (1, _fill("E2"))]
    assert again.reports.reported("O1").qty == Decimal(20)


def test_a_session_batch_holds_its_store_group(tmp_path: Path) -> None:
    from connectors.fix.store import SyncGroup

    group = SyncGroup()
    session = FixSession(FixSettings(store_dir=tmp_path), SessionStore(tmp_path, fsync=False, group=group),
                         FakeClock())
    with session.batch():
        with session.batch():
            assert group.held
        assert group.held
    assert not group.held


def test_a_sync_group_fsyncs_every_file_it_noted_also_in_a_forked_child(tmp_path: Path) -> None:
    import os
    from unittest import mock

    from connectors.fix.store import SyncGroup

    def commit_three(tag: str) -> list[int]:
        group = SyncGroup()
        files = [open(tmp_path / f"{tag}{i}", "ab") for i in range(3)]  # noqa: SIM115
        for fh in files:
            fh.write(b"x\n")
            fh.flush()
            group.note(fh)
        fds = sorted(fh.fileno() for fh in files)
        with mock.patch("os.fsync", wraps=os.fsync) as fsync:
            group.commit()
            synced = sorted(call.args[0] for call in fsync.call_args_list)
        for fh in files:
            fh.close()
        return synced if synced == fds else []

    assert commit_three("p")
    pid = os.fork()
    if pid == 0:  # the child: the parent's fsync threads are gone, a new pool must serve it
        os._exit(0 if commit_three("c") else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
