"""Gap detection on the user stream: executions are numbered 1, 2, 3... per API key.

``SequenceTracker`` holds the last number taken in order (the cursor). Each number the
stream brings is a repeat (at or below the cursor), the next one, or a gap (what lies
between must be fetched by REST before this one is taken). A ``hello`` on (re)connect
tells the venue's last number: above the cursor, that range is missed too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    """What to do with one numbered execution."""

    REPEAT = "REPEAT"
    NEXT = "NEXT"
    GAP = "GAP"


@dataclass(frozen=True, slots=True)
class Offer:
    """The verdict on one number: ``step``, and for a gap the missing range (inclusive)."""

    step: Step
    missing_from: int = 0
    missing_to: int = 0


class SequenceTracker:
    """The last execution number taken in order, and what a new one means."""

    def __init__(self, last: int = 0) -> None:
        self.last = max(0, last)
        self.gaps = 0
        self.repeats = 0

    def offer(self, seq: int) -> Offer:
        """Judge the number ``seq`` (without taking it)."""
        if seq <= self.last:
            self.repeats += 1
            return Offer(Step.REPEAT)
        if seq == self.last + 1:
            return Offer(Step.NEXT)
        self.gaps += 1
        return Offer(Step.GAP, self.last + 1, seq - 1)

    def hello(self, venue_last: int) -> Offer:
        """Judge the venue's last number told on connect: missed ones, or nothing."""
        if venue_last > self.last:
            self.gaps += 1
            return Offer(Step.GAP, self.last + 1, venue_last)
        return Offer(Step.REPEAT)

    def advance(self, seq: int) -> None:
        """Take ``seq`` (the next one, or the end of a range fetched by REST)."""
        self.last = max(self.last, seq)
