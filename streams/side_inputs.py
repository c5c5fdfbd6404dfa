"""Side inputs first: ingest reads the catalog (and control) to its end before any event.

The engine forecasts and decides only the SKUs it has a catalog record for, so the catalog is a
side input of the event streams (orders, clicks), as a Kafka Streams GlobalKTable or Flink's
broadcast state is: it must be loaded before the events are processed. One ingest consumer reads
all public topics at once, and left to itself it interleaves them as the fetches come back: a
worker that joins its group after a whole history was written (``repricer replay`` sends the
catalog first, but nothing orders the fetches of different topics) could forward days of orders
before the catalog, and those days would close with no forecast for the SKUs missing it.

:class:`SideInputBootstrap` does what a GlobalKTable does on start: on every (re)assignment
(the rebalance listener calls :meth:`~SideInputBootstrap.assigned` before anything of the new
assignment is fetched) it pauses the assigned event partitions and reads the side partitions
(catalog, control) up to their end offsets as of that moment; ingest forwards those records like
any batch; once they are forwarded (acknowledged by the broker) it resumes the events. A paused
partition is not fetched, aiokafka returns nothing of it and its position does not move, so its
events are forwarded after the bootstrap, in offset order: nothing is skipped or counted twice.

Brokers whose end offsets lag batched writes (Tansu 0.6.0 reports the first offset of a
partition's last record batch + 1): with ``settle_s`` > 0 (``REPRICER_TOPIC_READ_SETTLE_S``, the
setting of :mod:`repricer.streams.topic_read`) the bootstrap also ends only once the side
partitions have been quiet for ``settle_s`` and their end offsets have not moved past what was
read. The bootstrap is bounded by ``timeout_s``: past it a warning is logged and the events go
on (a side topic that is never quiet must not stop ingest).

Only the side partitions assigned to this member are read here: the group spreads them over its
members, and a member forwards only what it owns. With several members, a SKU's catalog record
may sit in a partition another member owns, so a member's events also wait until the group has
forwarded (committed) the side partitions it does not own up to their end offsets as of its
assignment (with ``settle_s``, also until those commits have been still that long); a member
that joins a group already running finds them forwarded and waits no longer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

BOOTSTRAP_TIMEOUT_S = 60.0  # the longest events wait for the side inputs after an assignment
ASK_TIMEOUT_S = 2.0  # one end-offsets or position request


def bootstrap_timeout(stall_s: float) -> float:
    """How long events wait for the side inputs at most: ``BOOTSTRAP_TIMEOUT_S``, and never
    more than half the health check's stall window (``REPRICER_HEALTH_STALL_S``), so a worker
    waiting for a side input resumes its events before ``/health`` could call it stalled (and a
    liveness probe restart it, into the same wait)."""
    return min(BOOTSTRAP_TIMEOUT_S, stall_s / 2)


Batch = dict[TopicPartition, list[Any]]


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in tps)) or "none"


class SideInputBootstrap:
    """The side partitions of the current assignment, read to their ends before the events.

    ``assigned`` (rebalance listener) pauses the event partitions; ``admit`` filters each polled
    batch; ``step`` (after the batch was forwarded, or after an empty poll) resumes the events
    once the side partitions are read to their ends, or ``timeout_s`` has passed."""

    def __init__(
        self,
        side_topics: Iterable[str],
        *,
        settle_s: float = 0.0,
        timeout_s: float = BOOTSTRAP_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.side_topics = frozenset(side_topics)
        self.settle_s = settle_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.pending = False  # an assignment whose side partitions are not read to the end yet
        self.side: list[TopicPartition] = []
        self.others: list[TopicPartition] = []  # side partitions owned by other members
        self.other_ends: dict[TopicPartition, int] | None = None
        self.other_seen: dict[TopicPartition, int | None] = {}  # their last committed offsets
        self.other_moved = 0.0  # when those last moved
        self.paused: set[TopicPartition] = set()  # event partitions held back until then
        self.ends: dict[TopicPartition, int] | None = None
        self.started = self.last_new = 0.0
        self.records = 0

    def holds(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` is an event partition paused by the bootstrap (not idle: held)."""
        return self.pending and tp in self.paused

    def assigned(self, consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition]) -> None:
        """A new assignment (rebalance listener, synchronous: nothing of it is fetched yet):
        pause its event partitions and start reading its side partitions to their ends."""
        tps = set(assigned)
        self.side = sorted(tp for tp in tps if tp.topic in self.side_topics)
        self.paused = {tp for tp in tps if tp.topic not in self.side_topics}
        self.others = sorted(
            tp
            for topic in self.side_topics
            for tp in (TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ())
            if tp not in tps
        )
        self.other_ends, self.other_seen = None, {}
        if self.paused:
            consumer.pause(*self.paused)
        self.ends = None
        self.records = 0
        self.started = self.last_new = self.clock()
        self.pending = bool(self.paused)
        if self.pending:
            log.info(
                "ingest: reading %s to the end before any event (paused: %s)%s",
                _names(self.side),
                _names(self.paused),
                f"; other members forward {_names(self.others)}" if self.others else "",
            )

    def admit(self, consumer: AIOKafkaConsumer, batch: Batch) -> Batch:
        """The part of a polled batch to forward now. Records of a paused partition (aiokafka
        returns none; never relied on) are put back: the partition is sought to its first one,
        so it is read again, in order, after the bootstrap."""
        if not self.pending:
            return batch
        admitted: Batch = {}
        for tp, records in batch.items():
            if tp in self.paused:
                consumer.seek(tp, records[0].offset)
                continue
            admitted[tp] = records
            if records:
                self.records += len(records)
                self.last_new = self.clock()
                if self.ends is not None and self.settle_s > 0:
                    self.ends[tp] = max(self.ends.get(tp, 0), records[-1].offset + 1)
        return admitted

    async def step(self, consumer: AIOKafkaConsumer) -> None:
        """After a batch was forwarded (or an empty poll): resume the events once every side
        partition is read to its end (and, with ``settle_s``, quiet that long), or past
        ``timeout_s``."""
        if not self.pending:
            return
        timed_out = self.clock() - self.started >= self.timeout_s
        if not timed_out and not await self._read_to_end(consumer):
            return
        self.pending = False
        held = [tp for tp in self.paused if tp in consumer.assignment()]
        consumer.resume(*held)
        took = self.clock() - self.started
        if timed_out:
            log.warning(
                "ingest: %s not read to the end in %.0f s (%d records read); resuming the "
                "events anyway: SKUs whose catalog is not read yet get no forecast until it is",
                _names(self.side),
                self.timeout_s,
                self.records,
            )
        else:
            log.info(
                "ingest: read %d records of %s to the end in %.1f s; events resumed",
                self.records,
                _names(self.side),
                took,
            )

    async def _read_to_end(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether every side partition's position has reached its end offset (taken once, at
        the first step; with ``settle_s``, re-read once quiet that long and past the ends), and
        the group has committed the side partitions of other members up to theirs."""
        return await self._own_read(consumer) and await self._others_forwarded(consumer)

    async def _others_forwarded(self, consumer: AIOKafkaConsumer) -> bool:
        if not self.others:
            return True
        try:
            if self.other_ends is None:
                starts = await _ask(consumer.beginning_offsets(self.others))
                ends = await _ask(consumer.end_offsets(self.others))
                # an empty partition (all of it deleted or compacted away) has nothing to wait for
                self.other_ends = {tp: end for tp, end in ends.items() if end > starts[tp]}
            tps = list(self.other_ends)
            got = await asyncio.gather(*(_ask(consumer.committed(tp)) for tp in tps))
            done = dict(zip(tps, got, strict=True))
            if done != self.other_seen:  # the other members are still forwarding
                self.other_seen, self.other_moved = done, self.clock()
            reached = {tp: -1 if c is None else c for tp, c in done.items()}  # None: no commit
            return await self._at_end(consumer, reached, self.other_ends, self.other_moved)
        except (TimeoutError, KafkaError, AssertionError, KeyError) as exc:
            log.debug("ingest: other members' side input offsets not known yet (%r)", exc)
            return False

    async def _own_read(self, consumer: AIOKafkaConsumer) -> bool:
        if not self.side:
            return True
        try:
            if self.ends is None:
                self.ends = dict(await _ask(consumer.end_offsets(self.side)))
            positions = {tp: int(await _ask(consumer.position(tp))) for tp in self.side}
            return await self._at_end(consumer, positions, self.ends, self.last_new)
        except (TimeoutError, KafkaError, AssertionError, KeyError) as exc:
            log.debug("ingest: side input positions not known yet (%r)", exc)
            return False

    async def _at_end(
        self,
        consumer: AIOKafkaConsumer,
        reached: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        moved_at: float,
    ) -> bool:
        """Whether the offsets ``reached`` (positions read, or the group's commits) are at
        ``ends``; with ``settle_s`` (end offsets that lag), also still since ``moved_at`` for
        that long and past the end offsets asked again now."""
        if any(reached[tp] < end for tp, end in ends.items()):
            return False
        if self.settle_s <= 0:
            return True
        if self.clock() - moved_at < self.settle_s:
            return False
        later = await _ask(consumer.end_offsets(list(ends)))
        return all(reached[tp] >= end for tp, end in later.items())


async def _ask(request: Any) -> Any:
    return await asyncio.wait_for(request, ASK_TIMEOUT_S)
