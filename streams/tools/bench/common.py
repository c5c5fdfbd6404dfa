"""What the pipeline benchmarks share: figures (min/median/max), the machine label, temporary
directories, bench settings and producing test events to a broker.

Every benchmark measures a RATIO of two things run side by side in the same process or run, on
the same data (what to compare across machines), with the absolute numbers alongside, labelled
with the machine. Repeats give min/median/max. Every server runs on 127.0.0.1 in a temporary
directory and every run is bounded in event count and in time.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Progress = Callable[[str], None] | None

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN_MS = 60_000


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def say(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


def mmm(xs: list[float], nd: int = 3) -> list[float]:
    """[min, median, max] rounded."""
    return [round(min(xs), nd), round(statistics.median(xs), nd), round(max(xs), nd)]


def median_and_range(key: str, xs: list[float], nd: int = 3) -> dict[str, Any]:
    """``key``: the median of ``xs`` (a whole number for ``nd=0``), ``key_min_median_max``:
    :func:`mmm`.

    >>> median_and_range("r", [1.0, 2.0, 4.0], 0)
    {'r': 2, 'r_min_median_max': [1.0, 2.0, 4.0]}
    """
    med = statistics.median(xs)
    return {key: round(med, nd) if nd else round(med), f"{key}_min_median_max": mmm(xs, nd)}


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


@contextmanager
def tmpdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


def click_payloads(n: int, skus: int = 1000, minutes: int = 5) -> list[tuple[bytes, bytes]]:
    """``n`` valid click events of ~200 bytes, event time spread over ``minutes`` minutes."""
    out = []
    kinds = ("view", "view", "view", "add_to_cart", "remove_from_cart")
    span = minutes * MIN_MS
    for i in range(n):
        sku = f"SKU-{i % skus:06d}"
        body = {
            "event_id": f"bench-{i:09d}-{uuid.UUID(int=i).hex}",
            "ts": T0 + (i * span) // n,
            "session_id": f"session-{i % 9973:06d}-{uuid.UUID(int=i * 7 + 1).hex[:20]}",
            "sku": sku,
            "type": kinds[i % len(kinds)],
        }
        out.append((sku.encode(), json.dumps(body).encode()))
    return out


def produce(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1
    )
    try:
        for key, value in payloads:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()


def bench_settings(tmp: Path, broker_url: str, tag: str, **kw: Any) -> Any:
    from repricer.streams.settings import Settings

    # Tansu completes a consumer-group join only after half the session timeout: 6 s makes a
    # worker's three joins 3 s each instead of 15 s (timed figures start at the first record)
    kw.setdefault("kafka_session_timeout_s", 6.0)
    return Settings(
        app_id=f"bench-{tag}-{uuid.uuid4().hex[:6]}",
        broker=broker_url,
        clickhouse_url=f"chdb://{tmp / ('chdb-' + tag)}?database=bench",
        data_dir=str(tmp / f"faust-{tag}"),
        web_enabled=False,
        **kw,
    )
