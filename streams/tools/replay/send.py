"""Send read history to Kafka: catalog first, then orders and clicks in event-time order at a
pace, then the end-of-input watermark markers (see the package docstring)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from repricer.schemas.decode import WATERMARK_HEADER
from repricer.streams.settings import Settings
from repricer.streams.tools.replay.read import (
    EVENT_KINDS,
    KINDS,
    MAX_LISTED,
    History,
    ReadOptions,
    Row,
    load,
)


def end_of_input_at(last_event_ms: int, settings: Settings) -> int:
    """The marker time that closes every window holding an event at or before
    ``last_event_ms``: past its window and the allowed lateness."""
    return last_event_ms + settings.window_ms + settings.lateness_ms + 1


def pace(rows: Iterable[Row], speed: float) -> Iterator[Row]:
    """Yield rows, sleeping so that event time advances ``speed`` times faster than wall time."""
    t0_event: int | None = None
    t0_wall = 0.0
    for row in rows:
        if speed > 0:
            if t0_event is None:
                t0_event, t0_wall = row.ts, time.monotonic()
            delay = t0_wall + (row.ts - t0_event) / 1000 / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield row


class Progress:
    """A line on stderr every ``every_n`` records or ``every_s`` seconds, whichever is first."""

    def __init__(
        self,
        total: int,
        out: Callable[[str], None] | None,
        every_n: int = 50_000,
        every_s: float = 5.0,
    ) -> None:
        self.total, self.out, self.every_n, self.every_s = total, out, every_n, every_s
        self.n = 0
        self.started = self.last = time.monotonic()

    def tick(self, ts: int) -> None:
        self.n += 1
        if self.out is None:
            return
        now = time.monotonic()
        if self.n % self.every_n == 0 or now - self.last >= self.every_s:
            self.last = now
            rate = self.n / max(now - self.started, 1e-9)
            at = f", event time {iso(ts)}" if ts else ""
            self.out(
                f"replay: {self.n}/{self.total} records sent "
                f"({100 * self.n / max(self.total, 1):.0f}%, {rate:,.0f}/s{at})"
            )


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class _Sender:
    """A kafka-python producer that counts what the broker refused (nothing is lost quietly)."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        from repricer.infra.kafka_client import kafka_python_config, producer_batch_bytes

        self.producer = KafkaProducer(
            linger_ms=5,
            retries=5,
            max_in_flight_requests_per_connection=1,  # keeps each partition's order on retries
            batch_size=producer_batch_bytes(settings, 64 * 1024),
            **kafka_python_config(settings),
        )
        self.failed = 0
        self.first_error = ""

    def _failed(self, exc: BaseException) -> None:
        self.failed += 1
        if not self.first_error:
            self.first_error = repr(exc)

    def send(self, topic: str, value: bytes, **kw: Any) -> None:
        self.producer.send(topic, value=value, **kw).add_errback(self._failed)

    def partitions(self, topic: str) -> list[int]:
        parts = self.producer.partitions_for(topic)
        if not parts:
            raise RuntimeError(f"topic {topic!r} has no partitions (run `repricer init`)")
        return sorted(parts)

    def flush(self) -> None:
        self.producer.flush()
        if self.failed:
            raise RuntimeError(
                f"{self.failed} records were refused by the broker (first: {self.first_error})"
            )

    def close(self) -> None:
        self.producer.close()


def send_markers(sender: _Sender, settings: Settings, at_ms: int) -> dict[str, int]:
    """One end-of-input marker at ``at_ms`` on every partition of the orders and clicks topics."""
    value = json.dumps({"watermark": at_ms}).encode()
    headers = [(WATERMARK_HEADER, str(at_ms).encode("ascii"))]
    out: dict[str, int] = {}
    for name in EVENT_KINDS:
        topic = KINDS[name].topic(settings)
        parts = sender.partitions(topic)
        for p in parts:
            sender.send(topic, value, partition=p, headers=headers)
        out[name] = len(parts)
    sender.flush()
    return out


def replay_history(
    history: History,
    *,
    speed: float,
    settings: Settings,
    end_of_input: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Send a loaded history (catalog, then events in time order, then the markers)."""
    sent: Counter[str] = Counter({k: 0 for k in KINDS})
    sender = _Sender(settings)
    prog = Progress(len(history.catalog) + len(history.events), progress)
    markers: dict[str, Any] | None = None
    try:
        for row in history.catalog:
            sender.send(settings.topic_catalog, row.payload, key=row.key)
            sent["catalog"] += 1
            prog.tick(0)
        sender.flush()  # the catalog is in before the first order
        for row in pace(history.events, speed):
            sender.send(KINDS[row.kind].topic(settings), row.payload, key=row.key)
            sent[row.kind] += 1
            prog.tick(row.ts)
        sender.flush()  # every event acknowledged before the markers follow them
        if end_of_input and history.events:
            at = end_of_input_at(history.events[-1].ts, settings)
            markers = {
                "at": at,
                "at_iso": iso(at),
                "partitions": send_markers(sender, settings, at),
            }
    finally:
        sender.close()
    first = history.events[0].ts if history.events else None
    last = history.events[-1].ts if history.events else None
    return {
        "sent": dict(sent),
        "read": dict(history.read),
        "skipped": len(history.problems),
        "skipped_by_reason": history.skipped_by_reason,
        "problems": [str(p) for p in history.problems[:MAX_LISTED]],
        "first_event_time": iso(first),
        "last_event_time": iso(last),
        "end_of_input": markers,
    }


def end_of_input_only(settings: Settings, at_ms: int) -> dict[str, Any]:
    """Only the markers, at ``end_of_input_at(at_ms)``: for history imported by another tool."""
    marker = end_of_input_at(at_ms, settings)
    sender = _Sender(settings)
    try:
        parts = send_markers(sender, settings, marker)
    finally:
        sender.close()
    return {"end_of_input": {"at": marker, "at_iso": iso(marker), "partitions": parts}}


def replay_files(
    sources: list[tuple[str, Path]],
    *,
    opts: ReadOptions,
    speed: float,
    settings: Settings,
    end_of_input: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Read, validate and send ``sources``; problems go to ``progress`` (the first 20)."""
    history = load(sources, opts, settings, progress)
    if progress is not None:
        for p in history.problems[:MAX_LISTED]:
            progress(f"skipped {p}")
        if len(history.problems) > MAX_LISTED:
            progress(f"... and {len(history.problems) - MAX_LISTED} more rows skipped")
    return replay_history(
        history, speed=speed, settings=settings, end_of_input=end_of_input, progress=progress
    )


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
