"""``repricer replay FILE``: historical orders into Kafka in event-time order, with a speed-up.

The file is CSV with a header naming at least ``order_id, ts, sku, qty, unit_price`` (and
optionally ``currency, customer_id``); ``ts`` is RFC 3339 with an offset or epoch milliseconds.
Rows are sorted by event time and sent at ``speed`` times the original pace (``0`` = as fast as
possible). Rows that do not validate are reported and skipped, not sent.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from infra.kafka_client import kafka_python_config, producer_batch_bytes
from schemas import Order, Rejection, decode, ts_ms
from streams.settings import Settings

NUMERIC = {"qty": int, "unit_price": float}


def read_orders(path: Path) -> tuple[list[tuple[int, bytes, str]], list[str]]:
    """Valid orders as (event time ms, JSON payload, key) sorted by time, and the problems."""
    rows: list[tuple[int, bytes, str]] = []
    problems: list[str] = []
    with path.open(newline="") as f:
        for line_no, rec in enumerate(csv.DictReader(f), start=2):
            body: dict[str, Any] = {k: v for k, v in rec.items() if v not in (None, "")}
            for k, typ in NUMERIC.items():
                if k in body:
                    try:
                        body[k] = typ(body[k])
                    except ValueError:
                        pass  # the decoder reports it with the field's name
            ts = body.get("ts")
            if isinstance(ts, str) and ts.isdigit():
                body["ts"] = int(ts)
            payload = json.dumps(body).encode()
            result = decode(payload, Order)
            if isinstance(result, Rejection):
                problems.append(f"line {line_no}: {result.reason}: {result.detail}")
                continue
            rows.append((ts_ms(result.ts), payload, result.order_id))
    rows.sort(key=lambda r: r[0])
    return rows, problems


def pace(rows: list[tuple[int, bytes, str]], speed: float) -> Iterator[tuple[int, bytes, str]]:
    """Yield rows, sleeping so that event time advances ``speed`` times faster than wall time."""
    if not rows:
        return
    t0_event, t0_wall = rows[0][0], time.monotonic()
    for row in rows:
        if speed > 0:
            due = t0_wall + (row[0] - t0_event) / 1000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield row


def replay(path: Path, *, speed: float, settings: Settings) -> dict[str, int]:
    rows, problems = read_orders(path)
    for p in problems[:20]:
        print(p, file=sys.stderr)
    producer = KafkaProducer(
        linger_ms=5, batch_size=producer_batch_bytes(settings), **kafka_python_config(settings)
    )
    sent = 0
    try:
        for _ts, payload, key in pace(rows, speed):
            producer.send(settings.topic_orders, key=key.encode(), value=payload)
            sent += 1
            if sent % 10_000 == 0:
                print(f"replayed {sent}/{len(rows)} orders", file=sys.stderr)
        producer.flush()
    finally:
        producer.close()
    return {"sent": sent, "skipped": len(problems)}
