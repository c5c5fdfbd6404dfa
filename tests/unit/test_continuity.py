"""The window agent's offset-continuity guard (streams/continuity.py)."""

from __future__ import annotations

from repricer.streams.continuity import Continuity, Step, applied_key


def test_in_order_and_replayed_envelopes_are_applied() -> None:
    c = Continuity()
    assert c.check(3, 0, None, now=0.0) == (Step.APPLY, 0)  # first envelope ever
    assert c.check(3, 1, 0, now=0.0) == (Step.APPLY, 1)
    # a replay (a restart reads again from the committed offset): the engine recognises it
    assert c.check(3, 0, 1, now=0.0) == (Step.APPLY, 0)
    assert (c.rewinds, c.refused) == (0, 0)


def test_an_envelope_ahead_of_a_missing_one_rewinds_once_then_waits() -> None:
    c = Continuity(retry_s=5.0)
    assert c.check(1, 12, 9, now=100.0) == (Step.REWIND, 10)
    # envelopes fetched before the seek took effect keep arriving: refused, no second seek
    assert c.check(1, 13, 9, now=101.0) == (Step.WAIT, 10)
    assert c.check(1, 14, 9, now=104.9) == (Step.WAIT, 10)
    assert (c.rewinds, c.refused) == (1, 3)
    # the missing one arrives: applied, and the rewind is over
    assert c.check(1, 10, 9, now=105.0) == (Step.APPLY, 10)
    assert c.rewinding == {}


def test_a_rewind_that_brings_nothing_is_issued_again() -> None:
    c = Continuity(retry_s=5.0)
    assert c.check(0, 50, 40, now=0.0) == (Step.REWIND, 41)
    assert c.check(0, 51, 40, now=5.0) == (Step.REWIND, 41)
    assert c.rewinds == 2


def test_partitions_are_independent() -> None:
    c = Continuity()
    assert c.check(0, 9, 5, now=0.0) == (Step.REWIND, 6)
    assert c.check(1, 3, 2, now=0.0) == (Step.APPLY, 3)
    assert c.check(1, 8, 3, now=0.0) == (Step.REWIND, 4)  # a gap on another partition: its own
    assert c.check(0, 10, 5, now=0.1) == (Step.WAIT, 6)
    assert applied_key(7) == "applied/7"
