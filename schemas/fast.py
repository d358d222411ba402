"""The cheap internal codec: the same JSON as ``schemas.base``, without pydantic on the hot path.

``encode`` (``fast_encode``) writes exactly the bytes ``schemas.base.encode`` writes (the
pydantic path) for every model it has a plan for, and falls back to the pydantic path
for the rest and for the rare value it cannot write the same way. ``fast_decode`` is for
internal hops only: a record written by one of our jobs and read by another, already
validated when it was built. It checks the shape (JSON, field names, types, decimals
and UTC times that parse) but none of the models' validators; whatever does not pass
goes through the validating ``schemas.base.decode``, so a bad record still becomes a
``DecodeError`` with a reason (and a dead letter), never a crash.

The schemas stay the single definition: a plan is derived from a model's fields when
the model is first used (a msgspec ``Struct`` with the same fields and types for the
decode, and the list of time and nested-model fields for the encode). A model with a
field type the plan does not know (``Any``) is left to pydantic entirely.

Why the encode is byte-identical: msgspec writes strings, ints, bools, ``null``,
``Decimal`` (as ``str(value)``) and floats as pydantic-core does, but for two things,
both handled here: times (``UtcDatetime`` is ``...T..:..:..sssZ``; msgspec would write
microseconds) are formatted before, and floats with a positive exponent (``1e+22`` in
pydantic, ``1e22`` in msgspec) send the record to the pydantic path.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin

import msgspec
from pydantic import AfterValidator, BaseModel

from schemas.base import SCHEMA_VERSION, Record, _absent, _fmt_ts, decode, encode
from schemas.market import INDICATOR_COLUMN  # SmaWide's, the one model that keeps extra columns

__all__ = ["fast_decode", "fast_encode", "supported"]

R = TypeVar("R", bound=Record)

_HEAD = b'{"_v":%d,' % SCHEMA_VERSION
_ENCODER = msgspec.json.Encoder()
_ANY = msgspec.json.Decoder()
_POSITIVE_EXPONENT = re.compile(rb"e[1-9]")
"""A float msgspec writes as ``1e22`` where pydantic writes ``1e+22`` (a false positive,
e.g. a symbol ``e5``, only costs the pydantic path). A literal first: ``[0-9]e[0-9]``
costs ten times as much."""

_set = object.__setattr__
_new = object.__new__
_GOOD_IDS_MAX = 4096
"""Ids remembered as checked, per field (then forgotten all at once)."""


class Unsupported(TypeError):
    """A field type the fast codec has no plan for (the model stays on pydantic)."""


def _ts(value: datetime) -> Any:
    """Write a time as ``base._fmt_ts`` does: ``YYYY-MM-DDTHH:MM:SS.sssZ``.

    msgspec's C formatter writes a UTC time as ``...SS.ffffffZ``, or ``...SSZ`` when the
    microseconds are 0: cut or pad its output (milliseconds truncated, as ``_fmt_ts``).
    """
    if value.tzinfo is not UTC:  # naive or another zone: _fmt_ts prints the fields as they are
        return _fmt_ts(value)
    text = _ENCODER.encode(value)
    if len(text) == 29:  # "YYYY-MM-DDTHH:MM:SS.ffffffZ"
        return msgspec.Raw(text[:24] + b'Z"')
    if len(text) == 22:  # "YYYY-MM-DDTHH:MM:SSZ"
        return msgspec.Raw(text[:20] + b'.000Z"')
    return _fmt_ts(value)


@dataclass(frozen=True)
class _Plan:
    model: type[BaseModel]
    names: tuple[str, ...]
    times: tuple[str, ...]
    """Fields holding a datetime (or None)."""
    decimals: tuple[str, ...]
    """Fields holding a Decimal (or None): msgspec reads "NaN" and "Infinity" too."""
    ids: tuple[tuple[str, Any, set[str]], ...]
    """(field, check, values that passed it) for text fields with a check of their own
    (``Name``, ``RecordId``): an id with a space, a ``|`` or a control character would
    corrupt keys. Symbols and accounts repeat: a set lookup instead of the regex."""
    nested: tuple[tuple[str, _Plan, bool], ...]
    """(field, plan of its model, is a list of them) for fields holding models."""
    omitted: tuple[str, ...]
    """Fields left out of the JSON when None (``schemas.base.Stamp``): the encode drops
    them, the decode reads them as optional (``UNSET`` when absent, so the fields set is
    pydantic's)."""
    extra: bool
    """The model keeps unknown columns (``extra="allow"``, e.g. SmaWide's indicators)."""
    floats: bool
    """A float may be written (a float field, nested or in a dict, or extra columns)."""
    decoder: msgspec.json.Decoder[Any]
    struct: type[msgspec.Struct]
    fields_set: set[str]
    """Every field: a full payload sets them all. Shared by the records a plan builds
    (pydantic copies it in ``model_copy``; a frozen record never changes it)."""

    def to_dict(self, rec: BaseModel) -> dict[str, Any]:
        out = dict(rec.__dict__)
        for name in self.times:
            value = out[name]
            if value is not None:
                out[name] = _ts(value)
        for name, plan, many in self.nested:
            value = out[name]
            if value is not None:
                out[name] = [plan.to_dict(v) for v in value] if many else plan.to_dict(value)
        for name in self.omitted:
            if out[name] is None:
                del out[name]
        extra = rec.__pydantic_extra__
        if extra:
            out.update(extra)
        return out

    def build(self, fields: dict[str, Any], extra: dict[str, Any] | None,
              fields_set: set[str] | None = None) -> BaseModel:
        fields_set = fields_set or self.fields_set
        for name in self.omitted:
            if fields[name] is msgspec.UNSET:
                fields[name] = None
                fields_set = fields_set - {name}  # a new set: the shared one never changes
        for name in self.times:
            value = fields[name]
            # only what the validating path would keep as it is: UTC, whole milliseconds
            if value is not None and (value.tzinfo is not UTC or value.microsecond % 1000):
                raise ValueError("time not in canonical UTC milliseconds")
        for name, check, good in self.ids:
            value = fields[name]
            if value is not None and value not in good:
                check(value)
                if len(good) >= _GOOD_IDS_MAX:
                    good.clear()
                good.add(value)
        for name in self.decimals:
            value = fields[name]
            if value is not None and not value.is_finite():
                raise ValueError("not a finite number")
        for name, plan, many in self.nested:
            value = fields[name]
            if value is not None:
                fields[name] = ([plan.build(msgspec.structs.asdict(v), None) for v in value] if many
                                else plan.build(msgspec.structs.asdict(value), None))
        rec = _new(self.model)  # BaseModel has no __new__ of its own
        _set(rec, "__dict__", fields)
        _set(rec, "__pydantic_fields_set__", fields_set)
        _set(rec, "__pydantic_extra__", extra)
        _set(rec, "__pydantic_private__", None)
        return rec


def _struct_type(tp: Any, nested: dict[type[BaseModel], _Plan]) -> Any:
    """Map a pydantic field annotation to the msgspec type that decodes its JSON."""
    origin = get_origin(tp)
    if origin is None:
        return _leaf_type(tp, nested)
    args = get_args(tp)
    if origin is typing.Annotated:
        return _struct_type(args[0], nested)
    if origin in (Union, types.UnionType):
        if all(get_origin(a) is typing.Literal or _struct_type(a, nested) is str for a in args):
            return str  # Name | Literal["*"]
        return Union[tuple(_struct_type(a, nested) for a in args)]  # noqa: UP007 - built at run time
    if origin is list:
        return list[_struct_type(args[0], nested)]  # type: ignore[misc]
    if origin is dict and args[0] is str:
        return dict[str, _struct_type(args[1], nested)]  # type: ignore[misc]
    if origin is typing.Literal and all(isinstance(a, str) for a in args):
        return str
    raise Unsupported(f"field type {tp!r}")


def _leaf_type(tp: Any, nested: dict[type[BaseModel], _Plan]) -> Any:
    if tp is type(None) or tp in (str, int, float, bool, Decimal, datetime):
        return tp
    if isinstance(tp, type):
        if issubclass(tp, BaseModel):
            return _plan_of(tp, nested).struct
        if issubclass(tp, Enum) and issubclass(tp, str):
            return tp
    raise Unsupported(f"field type {tp!r}")


def _has_float(tp: Any) -> bool:
    if tp is float:
        return True
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return any(_has_float(t) for t in tp.__annotations__.values())
    return any(_has_float(a) for a in get_args(tp))


def _text_checks(tp: Any, metadata: list[Any]) -> list[Any]:
    """Return the after-validators of a text field (alone or optional), else []."""
    if tp is str:
        return [m.func for m in metadata if isinstance(m, AfterValidator)]
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and get_origin(args[0]) is typing.Annotated and get_args(args[0])[0] is str:
            return [m.func for m in args[0].__metadata__ if isinstance(m, AfterValidator)]
    return []


def _holds(tp: Any, kind: type) -> type | None:
    """Return the class of ``kind`` a field holds (alone, optional, or a list of), else None."""
    args = [a for a in (get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,))
            if a is not type(None)]
    if len(args) != 1:
        return None
    (inner,) = args
    if get_origin(inner) is typing.Annotated:
        inner = get_args(inner)[0]
    if get_origin(inner) is list:
        inner = get_args(inner)[0]
    return inner if isinstance(inner, type) and issubclass(inner, kind) else None


def _plan_of(model: type[BaseModel], nested: dict[type[BaseModel], _Plan], *, top: bool = False) -> _Plan:
    if not top and model in nested:
        return nested[model]
    fields = model.model_fields
    names = tuple(fields)
    annotations: dict[str, Any] = {}
    times: list[str] = []
    decimals: list[str] = []
    ids: list[tuple[str, Any, set[str]]] = []
    subs: list[tuple[str, _Plan, bool]] = []
    omitted: list[str] = []
    defaults: dict[str, Any] = {}
    for name, info in fields.items():
        if info.alias or info.serialization_alias or info.exclude:
            raise Unsupported(f"{model.__name__}.{name}: alias or exclude")
        tp = info.annotation
        annotations[name] = _struct_type(tp, nested)
        if info.exclude_if is not None:
            if info.exclude_if is not _absent or info.default is not None:
                raise Unsupported(f"{model.__name__}.{name}: exclude_if other than Stamp's")
            omitted.append(name)
            annotations[name] = annotations[name] | msgspec.UnsetType
            defaults[name] = msgspec.UNSET
        if _holds(tp, datetime):
            times.append(name)
        if _holds(tp, Decimal):
            decimals.append(name)
        ids += [(name, check, set()) for check in _text_checks(tp, info.metadata)]
        sub = _holds(tp, BaseModel)
        if sub is not None:
            many = any(get_origin(a) is list for a in (tp, *get_args(tp)))
            subs.append((name, _plan_of(sub, nested), many))
    if model.__pydantic_computed_fields__:
        raise Unsupported(f"{model.__name__}: computed fields")
    extra = model.model_config.get("extra") == "allow"
    ns: dict[str, Any] = {"__annotations__": annotations, **defaults}
    if top and not extra:  # the leading "_v"; an extra model reads it from the dict
        annotations[_VERSION_FIELD] = int
        ns[_VERSION_FIELD] = msgspec.field(default=SCHEMA_VERSION, name="_v")
    struct = types.new_class(f"Fast{model.__name__}", (msgspec.Struct,),
                             {"forbid_unknown_fields": not extra, "kw_only": True},
                             lambda body: body.update(ns))
    floats = extra or any(_has_float(t) for t in annotations.values())
    plan = _Plan(model, names, tuple(times), tuple(decimals), tuple(ids), tuple(subs), tuple(omitted),
                 extra, floats, msgspec.json.Decoder(struct), struct, set(names))
    if not top:
        nested[model] = plan
    return plan


_VERSION_FIELD = "schema_version_"


_PLANS: dict[type[BaseModel], _Plan | None] = {}


def _plan(model: type[BaseModel]) -> _Plan | None:
    try:
        return _PLANS[model]
    except KeyError:
        pass
    try:
        plan: _Plan | None = _plan_of(model, {}, top=True)
    except Unsupported:
        plan = None
    _PLANS[model] = plan
    return plan


def supported(model: type[Record]) -> bool:
    """Tell whether ``model`` has a fast plan (else both functions use the pydantic path)."""
    return _plan(model) is not None


def fast_encode(record: Record) -> bytes:
    """Encode a record exactly as ``schemas.base.encode`` does, faster."""
    plan = _PLANS.get(type(record)) or _plan(type(record))
    if plan is None:
        return encode(record)
    try:
        body = _ENCODER.encode(plan.to_dict(record))
    except (TypeError, ValueError, UnicodeEncodeError):  # a lone surrogate: pydantic says why
        return encode(record)
    if plan.floats and _POSITIVE_EXPONENT.search(body) is not None:
        return encode(record)
    return _HEAD + body[1:] if len(body) > 2 else b'{"_v":%d}' % SCHEMA_VERSION


def fast_decode(model: type[R], raw: bytes | str) -> R:
    """Decode a record an internal hop wrote; anything unusual goes through ``decode``.

    Raises ``DecodeError`` (from the validating path) exactly when ``decode`` would.
    """
    plan = _PLANS.get(model) or _plan(model)
    if plan is None or not isinstance(raw, bytes) or len(raw) > model.max_record_bytes:
        return decode(model, raw)
    try:
        if plan.extra:
            layout = _LAYOUTS.get(model)
            if layout is not None and (rec := layout.decode(plan, raw)) is not None:
                return rec  # type: ignore[return-value]
            data = _ANY.decode(raw)
            fixed = {name: data.pop(name) for name in plan.names if name in data}
            fields = msgspec.structs.asdict(msgspec.convert(fixed, plan.struct))
            fields_set = _plain_columns(plan, data) if data.pop("_v", None) == SCHEMA_VERSION else None
            if fields_set is None:
                return decode(model, raw)
            rec = plan.build(fields, data, fields_set)
            _LAYOUTS[model] = _Layout.of(plan, tuple(data), fields_set)
        else:
            struct = plan.decoder.decode(raw)
            fields = msgspec.structs.asdict(struct)
            if fields.pop(_VERSION_FIELD) != SCHEMA_VERSION:
                return decode(model, raw)
            rec = plan.build(fields, None)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, KeyError, AttributeError):
        return decode(model, raw)
    return rec  # type: ignore[return-value]


@dataclass(frozen=True)
class _Layout:
    """The extra columns the last record of an extra-columns model had, as one Struct.

    Job A writes the same columns in every row: decoding them typed, in one C call,
    costs half the generic path (untyped dict, split, convert, check each column).
    """

    extras: tuple[str, ...]
    fields_set: set[str]
    decoder: msgspec.json.Decoder[Any]

    @classmethod
    def of(cls, plan: _Plan, extras: tuple[str, ...], fields_set: set[str]) -> _Layout:
        annotations = {**plan.struct.__annotations__, **dict.fromkeys(extras, float | int | None)}
        annotations[_VERSION_FIELD] = int
        ns = {"__annotations__": annotations, _VERSION_FIELD: msgspec.field(name="_v"),
              **dict.fromkeys(plan.omitted, msgspec.UNSET)}
        struct = types.new_class(f"Fast{plan.model.__name__}Columns", (msgspec.Struct,),
                                 {"forbid_unknown_fields": True, "kw_only": True, "array_like": False},
                                 lambda body: body.update(ns))
        return cls(extras, fields_set, msgspec.json.Decoder(struct))

    def decode(self, plan: _Plan, raw: bytes) -> BaseModel | None:
        """Return the record, or None when ``raw`` has other columns (or is not right)."""
        try:
            values = msgspec.structs.astuple(self.decoder.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if values[-1] != SCHEMA_VERSION:
            return None
        k = len(plan.names)
        return plan.build(dict(zip(plan.names, values[:k], strict=True)),
                          dict(zip(self.extras, values[k:-1], strict=True)), self.fields_set)


_LAYOUTS: dict[type[BaseModel], _Layout] = {}

_FLOATS = (float, int, type(None))
_COLUMNS_SEEN: dict[tuple[type[BaseModel], tuple[str, ...]], set[str]] = {}
"""Extra column names already checked, with the fields set of a record that has them."""


def _plain_columns(plan: _Plan, extra: dict[str, Any]) -> set[str] | None:
    """Check extra columns (numbers or null, names the model accepts); None if they are not.

    Return the record's fields set (every field and extra column), shared per column set.
    """
    for value in extra.values():
        if type(value) not in _FLOATS:  # msgspec never yields inf/nan from JSON
            return None
    names = tuple(extra)
    known = _COLUMNS_SEEN.get((plan.model, names))
    if known is not None:
        return known
    if not all(INDICATOR_COLUMN.match(n) for n in names):
        return None
    fields_set = plan.fields_set.union(names)
    if len(_COLUMNS_SEEN) < 64:
        _COLUMNS_SEEN[plan.model, names] = fields_set
    return fields_set
