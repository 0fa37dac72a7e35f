"""The order deadline: time left, the error naming what ran out, and no retry once spent."""

from __future__ import annotations

import pickle

import pytest

from acmeflow.core import errors
from acmeflow.core.deadline import Deadline
from acmeflow.core.issuance import Timeouts
from acmeflow.tasks.common import retry_if_retryable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_left_and_the_error_naming_the_step() -> None:
    clock = Clock()
    deadline = Deadline.after(30, clock=clock)
    clock.now += 20
    assert deadline.remaining() == 10
    assert deadline.cap(60) == 10 and deadline.cap(4) == 4
    deadline.check("finalizing the order")
    clock.now += 11
    assert deadline.remaining() == 0 and deadline.expired()
    with pytest.raises(errors.DeadlineExceeded) as raised:
        deadline.check("finalizing the order")
    assert "finalizing the order: the 30 s were spent" in str(raised.value.detail)


def test_a_step_limit_inside_the_order_deadline() -> None:
    clock = Clock()
    order = Deadline.after(100, clock=clock)
    assert order.sooner(10).remaining() == 10
    assert order.sooner(500) is order


def test_the_deadline_crosses_task_boundaries() -> None:
    deadline = Timeouts(total=42).deadline()
    copy = pickle.loads(pickle.dumps(deadline))
    assert copy == deadline and copy.expires_at == deadline.expires_at
    assert 0 < copy.remaining() <= 42


class _State:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self) -> None:
        raise self.exc


@pytest.mark.parametrize(
    "exc",
    [
        errors.DeadlineExceeded(detail="x"),
        errors.CANotAnswering(detail="x"),
        errors.ValidationTimeout(detail="x"),
        errors.FinalizeTimeout(detail="x"),
        errors.PropagationTimeout(detail="x"),
        errors.NameserverNotAnswering("127.0.0.1:53", detail="x"),
        errors.RateLimited(detail="x", retry_after=299),
        errors.OrderStateUnknown(detail="x"),
    ],
)
def test_no_task_retry_once_the_time_is_spent(exc: errors.AcmeflowError) -> None:
    assert retry_if_retryable(None, None, _State(exc)) is False
    assert retry_if_retryable(None, None, _State(pickle.loads(pickle.dumps(exc)))) is False


def test_a_transient_ca_failure_with_time_left_is_retried() -> None:
    assert retry_if_retryable(None, None, _State(errors.CAUnavailable(detail="503"))) is True
