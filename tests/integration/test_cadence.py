"""Slow catalogs on daily windows, end to end: weeks of daily history imported in one go.

A shop whose SKUs sell a few units a day runs with ``REPRICER_WINDOW_S=86400``: eight weeks of
orders (catalog included; three SKUs of the 80 sell 60-180 a day) go through ``repricer replay``
as fast as the broker takes them, into a worker on the real broker and Debian's ClickHouse
18.16. Checked: every unit per SKU and day in ``sales_1m``; decisions taken (price changes
published within the catalog's bounds; slow SKUs never explore on their own after their first
labels, they move only for the pool's experiment or where the pool is sure the move pays) and
their forecasts labelled with the day's true units; the dashboard's per-SKU history has the
days.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from repricer.infra.clickhouse import ClickHouseError, connect
from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.models.decider import ModelDecider
from repricer.streams import cli
from repricer.streams.queries import History
from repricer.streams.tools.runner import closed_out, drained
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
DAYS = 56
SKUS = 80
FAST_SKUS = 3  # 60-180 orders a day: the policy explores them fully (decider explore_units_per_day)


def write_history(tmp_path: Path) -> tuple[Path, Path, Counter[tuple[str, int]], dict]:
    rnd = random.Random(5)
    catalog, units = {}, Counter()
    with (tmp_path / "orders.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "created_at", "sku", "qty", "unit_price"])
        k = 0
        for i in range(SKUS):
            sku = f"D{i:03d}"
            cost = round(rnd.uniform(1, 30), 2)
            catalog[sku] = {"sku": sku, "cost": cost, "base_price": round(cost * 1.5, 2),
                            "min_price": round(cost * 1.1, 2), "max_price": round(cost * 3, 2),
                            "currency": "EUR"}  # fmt: skip
            rate = rnd.choice([0.3, 1.0, 2.0, 5.0])  # orders a day: a few, some once in days
            if i < FAST_SKUS:  # and a few that sell enough for the policy to learn from
                rate = 120.0
            for day in range(DAYS):
                n = rnd.randint(rate // 2, rate * 3 // 2) if rate >= 10 else None
                if n is None:
                    n = sum(rnd.random() < rate / 10 for _ in range(10))
                for _ in range(int(n)):
                    ts = T0 + day * DAY + rnd.randrange(DAY)
                    qty = rnd.choice([1, 1, 2])
                    w.writerow([f"d{k}", ts // 1000, sku, qty, catalog[sku]["base_price"]])
                    units[(sku, day)] += qty
                    k += 1
    with (tmp_path / "catalog.jsonl").open("w") as f:
        for item in catalog.values():
            f.write(json.dumps(item) + "\n")
    return tmp_path / "orders.csv", tmp_path / "catalog.jsonl", units, catalog


def test_weeks_of_daily_history_on_daily_windows(
    worker_factory: WorkerFactory,
    clickhouse_server: ClickHouseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    orders, catalog_path, expected, catalog = write_history(tmp_path)
    db = "cadence_daily"
    s, worker, _ = worker_factory(
        app="daily",
        clickhouse_url=clickhouse_server.url(db),
        window_s=86_400,
        lateness_s=60,
        kafka_session_timeout_s=6.0,
        partitions=2,
    )
    for key, value in {
        "REPRICER_BROKER": s.broker,
        "REPRICER_WINDOW_S": "86400",
        "REPRICER_LATENESS_S": "60",
        "REPRICER_PARTITIONS": "2",
    }.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    argv = ["replay", "--orders", str(orders), "--catalog", str(catalog_path),
            "--map", "orders.ts=created_at", "--ts-unit", "s"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sent"]["orders"] == sum(1 for _ in orders.open()) - 1
    total = sum(expected.values())
    ch = connect(clickhouse_server.url(db))
    sql = (
        f"SELECT sku, intDiv(toUInt64(window_start) * 1000 - {T0}, {DAY}) AS day, sum(units) "
        f"FROM {db}.sales_1m FINAL GROUP BY sku, day"
    )
    got: Counter[tuple[str, int]] = Counter()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            try:
                got = Counter({(str(a), int(b)): int(u) for a, b, u in ch.query(sql)})
            except ClickHouseError as exc:  # the sink has not created the tables yet
                assert "exist" in str(exc), exc
                got = Counter()
            if sum(got.values()) >= total:
                break
            assert worker.alive(), worker.tail_log()
            time.sleep(1.0)
        sent = summary["sent"]["orders"]
        worker.wait_until(closed_out(s.partitions, sent), timeout=180)
        elapsed = time.monotonic() - started
        worker.wait_until(drained(sent), timeout=120, stable_s=2.0)
        got = Counter({(str(a), int(b)): int(u) for a, b, u in ch.query(sql)})
        forecasts = ch.query(
            f"SELECT sku, intDiv(toUInt64(window_start) * 1000 - {T0}, {DAY}), actual "
            f"FROM {db}.forecasts FINAL WHERE model = 'ensemble'"
        )
        changes = ch.query(
            f"SELECT sku, new_price, intDiv(toUInt64(window_start) * 1000 - {T0}, {DAY}), "
            f"reasons FROM {db}.price_changes FINAL"
        )
        dead = ch.query(f"SELECT reason, count() FROM {db}.dead_letters FINAL GROUP BY reason")
    finally:
        ch.close()
    print(f"\n{DAYS} days x {SKUS} SKUs of daily history ({total} units): replayed, closed and "
          f"decided in {elapsed:.1f} s")  # fmt: skip
    assert got == expected
    assert dead == []
    # decisions were taken at the daily closes and their forecasts labelled with the day's units
    # every SKU day with sales after the SKU's first gets a forecast, made from the days before
    # it, and each forecast row is labelled with its day's true units (0 for a quiet day after
    # a sale); the import is one watermark step, which the engine walks day by day
    days_forecast = {(str(sku), int(day)) for sku, day, _ in forecasts}
    first: dict[str, int] = {}
    for sku, day in sorted(expected):
        first.setdefault(sku, day)
    assert days_forecast >= {(k, d) for k, d in expected if d > first[k]}
    assert len(days_forecast) == len(forecasts)  # one per SKU day
    for sku, day, actual in forecasts:
        assert float(actual) == expected.get((str(sku), int(day)), 0), (sku, day, actual)
    assert changes, "no price change in eight weeks"
    # the SKUs that sell enough to learn from are repriced; a SKU selling a few units a day
    # explores only over its first labels (models/decider.py explore_after; an import labels at
    # least each day with sales), and after that moves only for the slow SKUs' joint experiment
    # on their pool's mean elasticity (reason "pool_experiment", models/pool_experiment.py) or
    # where the pooled posterior is sure the move pays (hold_z): never for its own exploration
    fast = {f"D{i:03d}" for i in range(FAST_SKUS)}
    assert fast <= {str(sku) for sku, *_ in changes}, changes
    for sku, price, day, reasons in changes:
        item = catalog[str(sku)]
        assert item["min_price"] - 1e-9 <= float(price) <= item["max_price"] + 1e-9
        sold_days = sum(1 for k, d in expected if k == str(sku) and d < int(day))
        if str(sku) not in fast and sold_days > ModelDecider.explore_after:
            assert "exploration" not in reasons, (sku, day, sold_days, reasons)
    st = worker.stats()
    assert st["unaccounted"] == [0, 0]
    worker.stop()
    # the dashboard's per-SKU history shows the SKU's days, one window a day
    sku = max(catalog, key=lambda k: sum(u for (s2, _), u in expected.items() if s2 == k))
    hist = History(clickhouse_server.url(db), window_s=86_400).sku(sku, 60)
    assert hist["window_ms"] == DAY
    days = {(w["window_start"] - T0) // DAY for w in hist["sales"]}
    assert days == {d for (s2, d) in expected if s2 == sku}
