"""A producer flush that is a real barrier for table writes.

faust-streaming's ``Producer.flush()`` is what it calls before committing offsets, and what the
window agent calls between the steps of a tick. It drains its send buffer with
``ProducerBuffer.flush_atmost``, which returns as soon as one message takes longer than 0.1 s to
be handed to aiokafka (as when aiokafka waits for the previous batch of the same partition to
drain), and never sees the message its background task is handing over at that moment. Changelog
records still in the buffer are then outside the flush; the offsets are committed anyway, and a
kill -9 loses state that the committed offsets say exists. The kill -9 fault test caught it: a
restarted worker had lost the table writes of 22 envelopes its predecessor had committed.

``AckedTable`` keeps the future of every changelog record it sends, and
``make_flush_durable`` makes the app's producer flush also wait until the broker has
acknowledged each of them (a failed send raises there, so nothing is committed past it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import faust

PRUNE_AT = 4096  # forget acknowledged futures once this many are kept between two flushes


class AckedTable(faust.Table):  # type: ignore[misc]
    """A Faust table whose changelog writes can be awaited until the broker acknowledged them."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        pending: list[Any] = self.__dict__.setdefault("_unacked", [])
        pending.append(fut)
        if len(pending) >= self.__dict__.get("_prune_at", PRUNE_AT):
            pending[:] = [f for f in pending if not _acked(f)]
            # a tick can send far more than PRUNE_AT before any is acknowledged: prune again
            # only when the list has doubled, so pruning stays O(1) per write on average
            self.__dict__["_prune_at"] = max(PRUNE_AT, 2 * len(pending))
        return fut

    def unacked(self) -> int:
        """Changelog records sent but not yet acknowledged."""
        return sum(not _acked(f) for f in self.__dict__.get("_unacked", ()))

    async def wait_acked(self) -> None:
        """Until every changelog record sent so far is acknowledged (raises if one failed)."""
        pending: list[Any] = self.__dict__.setdefault("_unacked", [])
        while pending:
            await asyncio.gather(*pending)  # writes sent meanwhile: the next round
            pending[:] = [f for f in pending if not _acked(f)]


def _acked(fut: Any) -> bool:
    return bool(fut.done() and not fut.cancelled() and fut.exception() is None)


def make_flush_durable(app: faust.App, tables: Iterable[Any]) -> None:
    """Make ``app.producer.flush()`` (Faust's pre-commit flush included) wait for the
    acknowledgement of every changelog record of ``tables`` sent before it was called."""
    producer = app.producer
    buffered_flush = producer.flush
    acked: list[AckedTable] = list(tables)
    for table in acked:
        if not isinstance(table, AckedTable):
            raise TypeError(f"{table!r} is not an AckedTable: its writes could not be awaited")

    async def flush() -> None:
        await buffered_flush()
        for table in acked:
            await table.wait_acked()

    producer.flush = flush  # type: ignore[method-assign]
