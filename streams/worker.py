"""What the agents of one worker share: the ``Repricer`` context and its ``Stats``.

``streams.app.create_app`` builds a ``Repricer`` and hands it to each agent's ``register(rp)``;
the agents import these types from here (never the app factory, which imports them).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust

from repricer.streams.engine import WindowEngine
from repricer.streams.settings import Settings
from repricer.streams.shutdown import RepricerApp


@dataclass
class Stats:
    """Counters of one worker, written to ``<data_dir>/stats.json`` every second."""

    ingested: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)
    events_folded: int = 0  # orders and clicks folded into windows by the window agent
    first_read_at: float = 0.0  # wall time ingest first got records since start (throughput)
    first_fold_at: float = 0.0  # wall time of the first fold since start
    last_fold_at: float = 0.0  # wall time of the latest fold
    windows_closed: int = 0
    labels: int = 0
    forecast_rows: int = 0
    decisions: int = 0
    price_changes: int = 0
    late_events: int = 0
    model_errors: Counter[str] = field(default_factory=Counter)  # decider calls that raised
    sink_rows: Counter[str] = field(default_factory=Counter)
    sink_errors: int = 0
    sink_pending: int = 0
    sink_batches: int = 0
    sink_last_batch_s: float = 0.0  # latency of the last successful insert (incl. retries)
    sink_last_ok_at: float = 0.0  # wall time of the last successful insert
    sink_pending_since: float = 0.0  # wall time pending rows went from 0 to > 0
    started_at: float = field(default_factory=time.time)
    partitions: list[int] = field(default_factory=list)  # SKU partitions owned by this worker
    quiet_windows: int = 0  # windows closed without a row (no event in them)
    # per SKU partition: its conservation counts as of its latest tick (Accounting.to_dict())
    accounting: dict[int, dict[str, Any]] = field(default_factory=dict)
    event_loop: str = ""  # class of the running event loop, e.g. uvloop.Loop
    # SKU-topic envelopes delivered ahead of a missing one: the partition was rewound to it
    offset_rewinds: int = 0
    envelopes_refused: int = 0  # delivered ahead of a missing one, read again after the rewind
    envelopes_lost: int = 0  # missing envelopes the broker no longer held (retention)

    def unaccounted(self) -> list[int]:
        """Events and units accepted but in no emitted window, open window or dead letter."""
        return [sum(a["unaccounted"][i] for a in self.accounting.values()) for i in range(2)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ingested": dict(self.ingested),
            "events_processed": sum(self.ingested.values()),
            "dlq": dict(self.dlq),
            "events_folded": self.events_folded,
            "first_read_at": self.first_read_at,
            "first_fold_at": self.first_fold_at,
            "last_fold_at": self.last_fold_at,
            "windows_closed": self.windows_closed,
            "labels": self.labels,
            "forecast_rows": self.forecast_rows,
            "decisions": self.decisions,
            "price_changes": self.price_changes,
            "late_events": self.late_events,
            "model_errors": dict(self.model_errors),
            "sink_rows": dict(self.sink_rows),
            "sink_errors": self.sink_errors,
            "sink_pending": self.sink_pending,
            "sink_batches": self.sink_batches,
            "sink_last_batch_s": round(self.sink_last_batch_s, 4),
            "sink_last_ok_at": self.sink_last_ok_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "partitions": self.partitions,
            "quiet_windows": self.quiet_windows,
            "accounting": {str(p): a for p, a in sorted(self.accounting.items())},
            "unaccounted": self.unaccounted(),
            "event_loop": self.event_loop,
            "offset_rewinds": self.offset_rewinds,
            "envelopes_refused": self.envelopes_refused,
            "envelopes_lost": self.envelopes_lost,
            "updated_at": time.time(),
        }


@dataclass
class Repricer:
    """Everything one worker runs: the Faust app plus what its agents share."""

    settings: Settings
    app: RepricerApp
    topics: dict[str, faust.TopicT]
    tables: dict[str, Any]
    engine: WindowEngine
    stats: Stats

    stats_path: Path
    consumers: dict[str, Any] = field(default_factory=dict)  # ingest/sink aiokafka consumers
