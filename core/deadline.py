"""One deadline per order: every step, every retry and every wait of the order spends it.

A :class:`Deadline` is plain data (an expiry on the wall clock, so it means the same in every
task and process of a run) and is safe to pass between Prefect tasks. Whatever waits asks it
how much time is left; whatever would start more work calls :meth:`Deadline.check`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from acmeflow.core import errors


@dataclass(frozen=True)
class Deadline:
    """An expiry time and the budget it was created with (for messages)."""

    expires_at: float
    budget: float
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Callable[[], float] = time.time) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(clock() + seconds, seconds, clock)

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.expires_at - self.clock())

    def expired(self) -> bool:
        """Whether no time is left."""
        return self.remaining() <= 0.0

    def check(self, what: str) -> None:
        """Raise :class:`errors.DeadlineExceeded` naming ``what`` when no time is left."""
        if self.expired():
            raise errors.DeadlineExceeded(detail=f"{what}: the {self.budget:.0f} s were spent")

    def cap(self, seconds: float) -> float:
        """``seconds``, or less when the deadline comes first."""
        return min(seconds, self.remaining())

    def sooner(self, seconds: float) -> Deadline:
        """This deadline, or the one ``seconds`` from now when that comes first (a step's
        own limit inside the order's)."""
        step = Deadline.after(seconds, clock=self.clock)
        return step if step.expires_at < self.expires_at else self
