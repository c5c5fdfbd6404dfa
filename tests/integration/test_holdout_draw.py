"""`repricer holdout draw` on the real broker and ClickHouse (18.16 and chdb): categories from
the compacted catalog topic, units from `sales_1m`, the strata and the file it writes; a
worker's settings read that file back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from repricer.infra.clickhouse import connect
from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.kafka_client import kafka_python_config
from repricer.infra.local.tansu import TOPIC_READ_SETTLE_S, TansuBroker
from repricer.streams.build import holdout
from repricer.streams.engine.config import bucket
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import settings_env

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: --since
HOUR = 3_600_000
CATEGORIES = ("toys", "food", "garden")


def _draw(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repricer.streams.cli", "holdout", "draw", *args],
        env={**os.environ, **settings_env(settings)},
        timeout=120,
        capture_output=True,
        text=True,
    )


def _settings(broker: TansuBroker, **kw: str) -> Settings:
    s = Settings(
        broker=broker.url,
        topic_catalog=f"catalog-{uuid.uuid4().hex[:6]}",
        topic_read_settle_s=TOPIC_READ_SETTLE_S,
        **kw,
    )
    ensure_topics(s)
    return s


def test_the_draw_reads_catalog_and_sales_and_holds_out_each_stratum(
    broker: TansuBroker, sink_url: str, tmp_path: Path
) -> None:
    settings = _settings(broker, clickhouse_url=sink_url)
    # per category 30 SKUs: 6 sold nothing since T0, 24 sold 1..24 units (8 a tercile)
    want_units = {}
    catalog = {}
    for cat in CATEGORIES:
        for i in range(30):
            sku = f"{cat[0].upper()}-{i:03d}"
            catalog[sku] = cat
            want_units[sku] = 0 if i < 6 else i - 5
    catalog["N-001"] = ""  # no category: its own
    p = KafkaProducer(**kafka_python_config(settings))
    for sku, cat in catalog.items():
        item = {"sku": sku, "cost": 1.0, "base_price": 2.0, "min_price": 1.5, "max_price": 4.0}
        if cat:
            item["category"] = "garden" if sku == "T-000" else cat  # changed below: latest wins
        p.send(settings.topic_catalog, key=sku.encode(), value=json.dumps(item).encode())
    p.send(settings.topic_catalog, key=b"T-000", value=json.dumps(
        {"sku": "T-000", "cost": 1, "base_price": 2, "min_price": 1.5, "max_price": 4,
         "category": "toys"}).encode())  # fmt: skip
    p.send(settings.topic_catalog, key=b"GONE", value=b'{"sku": "GONE", "cost": 1, '
           b'"base_price": 2, "min_price": 1.5, "max_price": 4, "category": "toys"}')  # fmt: skip
    p.send(settings.topic_catalog, key=b"GONE", value=None)  # a tombstone: not drawn
    p.send(settings.topic_catalog, key=b"X", value=b"{not json")  # undecodable: counted
    p.flush()
    p.close()
    # sales_1m: each SKU's units over two windows after T0; an older version of one of them
    # (replaced: FINAL counts the latest), sales before T0 (not counted), a SKU not catalogued
    cols = ("sku", "window_start", "window_end", "orders", "units", "revenue", "price",
            "late_events", "cost", "version")  # fmt: skip
    rows = []

    def row(sku: str, ws: int, units: int, version: int) -> None:
        rows.append((sku, ws, ws + 60_000, 1, units, 2.0 * units, 2.0, 0, 1.0, version))

    for sku, u in want_units.items():
        if u:
            row(sku, T0 + HOUR, u // 2, 2)
            row(sku, T0 + 5 * HOUR, u - u // 2, 2)
            row(sku, T0 + 5 * HOUR, 1000, 1)  # the older version of that window
        row(sku, T0 - 2 * HOUR, 500, 1)  # before --since
    row("STRAY", T0 + HOUR, 7, 1)
    ch = connect(sink_url)
    try:
        ch.init()
        ch.insert_columns("sales_1m", {c: [r[i] for r in rows] for i, c in enumerate(cols)})
    finally:
        ch.close()

    out = tmp_path / "holdout.txt"
    done = _draw(settings, "--fraction", "0.25", "--salt", "q1", "--since", "1767225600",
                 "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 undecodable records" in done.stderr and "not in the catalog" in done.stderr
    assert "records so far" in done.stderr or "read " in done.stderr  # progress of the read

    # the strata, computed here from what was seeded: round(0.25 * n) of each, hash order
    want: dict[str, list[str]] = {}
    for sku, cat in catalog.items():
        u = want_units.get(sku, 0)
        level = "none" if u == 0 else ("low", "mid", "high")[(u - 1) // 8]
        want.setdefault(f"{cat or '(none)'} / {level}", []).append(sku)
    held = set()
    for name, skus in want.items():
        k = int(0.25 * len(skus) + 0.5)
        held |= set(sorted(skus, key=lambda s: (bucket(s, "q1"), s))[:k])
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith(name + " "))
        assert line.split()[-2:] == [str(len(skus)), str(k)], line
    assert len(want) == 3 * 4 + 1  # 3 categories x 4 levels, and the SKU without category
    assert done.stdout.splitlines()[-1].split() == ["total", "91", str(len(held))]
    text = out.read_text()
    assert "# fraction 0.25, salt 'q1'" in text and "#   toys / high: 8, 2" in text
    listed = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert listed == sorted(held) and "GONE" not in listed and "STRAY" not in listed
    # a worker with REPRICER_HOLDOUT_FILE holds exactly these
    h = holdout(settings.model_copy(update={"holdout_file": str(out)}))
    assert {s for s in catalog if h.holds(s)} == held

    # the same salt draws the same file; a new salt another group; an existing file is kept
    again = _draw(settings, "--fraction", "0.25", "--salt", "q1", "--since", "1767225600",
                  "--out", str(out))  # fmt: skip
    assert again.returncode == 2 and "--force" in again.stderr and out.read_text() == text
    other = tmp_path / "other.txt"
    assert _draw(settings, "--fraction", "0.25", "--salt", "q2", "--since", "1767225600",
                 "--out", str(other)).returncode == 0  # fmt: skip
    assert holdout(settings.model_copy(update={"holdout_file": str(other)})).skus != held


def test_no_catalog_is_a_clear_error(broker: TansuBroker, tmp_path: Path) -> None:
    settings = _settings(broker)
    done = _draw(settings, "--fraction", "0.2", "--out", str(tmp_path / "h.txt"))
    assert done.returncode == 1
    assert f"no catalog: topic {settings.topic_catalog!r}" in done.stderr
    assert not (tmp_path / "h.txt").exists()
