"""How far each source partition has been forwarded: the watermarks ingest broadcasts.

Ingest forwards the events of the public topics to the SKU partitions and, every
``WATERMARK_FLUSH_S``, tells every SKU partition how far (in event time) each source partition
of the event topics (orders, clicks) has been forwarded, so windows close even on quiet SKU
partitions. ``SourceWatermarks`` is that bookkeeping, with no Kafka in it: the ingest agent
feeds it what its consumer says (batches forwarded, partitions known and assigned, highwater,
last fetch, position) and sends what it says to send.

The rules:

* Only events the broker has acknowledged count (``forwarded_batch`` is called after that).
* Every partition of the event topics is announced, owned here or not, with 0 = "nothing
  forwarded yet": a window must never close on the sources one worker happens to own while
  another source has no owner yet. A watermark never goes down: a 0 never lowers anything.
* A source partition that is caught up (nothing left to read) and has had no event for
  ``idle_s`` is idle: it joins the others, but only up to the event time forwarded elsewhere
  *before its own latest empty fetch* (data produced together with newer events may not have
  been fetched here yet). A partition with a backlog is slow, not idle: it never moves.
* A partition assigned here but silent since (re)start counts as quiet since it was assigned.

A broadcast round, as the agent runs it::

    wm.start_round(every_event_partition, wall_now)
    for src in assigned:
        target = wm.idle_target(src, highwater, last_fetch_ms, now)
        if target is None:
            continue
        pos = wm.next_offset.get(src)          # else ask the consumer, then
        ...                                    # wm.still_unread(src) after that await
        wm.fetch_state(src, highwater, pos, now)
    moved = wm.advance(now)
    for src, ts in wm.unannounced():
        wm.announced(src, ts)
        ...                                    # send WatermarkEnv(src, ts) to every partition
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from repricer.streams.engine.clock import advance_idle_sources

FRESH_FETCH_S = 0.5  # an idle partition's "nothing new" must be this much newer than the frontier


class SourceWatermarks:
    """Per source partition (``"topic/partition"``): event time forwarded, what was last
    announced, when it last had an event, and the next offset to read in it."""

    def __init__(
        self, event_topics: Iterable[str], idle_s: float, *, fresh_fetch_s: float = FRESH_FETCH_S
    ) -> None:
        self.event_topics = frozenset(event_topics)
        self.idle_s = idle_s
        self.fresh_fetch_s = fresh_fetch_s
        self.forwarded: dict[str, int] = {}  # highest event time forwarded and acknowledged
        self.broadcast: dict[str, int] = {}  # what was last announced
        self.last_event: dict[str, float] = {}  # monotonic time of its latest event
        self.next_offset: dict[str, int] = {}  # next offset to read, once something was read
        self.inflight: set[str] = set()  # with a batch being forwarded right now
        # (newest event time forwarded, wall time it got there): what an idle partition may join
        self.frontier_moves: deque[tuple[int, float]] = deque(maxlen=4096)
        self._targets: dict[str, int] = {}
        self._caught_up: set[str] = set()

    def is_event_source(self, src: str) -> bool:
        return src.rpartition("/")[0] in self.event_topics

    # ------------------------------------------------------------------- ingest's batches

    def batch_started(self, srcs: Iterable[str]) -> None:
        """A batch of these source partitions is being forwarded: none of them is idle."""
        self.inflight.update(srcs)

    def batch_done(self) -> None:
        self.inflight.clear()

    def forwarded_batch(
        self, next_offsets: Mapping[str, int], newest: Mapping[str, int], now: float
    ) -> None:
        """A batch is acknowledged by the broker: ``next_offsets`` per source partition read,
        ``newest`` event time per source partition in it (events and end-of-input markers);
        ``now`` is monotonic."""
        for src, off in next_offsets.items():
            self.next_offset[src] = off
            if self.is_event_source(src):
                self.last_event[src] = now
        for src, ts in newest.items():
            if ts > self.forwarded.get(src, 0):
                self.forwarded[src] = ts

    # --------------------------------------------------------------------- a broadcast round

    def start_round(self, partitions: Iterable[str], wall_now: float) -> None:
        """Begin a round: ``partitions`` are all partitions of the event topics (owned here or
        not; announced as 0 until something is forwarded); ``wall_now`` is ``time.time()``."""
        for src in partitions:
            self.forwarded.setdefault(src, 0)
        newest = max(self.forwarded.values(), default=0)
        if newest and (not self.frontier_moves or newest > self.frontier_moves[-1][0]):
            self.frontier_moves.append((newest, wall_now))
        self._targets = {}
        self._caught_up = set()

    def idle_target(
        self, src: str, highwater: int | None, last_fetch_ms: int | None, now: float
    ) -> int | None:
        """For a source partition assigned here: the event time it would join if it is idle,
        or None when it cannot be idle now (not fetched yet, being forwarded, nothing newer
        elsewhere before its own latest empty fetch at ``last_fetch_ms``, wall ms)."""
        self.forwarded.setdefault(src, 0)
        self.last_event.setdefault(src, now)  # quiet since it was assigned here
        if highwater is None or src in self.inflight:  # not fetched yet, or being forwarded
            return None
        if last_fetch_ms is None:
            return None
        fetched_at = last_fetch_ms / 1000
        target = next(
            (
                ts
                for ts, at in reversed(self.frontier_moves)
                if at + self.fresh_fetch_s <= fetched_at
            ),
            0,
        )
        if target <= self.forwarded[src]:
            return None
        self._targets[src] = target
        return target

    def still_unread(self, src: str) -> bool:
        """After asking the consumer for the position: no batch of ``src`` came meanwhile."""
        return src not in self.inflight and src not in self.next_offset

    def fetch_state(self, src: str, highwater: int, position: int, now: float) -> None:
        """What the consumer says of ``src``: caught up (may be idle), or a backlog (then it is
        not quiet: it must wait at least another ``idle_s / 2`` after the backlog is read)."""
        if highwater == 0 or position >= highwater:
            self._caught_up.add(src)
        else:
            self.last_event[src] = max(self.last_event.get(src, now), now - self.idle_s / 2)

    def advance(self, now: float) -> list[str]:
        """Move the idle source partitions of this round; returns those moved."""
        return advance_idle_sources(
            self.forwarded,
            self.last_event,
            now,
            self.idle_s,
            self._caught_up,
            targets=self._targets,
        )

    def unannounced(self) -> list[tuple[str, int]]:
        """(source partition, event time) not announced yet at that event time."""
        return [(src, ts) for src, ts in self.forwarded.items() if self.broadcast.get(src) != ts]

    def announced(self, src: str, ts: int) -> None:
        self.broadcast[src] = ts
