"""The worker's operator endpoints on a real broker and ClickHouse (chdb in-process, and 18.16).

``/metrics`` must parse as Prometheus text (a strict parser below) and its counters must grow
when more events arrive; ``/health`` is 200 while the worker consumes; the dashboard's JSON API
answers from ClickHouse with the SQL that has to run on 18.16 and on current ClickHouse.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import pytest

from tests.integration.promtext import MetricFamilies, parse_prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_parser_is_strict() -> None:
    good = (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{a="1",b="q\\"uote"} 3\nx_total{a="2"} 4.5\n'
    )
    fam = parse_prometheus(good)
    assert fam["x_total"].samples == {(("a", "1"), ("b", 'q"uote')): 3.0, (("a", "2"),): 4.5}
    for bad in (
        "x_total 1\n",  # no TYPE
        "# TYPE x counter\nx{a=1} 1\n",  # unquoted label
        "# TYPE x counter\nx 1 2 3\n",  # junk
        "# TYPE x counter\n# TYPE x counter\nx 1\n",  # family declared twice
        "# TYPE x counter\nx 1",  # no final newline
        "# TYPE x counter\nx -1\n",  # negative counter
    ):
        with pytest.raises(ValueError):
            parse_prometheus(bad)


def test_metrics_health_and_api(web_worker_factory: Callable, sink_url: str) -> None:
    ww = web_worker_factory(sink_url)

    status, ctype, body = ww.http("/metrics")
    assert status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype
    assert ww.http("/livez")[0] == 200
    parse_prometheus(body)

    ww.catalog(["A", "B", "C"])
    ww.windows(["A", "B", "C"], 0, 2)
    ww.tick(4)  # closes windows 0..2
    ww.wait_processed()
    ww.worker.wait_until(
        lambda st: (
            st.get("windows_closed", 0) >= 9
            and st.get("sink_rows", {}).get("sales_1m", 0) >= 9
            and st.get("sink_pending", 1) == 0
        ),
        timeout=90,
    )
    status, _, body = ww.http("/health")
    assert status == 200, body
    before = parse_prometheus(ww.http("/metrics")[2])
    _check_families(before)
    assert before.value("repricer_windows_closed_total") >= 9
    assert before.value("repricer_events_total", topic="orders") > 0
    assert before.value("repricer_events_total", topic="catalog") == 3
    assert before.value("repricer_sink_rows_total", table="sales_1m") >= 9
    assert before.value("repricer_sink_last_batch_seconds") > 0
    assert math.isfinite(total_lag(before))
    assert count(before, "repricer_tick_duration_seconds") > 0
    assert count(before, "repricer_sink_insert_duration_seconds") >= before.value(
        "repricer_sink_batches_total"
    )
    assert before.value("repricer_faust_rebalances_total") >= 1
    # every SKU partition this worker owns has a watermark: 2026-01-01, far behind the clock
    lags = before["repricer_event_time_lag_seconds"].samples
    assert {dict(k)["partition"] for k in lags} == {"0", "1"}
    assert all(v > 3600 for v in lags.values())
    if before.value("repricer_price_changes_total") > 0:
        assert count(before, "repricer_close_to_publish_seconds") > 0
    (labels,) = before["repricer_model_info"].samples
    info = dict(labels)
    assert info["provider"] == "CPUExecutionProvider" and info["version"].startswith("lstm-")

    # the dashboard's JSON API, from ClickHouse
    changes = ww.json("/api/recent-changes?limit=50")
    assert changes and {c["sku"] for c in changes} <= {"A", "B", "C"}
    assert all(c["new_price"] != c["old_price"] for c in changes)
    sku = ww.json("/api/sku/A")
    assert [r["window_start"] for r in sku["sales"]] == [T0 + w * 60_000 for w in range(3)]
    assert all(r["price"] > 0 for r in sku["sales"]) and len(sku["clicks"]) == 3
    assert {s["sku"] for s in ww.json("/api/skus")} >= {"A", "B", "C"}
    assert isinstance(ww.json("/api/model-errors")["models"], dict)  # no labels before tick 2
    guards = ww.json("/api/guardrails")
    assert all(g["n"] > 0 for g in guards)
    assert ww.json("/api/dlq")["stored"] == []
    assert ww.json("/api/sku/" + "no%20such%27sku")["sales"] == []  # escaped, not injected
    assert ww.json("/api/stats")["healthy"] is True
    assert "<svg" in ww.http("/")[2]
    # the uplift, around the first live decision by default: 3 SKUs, no holdout -> too few
    up = ww.json("/api/uplift")
    assert up["since_from"] == "first live decision" and up["enough_data"] is False
    assert up["treated_skus"] + up["holdout_skus"] == 3 and "not enough data" in up["why"]
    given = ww.json(f"/api/uplift?since={T0 // 1000 + 120}")
    assert given["since_from"] == "given" and given["since"].startswith("2026-01-01T00:02")
    assert ww.http("/api/uplift?since=yesterday")[0] == 400

    # more events (and a poison one): the counters move, health stays green
    ww.windows(["A", "B", "C"], 4, 5)
    ww.producer.send(ww.settings.topic_orders, value=b'{"order_id": "bad')
    ww.sent += 1
    ww.producer.flush()
    ww.tick(7)
    ww.wait_processed()
    # windows 4 and 5 hold events (15 rows for A, B, C in all); 3 is quiet (no rows)
    ww.worker.wait_until(
        lambda st: st.get("windows_closed", 0) >= 15 and st.get("quiet_windows", 0) >= 3,
        timeout=90,
    )
    ww.worker.wait_until(lambda st: st.get("sink_rows", {}).get("dead_letters", 0) >= 1, timeout=60)
    after = parse_prometheus(ww.http("/metrics")[2])
    _check_families(after)
    for topic in ("orders", "clickstream"):
        assert after.value("repricer_events_total", topic=topic) > before.value(
            "repricer_events_total", topic=topic
        )
    assert after.value("repricer_windows_closed_total") > before.value(
        "repricer_windows_closed_total"
    )
    assert after.value("repricer_decisions_total") > before.value("repricer_decisions_total")
    assert after.value("repricer_dlq_total", reason="malformed_json") == 1
    assert count(after, "repricer_tick_duration_seconds") > count(
        before, "repricer_tick_duration_seconds"
    )
    assert count(after, "repricer_faust_commit_duration_seconds") > 0
    assert after.value("repricer_sink_rows_total", table="dead_letters") >= 1
    assert ww.http("/health")[0] == 200
    # once idle, every consumed partition is committed up to its highwater: no phantom lag
    deadline = time.monotonic() + 30
    while (lag := total_lag(parse_prometheus(ww.http("/metrics")[2]))) > 0:
        assert time.monotonic() < deadline, ww.http("/metrics")[2]
        time.sleep(0.5)
    assert lag == 0
    assert ww.json("/api/dlq")["stored"] == [{"reason": "malformed_json", "n": 1}]
    ww.worker.wait_until(lambda st: st.get("sink_rows", {}).get("forecasts", 0) > 0, timeout=60)
    assert after.value("repricer_labels_total") > 0
    errs = ww.json("/api/model-errors?bucket_windows=1")
    assert "ensemble" in errs["models"], errs
    points = [p for s in errs["models"].values() for p in s]
    assert points and all(p["mae"] is None or p["mae"] >= 0 for p in points)
    assert "Traceback" not in ww.worker.tail_log(200_000), ww.worker.tail_log()


T0 = 1_767_225_600_000

COUNTERS = (
    "repricer_events_total",
    "repricer_dlq_total",
    "repricer_windows_closed_total",
    "repricer_decisions_total",
    "repricer_price_changes_total",
    "repricer_labels_total",
    "repricer_forecast_rows_total",
    "repricer_sink_rows_total",
    "repricer_sink_errors_total",
)
GAUGES = (
    "repricer_sink_pending_rows",
    "repricer_sink_last_batch_seconds",
    "repricer_consumer_lag_messages",
    "repricer_event_time_lag_seconds",
    "repricer_sink_stuck",
    "repricer_model_info",
)
HISTOGRAMS = (
    "repricer_tick_duration_seconds",
    "repricer_close_to_publish_seconds",
    "repricer_sink_insert_duration_seconds",
    "repricer_faust_commit_duration_seconds",
)


def total_lag(fam: MetricFamilies) -> float:
    return sum(fam["repricer_consumer_lag_messages"].samples.values())


def count(fam: MetricFamilies, histogram: str) -> float:
    return fam.value(histogram, __name__=f"{histogram}_count")


def _check_families(fam: MetricFamilies) -> None:
    for name in COUNTERS:
        assert fam[name].type == "counter", name
    for name in GAUGES:
        assert fam[name].type == "gauge", name
    for name in HISTOGRAMS:
        assert fam[name].type == "histogram", name
    assert "repricer_consumer_lag_total" not in fam  # renamed: a gauge is never _total
    for name in fam:
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name)
