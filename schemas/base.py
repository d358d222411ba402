"""Building blocks shared by every stream model: exact numbers, UTC times, the codec.

Every record is a frozen pydantic model that rejects unknown fields. Money and
quantities are ``Decimal``; prices must be finite and positive, quantities finite and
positive (or non-negative where zero has a meaning, e.g. a flat position). Times are
tz-aware and normalised to UTC with millisecond precision.

Every money or quantity field that a record *carries in* (``Price``, ``Qty``,
``NonNegative``, ``Money``, ``SignedQty``) must fit the architecture's
``DECIMAL(18,8)``: an absolute value below ``10**10`` with at most 8 decimal places.
A value that does not fit is *refused*, never rounded: a tick priced ``1e30`` or
``1.000000000000000000000000000001`` is hostile or broken input, and rounding it would
hide that; the record becomes a ``DecodeError`` and goes to dead_letters. Bounded
inputs are what keeps the arithmetic downstream (paper venue, accounting in the 38-digit
``MONEY`` context of operators/accounting.py) exact and unable to overflow.

Values *computed* by the jobs are typed differently (see ``AvgPrice`` and ``Derived``):
an average price is a division and a PnL a product, so they may carry more than 8
places; they are rounded half-even to 8 places (the table's scale) instead of refused,
because refusing a job's own output would make that job crash on every replay.

Identities (symbols, accounts, strategy ids, record ids) follow one pattern,
``ID_PATTERN``: printable ASCII letters, digits and ``. _ : / @ # + -``, no space, no
control character, no ``|`` (the separator of composite keys), 1 to 64 characters for
names (``Name``, ``OrderId``) and 1 to 160 for derived record ids (``RecordId``: a
signal id is ``strategy:SYMBOL:seq``, an exec id ``<order id>-<n>``). Free text
(reasons, messages) is ``FreeText``: any string, cut to ``MAX_TEXT_CHARS``. Every
stream has a maximum encoded record size (``Record.max_record_bytes``, 64 KiB unless a
model says otherwise); ``decode`` refuses a larger payload before parsing it.

One JSON encoding serves every stream and profile: the model's JSON with a leading
``"_v"`` schema version. ``decode`` raises ``DecodeError`` with a human reason, which
the flows route to dead_letters.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, Overflow
from enum import StrEnum
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

SCHEMA_VERSION = 1

DECIMAL_PLACES = 8
"""Scale of every money and quantity column: DECIMAL(18,8)."""

DECIMAL_LIMIT = Decimal(10) ** (18 - DECIMAL_PLACES)
"""Every money and quantity value is strictly below this in absolute value (10**10)."""

QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)
"""The smallest step of a DECIMAL(18,8) value: 0.00000001."""

_WIDE = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])
"""Context wide enough to quantize any value this module accepts without raising."""

ID_CHARS = r"A-Za-z0-9._:/@#+\-"
"""Characters an identity may use: printable ASCII, no space, no control char, no ``|``."""

NAME_MAX = 64
"""Longest symbol, account, strategy id, venue name or order id."""

RECORD_ID_MAX = 160
"""Longest derived record id (signal id = strategy:SYMBOL:seq, exec id = order id + n)."""

ID_PATTERN = rf"^[{ID_CHARS}]{{1,{NAME_MAX}}}$"
"""The identity pattern of a name (``Name``, ``OrderId``)."""

RECORD_ID_PATTERN = rf"^[{ID_CHARS}]{{1,{RECORD_ID_MAX}}}$"
"""The identity pattern of a derived record id (``RecordId``)."""

MAX_TEXT_CHARS = 1024
"""Free text (reasons, messages) longer than this is cut to this many characters."""

MAX_RECORD_BYTES = 64 * 1024
"""Default largest encoded record ``decode`` accepts (``Record.max_record_bytes``)."""


class DecodeError(ValueError):
    """A payload could not be turned into a valid record; ``str(err)`` is the reason."""


def _utc_ms(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (UTC)")
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("timestamp out of range in UTC") from None
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return value


def _positive(value: Decimal) -> Decimal:
    if _finite(value) <= 0:
        raise ValueError("must be greater than zero")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if _finite(value) < 0:
        raise ValueError("must not be negative")
    return value


def fits_decimal(value: Decimal) -> bool:
    """Tell whether ``value`` fits DECIMAL(18,8): finite, ``|v| < 10**10``, <= 8 places."""
    if not value.is_finite() or value.copy_abs() >= DECIMAL_LIMIT:  # copy_abs: no context
        return False
    return value.quantize(QUANTUM, context=_WIDE) == value


def _fits(value: Decimal) -> Decimal:
    _finite(value)
    if value.copy_abs() >= DECIMAL_LIMIT:
        raise ValueError(f"out of range: |value| must be below 10^{18 - DECIMAL_PLACES} (DECIMAL(18,8))")
    quantized = value.quantize(QUANTUM, context=_WIDE)
    if quantized != value:
        raise ValueError(f"more than {DECIMAL_PLACES} decimal places (DECIMAL(18,8))")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and not -DECIMAL_PLACES <= exponent <= 18 - DECIMAL_PLACES:
        return quantized  # same value, sane exponent (0E+99999999, 1.000000000000)
    return value


def quantize8(value: Decimal) -> Decimal:
    """Round a finite value half-even to 8 places; raise ``ValueError`` if it cannot be.

    Works for any finite value below ``10**70`` whatever the current decimal context.
    """
    _finite(value)
    if value.adjusted() > 70:  # before any arithmetic: 1E+999999999 would overflow
        raise ValueError("out of range: too large to be a money or quantity value")
    return value.quantize(QUANTUM, context=_WIDE)


def _avg_price(value: Decimal) -> Decimal:
    out = quantize8(value)
    if out < 0:
        raise ValueError("must not be negative")
    if out >= DECIMAL_LIMIT:
        raise ValueError(f"out of range: must be below 10^{18 - DECIMAL_PLACES} (DECIMAL(18,8))")
    return out


_BAD_ID_CHAR = re.compile(rf"[^{ID_CHARS}]")


def _identity(limit: int) -> Any:
    pattern = re.compile(rf"[{ID_CHARS}]{{1,{limit}}}")

    def check(value: str) -> str:
        if pattern.fullmatch(value):
            return value
        if not value.strip():
            raise ValueError("must not be blank")
        if len(value) > limit:
            raise ValueError(f"longer than {limit} characters")
        bad = _BAD_ID_CHAR.search(value)
        shown = repr(bad.group()) if bad else "?"
        raise ValueError(
            f"character {shown} not allowed in an id (allowed: letters, digits and . _ : / @ # + -)"
        )

    return check


def _cut_text(limit: int) -> Any:
    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            marker = "...[cut]"
            return value[: limit - len(marker)] + marker
        return value

    return cut


def _fmt_ts(value: datetime) -> str:
    # not strftime: its %Y gives "1", not "0001", for year 1, which nothing reads back
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


UtcDatetime = Annotated[datetime, AfterValidator(_utc_ms), PlainSerializer(_fmt_ts, return_type=str)]
"""A tz-aware timestamp kept in UTC at millisecond precision; JSON ``...T..:..:..sssZ``."""


def _absent(value: object) -> bool:
    return value is None


Stamp = Annotated[UtcDatetime | None, Field(exclude_if=_absent)]
"""An optional wall-clock time a record carries for latency (``entered_at``): UTC,
milliseconds, like ``UtcDatetime``, and *left out of the JSON when None*, so a record
without it encodes exactly as before the field existed (same bytes,
same digests, readable by a build that does not know the field). Observability only: no
job decides anything on it, and ``operators.sequencing.digest`` leaves it out."""


STAMP_FIELDS = ("entered_at",)
"""The names of the ``Stamp`` fields, on the records that carry them."""


def utc_ms(value: datetime) -> datetime:
    """Return a tz-aware time as a ``UtcDatetime`` holds it: UTC, whole milliseconds."""
    return _utc_ms(value)


Money = Annotated[Decimal, AfterValidator(_fits)]
"""An amount of money (cash, fee), positive or negative, that fits DECIMAL(18,8)."""

Price = Annotated[Decimal, AfterValidator(_fits), AfterValidator(_positive)]
"""A price greater than zero that fits DECIMAL(18,8)."""

Qty = Annotated[Decimal, AfterValidator(_fits), AfterValidator(_positive)]
"""An order or fill quantity greater than zero that fits DECIMAL(18,8)."""

NonNegative = Annotated[Decimal, AfterValidator(_fits), AfterValidator(_non_negative)]
"""An amount that may be zero but not negative (volume, limits, leaves qty); DECIMAL(18,8)."""

SignedQty = Annotated[Decimal, AfterValidator(_fits)]
"""A signed quantity (long > 0, short < 0) that fits DECIMAL(18,8)."""

AvgPrice = Annotated[Decimal, AfterValidator(_avg_price)]
"""A computed average price: rounded half-even to 8 places, then ``0 <= v < 10**10``."""

Derived = Annotated[Decimal, AfterValidator(quantize8)]
"""A value a job computes from bounded inputs (position, PnL, exposure, equity):
rounded half-even to 8 places, not refused for being beyond 10**10 (a job must not
crash on its own output; keeping it in range is what the risk limits are for). Only
beyond 10**70, which products of DECIMAL(18,8) inputs cannot reach, is it refused."""

Name = Annotated[str, AfterValidator(_identity(NAME_MAX))]
"""A symbol, account, strategy id, venue or stream name: ``ID_PATTERN`` (1-64 chars)."""

OrderId = Annotated[str, AfterValidator(_identity(NAME_MAX))]
"""An order id (and FIX ClOrdID): ``ID_PATTERN``, at most 64 characters, so the exec
ids derived from it (``<order id>-<n>``) stay within ``RECORD_ID_MAX``."""

RecordId = Annotated[str, AfterValidator(_identity(RECORD_ID_MAX))]
"""A derived record id (signal, exec, event, venue order id): ``RECORD_ID_PATTERN``."""

FreeText = Annotated[str, BeforeValidator(_cut_text(MAX_TEXT_CHARS))]
"""Human text (reason, message): any string, cut to ``MAX_TEXT_CHARS`` characters.
Cut rather than refused: text explains a record, and refusing it would drop the record
it explains (a venue's fill with a long Text)."""

Payload = Annotated[str, BeforeValidator(_cut_text(MAX_RECORD_BYTES))]
"""A dead letter's copy of the bad payload, cut to ``MAX_RECORD_BYTES`` characters (the
source stream and offset still point at the whole record)."""


def to_decimal(value: Any) -> Decimal:
    """Turn a str/int/float/Decimal into a finite ``Decimal`` (floats via ``str``)."""
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    return _finite(out)


class Side(StrEnum):
    """Order or fill side."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """Return +1 for BUY, -1 for SELL."""
        return 1 if self is Side.BUY else -1


class Record(BaseModel):
    """Base of every stream and table record: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    key_fields: ClassVar[tuple[str, ...]] = ()
    """Fields whose values, joined by ``|``, form the record's key."""

    max_record_bytes: ClassVar[int] = MAX_RECORD_BYTES
    """Largest encoded record ``decode`` accepts for this model."""

    def key(self) -> str:
        """Return the record's key (the partitioning key, or the table's primary key)."""
        return "|".join(str(getattr(self, f)) for f in self.key_fields)


R = TypeVar("R", bound=Record)


def encode(record: Record) -> bytes:
    """Encode a record as JSON with the schema version first."""
    body = record.model_dump_json()
    return b'{"_v":%d,' % SCHEMA_VERSION + body[1:].encode() if body != "{}" else b'{"_v":1}'


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode(model: type[R], raw: bytes | str) -> R:
    """Decode one JSON payload into ``model``; raise ``DecodeError`` with a reason.

    ``DecodeError`` is the only exception this raises for any ``bytes`` or ``str``.
    """
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate can never be written back
            raise DecodeError(f"bad JSON: {str(exc)[:200]}") from None
    limit = model.max_record_bytes
    if len(raw) > limit:
        raise DecodeError(f"record too large: {len(raw)} bytes, the limit is {limit}")
    try:
        # json.loads(raw, parse_float=...) in two steps, with one decoder made once
        # (json.loads builds a JSONDecoder per call when given an option)
        data = _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError,
        # an integer beyond int_max_str_digits, nesting deeper than the stack
        raise DecodeError(f"bad JSON: {str(exc)[:200]}") from None
    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(data):
        raise DecodeError("bad JSON: a \\u escape makes a lone surrogate (not valid UTF-8)")
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object, got {type(data).__name__}")
    version = data.pop("_v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DecodeError(f"unsupported schema version {version!r} (this build reads {SCHEMA_VERSION})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(_reason(exc)) from None
    except ArithmeticError as exc:  # defence in depth: a validator's overflow is bad input
        raise DecodeError(f"invalid value: {type(exc).__name__}: {str(exc)[:200]}") from None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(data: Any) -> bool:
    try:
        return _has_lone_surrogate(data)
    except RecursionError:
        return True  # too deep to look at: refused as well


def _has_lone_surrogate(data: Any) -> bool:
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(data, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_has_lone_surrogate(v) for v in data)
    return False


def _parse_float(text: str) -> float | Decimal:
    """Read a JSON number as a float when a float holds it exactly, else as a Decimal.

    ``1.000000000000000000000000000001`` must reach the DECIMAL(18,8) check with all its
    digits (a float would quietly make it 1.0); indicator floats stay floats.
    """
    value = float(text)
    exact = Decimal(text)
    if math.isfinite(value) and Decimal(repr(value)) == exact:
        return value
    if not -_MAX_EXPONENT <= exact.adjusted() <= _MAX_EXPONENT:
        # ``1e999999999`` as a Decimal is exact, but turning it into an int (an id or
        # a seq field) would build a billion-digit number: no field holds such a value,
        # so it reads as NaN, which every numeric field refuses.
        return math.nan
    return exact


_JSON = json.JSONDecoder(parse_float=_parse_float)
"""The decoder of ``decode``: JSON numbers with a fraction or exponent through ``_parse_float``."""


_MAX_EXPONENT = 40


def validate(model: type[R], data: dict[str, Any]) -> R:
    """Validate a Python dict into ``model``; raise ``DecodeError`` with a reason."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(_reason(exc)) from None


def is_finite_float(value: float | None) -> bool:
    """Tell whether ``value`` is a finite float (None counts as finite: 'no value')."""
    return value is None or math.isfinite(value)
