"""Wiring shared by every flow: decode raw messages, route bad ones to dead_letters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream

from connectors.base import SourceMessage
from schemas import DeadLetter, DecodeError, Record, decode

R = TypeVar("R", bound=Record)

MAX_PAYLOAD_CHARS = 4000
"""Dead letters keep at most this much of the bad payload."""


@dataclass(frozen=True, slots=True)
class Decoded(Generic[R]):
    """A decoded record with the position it was read from."""

    record: R
    stream: str
    partition: int
    offset: int


def dead_letter(
    msg: SourceMessage, reason: str, job: str, payload: str | None = None
) -> DeadLetter:
    """Build the dead letter for a message that could not be used, and why."""
    text = payload if payload is not None else msg.value.decode("utf-8", errors="replace")
    return DeadLetter(
        source_stream=msg.stream,
        partition=msg.partition,
        offset=msg.offset,
        source_key=msg.key,
        reason=reason,
        payload=text[:MAX_PAYLOAD_CHARS],
        job=job,
        ts=datetime.now(UTC),
    )


@dataclass(frozen=True)
class DecodeOut(Generic[R]):
    """The two streams out of ``decode_messages``: good records and dead letters."""

    oks: Stream[Decoded[R]]
    errs: Stream[DeadLetter]


def decode_messages(
    step_id: str, up: Stream[SourceMessage], model: type[R], *, job: str
) -> DecodeOut[R]:
    """Decode each message into ``model``; ones that fail go out as dead letters."""

    def attempt(msg: SourceMessage) -> Decoded[R] | DeadLetter:
        try:
            rec = decode(model, msg.value)
        except DecodeError as exc:
            return dead_letter(msg, str(exc), job)
        return Decoded(rec, msg.stream, msg.partition, msg.offset)

    tried = op.map(f"{step_id}_decode", up, attempt)
    split = op.branch(f"{step_id}_ok", tried, lambda x: isinstance(x, Decoded))
    return DecodeOut(split.trues, split.falses)  # type: ignore[arg-type]


def demux(step_id: str, up: Stream[tuple[str, Record]], names: list[str]) -> dict[str, Stream[Record]]:
    """Split a stream of ``(stream_name, record)`` into one stream per name."""
    def only(name: str) -> Callable[[tuple[str, Record]], Record | None]:
        return lambda item: item[1] if item[0] == name else None

    return {name: op.filter_map(f"{step_id}_{name}", up, only(name)) for name in names}
