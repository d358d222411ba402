"""The cheap internal codec: the same JSON as ``schemas.base``, without pydantic on the hot path.

``encode`` (``fast_encode``) writes exactly the bytes ``schemas.base.encode`` writes (the
pydantic path) for every model it has a plan for, and falls back to the pydantic path
for the rest and for the rare value it cannot write the same way. ``fast_decode`` is for
internal hops only: a record written by one of our jobs and read by another, already
validated when it was built. It checks the shape (JSON, field names, types, decimals
and UTC times that parse) but none of the models' validators; whatever does not pass
goes through the validating ``schemas.base.decode``, so a bad record still becomes a
``DecodeError`` with a reason (and a dead letter), never a crash.

``checked_decode`` is the same decode for records from outside (feeds, tables people
write, venues' reports): after the shape, every field goes through the model's own
validators (``schemas.built.checking``), so what it returns is what ``decode`` returns,
equal and with the same fields set, and what it refuses, ``decode`` refuses with its
reason. It reads decimals only from JSON strings (``decode`` reads a JSON number through
a float, which msgspec does not) and times with at most six digits of fraction (msgspec
rounds the seventh, pydantic cuts it); anything else goes to ``decode``.

The schemas stay the single definition: a plan is derived from a model's fields when
the model is first used: a msgspec ``Struct`` with the same fields and types for the
decode, and, generated from the field names (``_Source``), the code that turns a record
into the dict msgspec writes and a decoded struct into a checked record, with one line
per field and no loop over the plan per record. A model with a field type the plan does
not know (``Any``) is left to pydantic entirely.

Why the encode is byte-identical: msgspec writes strings, ints, bools, ``null``,
``Decimal`` (as ``str(value)``) and floats as pydantic-core does, but for two things,
both handled here: times (``UtcDatetime`` is ``...T..:..:..sssZ``; msgspec writes
``...SS.ffffffZ``) have their last three zeros cut in one replace of the JSON (or are
formatted before when they are not whole milliseconds), and floats with a positive
exponent (``1e+22`` in pydantic, ``1e22`` in msgspec) send the record to the pydantic path.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin

import msgspec
from pydantic import AfterValidator, BaseModel

from schemas.base import SCHEMA_VERSION, Record, _absent, _fmt_ts, decode, encode
from schemas.built import checking
from schemas.market import INDICATOR_COLUMN  # SmaWide's, the one model that keeps extra columns

__all__ = ["checked_decode", "fast_decode", "fast_encode", "supported"]

R = TypeVar("R", bound=Record)

_ENCODER = msgspec.json.Encoder()
_ANY = msgspec.json.Decoder()
_POSITIVE_EXPONENT = re.compile(rb"e[1-9]")
"""A float msgspec writes as ``1e22`` where pydantic writes ``1e+22`` (a false positive,
e.g. a symbol ``e5``, only costs the pydantic path). A literal first: ``[0-9]e[0-9]``
costs ten times as much."""

_SHAPE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError)
"""What msgspec raises on a payload it cannot read (bytes not UTF-8 inside a string are
a ``UnicodeDecodeError``): the validating decode says why."""

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, KeyError,
                  AttributeError)
"""What a fast decode may raise on a payload that is not as our jobs write it."""

_new = object.__new__
_SLOTS = {f"_set_{name.removeprefix('__pydantic').strip('_')}": BaseModel.__dict__[name].__set__
          for name in ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")}
"""Setters of the four slots of a pydantic model (``_set_dict``, ``_set_fields_set``...),
the descriptors' own: a quarter cheaper than ``object.__setattr__``, which looks them up."""
_GOOD_IDS_MAX = 4096
"""Ids remembered as checked, per field (then forgotten all at once)."""


class Unsupported(TypeError):
    """A field type the fast codec has no plan for (the model stays on pydantic)."""


def _whole_second(value: datetime) -> Any:
    """Write a UTC time on a whole second as msgspec writes the others, ``...SS.000000Z``."""
    text = _ENCODER.encode(value)
    return msgspec.Raw(text[:20] + b'.000000Z"') if len(text) == 22 else _fmt_ts(value)


class _Bad(ValueError):
    """A value the fast decode does not keep as it is: the validating decode reads the record."""


def _remember(good: set[str], check: Any, value: str) -> None:
    """Run an id's check (``ValueError`` if it fails) and remember that ``value`` passed it."""
    check(value)
    if len(good) >= _GOOD_IDS_MAX:
        good.clear()
    good.add(value)


@dataclass(frozen=True)
class _Fields:
    """What a model's fields hold, as far as the codec converts or checks them."""

    model: type[BaseModel]
    names: tuple[str, ...]
    times: tuple[str, ...]
    """Fields holding a datetime (or None)."""
    decimals: tuple[tuple[str, bool], ...]
    """(field, is a list of them) for fields holding Decimals (or None): msgspec reads
    "NaN" and "Infinity" too."""
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
    nullable: frozenset[str]
    """Fields that may hold None (the others need no test for it)."""
    extra: bool
    """The model keeps unknown columns (``extra="allow"``, e.g. SmaWide's indicators)."""

    def fields_sets(self, every: set[str]) -> list[set[str]]:
        """Return a record's fields set for each mask of stamps left out (bit i: ``omitted[i]``).

        Shared by the records built (pydantic copies it in ``model_copy``; a frozen record
        never changes it): no set is made per record.
        """
        return [every - {name for bit, name in enumerate(self.omitted) if mask >> bit & 1}
                for mask in range(1 << len(self.omitted))]


@dataclass(frozen=True)
class _Plan:
    fields: _Fields
    struct: type[msgspec.Struct]
    to_dict: Callable[[BaseModel], tuple[dict[str, Any], int]]
    """A nested record as the dict msgspec writes, and how many times in it msgspec
    writes as ``...SS.fff000Z`` (to cut to ``...SS.fffZ``). Generated code."""
    build: Callable[..., BaseModel]
    """``build(struct, extra=None, fields_set=every field)``: the record of a decoded
    ``struct``, checked (``ValueError`` when a check fails). Generated code."""
    write: Callable[[BaseModel], bytes] | None
    """The encode of a top-level record (else None). Generated code."""
    read: Callable[[bytes], BaseModel] | None
    """The decode of a top-level record without extra columns (else None): one msgspec
    call, the checks, the validating decode for anything unusual. Generated code."""


class _Source:
    """The lines of a generated function and the globals it reads.

    Code is generated once per model (and per column layout of sma_wide rows), so that
    per record the codec runs no loop over a plan, no attribute look-up of one and no
    call per field. Names enter the code only as ``repr()`` literals (field names, and
    extra column names that passed ``INDICATOR_COLUMN``), values never: locals are
    ``v0``, ``v1``... and everything else is a global of the function (``env``).
    """

    def __init__(self, head: str, **env: Any) -> None:
        self.name = head.split()[1].split("(")[0]
        self.lines = [head]
        self.indent = 1
        self.env = {"UTC": UTC, "UNSET": msgspec.UNSET, "VERSION": SCHEMA_VERSION, "_Bad": _Bad,
                    "_remember": _remember, "_new": _new, "_astuple": msgspec.structs.astuple, **_SLOTS,
                    "_fmt_ts": _fmt_ts, "_whole_second": _whole_second, **env}

    def add(self, *lines: str, indent: int = 0) -> None:
        self.lines += ["    " * (self.indent + indent) + line for line in lines]

    def compile(self, label: str) -> Any:
        code = compile("\n".join(self.lines) + "\n", f"<schemas.fast: {label}>", "exec")
        exec(code, self.env)  # noqa: S102 - our own source, built from a model's field names
        return self.env[self.name]


def _add_dict_lines(src: _Source, fields: _Fields) -> None:
    """Turn ``out``, a copy of the record's ``__dict__`` ``d``, into what msgspec writes.

    As pydantic does; count in ``n`` the times msgspec writes as ``...SS.fff000Z``.
    """
    src.add("n = 0")
    for name in fields.times:
        src.add(f"v = d[{name!r}]")
        indent = 0
        if name in fields.nullable:
            src.add("if v is not None:")
            indent = 1
        # msgspec writes a UTC time as ...SS.ffffffZ: with whole milliseconds one replace of
        # the whole JSON cuts them all (a whole second, ...SSZ to msgspec, is padded to
        # ...SS.000000Z first: bars close on whole minutes); anything else (not UTC, or
        # finer than milliseconds: a record not validated) is written by pydantic's formatter
        src.add("if v.tzinfo is UTC and not (us := v.microsecond) % 1000:", "    n += 1", "    if not us:",
                f"        out[{name!r}] = _whole_second(v)", "else:", f"    out[{name!r}] = _fmt_ts(v)",
                indent=indent)
    for i, (name, plan, many) in enumerate(fields.nested):
        src.env[f"sub{i}"] = plan.to_dict
        src.add(f"v = d[{name!r}]", "if v is not None:")
        if many:
            src.add("items = []", "for x in v:", f"    y, k = sub{i}(x)", "    items.append(y)",
                    "    n += k", f"out[{name!r}] = items", indent=1)
        else:
            src.add(f"out[{name!r}], k = sub{i}(v)", "n += k", indent=1)
    for name in fields.omitted:
        src.add(f"if d[{name!r}] is None:", f"    del out[{name!r}]")


def _gen_to_dict(fields: _Fields) -> Any:
    """Generate ``to_dict(rec) -> (dict msgspec writes, count of times to cut)`` (nested)."""
    src = _Source("def to_dict(rec):")
    changes = fields.times or fields.omitted or fields.nested
    src.add("d = rec.__dict__", "out = d.copy()" if changes else "out = d")
    _add_dict_lines(src, fields)
    src.add("return out, n")
    return src.compile(f"{fields.model.__name__} to_dict")


def _gen_write(fields: _Fields, floats: bool) -> Any:
    """Generate ``write(rec) -> bytes``: pydantic's JSON, or pydantic's path when unsure.

    ``_v`` goes first in the dict msgspec writes; the times ending in ``000Z"`` are cut
    in one replace (anything else ending so, a text or a key, changes the count: pydantic
    writes that record); ``floats``: a positive exponent sends the record to pydantic.
    """
    src = _Source("def write(rec):", ENCODE=_ENCODER.encode, PYDANTIC=encode,
                  EXPONENT=_POSITIVE_EXPONENT.search,
                  ENCODE_ERRORS=(TypeError, ValueError, AttributeError, OverflowError, msgspec.EncodeError))
    src.add("try:", "    d = rec.__dict__")
    src.add("    out = {'_v': VERSION, **d, **rec.__pydantic_extra__}" if fields.extra
            else "    out = {'_v': VERSION, **d}")
    src.indent = 2
    _add_dict_lines(src, fields)
    src.add("body = ENCODE(out)")
    src.indent = 1
    # a lone surrogate (UnicodeEncodeError), a value msgspec cannot write (TypeError,
    # msgspec.EncodeError), a field set around validation (AttributeError): pydantic's path
    # writes the record or says why
    src.add("except ENCODE_ERRORS:", "    return PYDANTIC(rec)",
            "if n:", "    cut = body.replace(b'000Z\"', b'Z\"')", "    if len(body) - len(cut) != 3 * n:",
            "        return PYDANTIC(rec)", "    body = cut")
    if floats:
        src.add("if EXPONENT(body) is not None:", "    return PYDANTIC(rec)")
    src.add("return body")
    return src.compile(f"{fields.model.__name__} write")


def _unpack(src: _Source, struct: type[msgspec.Struct], expr: str) -> dict[str, str]:
    """Unpack ``expr`` (a ``struct``) into locals; return the local of each field."""
    values = {name: f"v{i}" for i, name in enumerate(struct.__struct_fields__)}
    src.add(f"{', '.join(values.values())}, = _astuple({expr})")
    return values


def _add_left_out(src: _Source, fields: _Fields, values: dict[str, str]) -> None:
    """Stamps left out of the JSON become None, a bit of ``m`` each."""
    src.add("m = 0")
    for bit, name in enumerate(fields.omitted):
        v = values[name]
        src.add(f"if {v} is UNSET:", f"    {v} = None", f"    m |= {1 << bit}")


def _add_checks(src: _Source, fields: _Fields, values: dict[str, str]) -> None:
    """Check and convert the decoded fields held in the locals ``values``.

    What the validating path would not keep as it is raises (a ``ValueError``): times not
    in UTC whole milliseconds, non-finite decimals, ids that fail their check. Stamps left
    out become None (a bit of ``m`` each), nested structs become records.
    """
    _add_left_out(src, fields, values)

    def guard(name: str, test: str) -> str:
        return f"if {values[name]} is not None and ({test}):" if name in fields.nullable else f"if {test}:"

    for name in fields.times:
        v = values[name]
        src.add(guard(name, f"{v}.tzinfo is not UTC or {v}.microsecond % 1000"),
                "    raise _Bad('time not in canonical UTC milliseconds')")
    for i, (name, check, good) in enumerate(fields.ids):
        src.env.update({f"good{i}": good, f"check{i}": check})
        v = values[name]
        src.add(guard(name, f"{v} not in good{i}"), f"    _remember(good{i}, check{i}, {v})")
    for name, many in fields.decimals:
        v = values[name]
        test = f"not all(x.is_finite() for x in {v})" if many else f"not {v}.is_finite()"
        src.add(guard(name, test), "    raise _Bad('not a finite number')")
    for i, (name, plan, many) in enumerate(fields.nested):
        v = values[name]
        src.env[f"nest{i}"] = plan.build
        src.add(f"if {v} is not None:",
                f"    {v} = [nest{i}(x) for x in {v}]" if many else f"    {v} = nest{i}({v})")


def _add_record(src: _Source, fields: _Fields, values: dict[str, str], extra: str, fields_set: str) -> None:
    """Make the record as pydantic's ``model_construct`` would: the four slots, no validation."""
    body = ", ".join(f"{name!r}: {values[name]}" for name in fields.names)
    src.env["MODEL"] = fields.model
    src.add("rec = _new(MODEL)", f"_set_dict(rec, {{{body}}})", f"_set_fields_set(rec, {fields_set})",
            f"_set_extra(rec, {extra})", "_set_private(rec, None)", "return rec")


def _gen_build(fields: _Fields, struct: type[msgspec.Struct]) -> Any:
    """Generate ``build(s, extra=None, fields_set=every field)``: the record of a struct."""
    every = set(fields.names)
    src = _Source("def build(s, extra=None, fields_set=EVERY):", EVERY=every,
                  MISSING=[every - fs for fs in fields.fields_sets(every)])
    values = _unpack(src, struct, "s")
    _add_checks(src, fields, values)
    src.add("if m:", "    fields_set = fields_set - MISSING[m]")
    _add_record(src, fields, values, "extra", "fields_set")
    return src.compile(f"{fields.model.__name__} build")


def _gen_read(fields: _Fields, struct: type[msgspec.Struct], fields_set: set[str], other: Any,
              extras: tuple[str, ...] | None = None, check: Callable[..., BaseModel] | None = None) -> Any:
    """Generate ``read(raw)``: a whole fast decode, for a struct of the fields and ``_v``.

    With ``extras`` (a column layout of a model with extra columns), the struct has those
    columns too. A payload the struct does not take goes to ``other`` (the validating
    decode, or the general decode of extra columns); one the checks refuse goes to the
    validating decode. With ``check`` (``checked_decode``: a ``schemas.built.checking``
    builder, and a struct reading decimals as text) the record is made by ``check``,
    which validates every field; a payload with a time of more than six fraction digits
    goes to the validating decode.
    """
    src = _Source("def read(raw):", DECODE=msgspec.json.Decoder(struct).decode, VALIDATE=decode,
                  ERRORS=(*_DECODE_ERRORS, ArithmeticError), OTHER=other, SHAPE=_SHAPE_ERRORS,
                  FIELDS_SETS=fields.fields_sets(fields_set), MODEL=fields.model, CHECK=check,
                  LONG_FRACTION=_LONG_FRACTION.search, Decimal=Decimal)
    src.add("if not isinstance(raw, bytes) or len(raw) > MODEL.max_record_bytes:",
            "    return VALIDATE(MODEL, raw)")
    if check is not None and fields.times:
        src.add("if LONG_FRACTION(raw) is not None:", "    return VALIDATE(MODEL, raw)")
    src.add("try:")
    src.indent = 2
    values = _unpack(src, struct, "DECODE(raw)")
    src.indent = 1
    src.add("except SHAPE:", "    return OTHER(raw)", "try:")
    src.indent = 2
    src.add(f"if {values[_VERSION_FIELD]} != VERSION:", "    raise _Bad('another schema version')")
    if check is not None:  # it validates every field; decimals come as text
        for name, _ in fields.decimals:  # as decode's pydantic reads text: Decimal(text)
            v = values[name]
            src.add(*([f"if {v} is not None:", f"    {v} = Decimal({v})"] if name in fields.nullable
                      else [f"{v} = Decimal({v})"]))
        _add_left_out(src, fields, values)
        _add_checked_record(src, fields, values)
        src.indent = 1
        src.add("except ERRORS:", "    return VALIDATE(MODEL, raw)")
        return src.compile(f"{fields.model.__name__} checked read")
    _add_checks(src, fields, values)
    src.indent = 1
    src.add("except ERRORS:", "    return VALIDATE(MODEL, raw)")
    extra = "None" if extras is None else "{" + ", ".join(f"{n!r}: {values[n]}" for n in extras) + "}"
    _add_record(src, fields, values, extra, "FIELDS_SETS[m]")
    return src.compile(f"{fields.model.__name__} read" + (f" {len(extras)} columns" if extras else ""))


def _add_checked_record(src: _Source, fields: _Fields, values: dict[str, str]) -> None:
    """Make the record by ``CHECK`` (every field validated): the stamps left out not given.

    One call per mask of stamps left out (``m``), each naming the fields given.
    """
    for mask in range(1 << len(fields.omitted)):
        left_out = {name for bit, name in enumerate(fields.omitted) if mask >> bit & 1}
        given = ", ".join(f"{name}={values[name]}" for name in fields.names if name not in left_out)
        src.add(f"if m == {mask}:" if mask else "if not m:", f"    return CHECK({given})")
    src.add("raise _Bad('a mask of stamps beyond the plan')")


_LONG_FRACTION = re.compile(rb":\d\d\.\d{7}")
"""A time with more than six digits of fraction: msgspec rounds the seventh, pydantic
cuts it (a false positive, in a text field, only costs the validating decode)."""


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


def _many(tp: Any) -> bool:
    """Tell whether a field holds a list (of what ``_holds`` found)."""
    return any(get_origin(a) is list for a in (tp, *get_args(tp)))


def _plan_of(model: type[BaseModel], nested: dict[type[BaseModel], _Plan], *, top: bool = False) -> _Plan:
    if not top and model in nested:
        return nested[model]
    fields = model.model_fields
    names = tuple(fields)
    annotations: dict[str, Any] = {}
    times: list[str] = []
    decimals: list[tuple[str, bool]] = []
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
            if _many(tp):
                raise Unsupported(f"{model.__name__}.{name}: a list of times")
            times.append(name)
        if _holds(tp, Decimal):
            decimals.append((name, _many(tp)))
        ids += [(name, check, set()) for check in _text_checks(tp, info.metadata)]
        sub = _holds(tp, BaseModel)
        if sub is not None:
            subs.append((name, _plan_of(sub, nested), _many(tp)))
    extra = _extra_columns(model, top, omitted)
    ns: dict[str, Any] = {"__annotations__": annotations, **defaults}
    if top and not extra:  # the leading "_v"; an extra model reads it from the dict
        annotations[_VERSION_FIELD] = int
        ns[_VERSION_FIELD] = msgspec.field(default=SCHEMA_VERSION, name="_v")
    struct = types.new_class(f"Fast{model.__name__}", (msgspec.Struct,),
                             {"forbid_unknown_fields": not extra, "kw_only": True},
                             lambda body: body.update(ns))
    parts = _Fields(model, names, tuple(times), tuple(decimals), tuple(ids), tuple(subs), tuple(omitted),
                    frozenset(n for n in names if _nullable(annotations[n])), extra)
    floats = extra or any(_has_float(t) for t in annotations.values())
    plan = _Plan(parts, struct, _gen_to_dict(parts), _gen_build(parts, struct),
                 _gen_write(parts, floats) if top else None,
                 _gen_read(parts, struct, set(names), functools.partial(decode, model))
                 if top and not extra else None)
    if not top:
        nested[model] = plan
    return plan


def _extra_columns(model: type[BaseModel], top: bool, omitted: list[str]) -> bool:
    """Tell whether the model keeps extra columns; raise ``Unsupported`` for what has no plan."""
    if model.__pydantic_computed_fields__:
        raise Unsupported(f"{model.__name__}: computed fields")
    if len(omitted) > 8:
        raise Unsupported(f"{model.__name__}: more than 8 stamps")
    extra = model.model_config.get("extra") == "allow"
    if extra and not top:
        raise Unsupported(f"{model.__name__}: extra columns in a nested model")
    return extra


def _nullable(tp: Any) -> bool:
    return tp is type(None) or type(None) in get_args(tp)


_VERSION_FIELD = "schema_version_"


@functools.cache
def _plan(model: type[BaseModel]) -> _Plan | None:
    """Return the model's plan, made on first use (None: the model stays on pydantic)."""
    try:
        return _plan_of(model, {}, top=True)
    except Unsupported:
        return None


def supported(model: type[Record]) -> bool:
    """Tell whether ``model`` has a fast plan (else both functions use the pydantic path)."""
    return _plan(model) is not None


def fast_encode(record: Record) -> bytes:
    """Encode a record exactly as ``schemas.base.encode`` does, faster."""
    try:
        write = _WRITERS[type(record)]  # a subscript: cheaper than .get in CPython 3.11
    except KeyError:
        write = _WRITERS[type(record)] = _writer(type(record))
    return write(record)


def checked_decode(model: type[R], raw: bytes | str) -> R:
    """Decode a record from outside: what ``decode`` returns or raises, faster.

    Every field is validated by the model's own validators (``schemas.built.checking``);
    what the fast path does not take as it is goes through ``decode``.
    """
    try:
        read = _CHECKED_READERS[model]
    except KeyError:
        read = _CHECKED_READERS[model] = _checked_reader(model)
    return read(raw)  # type: ignore[return-value]


def fast_decode(model: type[R], raw: bytes | str) -> R:
    """Decode a record an internal hop wrote; anything unusual goes through ``decode``.

    Raises ``DecodeError`` (from the validating path) exactly when ``decode`` would.
    """
    try:
        read = _READERS[model]
    except KeyError:
        read = _READERS[model] = _reader(model)
    return read(raw)  # type: ignore[return-value]


_WRITERS: dict[type[BaseModel], Callable[[Any], bytes]] = {}
"""The writer of each model encoded: its generated ``write``, or pydantic's path (no plan)."""
_READERS: dict[type[BaseModel], Callable[[bytes | str], BaseModel]] = {}
"""The reader of each model decoded: its generated ``read``, pydantic's path (no plan), or,
for a model with extra columns, the reader of its last row's column layout (``_layout``)
or the general decode of such rows (``_read_columns``)."""


_CHECKED_READERS: dict[type[BaseModel], Callable[[bytes | str], BaseModel]] = {}
"""The reader of each model decoded by ``checked_decode``: its generated checked ``read``,
or pydantic's path (a model without a plan on either side, with nested records or floats)."""


def _checked_reader(model: type[R]) -> Callable[[bytes | str], BaseModel]:
    plan = _plan(model)
    check = checking(model)
    annotations = plan.struct.__annotations__ if plan is not None else {}
    if (plan is None or plan.read is None or check is None or plan.fields.nested
            or any(many for _, many in plan.fields.decimals) or any(map(_has_float, annotations.values()))):
        return functools.partial(decode, model)
    fields = plan.fields
    return _gen_read(fields, _text_decimals(plan.struct), set(fields.names), functools.partial(decode, model),
                     check=check)


def _text_decimals(struct: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """Return ``struct`` with its Decimal fields read as JSON strings only (``str``)."""
    annotations: dict[str, Any] = {}
    ns: dict[str, Any] = {"__annotations__": annotations}
    for info in msgspec.structs.fields(struct):
        tp = info.type
        annotations[info.name] = str if tp is Decimal else (
            Union[tuple(str if a is Decimal else a for a in get_args(tp))]  # noqa: UP007 - built at run time
            if get_origin(tp) in (Union, types.UnionType) else tp)
        if info.default is not msgspec.NODEFAULT or info.encode_name != info.name:
            ns[info.name] = msgspec.field(default=info.default, name=info.encode_name)
    return types.new_class(f"{struct.__name__}Text", (msgspec.Struct,),
                           {"forbid_unknown_fields": True, "kw_only": True}, lambda body: body.update(ns))


def _writer(model: type[Record]) -> Callable[[Any], bytes]:
    plan = _plan(model)
    return plan.write if plan is not None and plan.write is not None else encode


def _reader(model: type[R]) -> Callable[[bytes | str], BaseModel]:
    plan = _plan(model)
    if plan is None:
        return functools.partial(decode, model)
    if plan.read is not None:
        return plan.read  # type: ignore[return-value]
    return functools.partial(_read_columns, plan)


def _read_columns(plan: _Plan, raw: bytes | str) -> BaseModel:
    """Decode a record of a model with extra columns, whatever its columns.

    Then the reader of its model is the one of that column layout (``_layout``): Job A
    writes the same columns in every row, the next rows decode typed, in one msgspec
    call. A row with other columns comes back here.
    """
    model = plan.fields.model
    if not isinstance(raw, bytes) or len(raw) > model.max_record_bytes:  # type: ignore[attr-defined]
        return decode(model, raw)  # type: ignore[type-var]
    fields = plan.fields
    try:
        data = _ANY.decode(raw)
        fixed = {name: data.pop(name) for name in fields.names if name in data}
        struct = msgspec.convert(fixed, plan.struct)
        fields_set = _plain_columns(fields, data) if data.pop("_v", None) == SCHEMA_VERSION else None
        if fields_set is None:
            return decode(model, raw)  # type: ignore[type-var]
        rec = plan.build(struct, data, fields_set)
    except _DECODE_ERRORS:
        return decode(model, raw)  # type: ignore[type-var]
    _READERS[model] = _layout(plan, tuple(data), fields_set) or functools.partial(_read_columns, plan)
    return rec


def _layout(plan: _Plan, extras: tuple[str, ...],
            fields_set: set[str]) -> Callable[[bytes | str], BaseModel] | None:
    """Return the reader of rows with exactly these extra columns (numbers or null), made once.

    None when msgspec takes no struct field of such a name (a control character: the
    model's rule lets ``rsi_14`` and a newline through), or when 64 layouts are known
    already (a stream of ever new columns would make one at every row): those rows take
    the general decode.
    """
    key = (plan.fields.model, extras)
    if key in _LAYOUT_READERS:
        return _LAYOUT_READERS[key]
    if len(_LAYOUT_READERS) >= _LAYOUTS_MAX:
        return None
    try:
        read = _gen_layout(plan, extras, fields_set)
    except (ValueError, TypeError):
        read = None
    _LAYOUT_READERS[key] = read
    return read


def _gen_layout(plan: _Plan, extras: tuple[str, ...],
                fields_set: set[str]) -> Callable[[bytes | str], BaseModel]:
    annotations = {**plan.struct.__annotations__, **dict.fromkeys(extras, float | int | None)}
    annotations[_VERSION_FIELD] = int
    ns = {"__annotations__": annotations, _VERSION_FIELD: msgspec.field(name="_v"),
          **dict.fromkeys(plan.fields.omitted, msgspec.UNSET)}
    struct = types.new_class(f"Fast{plan.fields.model.__name__}Columns", (msgspec.Struct,),
                             {"forbid_unknown_fields": True, "kw_only": True},
                             lambda body: body.update(ns))
    read: Callable[[bytes | str], BaseModel] = _gen_read(plan.fields, struct, fields_set,
                                                         functools.partial(_read_columns, plan), extras)
    return read


_LAYOUT_READERS: dict[tuple[type[BaseModel], tuple[str, ...]], Callable[[bytes | str], BaseModel] | None] = {}
"""The reader of each column layout seen (of models with extra columns), by model and columns."""
_LAYOUTS_MAX = 64

_FLOATS = (float, int, type(None))
_COLUMNS_SEEN: dict[tuple[type[BaseModel], tuple[str, ...]], set[str]] = {}
"""Extra column names already checked, with the fields set of a record that has them."""


def _plain_columns(fields: _Fields, extra: dict[str, Any]) -> set[str] | None:
    """Check extra columns (numbers or null, names the model accepts); None if they are not.

    Return the record's fields set (every field and extra column), shared per column set.
    """
    for value in extra.values():
        if type(value) not in _FLOATS:  # msgspec never yields inf/nan from JSON
            return None
    names = tuple(extra)
    known = _COLUMNS_SEEN.get((fields.model, names))
    if known is not None:
        return known
    if not all(INDICATOR_COLUMN.match(n) for n in names):
        return None
    fields_set = set(fields.names).union(names)
    if len(_COLUMNS_SEEN) < 64:
        _COLUMNS_SEEN[fields.model, names] = fields_set
    return fields_set
