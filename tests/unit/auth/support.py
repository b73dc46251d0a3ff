"""Helpers for the auth unit tests: read a Deferred that has already fired, cheap argon2."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher
from twisted.internet import defer
from twisted.python.failure import Failure

T = TypeVar("T")

# Valid argon2id, the cheapest parameters: the tests check logic, not hashing cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def result_of(d: defer.Deferred[T]) -> T:
    """The result of a Deferred that must already have succeeded."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def failure_of(d: defer.Deferred[Any]) -> Failure:
    """The Failure of a Deferred that must already have failed."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    assert isinstance(out[0], Failure), f"expected a failure, got {out[0]!r}"
    return out[0]


class CountingRunner:
    """A run_in_thread that runs at once and counts: how many verifies were paid for."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, f: Callable[[], T]) -> defer.Deferred[T]:
        self.calls += 1
        return defer.maybeDeferred(f)
