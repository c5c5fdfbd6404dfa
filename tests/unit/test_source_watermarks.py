"""Ingest's source-partition watermarks (``streams.source_watermarks``), without Kafka.

Each test drives ``SourceWatermarks`` the way the ingest agent does: batches forwarded, then
broadcast rounds fed with what the consumer would say of each assigned partition (highwater,
wall time of its latest fetch, position).
"""

from __future__ import annotations

from repricer.streams.source_watermarks import SourceWatermarks

IDLE_S = 10.0
T0 = 1_000.0  # wall clock (time.time()) at monotonic 0


def tracker() -> SourceWatermarks:
    return SourceWatermarks({"orders", "clicks"}, IDLE_S)


def round_(
    wm: SourceWatermarks,
    now: float,
    assigned: dict[str, tuple[int | None, float | None, int]],
    partitions: tuple[str, ...] = ("orders/0", "orders/1"),
) -> list[str]:
    """One broadcast round at monotonic ``now`` (wall ``T0 + now``). ``assigned``: source
    partition -> (highwater, wall time of its latest fetch, consumer position), as the agent
    reads them; the position is asked only when nothing was read yet (as the agent does)."""
    wm.start_round(partitions, T0 + now)
    for src, (hw, fetched_at, position) in assigned.items():
        fetched_ms = None if fetched_at is None else int(fetched_at * 1000)
        if wm.idle_target(src, hw, fetched_ms, now) is None:
            continue
        pos = wm.next_offset.get(src)
        if pos is None:
            pos = position
            if not wm.still_unread(src):
                continue
        assert hw is not None
        wm.fetch_state(src, hw, pos, now)
    return wm.advance(now)


def busy_and_quiet(wm: SourceWatermarks) -> None:
    """orders/1 read to offset 5 (an event at ts 1000) at 0; orders/0 forwards ts 60000 at 1,
    and a round then notes the frontier at 60000 (wall T0 + 1)."""
    wm.forwarded_batch({"orders/1": 5}, {"orders/1": 1_000}, now=0.0)
    wm.forwarded_batch({"orders/0": 40}, {"orders/0": 60_000}, now=1.0)
    assert round_(wm, 1.0, {}) == []


def test_an_idle_partition_advances_only_when_caught_up_and_quiet() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    # caught up (position 5 = highwater 5), a target to join, but its last event was only 2 s ago
    assert wm.idle_target("orders/1", 5, int((T0 + 2.0) * 1000), 2.0) == 60_000
    assert round_(wm, 2.0, {"orders/1": (5, T0 + 2.0, 5)}) == []
    assert wm.forwarded["orders/1"] == 1_000
    # quiet for the idle time and caught up: joins the others
    assert round_(wm, 11.0, {"orders/1": (5, T0 + 11.0, 5)}) == ["orders/1"]
    assert wm.forwarded == {"orders/0": 60_000, "orders/1": 60_000}


def test_a_quiet_partition_that_is_not_caught_up_does_not_advance() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    # quiet for long, but the highwater says there is more to read than was read
    assert wm.idle_target("orders/1", 9, int((T0 + 30.0) * 1000), 30.0) == 60_000
    assert round_(wm, 30.0, {"orders/1": (9, T0 + 30.0, 5)}) == []
    assert wm.forwarded["orders/1"] == 1_000


def test_a_partition_with_backlog_never_advances() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    for now in (11.0, 100.0, 1_000.0, 10_000.0):  # never caught up: slow, not idle
        assert round_(wm, now, {"orders/1": (9, T0 + now, 5)}) == []
        assert wm.forwarded["orders/1"] == 1_000
    # its backlog read at last (four bad records: no event time in them): quiet from then on
    wm.forwarded_batch({"orders/1": 9}, {}, now=10_000.5)
    assert round_(wm, 10_001.0, {"orders/1": (9, T0 + 10_001.0, 9)}) == []
    assert round_(wm, 10_011.0, {"orders/1": (9, T0 + 10_011.0, 9)}) == ["orders/1"]


def test_a_backlog_round_keeps_the_partition_from_counting_as_quiet() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    assert round_(wm, 100.0, {"orders/1": (9, T0 + 100.0, 5)}) == []
    assert wm.last_event["orders/1"] == 100.0 - IDLE_S / 2
    # caught up right after: quiet for only half the idle time since the backlog was seen
    assert round_(wm, 101.0, {"orders/1": (5, T0 + 101.0, 5)}) == []
    assert round_(wm, 105.0, {"orders/1": (5, T0 + 105.0, 5)}) == ["orders/1"]


def test_a_newly_assigned_partition_is_quiet_since_its_assignment() -> None:
    wm = tracker()
    wm.forwarded_batch({"orders/0": 40}, {"orders/0": 60_000}, now=1.0)
    parts = ("orders/0", "orders/1", "orders/2")
    # orders/2 has no owner yet: announced as 0 ("nothing forwarded yet": hold windows)
    assert round_(wm, 2.0, {}, parts) == []
    assert wm.forwarded["orders/2"] == 0
    # assigned here at 50, nothing read in it yet: the consumer's position is where reading
    # starts (empty partition: highwater 0); quiet since 50, not since it was first seen
    assert round_(wm, 50.0, {"orders/2": (0, T0 + 50.0, 0)}, parts) == []
    assert wm.last_event["orders/2"] == 50.0
    assert round_(wm, 59.0, {"orders/2": (0, T0 + 59.0, 0)}, parts) == []
    assert round_(wm, 60.0, {"orders/2": (0, T0 + 60.0, 0)}, parts) == ["orders/2"]
    assert wm.forwarded["orders/2"] == 60_000


def test_a_newly_assigned_partition_not_fetched_yet_or_with_data_waits() -> None:
    wm = tracker()
    wm.forwarded_batch({"orders/0": 40}, {"orders/0": 60_000}, now=1.0)
    parts = ("orders/0", "orders/2")
    assert round_(wm, 50.0, {"orders/2": (None, None, 0)}, parts) == []  # not fetched yet
    assert round_(wm, 80.0, {"orders/2": (None, None, 0)}, parts) == []
    # fetched: starts reading at 0 of 7 records: a backlog, not idle
    assert round_(wm, 90.0, {"orders/2": (7, T0 + 90.0, 0)}, parts) == []
    assert wm.forwarded["orders/2"] == 0


def test_a_batch_arriving_while_the_position_is_asked_wins() -> None:
    wm = tracker()
    wm.forwarded_batch({"orders/0": 40}, {"orders/0": 60_000}, now=1.0)
    wm.start_round(("orders/0", "orders/2"), T0 + 50.0)
    assert wm.idle_target("orders/2", 0, int((T0 + 51.0) * 1000), 50.0) == 60_000
    assert wm.still_unread("orders/2")
    wm.batch_started(["orders/2"])  # meanwhile ingest got a batch of it
    assert not wm.still_unread("orders/2")
    wm.batch_done()
    wm.forwarded_batch({"orders/2": 3}, {"orders/2": 59_000}, now=50.1)
    assert not wm.still_unread("orders/2")


def test_a_partition_being_forwarded_is_not_idle() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    wm.batch_started(["orders/1"])
    assert round_(wm, 30.0, {"orders/1": (5, T0 + 30.0, 5)}) == []
    wm.batch_done()
    assert round_(wm, 31.0, {"orders/1": (5, T0 + 31.0, 5)}) == ["orders/1"]


def test_targets_are_capped_by_the_partitions_own_last_empty_fetch() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    wm.forwarded_batch({"orders/0": 80}, {"orders/0": 120_000}, now=5.0)
    round_(wm, 6.0, {})  # ... and 120000 at wall T0 + 6
    # the frontier reached 60000 at wall T0 + 1 and 120000 at T0 + 6.
    # orders/1's latest fetch was at T0 + 4: what was forwarded elsewhere before (by more than
    # FRESH_FETCH_S) is 60000; 120000 may come with data it has not fetched yet
    assert round_(wm, 20.0, {"orders/1": (5, T0 + 4.0, 5)}) == ["orders/1"]
    assert wm.forwarded["orders/1"] == 60_000
    # a fetch only 0.2 s after the frontier moved is not fresh enough for that move
    assert round_(wm, 21.0, {"orders/1": (5, T0 + 6.2, 5)}) == []
    assert wm.forwarded["orders/1"] == 60_000
    assert round_(wm, 22.0, {"orders/1": (5, T0 + 7.0, 5)}) == ["orders/1"]
    assert wm.forwarded["orders/1"] == 120_000


def test_a_fetch_older_than_every_frontier_move_gives_no_target() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    # the frontier reached 60000 at wall T0 + 1: a fetch at T0 + 1 may predate data sent with it
    assert wm.idle_target("orders/1", 5, int((T0 + 1.0) * 1000), 30.0) is None
    assert round_(wm, 30.0, {"orders/1": (5, T0 + 1.0, 5)}) == []
    assert wm.forwarded["orders/1"] == 1_000


def test_zero_never_lowers_a_watermark() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    # a round announcing every partition (0 = "nothing yet") keeps what was forwarded
    round_(wm, 2.0, {}, ("orders/0", "orders/1", "clicks/0"))
    assert wm.forwarded == {"orders/0": 60_000, "orders/1": 1_000, "clicks/0": 0}
    # an older batch (a replay after a failed commit) or one of markers only lowers nothing
    wm.forwarded_batch({"orders/0": 41}, {"orders/0": 30_000}, now=3.0)
    wm.forwarded_batch({"orders/0": 42}, {"orders/0": 0}, now=3.5)
    assert wm.forwarded["orders/0"] == 60_000
    # and the idle rule only ever raises: a target below what a partition has is no target
    wm.forwarded_batch({"orders/1": 6}, {"orders/1": 90_000}, now=4.0)
    assert round_(wm, 50.0, {"orders/1": (6, T0 + 50.0, 6)}) == []
    assert wm.forwarded["orders/1"] == 90_000


def test_each_watermark_is_announced_once_per_value() -> None:
    wm = tracker()
    busy_and_quiet(wm)
    round_(wm, 2.0, {}, ("orders/0", "orders/1", "orders/2"))
    first = wm.unannounced()
    assert sorted(first) == [("orders/0", 60_000), ("orders/1", 1_000), ("orders/2", 0)]
    for src, ts in first:
        wm.announced(src, ts)
    assert wm.unannounced() == []
    wm.forwarded_batch({"orders/0": 50}, {"orders/0": 61_000}, now=3.0)
    assert wm.unannounced() == [("orders/0", 61_000)]
    # one not marked announced (its send failed) is offered again
    assert wm.unannounced() == [("orders/0", 61_000)]


def test_catalog_and_control_partitions_are_read_but_never_quiet_sources() -> None:
    wm = tracker()
    wm.forwarded_batch({"catalog/0": 9, "orders/0": 3}, {"orders/0": 5_000}, now=7.0)
    assert wm.next_offset == {"catalog/0": 9, "orders/0": 3}
    assert wm.last_event == {"orders/0": 7.0}
    assert "catalog/0" not in wm.forwarded
