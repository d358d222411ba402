"""Building blocks shared by every stream model: exact numbers, UTC times, the codec.

Every record is a frozen pydantic model that rejects unknown fields. Money and
quantities are ``Decimal``; prices must be finite and positive, quantities finite and
positive (or non-negative where zero has a meaning, e.g. a flat position). Times are
tz-aware and normalised to UTC with millisecond precision.

One JSON encoding serves every stream and profile: the model's JSON with a leading
``"_v"`` schema version. ``decode`` raises ``DecodeError`` with a human reason, which
the flows route to dead_letters.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, ValidationError

SCHEMA_VERSION = 1


class DecodeError(ValueError):
    """A payload could not be turned into a valid record; ``str(err)`` is the reason."""


def _utc_ms(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (UTC)")
    value = value.astimezone(UTC)
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


def _fmt_ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


UtcDatetime = Annotated[datetime, AfterValidator(_utc_ms), PlainSerializer(_fmt_ts, return_type=str)]
"""A tz-aware timestamp kept in UTC at millisecond precision; JSON ``...T..:..:..sssZ``."""

Money = Annotated[Decimal, AfterValidator(_finite)]
"""Any finite amount of money (cash, PnL), positive or negative."""

Price = Annotated[Decimal, AfterValidator(_positive)]
"""A finite price greater than zero."""

Qty = Annotated[Decimal, AfterValidator(_positive)]
"""A finite order or fill quantity greater than zero."""

NonNegative = Annotated[Decimal, AfterValidator(_non_negative)]
"""A finite amount that may be zero but not negative (volume, limits, leaves qty)."""

SignedQty = Annotated[Decimal, AfterValidator(_finite)]
"""A finite signed quantity (net position: long > 0, short < 0)."""


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
    """Decode one JSON payload into ``model``; raise ``DecodeError`` with a reason."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"bad JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError(f"expected a JSON object, got {type(data).__name__}")
    version = data.pop("_v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DecodeError(f"unsupported schema version {version!r} (this build reads {SCHEMA_VERSION})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(_reason(exc)) from None


def validate(model: type[R], data: dict[str, Any]) -> R:
    """Validate a Python dict into ``model``; raise ``DecodeError`` with a reason."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(_reason(exc)) from None


def is_finite_float(value: float | None) -> bool:
    """Tell whether ``value`` is a finite float (None counts as finite: 'no value')."""
    return value is None or math.isfinite(value)
