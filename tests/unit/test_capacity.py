"""Back-pressure holds under a burst: admission reserves a place before the answer starts."""

from __future__ import annotations

import pytest

from serving.capacity import AnswerSlots, BusyError
from tests.clock import Clock


def test_a_burst_admitted_before_any_answer_starts_is_capped() -> None:
    slots = AnswerSlots(3, clock=Clock(100.0))
    for _ in range(3):  # three streaming requests pass their dependencies at once
        slots.check()
    with pytest.raises(BusyError):
        slots.check()  # the fourth is refused although no answer has started yet
    with slots, slots:  # two answers start: they take their reserved places
        assert (slots.in_flight, slots.reserved) == (2, 1)
        with pytest.raises(BusyError):
            slots.check()
    assert (slots.in_flight, slots.reserved) == (0, 1)
    slots.check()
    slots.check()


def test_a_reservation_whose_answer_never_starts_lapses() -> None:
    clock = Clock(100.0)
    slots = AnswerSlots(1, lease_s=5.0, clock=clock)
    slots.check()  # admitted, then refused by validation or the client left
    with pytest.raises(BusyError):
        slots.check()
    clock.now += 5.1
    slots.check()  # the stale reservation no longer holds the place
    assert slots.reserved == 1
