"""The FIX 4.4 session layer as a state machine, apart from any socket.

``FixSession`` is fed what happens — connected, bytes received, time passing,
an application message to send, disconnected — and answers each with a
``SessionOutput``: the wire messages to write, the application messages received in
sequence, and events worth surfacing. Time comes from an injected clock, so the whole
layer runs in unit tests against recorded transcripts.

What it does, per the FIX 4.4 session protocol:

* Logon with HeartBtInt, ResetSeqNumFlag when configured, Username/Password.
* Heartbeat after ``heartbeat_s`` of our silence; TestRequest after 1.2 x of theirs;
  disconnect after 2.4 x without an answer.
* Sequence numbers persisted in the ``SessionStore`` before bytes go out. Inside
  ``batch()`` the saves wait for the end of the batch: the initiator runs a read
  (session and application) or a burst of queued sends as one batch, so an inbound
  MsgSeqNum never reaches the disk before the application handled the message (a
  crash in between gets it resent), and the store's files are written and fsynced
  once per batch.
* Inbound gap: the early messages are queued, a ResendRequest(expected, 0) is sent
  once, and the queue is drained as the gap fills.
* Inbound seq too low: ignored when PossDupFlag=Y (a duplicate), otherwise Logout and
  disconnect ("MsgSeqNum too low").
* **The venue lost its state**: its Logon comes with a MsgSeqNum below the one
  expected (it was restarted with an empty store). That raises a ``VENUE_STATE_LOST``
  event every time. With ``adopt_venue_reset`` (the default) the venue's numbering is
  taken and the logon goes on, but nothing we sent before it is ever re-sent: the
  venue's ResendRequest for those gets a GapFill, so an order the venue forgot is
  never executed a second time. Without it the logon is refused ("MsgSeqNum too low").
* A Logout answering our Logon is a refusal (``refused`` says why): with
  ``stop_on_refused_logon`` it raises ``LOGON_REFUSED`` at once and the initiator does
  not reconnect; otherwise logons that fail ``logon_refused_alarm`` times in a row
  raise ``LOGON_REFUSED``.
* ResendRequest answered from the store: application messages re-sent with
  PossDupFlag=Y and OrigSendingTime, unless ``resend_filter`` (the application's
  judgement, e.g. "that order is done") says a message is unsafe to send again;
  admin messages (never stored) and unsafe ones are replaced by
  SequenceReset-GapFill, consecutive ones collapsed into one.
* SequenceReset in both modes; a reset lowering the sequence is rejected.
* Garbled frames (bad checksum, bad body length, unparsable) are logged and dropped
  without consuming a sequence number, so the gap they leave is resent.
* Messages with a header problem are answered with a session Reject (35=3) and the
  session goes on, except the cases the spec makes fatal: wrong CompIDs (Reject with
  SessionRejectReason 9, then Logout), SendingTime too far off (Reject 10, then
  Logout), wrong BeginString or missing MsgSeqNum (Logout).
* Reject (35=3) and BusinessMessageReject (35=j) received are surfaced as events
  (the latter is also delivered to the application layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum

import simplefix

from connectors.fix.codec import (
    HEADER_TAGS,
    AppMessage,
    FixFramer,
    MsgType,
    Tag,
    check_value,
    encode,
    fmt_time,
    integer,
    parse,
    parse_time,
    safe_text,
    text,
    to_wire_log,
)
from connectors.fix.settings import FixSettings
from connectors.fix.store import SessionStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""Returns the current time, tz-aware UTC."""

MAX_QUEUED = 10_000
"""Early (out-of-sequence) messages kept while a gap is being filled."""

REQUIRED_BODY_TAGS: dict[str, tuple[int, ...]] = {
    MsgType.TEST_REQUEST: (Tag.TEST_REQ_ID,),
    MsgType.RESEND_REQUEST: (Tag.BEGIN_SEQ_NO, Tag.END_SEQ_NO),
    MsgType.REJECT: (Tag.REF_SEQ_NUM,),
    MsgType.SEQUENCE_RESET: (Tag.NEW_SEQ_NO,),
    MsgType.LOGON: (Tag.ENCRYPT_METHOD, Tag.HEART_BT_INT),
    MsgType.EXECUTION_REPORT: (
        Tag.ORDER_ID,
        Tag.EXEC_ID,
        Tag.EXEC_TYPE,
        Tag.ORD_STATUS,
        Tag.SYMBOL,
        Tag.SIDE,
        Tag.LEAVES_QTY,
        Tag.CUM_QTY,
        Tag.AVG_PX,
    ),
    MsgType.ORDER_CANCEL_REJECT: (
        Tag.ORDER_ID,
        Tag.CL_ORD_ID,
        Tag.ORIG_CL_ORD_ID,
        Tag.ORD_STATUS,
        Tag.CXL_REJ_RESPONSE_TO,
    ),
    MsgType.BUSINESS_MESSAGE_REJECT: (Tag.REF_MSG_TYPE, Tag.BUSINESS_REJECT_REASON),
}
"""Body tags FIX 4.4 requires, checked on the messages this initiator understands."""


def utc_now() -> datetime:
    """Return the current time in UTC (the default clock)."""
    return datetime.now(UTC)


class SessionRejectReason(IntEnum):
    """SessionRejectReason (373) values this session sends."""

    REQUIRED_TAG_MISSING = 1
    VALUE_INCORRECT = 5
    COMP_ID_PROBLEM = 9
    SENDING_TIME_ACCURACY = 10


class SessionState(StrEnum):
    """Where the session stands."""

    DISCONNECTED = "DISCONNECTED"
    LOGON_SENT = "LOGON_SENT"
    ACTIVE = "ACTIVE"
    LOGOUT_SENT = "LOGOUT_SENT"


class EventKind(StrEnum):
    """What a ``SessionEvent`` reports."""

    LOGON = "LOGON"
    LOGOUT = "LOGOUT"
    GARBLED = "GARBLED"
    REJECT_SENT = "REJECT_SENT"
    REJECT_RECEIVED = "REJECT_RECEIVED"
    BUSINESS_REJECT = "BUSINESS_REJECT"
    GAP_DETECTED = "GAP_DETECTED"
    RESEND_ANSWERED = "RESEND_ANSWERED"
    DUPLICATE_IGNORED = "DUPLICATE_IGNORED"
    SEQUENCE_RESET = "SEQUENCE_RESET"
    VENUE_STATE_LOST = "VENUE_STATE_LOST"
    LOGON_REFUSED = "LOGON_REFUSED"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Something the session saw or did that the layers above may care about."""

    kind: EventKind
    text: str
    ref_seq: int | None = None
    ref_msg_type: str | None = None
    ref_id: str | None = None
    ref_message: bytes | None = None
    """For a Reject of one of our application messages: the message as we sent it."""


@dataclass(slots=True)
class SessionOutput:
    """What the transport and application must do after one session call."""

    outbound: list[bytes] = field(default_factory=list)
    app_messages: list[simplefix.FixMessage] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    disconnect: bool = False
    """Write ``outbound``, then close the connection."""

    def merge(self, other: SessionOutput) -> SessionOutput:
        """Append another output to this one; return self."""
        self.outbound.extend(other.outbound)
        self.app_messages.extend(other.app_messages)
        self.events.extend(other.events)
        self.disconnect = self.disconnect or other.disconnect
        return self


class SessionNotReady(RuntimeError):
    """An application message was offered while the session is not logged on."""


class FixSession:
    """A FIX 4.4 initiator session state machine (see the module doc)."""

    def __init__(self, settings: FixSettings, store: SessionStore, clock: Clock = utc_now) -> None:
        self._s = settings
        self._store = store
        self._clock = clock
        self._framer = FixFramer()
        self._state = SessionState.DISCONNECTED
        now = clock()
        self._state_since = now
        self._last_sent = now
        self._last_received = now
        self._test_req_id: str | None = None
        self._test_req_count = 0
        self._resend_until: int | None = None
        self._queued: dict[int, simplefix.FixMessage] = {}
        self._closing = False
        self._batches = 0
        self._failed_logons = 0
        self.refused: str | None = None
        """Why the venue refused our last Logon (a Logout answering it); None after a logon."""
        self._resend_floor = 1
        """Our messages below this MsgSeqNum are never re-sent (the venue lost them)."""
        self.resend_filter: Callable[[simplefix.FixMessage], bool] | None = None
        """Set by the application layer: False for a stored message unsafe to re-send."""
        self.msgs_sent = 0
        self.msgs_received = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Return the session state."""
        return self._state

    @property
    def settings(self) -> FixSettings:
        """Return the session settings."""
        return self._s

    @property
    def store(self) -> SessionStore:
        """Return the session store."""
        return self._store

    @property
    def next_sender_seq(self) -> int:
        """Return the MsgSeqNum of our next message."""
        return self._store.next_sender_seq

    @property
    def next_target_seq(self) -> int:
        """Return the MsgSeqNum expected next from the venue."""
        return self._store.next_target_seq

    @property
    def ready(self) -> bool:
        """Tell whether application messages can be sent now (logged on, not closing)."""
        return self._state is SessionState.ACTIVE and not self._closing

    @property
    def resend_pending(self) -> bool:
        """Tell whether we asked the venue to resend and the gap is not filled yet."""
        return self._resend_until is not None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Save the store once, when the batch ends normally, instead of after each call.

        Everything done inside (receive, send_app, tick...) and by the caller with its
        output (the application handling the messages) is saved, and the store's files
        fsynced, together: before the caller writes the batch's bytes, never before
        the application handled what came in. Batches nest; the outermost one saves.
        """
        self._batches += 1
        try:
            with self._store.hold_writes():  # the store's lines are written at the save
                yield
        finally:
            self._batches -= 1
        if not self._batches:
            self._store.save()

    def _save(self) -> None:
        if not self._batches:
            self._store.save()

    # -- what happens --------------------------------------------------------------------

    def connected(self) -> SessionOutput:
        """Start a session on a fresh connection: send Logon."""
        now = self._clock()
        alarm = self._logon_refused_alarm()
        self._framer.reset()
        self._queued.clear()
        self._resend_until = None
        self._test_req_id = None
        self._closing = False
        if self._s.reset_on_logon:
            self._store.reset(now)
        fields: list[tuple[int, str]] = [
            (Tag.ENCRYPT_METHOD, "0"),
            (Tag.HEART_BT_INT, str(self._s.heartbeat_s)),
        ]
        if self._s.reset_on_logon:
            fields.append((Tag.RESET_SEQ_NUM_FLAG, "Y"))
        if self._s.username is not None:
            fields.append((Tag.USERNAME, self._s.username.get_secret_value()))
        if self._s.password is not None:
            fields.append((Tag.PASSWORD, self._s.password.get_secret_value()))
        out = SessionOutput([self._send_admin(MsgType.LOGON, fields)])
        if alarm is not None:
            out.events.append(alarm)
        self._set_state(SessionState.LOGON_SENT, now)
        self._last_received = now
        self._save()
        return out

    def disconnected(self) -> None:
        """Note that the connection is gone (either side closed it)."""
        if self._state is SessionState.LOGON_SENT:
            self._failed_logons += 1
        self._set_state(SessionState.DISCONNECTED, self._clock())
        self._framer.reset()
        self._queued.clear()
        self._resend_until = None
        self._closing = False
        self._save()

    def receive(self, data: bytes) -> SessionOutput:
        """Process bytes read from the connection."""
        out = SessionOutput()
        for frame in self._framer.feed(data):
            if self._closing:
                break
            if frame.problem is not None:
                self._garbled(out, f"{frame.problem.value}: {frame.detail}", frame.raw)
                continue
            try:
                msg = parse(frame.raw)
            except ValueError as exc:
                self._garbled(out, str(exc), frame.raw)
                continue
            out.merge(self._on_message(msg))
        self._save()
        return out

    def handle(self, msg: simplefix.FixMessage) -> SessionOutput:
        """Process one already parsed message (framing and checksum taken as good)."""
        out = SessionOutput() if self._closing else self._on_message(msg)
        self._save()
        return out

    def tick(self) -> SessionOutput:
        """Let time pass: heartbeats, test requests and timeouts."""
        now = self._clock()
        out = SessionOutput()
        if self._closing:
            return out
        if self._state is SessionState.ACTIVE:
            self._timers(now, out)
        elif self._state is SessionState.LOGON_SENT:
            if (now - self._state_since).total_seconds() >= self._s.logon_timeout_s:
                self._fatal(out, "no Logon answer in time", logout=False)
        elif self._state is SessionState.LOGOUT_SENT:
            if (now - self._state_since).total_seconds() >= self._s.logout_timeout_s:
                out.events.append(SessionEvent(EventKind.LOGOUT, "no Logout answer in time"))
                out.disconnect = True
        self._save()
        return out

    def send_app(self, message: AppMessage) -> bytes:
        """Stamp, store and return an application message; the session must be ACTIVE."""
        if not self.ready:
            raise SessionNotReady(f"session is {self._state.value}; cannot send {message.msg_type}")
        seq = self._store.next_sender_seq
        raw = self._build(message.msg_type, message.fields, seq=seq)
        self._store.store_message(seq, raw)
        self._store.next_sender_seq = seq + 1
        self._save()
        self._last_sent = self._clock()
        self.msgs_sent += 1
        return raw

    def logout(self, reason: str = "") -> SessionOutput:
        """Log out politely (ACTIVE), or drop a logon in progress."""
        out = SessionOutput()
        now = self._clock()
        if self._state is SessionState.ACTIVE:
            fields = [(Tag.TEXT, safe_text(reason))] if reason else []
            out.outbound.append(self._send_admin(MsgType.LOGOUT, fields))
            self._set_state(SessionState.LOGOUT_SENT, now)
        elif self._state is SessionState.LOGON_SENT:
            out.disconnect = True
        self._save()
        return out

    # -- inbound -------------------------------------------------------------------------

    def _on_message(self, msg: simplefix.FixMessage) -> SessionOutput:
        out = SessionOutput()
        now = self._clock()
        self._last_received = now
        self.msgs_received += 1
        checked = self._check_header(msg, now, out)
        if checked is None:
            return out
        msg_type, seq = checked
        if msg_type == MsgType.SEQUENCE_RESET and text(msg, Tag.GAP_FILL_FLAG) != "Y":
            self._sequence_reset(msg, seq, out)
            return out
        if msg_type == MsgType.LOGON and text(msg, Tag.RESET_SEQ_NUM_FLAG) == "Y":
            self._store.next_target_seq = seq  # the venue starts its numbering again
        expected = self._store.next_target_seq
        if seq < expected:
            if text(msg, Tag.POSS_DUP_FLAG) == "Y":
                out.events.append(
                    SessionEvent(
                        EventKind.DUPLICATE_IGNORED,
                        f"PossDup {msg_type} seq {seq} below expected {expected}",
                        ref_seq=seq,
                        ref_msg_type=msg_type,
                    )
                )
                return out
            if msg_type != MsgType.LOGON or self._state is not SessionState.LOGON_SENT:
                self._fatal(out, f"MsgSeqNum too low, expecting {expected} but received {seq}")
                return out
            if not self._venue_lost_state(seq, expected, out):
                return out
            expected = seq
        if seq > expected:
            self._on_gap(msg, msg_type, seq, expected, out)
            return out
        self._store.next_target_seq = seq + 1
        self._dispatch(msg, msg_type, seq, out)
        self._drain_queue(out)
        return out

    def _check_header(
        self, msg: simplefix.FixMessage, now: datetime, out: SessionOutput
    ) -> tuple[str, int] | None:
        begin = text(msg, Tag.BEGIN_STRING)
        if begin != self._s.begin_string:
            self._fatal(out, f"BeginString {begin!r}, expected {self._s.begin_string}")
            return None
        msg_type = text(msg, Tag.MSG_TYPE)
        if not msg_type:
            self._garbled(out, "MsgType (35) missing", msg.encode(raw=True))
            return None
        seq = integer(msg, Tag.MSG_SEQ_NUM)
        if seq is None:
            self._fatal(out, "MsgSeqNum (34) missing or not a number")
            return None
        if self._state is SessionState.LOGON_SENT and msg_type != MsgType.LOGON:
            why = text(msg, Tag.TEXT) or ""
            if msg_type == MsgType.LOGOUT:  # the venue answered our Logon with a Logout: refused
                self._logon_refused(safe_text(why), out)
            self._fatal(out, f"expected Logon, got 35={msg_type} {why}".strip(), logout=False)
            return None
        if self._state is SessionState.DISCONNECTED:
            self._garbled(out, "message while disconnected", msg.encode(raw=True))
            return None
        sender, target = text(msg, Tag.SENDER_COMP_ID), text(msg, Tag.TARGET_COMP_ID)
        if sender != self._s.target_comp_id or target != self._s.sender_comp_id:
            bad_tag = Tag.SENDER_COMP_ID if sender != self._s.target_comp_id else Tag.TARGET_COMP_ID
            self._reject(
                out, seq, msg_type, SessionRejectReason.COMP_ID_PROBLEM, bad_tag,
                f"CompID problem: got {sender}->{target}",
            )
            self._fatal(out, f"wrong CompIDs {sender}->{target}")
            return None
        sending = parse_time(text(msg, Tag.SENDING_TIME))
        if sending is None:
            self._reject(
                out, seq, msg_type, SessionRejectReason.REQUIRED_TAG_MISSING, Tag.SENDING_TIME,
                "SendingTime (52) missing or malformed",
            )
            self._consume_if_expected(seq, out)
            return None
        limit = self._s.max_latency_s
        if limit is not None and abs((now - sending).total_seconds()) > limit:
            self._reject(
                out, seq, msg_type, SessionRejectReason.SENDING_TIME_ACCURACY, Tag.SENDING_TIME,
                "SendingTime accuracy problem",
            )
            self._fatal(out, f"SendingTime {fmt_time(sending)} too far from {fmt_time(now)}")
            return None
        return msg_type, seq

    def _on_gap(
        self, msg: simplefix.FixMessage, msg_type: str, seq: int, expected: int, out: SessionOutput
    ) -> None:
        if msg_type == MsgType.LOGON and self._state is SessionState.LOGON_SENT:
            self._on_logon(msg, out)
        elif msg_type == MsgType.LOGOUT:
            self._on_logout(msg, out)
            return
        elif msg_type == MsgType.RESEND_REQUEST:
            if self._missing_tags(msg, msg_type, seq, out):
                return
            self._on_resend_request(msg, out)
        elif len(self._queued) < MAX_QUEUED:
            self._queued[seq] = msg
        self._request_resend(expected, seq, out)

    def _request_resend(self, begin: int, seen: int, out: SessionOutput) -> None:
        if self._resend_until is not None:
            self._resend_until = max(self._resend_until, seen)
            return
        self._resend_until = seen
        fields = [(Tag.BEGIN_SEQ_NO, str(begin)), (Tag.END_SEQ_NO, "0")]
        out.outbound.append(self._send_admin(MsgType.RESEND_REQUEST, fields))
        out.events.append(
            SessionEvent(EventKind.GAP_DETECTED, f"expected {begin}, got {seen}: resend requested",
                         ref_seq=seen)
        )
        log.warning("%s: inbound gap %d..%d, ResendRequest sent", self._s.session_id, begin, seen)

    def _drain_queue(self, out: SessionOutput) -> None:
        while not self._closing:
            seq = self._store.next_target_seq
            msg = self._queued.pop(seq, None)
            if msg is None:
                break
            self._store.next_target_seq = seq + 1
            self._dispatch(msg, text(msg, Tag.MSG_TYPE) or "", seq, out)
        for stale in [s for s in self._queued if s < self._store.next_target_seq]:
            del self._queued[stale]
        if self._resend_until is not None and self._store.next_target_seq > self._resend_until:
            self._resend_until = None

    def _missing_tags(
        self, msg: simplefix.FixMessage, msg_type: str, seq: int, out: SessionOutput
    ) -> bool:
        missing = [t for t in REQUIRED_BODY_TAGS.get(msg_type, ()) if msg.get(t) is None]
        if not missing:
            return False
        self._reject(
            out, seq, msg_type, SessionRejectReason.REQUIRED_TAG_MISSING, missing[0],
            f"Required tag missing: {missing[0]}",
        )
        return True

    def _dispatch(
        self, msg: simplefix.FixMessage, msg_type: str, seq: int, out: SessionOutput
    ) -> None:
        if self._missing_tags(msg, msg_type, seq, out):
            return
        if msg_type == MsgType.LOGON:
            if self._state is SessionState.LOGON_SENT:
                self._on_logon(msg, out)
            else:
                log.warning("%s: Logon while %s ignored", self._s.session_id, self._state.value)
        elif msg_type == MsgType.HEARTBEAT:
            if self._test_req_id is not None and text(msg, Tag.TEST_REQ_ID) == self._test_req_id:
                self._test_req_id = None
        elif msg_type == MsgType.TEST_REQUEST:
            fields = [(Tag.TEST_REQ_ID, safe_text(text(msg, Tag.TEST_REQ_ID) or ""))]
            out.outbound.append(self._send_admin(MsgType.HEARTBEAT, fields))
        elif msg_type == MsgType.RESEND_REQUEST:
            self._on_resend_request(msg, out)
        elif msg_type == MsgType.REJECT:
            self._on_reject(msg, out)
        elif msg_type == MsgType.SEQUENCE_RESET:
            self._gap_fill(msg, seq, out)
        elif msg_type == MsgType.LOGOUT:
            self._on_logout(msg, out)
        else:
            if msg_type == MsgType.BUSINESS_MESSAGE_REJECT:
                self._on_business_reject(msg, out)
            out.app_messages.append(msg)

    def _on_logon(self, msg: simplefix.FixMessage, out: SessionOutput) -> None:
        now = self._clock()
        self._set_state(SessionState.ACTIVE, now)
        self._test_req_id = None
        self._failed_logons = 0
        self.refused = None
        hb = text(msg, Tag.HEART_BT_INT)
        out.events.append(SessionEvent(EventKind.LOGON, f"logged on (HeartBtInt {hb})"))
        log.info("%s: logged on", self._s.session_id)

    def _on_logout(self, msg: simplefix.FixMessage, out: SessionOutput) -> None:
        why = text(msg, Tag.TEXT) or ""
        if self._state is not SessionState.LOGOUT_SENT:
            out.outbound.append(self._send_admin(MsgType.LOGOUT, []))
        out.events.append(SessionEvent(EventKind.LOGOUT, f"venue logged out {why}".strip()))
        log.info("%s: logout %s", self._s.session_id, why)
        out.disconnect = True
        self._closing = True

    def _on_resend_request(self, msg: simplefix.FixMessage, out: SessionOutput) -> None:
        begin = integer(msg, Tag.BEGIN_SEQ_NO) or 0
        end = integer(msg, Tag.END_SEQ_NO) or 0
        last = self._store.next_sender_seq - 1
        if end == 0 or end > last:
            end = last
        if begin < 1:
            self._reject(
                out, integer(msg, Tag.MSG_SEQ_NUM) or 0, MsgType.RESEND_REQUEST,
                SessionRejectReason.VALUE_INCORRECT, Tag.BEGIN_SEQ_NO, "BeginSeqNo must be >= 1",
            )
            return
        if begin > end:
            why = f"nothing to resend from {begin} (last {last})"
            out.events.append(SessionEvent(EventKind.RESEND_ANSWERED, why))
            return
        frames, withheld = self._resend(begin, end)
        out.outbound.extend(frames)
        kept = f", {withheld} unsafe to send again replaced by GapFill" if withheld else ""
        out.events.append(SessionEvent(EventKind.RESEND_ANSWERED, f"resent {begin}..{end}{kept}"))
        log.info("%s: resent %d..%d%s", self._s.session_id, begin, end, kept)

    def _resend(self, begin: int, end: int) -> tuple[list[bytes], int]:
        """Return the frames answering a ResendRequest and how many stored ones were withheld."""
        stored = self._store.messages(begin, end)
        frames: list[bytes] = []
        gap_from: int | None = begin
        withheld = 0
        for seq in sorted(stored):
            if not self._safe_to_resend(seq, stored[seq]):
                withheld += 1
                continue  # part of the gap: a GapFill covers it
            if gap_from is not None and gap_from < seq:
                frames.append(self._gap_fill_frame(gap_from, seq))
            frames.append(self._possdup_copy(stored[seq]))
            gap_from = seq + 1
        if gap_from is not None and gap_from <= end:
            frames.append(self._gap_fill_frame(gap_from, end + 1))
        self._last_sent = self._clock()
        self.msgs_sent += len(frames)
        return frames, withheld

    def _safe_to_resend(self, seq: int, raw: bytes) -> bool:
        if seq < self._resend_floor:
            return False
        if self.resend_filter is None:
            return True
        try:
            return self.resend_filter(parse(raw))
        except ValueError:
            return False

    def _venue_lost_state(self, seq: int, expected: int, out: SessionOutput) -> bool:
        """Handle a Logon numbered below what we expect; tell whether the logon goes on."""
        adopt = self._s.adopt_venue_reset
        why = (
            f"the venue's Logon has MsgSeqNum {seq}, we expected {expected}: it lost its state"
            + (f"; its numbering is taken and nothing below {self._store.next_sender_seq} is re-sent"
               if adopt else "; logon refused")
        )
        out.events.append(SessionEvent(EventKind.VENUE_STATE_LOST, why, ref_seq=seq))
        log.critical("%s: %s", self._s.session_id, why)
        if not adopt:
            self._fatal(out, f"MsgSeqNum too low, expecting {expected} but received {seq}")
            return False
        self._resend_floor = self._store.next_sender_seq
        self._store.next_target_seq = seq
        return True

    def _logon_refused(self, why: str, out: SessionOutput) -> None:
        self.refused = f"venue refused the logon: {why or 'no reason given'}"
        if self._s.stop_on_refused_logon:
            out.events.append(SessionEvent(EventKind.LOGON_REFUSED, f"{self.refused}; not retrying"))
            log.critical("%s: %s; not retrying", self._s.session_id, self.refused)

    def _logon_refused_alarm(self) -> SessionEvent | None:
        limit = self._s.logon_refused_alarm
        if self._failed_logons == 0 or self._failed_logons % limit:
            return None
        why = f"{self._failed_logons} logons in a row failed or were refused by the venue"
        log.critical("%s: %s", self._s.session_id, why)
        return SessionEvent(EventKind.LOGON_REFUSED, why)

    def _possdup_copy(self, raw: bytes) -> bytes:
        original = parse(raw)
        seq = integer(original, Tag.MSG_SEQ_NUM) or 0
        msg_type = text(original, Tag.MSG_TYPE) or ""
        body = [(t, v.decode("latin-1")) for t, v in original if t not in HEADER_TAGS]
        return self._build(
            msg_type, body, seq=seq, poss_dup=True, orig_time=text(original, Tag.SENDING_TIME)
        )

    def _gap_fill_frame(self, seq: int, new_seq: int) -> bytes:
        fields = [(Tag.GAP_FILL_FLAG, "Y"), (Tag.NEW_SEQ_NO, str(new_seq))]
        now = fmt_time(self._clock())
        return self._build(MsgType.SEQUENCE_RESET, fields, seq=seq, poss_dup=True, orig_time=now)

    def _move_target_seq(self, msg: simplefix.FixMessage, seq: int, out: SessionOutput) -> int | None:
        """Expect the SequenceReset's NewSeqNo next and return it; reject one lowering the sequence."""
        new_seq = integer(msg, Tag.NEW_SEQ_NO)
        expected = self._store.next_target_seq
        if new_seq is None or new_seq < expected:
            self._reject(
                out, seq, MsgType.SEQUENCE_RESET, SessionRejectReason.VALUE_INCORRECT,
                Tag.NEW_SEQ_NO, f"NewSeqNo {new_seq} would lower the sequence below {expected}",
            )
            return None
        self._store.next_target_seq = new_seq
        return new_seq

    def _gap_fill(self, msg: simplefix.FixMessage, seq: int, out: SessionOutput) -> None:
        new_seq = self._move_target_seq(msg, seq, out)
        if new_seq is not None:
            out.events.append(SessionEvent(EventKind.SEQUENCE_RESET, f"gap fill {seq}..{new_seq - 1}"))

    def _sequence_reset(self, msg: simplefix.FixMessage, seq: int, out: SessionOutput) -> None:
        new_seq = self._move_target_seq(msg, seq, out)
        if new_seq is not None:
            self._queued = {s: m for s, m in self._queued.items() if s >= new_seq}
            out.events.append(SessionEvent(EventKind.SEQUENCE_RESET, f"reset to {new_seq}"))
        self._drain_queue(out)

    def _on_reject(self, msg: simplefix.FixMessage, out: SessionOutput) -> None:
        ref_seq = integer(msg, Tag.REF_SEQ_NUM)
        reason = text(msg, Tag.SESSION_REJECT_REASON)
        detail = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("RefTagID", text(msg, Tag.REF_TAG_ID)),
                ("SessionRejectReason", reason),
                ("Text", text(msg, Tag.TEXT)),
            )
            if value is not None
        )
        ref = self._store.message(ref_seq) if ref_seq is not None else None
        out.events.append(
            SessionEvent(
                EventKind.REJECT_RECEIVED,
                f"venue rejected our seq {ref_seq}: {detail}",
                ref_seq=ref_seq,
                ref_msg_type=text(msg, Tag.REF_MSG_TYPE),
                ref_message=ref,
            )
        )
        log.warning("%s: session Reject of seq %s: %s", self._s.session_id, ref_seq, detail)

    def _on_business_reject(self, msg: simplefix.FixMessage, out: SessionOutput) -> None:
        ref_seq = integer(msg, Tag.REF_SEQ_NUM)
        out.events.append(
            SessionEvent(
                EventKind.BUSINESS_REJECT,
                f"BusinessMessageReject reason {text(msg, Tag.BUSINESS_REJECT_REASON)}: "
                f"{text(msg, Tag.TEXT) or ''}".strip(),
                ref_seq=ref_seq,
                ref_msg_type=text(msg, Tag.REF_MSG_TYPE),
                ref_id=text(msg, Tag.BUSINESS_REJECT_REF_ID),
                ref_message=self._store.message(ref_seq) if ref_seq is not None else None,
            )
        )

    # -- timers --------------------------------------------------------------------------

    def _timers(self, now: datetime, out: SessionOutput) -> None:
        hb = self._s.heartbeat_s
        silent = (now - self._last_received).total_seconds()
        if self._test_req_id is not None and silent >= 2.4 * hb:
            self._fatal(out, f"heartbeat timeout: nothing from the venue for {silent:.1f}s",
                        logout=False)
            return
        if self._test_req_id is None and silent >= 1.2 * hb:
            self._test_req_count += 1
            self._test_req_id = f"TEST{self._test_req_count}"
            fields = [(Tag.TEST_REQ_ID, self._test_req_id)]
            out.outbound.append(self._send_admin(MsgType.TEST_REQUEST, fields))
        if (now - self._last_sent).total_seconds() >= hb:
            out.outbound.append(self._send_admin(MsgType.HEARTBEAT, []))

    # -- outbound ------------------------------------------------------------------------

    def _build(
        self,
        msg_type: str,
        fields: Iterable[tuple[int, str]],
        *,
        seq: int,
        poss_dup: bool = False,
        orig_time: str | None = None,
    ) -> bytes:
        pairs: list[tuple[int, object]] = [
            (Tag.BEGIN_STRING, self._s.begin_string),
            (Tag.MSG_TYPE, msg_type),
            (Tag.SENDER_COMP_ID, self._s.sender_comp_id),
            (Tag.TARGET_COMP_ID, self._s.target_comp_id),
            (Tag.MSG_SEQ_NUM, seq),
        ]
        if poss_dup:
            pairs.append((Tag.POSS_DUP_FLAG, "Y"))
        pairs.append((Tag.SENDING_TIME, fmt_time(self._clock())))
        if poss_dup and orig_time:
            pairs.append((Tag.ORIG_SENDING_TIME, orig_time))
        pairs.extend(fields)
        return encode([(tag, check_value(tag, value)) for tag, value in pairs])  # all checked, then written

    def _send_admin(self, msg_type: str, fields: Iterable[tuple[int, str]]) -> bytes:
        seq = self._store.next_sender_seq
        raw = self._build(msg_type, fields, seq=seq)
        self._store.next_sender_seq = seq + 1
        self._last_sent = self._clock()
        self.msgs_sent += 1
        return raw

    def _reject(
        self, out: SessionOutput, ref_seq: int, ref_msg_type: str,
        reason: SessionRejectReason, ref_tag: int, why: str,
    ) -> None:
        fields = [
            (Tag.REF_SEQ_NUM, str(ref_seq)),
            (Tag.REF_TAG_ID, str(ref_tag)),
            (Tag.REF_MSG_TYPE, safe_text(ref_msg_type, 8)),
            (Tag.SESSION_REJECT_REASON, str(int(reason))),
            (Tag.TEXT, safe_text(why)),
        ]
        out.outbound.append(self._send_admin(MsgType.REJECT, fields))
        out.events.append(
            SessionEvent(EventKind.REJECT_SENT, why, ref_seq=ref_seq, ref_msg_type=ref_msg_type)
        )
        log.warning("%s: rejected seq %d (%s): %s", self._s.session_id, ref_seq, ref_msg_type, why)

    def _consume_if_expected(self, seq: int, out: SessionOutput) -> None:
        if seq == self._store.next_target_seq:
            self._store.next_target_seq = seq + 1
            self._drain_queue(out)

    def _garbled(self, out: SessionOutput, why: str, raw: bytes) -> None:
        out.events.append(SessionEvent(EventKind.GARBLED, why))
        log.warning("%s: dropped garbled message (%s): %s", self._s.session_id, why,
                    to_wire_log(raw)[:300])

    def _fatal(self, out: SessionOutput, why: str, *, logout: bool = True) -> None:
        if logout and self._state in (SessionState.ACTIVE, SessionState.LOGON_SENT):
            out.outbound.append(self._send_admin(MsgType.LOGOUT, [(Tag.TEXT, safe_text(why))]))
        out.events.append(SessionEvent(EventKind.ERROR, why))
        out.disconnect = True
        self._closing = True
        log.error("%s: %s; disconnecting", self._s.session_id, why)

    def _set_state(self, state: SessionState, now: datetime) -> None:
        if state is not self._state:
            log.info("%s: %s -> %s", self._s.session_id, self._state.value, state.value)
        self._state = state
        self._state_since = now
