"""Records a job builds itself, validated by the models' own validators without pydantic-core.

``build(Model, **values)`` returns what ``Model(**values)`` returns, equal and with the
same repr, JSON and fields set, for the values a job computes on its hot path (Job C
builds four to five records per signal, and pydantic's validation of them cost more
than the whole pre-trade check). The model stays the single definition: its plan is
derived from its fields when first used.

How it stays the same record:

* Every field's own validators run, in pydantic's order (before-validators, then
  after-validators; for an optional field only on a value that is not None): e.g.
  ``quantize8`` rounds a ``Derived`` amount to 8 places as validation would. Identity
  checks (``Name``, ``OrderId``...) are pure, so a value that passed once is remembered
  (a bounded set per check) and not matched again.
* pydantic-core's own part (type coercion) is replaced by an exact type check: a value
  whose type is not exactly the field's (an ``int`` for a ``Decimal``, a str for an
  enum, a naive datetime is still a datetime and goes through ``_utc_ms``), a missing
  required field, an unknown field, or a validator raising, sends the call to
  ``Model(**values)``, which coerces or raises its ``ValidationError`` as always.
* Defaults fill the fields not given and the fields set is the names given, as in
  ``Model(**values)`` (one shared set per combination of names; records are frozen and
  pydantic copies the set in ``model_copy``).
* Bounds (``Field(ge=0)``, ``gt``, ``le``, ``lt``) are compared as pydantic compares
  them, between the before- and the after-validators; a model validator of mode
  ``after`` (at most one) runs on the record made, which it must return as it is.
* A model with anything the plan does not know (field validators, other model
  validators, other constraints, nested models other than a list of records, ``Any``)
  is always validated by pydantic.

``trusting(Model, *names)`` returns a builder that takes the fields ``names`` on trust:
for values that are already what the field's validation gives back, copied from a field
of the same type of a record that was validated (every validator here is idempotent:
``_fits``, ``quantize8``, ``_utc_ms``, the cut of free text, the identity checks), or
made valid by the caller (an enum member, an id of a fixed form). Those fields are
neither type-checked nor validated; the others are, as ``build`` does them.

``checking(Model)`` returns a builder that validates every field as ``build`` does but,
where ``build`` would hand the values to pydantic, raises ``Unchecked``: for a caller
with a better way to say what is wrong (``schemas.fast.checked_decode`` hands the
payload to the validating decode, whose ``DecodeError`` gives the reason).
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, TypeVar, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, BeforeValidator, PlainSerializer
from pydantic.fields import FieldInfo
from pydantic.types import AllowInfNan

from schemas.base import _WIDE, QUANTUM, _fits, _non_negative, _positive, _utc_ms, quantize8

__all__ = ["Unchecked", "build", "checking", "restored", "trusting"]

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__
_new = object.__new__
_GOOD_KEPT = 4096
"""Values remembered as passing one identity check (then forgotten all at once)."""

_SCALARS = (str, bool, int, float, Decimal, datetime)
_STR = frozenset({str})


class _Unknown(TypeError):
    """A field the plan cannot check itself: the model stays on pydantic."""


class Unchecked(ValueError):
    """A ``checking`` builder met values pydantic would coerce or refuse."""


class _Field:
    """One field's plan: the exact type a value must have, and its validators."""

    __slots__ = ("checks", "default", "factory", "kind", "name", "optional", "required")

    def __init__(self, name: str, info: FieldInfo) -> None:
        self.name = name
        self.default = info.default
        self.factory = info.default_factory
        self.required = info.is_required()
        tp, metadata = info.annotation, list(info.metadata)
        self.optional = False
        origin = get_origin(tp)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1 or len(args) == len(get_args(tp)):
                raise _Unknown(f"{name}: {tp}")
            self.optional = True
            tp = args[0]
            if get_origin(tp) is Annotated:
                inner, *more = get_args(tp)
                tp, metadata = inner, [*more, *metadata]
        self.checks = _checks(name, metadata)
        self.kind = _kind(name, tp)

    def check(self, value: Any) -> Any:
        """Return the validated value; raise anything for pydantic to do it instead."""
        if value is None and self.optional:
            return None
        kind = self.kind
        if type(kind) is tuple:
            allowed = {kind[1]}  # the item type (sets of types: compared in C)
            if kind[0] is list:
                if type(value) is not list or not {*map(type, value)} <= allowed:
                    raise _Unknown(self.name)
                value = list(value)
            else:
                if (type(value) is not dict or not {*map(type, value)} <= _STR
                        or not {*map(type, value.values())} <= allowed):
                    raise _Unknown(self.name)
                value = dict(value)
        elif type(value) is not kind or (kind is Decimal and not value.is_finite()):
            raise _Unknown(self.name)
        for check in self.checks:
            value = check(value)
        return value


def _checks(name: str, metadata: list[Any]) -> tuple[Callable[[Any], Any], ...]:
    # A field's validators, in the order pydantic runs them.
    befores: list[Callable[[Any], Any]] = []
    bounds: list[Callable[[Any], Any]] = []
    afters: list[Callable[[Any], Any]] = []
    for item in metadata:
        if type(item) in _BOUNDS:
            bounds.append(_bound(item))
        elif isinstance(item, BeforeValidator):
            befores.insert(0, _plain(name, item.func))  # pydantic runs the last one first
        elif isinstance(item, AfterValidator):
            afters.append(_plain(name, item.func))
        elif isinstance(item, AllowInfNan) and not item.allow_inf_nan:
            afters.append(_finite_float)
        elif isinstance(item, PlainSerializer):
            continue
        elif not isinstance(item, FieldInfo) or item.metadata:
            raise _Unknown(f"{name}: {item!r}")
    checks = befores + bounds + afters
    if checks and all(f in _SAME_OBJECT for f in checks):  # e.g. Price: _fits, _positive
        return (_kept(tuple(checks)),)
    return tuple(_remembered(f) if _is_identity(f) else f for f in checks)


_BOUNDS: dict[type, tuple[str, Callable[[Any, Any], bool]]] = {
    Ge: ("ge", operator.ge), Gt: ("gt", operator.gt), Le: ("le", operator.le), Lt: ("lt", operator.lt),
}
"""annotated_types' bounds (what ``Field(ge=...)`` puts in a field's metadata): the
attribute holding the bound, and the comparison the value must pass."""


def _bound(item: Any) -> Callable[[Any], Any]:
    # A field's bound as a check: the value, or raise (pydantic then says why).
    attr, holds = _BOUNDS[type(item)]
    limit = getattr(item, attr)

    def within(value: Any) -> Any:
        if not holds(value, limit):
            raise ValueError(f"not {attr} {limit}")
        return value

    return within


def _plain(name: str, func: Callable[..., Any]) -> Callable[[Any], Any]:
    # A validator of the value alone (one taking pydantic's ValidationInfo is not known).
    if len(inspect.signature(func).parameters) != 1:
        raise _Unknown(f"{name}: {func!r} takes more than the value")
    return func


def _kind(name: str, tp: Any) -> Any:
    # What a value must be exactly: a scalar type, (list, record model), (dict, value type).
    if tp in _SCALARS or (isinstance(tp, type) and issubclass(tp, Enum)):
        return tp
    if get_origin(tp) is list and _is_record(get_args(tp)[0]):
        return (list, get_args(tp)[0])
    if get_origin(tp) is dict and get_args(tp) in ((str, int), (str, str)):
        return (dict, get_args(tp)[1])
    raise _Unknown(f"{name}: {tp}")


def _finite_float(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_identity(func: Callable[[Any], Any]) -> bool:
    # schemas.base's identity checks (Name, OrderId, RecordId): pure, the value or raise.
    return getattr(func, "__qualname__", "") == "_identity.<locals>.check"


_REMEMBERED: dict[Callable[[Any], Any], Callable[[Any], Any]] = {}


def _remembered(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # One memo per identity check, shared by every field it checks (an order id passed
    # for the ValidatedOrder is not matched again for its OrderState and RiskDecision).
    known = _REMEMBERED.get(func)
    if known is None:
        known = _REMEMBERED[func] = _passing((func,), by_text=False)
    return known


def _passing(chain: tuple[Callable[[Any], Any], ...], *, by_text: bool) -> Callable[[Any], Any]:
    # Run ``chain`` on a value, remembering (up to _GOOD_KEPT) the values it returned as
    # given, by themselves or, ``by_text``, by their string.
    good: set[Any] = set()

    def check(value: Any) -> Any:
        key = str(value) if by_text else value
        if key in good:
            return value
        out = value
        for func in chain:
            out = func(out)
        if out is value:
            if len(good) >= _GOOD_KEPT:
                good.clear()
            good.add(key)
        return out

    return check


_MISSING = object()

_SAME_OBJECT = frozenset({_fits, _positive, _non_negative})
"""Pure checks of schemas.base that return the Decimal given or raise (or re-quantize)."""

_INLINE: dict[Callable[[Any], Any], str] = {
    # quantize8 of a finite Decimal (the type test has checked it is finite), its range
    # check first: beyond it pydantic raises the error.
    quantize8: "if _v.adjusted() > 70: raise _U\n{pad}_v = _v.quantize(QUANTUM, context=WIDE)",
    # A time already in UTC at whole milliseconds is what _utc_ms returns (an equal copy).
    _utc_ms: "if _v.tzinfo is not UTC or _v.microsecond % 1000: _v = {}(_v)",
}
"""Validators written into the generated source: the same result without a call."""


def _kept(chain: tuple[Callable[[Any], Any], ...]) -> Callable[[Any], Any]:
    # A chain of _SAME_OBJECT checks, remembering the Decimals it returned as given by
    # their string: str is exact and reversible (1 and 1.000000000000 are two strings,
    # and _fits returns the second re-quantized), and the checks look at nothing else.
    return _passing(chain, by_text=True)


class _Plan:
    """A model's builder: Python source generated from its fields, one branch per field.

    The generated function does what ``_Field.check`` says for every field in turn
    (a loop calling it per field cost twice as much), fills the defaults, and picks
    the fields set by which optional fields were given.
    """

    __slots__ = ("after", "build", "fields", "fields_sets", "model", "strict", "trusted")

    def __init__(self, model: type[BaseModel], trusted: frozenset[str] = frozenset(), *,
                 strict: bool = False) -> None:
        decorators = model.__pydantic_decorators__
        if (decorators.field_validators or decorators.validators or decorators.root_validators
                or model.model_config.get("extra") != "forbid"):
            raise _Unknown(f"{model.__name__}: validators of its own")
        validators = list(decorators.model_validators.values())
        if len(validators) > 1 or any(v.info.mode != "after" for v in validators):
            raise _Unknown(f"{model.__name__}: model validators other than one of mode 'after'")
        self.after = [_plain(model.__name__, v.func) for v in validators]
        """The model validator of mode ``after``, if any: run on the record made."""
        self.model = model
        self.trusted = trusted
        self.strict = strict
        self.fields = {name: _Field(name, info) for name, info in model.model_fields.items()}
        self.fields_sets: dict[int, set[str]] = {}
        self.build: Callable[..., BaseModel] = self._generate()

    def _fields_set(self, key: int) -> set[str]:
        # The names given: the required ones, and the optional ones whose bit is in key.
        names = set()
        for bit, (name, field) in enumerate(self.fields.items()):
            if field.required or key >> bit & 1:
                names.add(name)
        out = self.fields_sets[key] = names
        return out

    def _slow(self, **values: Any) -> BaseModel:
        # The fields given, validated by pydantic (``_MISSING``: not given); a strict
        # plan (``checking``) refuses instead.
        if self.strict:
            raise Unchecked(f"{self.model.__name__}: values the plan does not take as they are")
        return self.model(**{name: v for name, v in values.items() if v is not _MISSING})

    def _after_lines(self, env: dict[str, Any]) -> list[str]:
        # The model validator on the record made: it returns the record as it is, or
        # anything else is pydantic's to make.
        lines = []
        for k, validator in enumerate(self.after):
            env[f"after_{k}"] = validator
            lines.append(f"    if after_{k}(_rec) is not _rec: raise _U")
        return lines

    def _generate(self) -> Callable[..., BaseModel]:
        env: dict[str, Any] = {"_M": _MISSING, "_U": _Unknown, "Decimal": Decimal, "_new": _new,
                               "QUANTUM": QUANTUM, "WIDE": _WIDE, "UTC": UTC,
                               "_set": _set, "Model": self.model, "SETS": self.fields_sets,
                               "make_set": self._fields_set, "_slow": self._slow}
        # Keyword-only parameters named as the fields: Python binds the values given (an
        # unknown name raises TypeError: pydantic's turn); the locals start with "_",
        # which no field name does. The parameters are never assigned: whatever fails
        # hands them as given to pydantic (``_slow``).
        params = ", ".join(f"{name}=_M" for name in self.fields)
        lines = ["    _key = 0"]
        for bit, (name, field) in enumerate(self.fields.items()):
            env[f"field_{bit}"] = field
            env[f"default_{bit}"] = field.default
            env[f"factory_{bit}"] = field.factory
            lines.append(f"    _v = {name}")
            lines.append("    if _v is _M:")
            if field.required:
                lines.append("        raise _U")
            elif field.factory is not None:
                lines.append(f"        _v = factory_{bit}()")
            else:
                lines.append(f"        _v = default_{bit}")
            pad = "        "
            if name in self.trusted and field.required:  # vouched for: nothing to check
                lines.append(f"    _f{bit} = _v")
                continue
            lines.append("    else:")
            if not field.required:
                lines.append(f"        _key |= {1 << bit}")
            if name in self.trusted:
                lines.append(f"    _f{bit} = _v")
                continue
            if field.optional:
                lines.append("        if _v is not None:")
                pad += "    "
            kind = field.kind
            if type(kind) is tuple:
                lines.append(f"{pad}_v = field_{bit}.check(_v)")
            else:
                env[f"kind_{bit}"] = kind
                test = f"type(_v) is not kind_{bit}"
                if kind is Decimal:
                    test += " or not _v.is_finite()"
                lines.append(f"{pad}if {test}: raise _U")
                for k, check in enumerate(field.checks):
                    env[f"check_{bit}_{k}"] = check
                    code = _INLINE.get(check, "_v = {}(_v)").format(f"check_{bit}_{k}", pad=pad)
                    lines.append(pad + code)
            lines.append(f"    _f{bit} = _v")
        lines.append("    _fs = SETS.get(_key) or make_set(_key)")
        lines.append("    _rec = _new(Model)")
        body = ", ".join(f"{name!r}: _f{bit}" for bit, name in enumerate(self.fields))
        lines.append(f"    _set(_rec, '__dict__', {{{body}}})")
        lines.append("    _set(_rec, '__pydantic_fields_set__', _fs)")
        lines.append("    _set(_rec, '__pydantic_extra__', None)")
        lines.append("    _set(_rec, '__pydantic_private__', None)")
        lines += self._after_lines(env)
        lines.append("    return _rec")
        given = ", ".join(f"{name}={name}" for name in self.fields)
        source = "\n".join(lines).splitlines()
        lines = [f"def build(*, {params}):", "  try:", *(f"  {line}" for line in source),
                 "  except Exception:  # pydantic coerces it or raises its ValidationError",
                 f"    return _slow({given})"]
        if set(self.fields) & env.keys():  # a parameter would hide a name the source uses
            raise _Unknown(f"{self.model.__name__}: a field named as a name of the builder")
        exec("\n".join(lines), env)  # noqa: S102 - source made here from the model's fields
        out: Callable[..., BaseModel] = env["build"]
        return out


@functools.cache
def _plan(model: type[BaseModel], trusted: frozenset[str] = frozenset()) -> _Plan | None:
    """Return the model's plan, made on first use (None: pydantic validates every record)."""
    try:
        return _Plan(model, trusted)
    except _Unknown:
        return None


def build(model: type[M], /, **values: Any) -> M:
    """Return ``model(**values)``: the same record, validated by the model's validators."""
    plan = _plan(model)
    if plan is not None:
        try:
            return plan.build(**values)  # type: ignore[return-value]
        except TypeError:  # a field the model does not have: pydantic says so
            pass
    return model(**values)


@functools.cache
def trusting(model: type[M], names: frozenset[str], /) -> Callable[..., M]:
    """Return a builder of ``model`` records taking the fields ``names`` on trust.

    A trusted value must be what the field's validation returns (see the module
    docstring); the builder does not look at it. The other fields are checked as
    ``build`` checks them, and a record the plan cannot build goes to pydantic. Made on
    first use, then one dict look-up: call it where the record is built.
    """
    unknown = names - model.model_fields.keys()
    if unknown:
        raise ValueError(f"{model.__name__} has no field {sorted(unknown)}")
    plan = _plan(model, names)
    return model if plan is None else plan.build  # type: ignore[return-value]


@functools.cache
def checking(model: type[M], /) -> Callable[..., M] | None:
    """Return a builder of ``model`` records that validates every field and never calls pydantic.

    What ``build`` would hand to pydantic (a value of another type, a missing field, a
    validator raising) raises ``Unchecked`` instead. None: the model has no plan.
    """
    try:
        return _Plan(model, strict=True).build  # type: ignore[return-value]
    except _Unknown:
        return None


_RESTORED_SETS: dict[tuple[type[BaseModel], frozenset[str]], set[str]] = {}


def restored(model: type[M], values: dict[str, Any], fields_set: set[str] | None = None) -> M:
    """Return the record whose field values ``values`` are (``dict(record.__dict__)``).

    For a process's own saved state only (a snapshot of records it validated when they
    came in, kept as their values): like unpickling, nothing is validated again. Every
    field must be there; otherwise, or for a model that keeps unknown fields, the
    values are validated as usual. The fields set is every field: ``fields_set`` if
    given (a set of every field name the caller shares), else one kept here per model.
    """
    names = frozenset(values)
    key = (model, names)
    known = _RESTORED_SETS.get(key)
    if known is None:
        if names != model.model_fields.keys() or model.model_config.get("extra") == "allow":
            return model.model_validate(values)
        known = _RESTORED_SETS[key] = set(names)
    if fields_set is None or fields_set != known:
        fields_set = known
    rec = _new(model)
    _set(rec, "__dict__", dict(values))
    _set(rec, "__pydantic_fields_set__", fields_set)
    _set(rec, "__pydantic_extra__", None)
    _set(rec, "__pydantic_private__", None)
    return rec
