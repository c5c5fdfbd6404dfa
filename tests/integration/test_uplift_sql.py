"""`repricer report --uplift`'s totals read from ClickHouse (18.16 and chdb) are the ones the
rows hold: the estimate from the sink equals the estimate from the same totals in Python."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from repricer.infra.clickhouse import connect
from repricer.streams.engine.config import Holdout
from repricer.streams.queries import History
from repricer.streams.uplift import SkuTotals, estimate, from_clickhouse

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
HOUR = 3_600_000


def test_the_uplift_from_the_sink_is_the_uplift_of_its_rows(sink_url: str) -> None:
    rng = random.Random(3)
    hold = Holdout(fraction=0.3, salt="t")
    skus = [f"S{i}" for i in range(60)]
    sales: dict[str, list] = {c: [] for c in ("sku", "window_start", "window_end", "orders",
                                             "units", "revenue", "price", "late_events", "cost")}  # fmt: skip
    # the cost on the rows: SKUs 0-39 have theirs (it changed once: the latest counts); 40-49
    # have rows from before the column (0) and a cost in shadow_decisions; 50-59 none at all
    cost = {s: 0.5 + (i % 4) * 0.25 if i < 40 else 0.0 for i, s in enumerate(skus)}
    units = {s: [0.0, 0.0] for s in skus}
    revenue = {s: [0.0, 0.0] for s in skus}
    for s in skus:
        for h in range(0, 96, 3):  # 2 days before the switch, 2 after; a row every 3 hours
            after = h >= 48
            u = rng.randint(0, 9) + (3 if after and not hold.holds(s) else 0)
            ws = T0 + h * HOUR
            c = cost[s] * (0.9 if h < 30 else 1.0)
            for col, v in zip(sales, (s, ws, ws + 60_000, 1, u, 2.5 * u, 2.5, 0, c), strict=True):
                sales[col].append(v)
            units[s][after] += u
            revenue[s][after] += 2.5 * u
        sales["sku"].append(s)  # a row after the period: not counted
        for col, v in zip(list(sales)[1:], (T0 + 96 * HOUR, T0 + 96 * HOUR + 60_000, 1, 50,
                                             125.0, 2.5, 0, 9.0), strict=True):  # fmt: skip
            sales[col].append(v)
    cost_sd = set(skus[40:50])
    ch = connect(sink_url)
    try:
        ch.init()
        sales["version"] = list(sales["window_end"])
        ch.insert_columns("sales_1m", sales)
        ch.insert(
            "shadow_decisions",
            [
                {"event_id": f"e{s}", "sku": s, "mode": "holdout" if hold.holds(s) else "shadow",
                 "current_price": 2.5, "would_price": 2.6, "cost": 1.0 if s in cost_sd else 7.0,
                 "currency": "EUR",
                 "decided_at": T0, "window_start": T0, "reasons": [], "guardrails": [],
                 "forecast_old": 1.0, "forecast_new": 1.0, "expected_gain": 0.1,
                 "model_versions": "{}", "policy_version": "v", "version": T0}
                for s in skus[30:50]  # 30-39 also have one on their rows: those win
            ],
        )  # fmt: skip
        at = lambda h: datetime.fromtimestamp((T0 + h * HOUR) / 1000, UTC)  # noqa: E731
        got = from_clickhouse(ch, since=at(48), until=at(96), start=at(0), holds=hold.holds)
    finally:
        ch.close()
    totals = {
        s: SkuTotals(
            units=(units[s][0], units[s][1]),
            revenue=(revenue[s][0], revenue[s][1]),
            cost=cost[s] if i < 40 else 1.0 if i < 50 else None,
        )
        for i, s in enumerate(skus)
    }
    treated = {s for s in skus if not hold.holds(s)}
    want = estimate(totals, treated, days_before=2, days_after=2)
    assert got.pop("skus_with_cost") == 50
    assert got == want and want["profit"]["skus"] == 50
    assert (
        want["enough_data"] and want["units"]["ci"][0] <= 3 * 8 <= want["units"]["ci"][1]
    )  # 3 a row, 8 rows a day


def test_the_dashboard_uplift_is_the_report_around_the_first_live_decision(
    sink_url: str,
) -> None:
    """``/api/uplift``'s query (``History.uplift``): with no ``since``, the switch is the
    policy's first published change (a manual one before it does not count); before any, it
    says there is not enough data."""
    hold = Holdout(fraction=0.3, salt="t")
    at = lambda h: datetime.fromtimestamp((T0 + h * HOUR) / 1000, UTC)  # noqa: E731
    history = History(sink_url, window_s=60)
    try:
        empty = history.uplift(hold.holds, until=at(96))
        assert empty["enough_data"] is False and "not enough data" in empty["why"]
        ch = history.ch
        rng = random.Random(5)
        sales = [
            {"sku": f"S{i}", "window_start": T0 + h * HOUR, "window_end": T0 + h * HOUR + 60_000,
             "orders": 1, "units": (u := rng.randint(0, 9)), "revenue": 2.0 * u, "price": 2.0,
             "late_events": 0, "cost": 1.0, "version": T0 + h * HOUR + 60_000}
            for i in range(40) for h in range(0, 96, 4)
        ]  # fmt: skip
        ch.insert("sales_1m", sales)

        def change(sku: str, h: int, by: str) -> dict:
            return {"event_id": f"{sku}-{h}", "sku": sku, "old_price": 2.0, "new_price": 2.2,
                    "currency": "EUR", "decided_at": T0 + h * HOUR,
                    "effective_at": T0 + h * HOUR, "window_start": T0 + h * HOUR,
                    "reasons": [], "forecast_old": 1.0, "forecast_new": 1.0, "elasticity": -1.0,
                    "model_versions": "{}", "guardrails": [], "policy_version": "v",
                    "category": "", "issued_by": by, "note": "", "version": T0 + h * HOUR}  # fmt: skip

        ch.insert("price_changes", [change("S1", 10, "ana"), change("S2", 48, "policy"),
                                    change("S3", 60, "policy")])  # fmt: skip
        got = history.uplift(hold.holds, until=at(96))
        want = from_clickhouse(ch, since=at(48), until=at(96), start=at(0), holds=hold.holds)
    finally:
        history.close()
    assert got.pop("since") == at(48).isoformat() and got.pop("since_from") == "first live decision"
    assert got.pop("until") == at(96).isoformat()
    assert got == want and want["treated_skus"] + want["holdout_skus"] == 40
    assert want["days_before"] == want["days_after"] == 2
