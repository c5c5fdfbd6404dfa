"""Every envelope of a SKU partition applied once, in offset order, whatever the consumer does.

The window engine's replay protection ("skip what is at or below the highest offset already
folded") is only sound if a partition's envelopes reach it in offset order. faust-streaming does
not guarantee that around a rebalance: a record fetched before the partition was re-sought can be
delivered first, and when its consumer sees offsets jump it marks the skipped range as a *gap* it
may commit past (``Consumer._add_gap``). An envelope delivered ahead of its predecessors would then
mask them (their events look like replays and are skipped), and a watermark delivered ahead of the
events before it closes their windows early. A fault run caught both: two workers, one killed,
the partitions moved twice, and a minute's windows were emitted with part of their events.

So the window agent keeps, per partition and durably (in the partition-state table, written with
the envelope's other state), the offset of the last envelope it applied. An envelope at most one
past it is applied; one further ahead is *not* applied: the agent rewinds the partition to the
first missing offset and reads on from there. The topic is written by ingest without
transactions and never compacted, so its offsets have no legitimate holes; a hole the broker no
longer holds (retention deleted it while no worker ran) is reported as lost envelopes, loudly,
never skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


def applied_key(partition: int) -> str:
    """Key of the partition's last applied offset in the partition-state table."""
    return f"applied/{partition}"


class Step(Enum):
    APPLY = "apply"  # in order (or a replay, which the engine recognises): apply it
    REWIND = "rewind"  # envelopes before it are missing: seek back to ``target`` first
    WAIT = "wait"  # a rewind is under way: this envelope is read again after it


@dataclass
class Continuity:
    """Decides, per envelope, whether it may be applied now (pure: no Kafka inside).

    ``retry_s``: a rewind that has not brought the missing offset within this many seconds is
    issued again (the envelopes refused meanwhile were fetched before the seek took effect).
    """

    retry_s: float = 5.0
    rewinding: dict[int, tuple[int, float]] = field(default_factory=dict)
    rewinds: int = 0  # seeks back issued
    refused: int = 0  # envelopes not applied because one before them was missing

    def check(
        self, partition: int, offset: int, applied: int | None, now: float
    ) -> tuple[Step, int]:
        """What to do with the envelope at ``offset``, given the last ``applied`` one.

        >>> c = Continuity()
        >>> c.check(0, 5, None, now=0.0)  # nothing applied yet on this partition
        (<Step.APPLY: 'apply'>, 5)
        >>> c.check(0, 6, 5, now=0.0)
        (<Step.APPLY: 'apply'>, 6)
        >>> c.check(0, 9, 6, now=0.0)  # 7 and 8 were never applied
        (<Step.REWIND: 'rewind'>, 7)
        >>> c.check(0, 10, 6, now=1.0)  # fetched before the seek took effect
        (<Step.WAIT: 'wait'>, 7)
        >>> c.check(0, 7, 6, now=1.5)
        (<Step.APPLY: 'apply'>, 7)
        """
        if applied is None or offset <= applied + 1:
            self.rewinding.pop(partition, None)
            return Step.APPLY, offset
        target = applied + 1
        self.refused += 1
        pending = self.rewinding.get(partition)
        if pending is not None and pending[0] == target and now - pending[1] < self.retry_s:
            return Step.WAIT, target
        self.rewinding[partition] = (target, now)
        self.rewinds += 1
        return Step.REWIND, target
