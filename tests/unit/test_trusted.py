"""schemas.built.trusting: the fields taken on trust give the record validation gives.

Each builder Job C uses is checked the way Job C feeds it: the trusted fields hold values
a validated record holds (here: those of a record pydantic validated from random values),
the other fields any value (valid or not, of another type or not).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from operators.orders import _STATE_TRUSTED
from operators.portfolio import _DECISION_TRUSTED, _NEW_ORDER_TRUSTED
from operators.risk import _RESULT_TRUSTED
from schemas.built import _plan, trusting
from schemas.trading import OrderState, RiskDecision, RuleResult, ValidatedOrder
from tests.unit.test_built import pick

TRUSTED = [(RuleResult, _RESULT_TRUSTED), (OrderState, _STATE_TRUSTED),
           (ValidatedOrder, _NEW_ORDER_TRUSTED), (RiskDecision, _DECISION_TRUSTED)]


def valid_record(rng: random.Random, model: type[BaseModel]) -> BaseModel:
    """A record pydantic validated from random values (drawn again until one passes)."""
    while True:
        try:
            return model(**pick(rng, model))
        except ValidationError:
            continue


def seen(rec: BaseModel) -> tuple[Any, ...]:
    """What tells two records apart: type, value, repr, JSON, fields set, Decimal digits."""
    return (type(rec), rec, repr(rec), rec.model_dump_json(), rec.model_fields_set,
            [str(getattr(rec, name)) for name in type(rec).model_fields])


@pytest.mark.parametrize(("model", "names"), TRUSTED, ids=lambda m: getattr(m, "__name__", ""))
def test_trusting_gives_the_validated_record_or_the_same_error(
    model: type[BaseModel], names: frozenset[str]
) -> None:
    assert _plan(model, names) is not None  # the trusting builder is made, not pydantic
    make = trusting(model, names)
    rng = random.Random(f"trusted {model.__name__}")  # noqa: S311 - reproducible
    built = failed = 0
    for _ in range(3000):
        base = valid_record(rng, model)
        raw = pick(rng, model)  # the checked fields: anything
        values = {name: getattr(base, name) if name in names else raw[name]
                  for name in model.model_fields
                  if (name in base.model_fields_set if name in names else name in raw)}
        try:
            want = model(**values)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
        else:
            assert seen(make(**values)) == seen(want)
            built += 1
            continue
        with pytest.raises(ValidationError) as got:
            make(**values)
        assert got.value.errors(include_url=False, include_context=False) == errors
        failed += 1
    assert built > 300
    # Only the checked fields can fail: a ValidatedOrder has none, a RuleResult's message
    # (free text) is cut, never refused.
    assert failed > 50 or model in (ValidatedOrder, RuleResult)


def test_trusting_refuses_a_field_the_model_does_not_have() -> None:
    with pytest.raises(ValueError, match="no field"):
        trusting(RuleResult, frozenset({"rule", "nope"}))
