"""FIX wire format: framing with checksum and body-length checks, timestamps, helpers.

simplefix builds and splits messages but validates nothing (its parser ignores
BodyLength and CheckSum), so frames are cut and checked here first and only a frame
that passed is handed to ``simplefix.FixParser``. A frame is cut by its BodyLength
(9); when the bytes there are not a ``10=nnn`` trailer, the frame is cut at the next
trailer instead and reported as a bad body length, so one garbled message never
swallows the next.

Outbound, every tag value goes through ``check_value``: a value must be non-empty
printable ASCII (0x20-0x7E). A value holding SOH (byte 0x01) would end the field early
and let its remainder be read as further tags (``11=abc<SOH>49=EVIL`` smuggles a
SenderCompID); any other control character is refused with it. ``FixEncodeError`` is
raised, naming the tag; nothing is written. Free text the session writes itself
(Text, 58, of a Reject or Logout, which may quote what the venue sent) is made safe
first with ``safe_text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

import simplefix

SOH = b"\x01"
MAX_BUFFER = 1 << 20
"""Bytes buffered without finding a message before the buffer is dropped as junk."""

_BEGIN = re.compile(rb"(?:^|(?<=\x01))8=FIX[^\x01]*\x01")
_HEADER = re.compile(rb"8=(?P<begin>[^\x01]+)\x019=(?P<len>[^\x01]*)\x01")
_TRAILER = re.compile(rb"\x0110=(?P<sum>\d{3})\x01")


class Tag:
    """FIX 4.4 tag numbers used by the session and application layers."""

    ACCOUNT = 1
    AVG_PX = 6
    BEGIN_SEQ_NO = 7
    BEGIN_STRING = 8
    BODY_LENGTH = 9
    CHECKSUM = 10
    CL_ORD_ID = 11
    COMMISSION = 12
    CUM_QTY = 14
    END_SEQ_NO = 16
    EXEC_ID = 17
    HANDL_INST = 21
    LAST_PX = 31
    LAST_QTY = 32
    MSG_SEQ_NUM = 34
    MSG_TYPE = 35
    NEW_SEQ_NO = 36
    ORDER_ID = 37
    ORDER_QTY = 38
    ORD_STATUS = 39
    ORD_TYPE = 40
    ORIG_CL_ORD_ID = 41
    POSS_DUP_FLAG = 43
    PRICE = 44
    REF_SEQ_NUM = 45
    SENDER_COMP_ID = 49
    SENDING_TIME = 52
    SIDE = 54
    SYMBOL = 55
    TARGET_COMP_ID = 56
    TEXT = 58
    TIME_IN_FORCE = 59
    TRANSACT_TIME = 60
    ENCRYPT_METHOD = 98
    CXL_REJ_REASON = 102
    ORD_REJ_REASON = 103
    HEART_BT_INT = 108
    TEST_REQ_ID = 112
    ORIG_SENDING_TIME = 122
    GAP_FILL_FLAG = 123
    RESET_SEQ_NUM_FLAG = 141
    EXEC_TYPE = 150
    LEAVES_QTY = 151
    REF_TAG_ID = 371
    REF_MSG_TYPE = 372
    SESSION_REJECT_REASON = 373
    BUSINESS_REJECT_REF_ID = 379
    BUSINESS_REJECT_REASON = 380
    CXL_REJ_RESPONSE_TO = 434
    USERNAME = 553
    PASSWORD = 554  # noqa: S105 - a tag number, not a password


class MsgType(StrEnum):
    """Message types (35) the session and application layers speak."""

    HEARTBEAT = "0"
    TEST_REQUEST = "1"
    RESEND_REQUEST = "2"
    REJECT = "3"
    SEQUENCE_RESET = "4"
    LOGOUT = "5"
    EXECUTION_REPORT = "8"
    ORDER_CANCEL_REJECT = "9"
    LOGON = "A"
    NEW_ORDER_SINGLE = "D"
    ORDER_CANCEL_REQUEST = "F"
    ORDER_STATUS_REQUEST = "H"
    BUSINESS_MESSAGE_REJECT = "j"


ADMIN_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})
"""Session-level message types: never re-sent, replaced by a GapFill on resend."""

HEADER_TAGS = frozenset({8, 9, 10, 34, 35, 43, 49, 52, 56, 97, 122})
"""Header and trailer tags rebuilt on every (re)send."""


class FixEncodeError(ValueError):
    """A tag value cannot be put on the wire (control character, non-ASCII, empty)."""


_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def check_value(tag: int, value: object) -> str:
    """Return ``value`` as the text of tag ``tag``; raise ``FixEncodeError`` if unsafe.

    Safe means non-empty printable ASCII: no SOH, no other control character, no DEL,
    nothing outside ASCII.
    """
    out = value if isinstance(value, str) else str(value)
    if _PRINTABLE.fullmatch(out):
        return out
    if not out:
        raise FixEncodeError(f"tag {tag}: empty value refused")
    bad = _UNPRINTABLE.search(out)
    what = "SOH (tag injection)" if bad and bad.group() == "\x01" else "a control or non-ASCII character"
    raise FixEncodeError(
        f"tag {tag}: value {out[:64]!r} contains {what} {bad.group() if bad else ''!r} "
        f"at {bad.start() if bad else '?'}; refused"
    )


def encode(pairs: list[tuple[int, str]]) -> bytes:
    """Write a message of checked ``(tag, text)`` pairs, the bytes ``simplefix.FixMessage.encode`` writes.

    BeginString (8) and MsgType (35) come from the pairs (the last of each), BodyLength (9)
    and CheckSum (10) are computed; other 8/9/35/10 pairs are left out, as simplefix does.
    The values must have passed ``check_value`` (printable ASCII).
    """
    begin = msg_type = ""
    body: list[str] = []
    for tag, value in pairs:
        if tag == 8:
            begin = value
        elif tag == 35:
            msg_type = value
        elif tag not in (9, 10):
            body.append(f"{tag}={value}\x01")
    if not begin or not msg_type:
        raise ValueError("no BeginString (8) or MsgType (35)")
    rest = f"35={msg_type}\x01{''.join(body)}".encode("ascii")
    head = f"8={begin}\x019={len(rest)}\x01".encode("ascii")
    total = (sum(head) + sum(rest)) % 256
    return b"%s%s10=%03d\x01" % (head, rest, total)


def safe_text(value: str, limit: int = 256) -> str:
    """Return free text fit for Text (58): unprintable characters become ``?``, cut."""
    return _UNPRINTABLE.sub("?", value)[:limit] or "-"


class FrameProblem(StrEnum):
    """Why a frame was dropped before parsing."""

    CHECKSUM = "bad checksum"
    BODY_LENGTH = "bad body length"
    GARBLED = "garbled"


@dataclass(frozen=True, slots=True)
class Frame:
    """One message cut from the byte stream: its raw bytes and, if any, what is wrong."""

    raw: bytes
    problem: FrameProblem | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AppMessage:
    """An application message body to be sent: its type and fields, header-less."""

    msg_type: str
    fields: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        check_value(Tag.MSG_TYPE, self.msg_type)
        for tag, value in self.fields:
            check_value(tag, value)

    def get(self, tag: int) -> str | None:
        """Return the first value of ``tag``, or None."""
        for t, v in self.fields:
            if t == tag:
                return v
        return None


def checksum(data: bytes) -> int:
    """Return the FIX checksum (sum of bytes modulo 256) of ``data``."""
    return sum(data) % 256


class FixFramer:
    """Cut a TCP byte stream into FIX frames, checking BodyLength and CheckSum."""

    def __init__(self) -> None:
        self._buf = b""

    def reset(self) -> None:
        """Discard buffered bytes (on reconnect)."""
        self._buf = b""

    def feed(self, data: bytes) -> list[Frame]:
        """Append bytes; return every complete frame now available, good or bad."""
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                break
            frames.append(frame)
        if len(self._buf) > MAX_BUFFER:
            frames.append(Frame(self._buf[:200], FrameProblem.GARBLED, "buffer overflow"))
            self._buf = b""
        return frames

    def _next(self) -> Frame | None:
        start = _BEGIN.search(self._buf)
        if start is None:
            self._buf = self._buf[-16:]  # a BeginString may be arriving
            return None
        if start.start() > 0:
            junk, self._buf = self._buf[: start.start()], self._buf[start.start() :]
            if junk.strip(b"\r\n\x01 "):
                return Frame(junk, FrameProblem.GARBLED, "bytes before BeginString")
        header = _HEADER.match(self._buf)
        if header is None:
            if SOH in self._buf[start.end() - start.start() :]:
                return self._drop_to_trailer("BodyLength (9) missing after BeginString")
            return None
        try:
            length = int(header.group("len"))
        except ValueError:
            return self._drop_to_trailer("BodyLength (9) is not a number")
        body_start = header.end()
        end = body_start + length
        if (
            length > 0
            and len(self._buf) >= end + 7
            and self._buf[end - 1 : end] == SOH
            and self._buf[end : end + 3] == b"10="
            and self._buf[end + 3 : end + 6].isdigit()
            and self._buf[end + 6 : end + 7] == SOH
        ):
            raw, self._buf = self._buf[: end + 7], self._buf[end + 7 :]
            return _check_sum(raw, end)
        trailer = _TRAILER.search(self._buf, body_start - 1)
        if trailer is None:
            return None
        nxt = _BEGIN.search(self._buf, body_start, trailer.start())
        if nxt is not None:
            raw, self._buf = self._buf[: nxt.start()], self._buf[nxt.start() :]
            return Frame(raw, FrameProblem.GARBLED, "message truncated by the next one")
        raw, self._buf = self._buf[: trailer.end()], self._buf[trailer.end() :]
        actual = trailer.start() + 1 - body_start
        return Frame(raw, FrameProblem.BODY_LENGTH, f"BodyLength {length}, actual {actual}")

    def _drop_to_trailer(self, why: str) -> Frame | None:
        trailer = _TRAILER.search(self._buf)
        if trailer is None:
            return None
        raw, self._buf = self._buf[: trailer.end()], self._buf[trailer.end() :]
        return Frame(raw, FrameProblem.GARBLED, why)


def _check_sum(raw: bytes, trailer_at: int) -> Frame:
    declared = int(raw[trailer_at + 3 : trailer_at + 6])
    actual = checksum(raw[:trailer_at])
    if declared != actual:
        return Frame(raw, FrameProblem.CHECKSUM, f"CheckSum {declared:03d}, actual {actual:03d}")
    return Frame(raw)


class Message(simplefix.FixMessage):
    """A parsed ``simplefix.FixMessage`` whose ``get`` of a first occurrence is a dict lookup.

    The index is built when the message is parsed and dropped as soon as the message is
    changed (``append_pair``, ``remove``); ``get`` then falls back to simplefix's scan.
    """

    def __init__(self, pairs: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        self.pairs = pairs
        self._first: dict[bytes, bytes] | None = dict(reversed(pairs))

    def pairs_by_tag(self) -> dict[bytes, bytes]:
        """Return the first value of each tag (the index; empty once the message changed)."""
        return self._first or {}

    def get(self, tag: object, nth: int = 1) -> bytes | None:
        """Return the ``nth`` value of ``tag`` (see ``simplefix.FixMessage.get``)."""
        first = self._first
        if first is None or nth != 1:
            return super().get(tag, nth)
        key = _TAG_BYTES.get(tag)
        if key is None:
            key = simplefix.message.fix_tag(tag)
            if type(tag) is int:
                _TAG_BYTES[tag] = key
        return first.get(key)

    def append_pair(self, tag: object, value: object, header: bool = False) -> None:
        """Append a field (see simplefix); drops the index."""
        self._first = None
        super().append_pair(tag, value, header)

    def remove(self, tag: object, nth: int = 1) -> bytes | None:
        """Remove a field (see simplefix); drops the index."""
        self._first = None
        return super().remove(tag, nth)


_TAG_BYTES: dict[object, bytes] = {}
_RAW_LEN_TAGS = frozenset(str(t).encode() for t in simplefix.parser.RAW_LEN_TAGS)
"""Length fields of raw data (whose value may hold SOH): such a message takes simplefix's parser."""


_PLAIN_FIELDS = re.compile(rb"(?:[1-9][0-9]*+=[^\x01]++\x01)++")
"""Fields of digits without a leading zero, ``=`` and a non-empty value, to the end."""
_FIELD = re.compile(rb"([0-9]+)=([^\x01]+)\x01")


def parse(raw: bytes) -> simplefix.FixMessage:
    """Parse one checked frame into a ``simplefix.FixMessage``; raise ValueError if garbled.

    A frame of plain ``tag=value`` fields (every tag digits without a leading zero, every
    value non-empty, BeginString first, CheckSum last and only last, no raw data) is split
    directly, by regular expressions, into the same pairs simplefix's byte-by-byte parser
    would make; anything else goes through ``simplefix.FixParser`` and its errors.
    """
    if type(raw) is bytes and raw[:2] == b"8=" and _PLAIN_FIELDS.fullmatch(raw) \
            and raw.count(b"\x0110=") == 1:  # a SOH starts every field but the first
        pairs = _FIELD.findall(raw)
        if len(pairs) > 2 and pairs[-1][0] == b"10":
            msg = Message(pairs)
            if _RAW_LEN_TAGS.isdisjoint(msg.pairs_by_tag()):
                return msg
    return _parse_slowly(raw)


def _parse_slowly(raw: bytes) -> simplefix.FixMessage:
    parser = simplefix.FixParser(allow_empty_values=False)
    parser.append_buffer(raw)
    try:
        msg = parser.get_message()
    except simplefix.errors.ParsingError as exc:
        raise ValueError(f"unparsable: {type(exc).__name__} {exc}") from None
    if msg is None:
        raise ValueError("incomplete message")
    return msg


def text(msg: simplefix.FixMessage, tag: int) -> str | None:
    """Return a field of a parsed message as text (None when absent)."""
    value = msg.get(tag)
    return None if value is None else bytes(value).decode("latin-1")


def integer(msg: simplefix.FixMessage, tag: int) -> int | None:
    """Return a field as an int (None when absent or not a number)."""
    value = text(msg, tag)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def decimal(msg: simplefix.FixMessage, tag: int) -> Decimal | None:
    """Return a field as a finite Decimal (None when absent or not a number)."""
    value = text(msg, tag)
    if value is None:
        return None
    try:
        out = Decimal(value)
    except ArithmeticError:
        return None
    return out if out.is_finite() else None


def fmt_decimal(value: Decimal) -> str:
    """Format a Decimal the FIX way: plain digits, no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def fmt_time(value: datetime) -> str:
    """Format a UTCTimestamp with milliseconds: ``YYYYMMDD-HH:MM:SS.sss``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y%m%d-%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def parse_time(value: str | None) -> datetime | None:
    """Parse a UTCTimestamp (seconds, milli- or microseconds); None if absent or bad."""
    if not value:
        return None
    n = len(value)
    shaped = n == 17 or (n in (21, 24) and value[17] == ".")
    if shaped and value[8] == "-" and value[11] == value[14] == ":":
        digits = value[:8] + value[9:11] + value[12:14] + value[15:17] + value[18:]
        if digits.isdigit() and digits.isascii():  # the common case, without strptime
            try:
                return datetime(
                    int(value[:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]), int(value[12:14]),
                    int(value[15:17]), int(value[18:].ljust(6, "0")) if n > 17 else 0, tzinfo=UTC,
                )
            except ValueError:
                pass  # a date that does not exist: strptime below says so too
    return parse_time_strptime(value)


def parse_time_strptime(value: str) -> datetime | None:
    """Parse a UTCTimestamp with ``strptime``: what ``parse_time`` does, slowly, for any shape."""
    for fmt in ("%Y%m%d-%H:%M:%S.%f", "%Y%m%d-%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def to_wire_log(raw: bytes) -> str:
    """Render wire bytes for logs and transcripts, with ``|`` for SOH."""
    return raw.replace(SOH, b"|").decode("latin-1")


def from_wire_log(line: str) -> bytes:
    """Turn a transcript line (``|`` for SOH) back into wire bytes."""
    return line.replace("|", "\x01").encode("latin-1")
