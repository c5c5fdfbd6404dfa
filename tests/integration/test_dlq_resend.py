"""Dead letters you can act on, end to end on the real broker and ClickHouse:

a poison order is dead-lettered with its original bytes, key and provenance headers; `repricer
dlq show` prints it; the fixed order sent with `repricer dlq resend --payload` is counted once in
ClickHouse; resending again skips it (already resent), and a forced resend is refused by the
engine as a duplicate order, so nothing counts twice. Then every record of every output topic
the worker produced carries repricer's headers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from repricer.infra.clickhouse import connect
from repricer.streams.headers import SCHEMA_VERSIONS, header
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import drained, settings_env
from repricer.streams.topic_read import read_topic
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
COMMON = ("content-type", "repricer-schema", "repricer-schema-version")
PRODUCER = ("repricer-producer", "repricer-worker")


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` to its end (with the settle the fixtures set for Tansu)."""
    return list(read_topic(settings, topic, timeout_s=120))


def cli(settings: Settings, *args: str) -> dict[str, Any]:
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "repricer.streams.cli", "dlq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_poison_fix_resend_counted_once_and_headers_everywhere(
    worker_factory: WorkerFactory, sink_url: str, tmp_path: Path
) -> None:
    settings, worker, producer = worker_factory(
        app="dlq",
        partitions=1,
        lateness_s=1,
        idle_source_s=1,
        min_change=0.0001,
        sink_flush_s=0.2,
        thompson_hold_s=60,
        clickhouse_url=sink_url,
    )
    sent = 0
    for sku in ("A", "B"):
        item = {"sku": sku, "cost": 10, "base_price": 20, "min_price": 11, "max_price": 60}
        producer.send(settings.topic_catalog, key=sku.encode(), value=json.dumps(item).encode())
        sent += 1
    good = {"order_id": "A-good", "ts": T0 + 5_000, "sku": "A", "qty": 2, "unit_price": 20}
    poison = b'{"order_id":"A-fixme","ts":%d,"sku":"A","qty":"three","unit_price":20}' % (
        T0 + 6_000
    )
    producer.send(settings.topic_orders, key=b"A", value=json.dumps(good).encode())
    meta = producer.send(settings.topic_orders, key=b"A", value=poison).get(timeout=30)
    producer.flush()
    sent += 2
    letter_id = f"{settings.topic_orders}/{meta.partition}@{meta.offset}"
    worker.wait_until(lambda st: st.get("dlq", {}).get("wrong_type", 0) == 1, timeout=90)

    # the dead-letter record: original bytes and key, provenance in headers
    [rec] = read_all(settings, settings.topic_dlq)
    assert rec.key == b"A"
    hd = rec.headers
    assert header(hd, "repricer-dlq-reason") == "wrong_type"
    assert "qty" in (header(hd, "repricer-dlq-error") or "")
    assert header(hd, "repricer-dlq-source-topic") == settings.topic_orders
    assert header(hd, "repricer-dlq-source-partition") == str(meta.partition)
    assert header(hd, "repricer-dlq-source-offset") == str(meta.offset)
    assert header(hd, "repricer-dlq-source-timestamp") == str(meta.timestamp)
    assert int(header(hd, "repricer-dlq-first-seen") or 0) > 0
    assert header(hd, "repricer-dlq-payload-truncated") == "0"
    assert header(hd, "repricer-schema") == "DeadLetter"
    letter = json.loads(rec.value)
    assert letter["payload"].encode() == poison and letter["key"] == "A"

    shown = cli(settings, "show", letter_id)
    assert shown["payload"].encode() == poison
    assert shown["decoded"]["rejected_now"] == "wrong_type"
    assert shown["headers"]["repricer-dlq-reason"] == "wrong_type"
    listed = cli(settings, "list", "--ids", "5")
    assert listed["groups"][0]["reason"] == "wrong_type"
    assert listed["groups"][0]["ids"] == [letter_id]

    # fix -> resend: counted once; again: skipped; forced: the engine refuses the duplicate
    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(poison.replace(b'"three"', b"3"))
    first = cli(settings, "resend", "--id", letter_id, "--payload", str(fixed))
    assert first["resent"] == 1 and first["sent"][0]["id"] == letter_id
    sent += 1
    again = cli(settings, "resend", "--id", letter_id, "--payload", str(fixed))
    assert again["resent"] == 0 and letter_id in again["already_resent"]
    by_reason = cli(settings, "resend", "--reason", "wrong_type")
    assert by_reason["resent"] == 0 and letter_id in by_reason["already_resent"]
    forced = cli(settings, "resend", "--id", letter_id, "--payload", str(fixed), "--force")
    assert forced["resent"] == 1
    sent += 1
    worker.wait_until(lambda st: st.get("dlq", {}).get("duplicate_order", 0) == 1, timeout=90)

    # more windows: decisions, price changes and prices to check the headers of
    for w in range(1, 12):
        if w >= 2:  # windows up to w-2 closed (window 0 had only A) before w is sent
            worker.wait_until(
                lambda st, n=2 * (w - 1) - 1: st.get("windows_closed", 0) >= n, timeout=60
            )
        for sku in ("A", "B"):
            order = {"order_id": f"{sku}{w}", "ts": T0 + w * MIN + 5000, "sku": sku}
            order |= {"qty": 2, "unit_price": 20}
            producer.send(settings.topic_orders, key=sku.encode(), value=json.dumps(order).encode())
            sent += 1
        producer.flush()
    stats = worker.wait_until(drained(sent), timeout=120, stable_s=1.0)
    worker.stop()
    assert stats["dlq"] == {"wrong_type": 1, "duplicate_order": 1}

    ch = connect(sink_url)
    try:
        [(orders, units)] = ch.query(
            f"SELECT orders, units FROM {ch.database}.sales_1m FINAL "
            "WHERE sku = 'A' AND window_start = toDateTime(%(ws)s)",
            {"ws": T0 // 1000},
        )
        letters = ch.query(
            f"SELECT reason, payload, record_key, source_topic, source_partition, source_offset "
            f"FROM {ch.database}.dead_letters FINAL ORDER BY reason"
        )
    finally:
        ch.close()
    assert (orders, units) == (2, 5)  # A-good (2) and the fixed A-fixme (3), once each
    assert letters[1][0] == "wrong_type" and letters[1][1].encode() == poison
    assert letters[1][2] == "A"
    # the forced resend's own record is the duplicate the engine refused
    assert letters[0][0] == "duplicate_order"
    assert "{}/{}@{}".format(*letters[0][3:]) == forced["sent"][0]["to"]

    # headers on every record of every topic the worker produces
    outputs = {
        settings.topic_price_changes: {"PriceChange"},
        settings.topic_prices: {"PriceState"},
        settings.topic_dlq: {"DeadLetter"},
        f"{settings.app_id}-aggregates": {"SalesWindow", "ClicksWindow", "ForecastRow"},
        f"{settings.app_id}-sku-events": {"Envelope"},
    }
    for topic, schemas in outputs.items():
        records = read_all(settings, topic)
        assert records, f"{topic}: nothing produced, nothing checked"
        for r in records:
            names = {k for k, _ in r.headers}
            assert set(COMMON + PRODUCER) <= names, (topic, r.offset, r.headers)
            schema = header(r.headers, "repricer-schema")
            assert schema in schemas, (topic, schema)
            assert header(r.headers, "repricer-schema-version") == str(SCHEMA_VERSIONS[schema])
            assert header(r.headers, "content-type") == "application/json"
    changes = read_all(settings, settings.topic_price_changes)
    assert all(json.loads(r.value)["schema_version"] == 1 for r in changes)
