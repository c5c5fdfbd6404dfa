"""Every metric a worker exports is named by Prometheus' conventions, and the exposition is read
back the same by ``prometheus_client``'s own parser and by the strict one of the web tests.

The rules (https://prometheus.io/docs/practices/naming/, written out here as ``problems``):
snake_case names under the ``repricer_`` prefix (``process_`` for the standard process
collector), no colon (reserved for recording rules); a counter ends in ``_total`` and nothing
else does; no gauge or histogram ends in a suffix the exposition reserves (``_count``, ``_sum``,
``_bucket``, ``_created``); time in seconds and sizes in bytes, never ms/minutes/kilobytes;
anything that is a duration, latency, timestamp or time lag says ``_seconds``; a histogram ends
in its base unit; label names are snake_case and not reserved; every family has a HELP text.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from repricer.models.river_model import RiverDemand
from repricer.streams.metrics import Progress, metrics_text
from repricer.streams.telemetry import Timings
from tests.integration.promtext import Family, parse_prometheus
from tests.unit.streams.test_web_health import fake_rp

SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
RESERVED_SUFFIXES = ("_count", "_sum", "_bucket", "_created", "_total")
NON_BASE_UNITS = re.compile(
    r"_(ms|millis|milliseconds|us|microseconds|ns|nanoseconds|minutes|hours|days|"
    r"kb|mb|gb|kilobytes|megabytes|gigabytes|percent)(_|$)"
)
TIME_WORDS = re.compile(r"(duration|latency|timestamp|uptime|_time_lag|_stall_|_age_)")


def problems(fam: Family) -> list[str]:
    """What is wrong with one family's name, type, labels and help."""
    name, out = fam.name, []
    if ":" in name or not SNAKE.fullmatch(name):
        out.append("not snake_case (colons are for recording rules)")
    if not name.startswith(("repricer_", "process_")):
        out.append("no repricer_ prefix")
    if fam.type == "counter":
        if not name.endswith("_total"):
            out.append("a counter must end in _total")
    elif name.endswith(RESERVED_SUFFIXES):
        out.append(f"a {fam.type} must not end in {name.rsplit('_', 1)[1]!r}")
    if NON_BASE_UNITS.search(name):
        out.append("use base units: _seconds, _bytes")
    base = name.removesuffix("_total")
    if TIME_WORDS.search(base + "_") and not base.endswith("_seconds"):
        out.append("a time must be in _seconds")
    if fam.type == "histogram" and not name.endswith(("_seconds", "_bytes")):
        out.append("a histogram must end in its base unit")
    for labels in fam.samples:
        for label, _ in labels:
            if label == "__name__":
                continue
            if not SNAKE.fullmatch(label) or (label in ("le", "quantile") and fam.type == "gauge"):
                out.append(f"bad label {label!r}")
    if not fam.help.strip():
        out.append("no HELP")
    return out


def exposition() -> str:
    """A worker's /metrics with every family it has holding samples."""
    rp = fake_rp(3, members=(RiverDemand(),))
    rp.timings = Timings()
    sensor = rp.timings.faust_sensor()
    sensor.on_commit_completed(None, sensor.on_commit_initiated(None))
    sensor.on_rebalance_end(None, sensor.on_rebalance_start(None))
    rp.timings.tick.observe(0.02)
    rp.timings.close_to_publish.observe(0.3)
    rp.timings.sink_insert.observe(0.05)
    st = rp.stats
    st.ingested["orders"], st.dlq["malformed_json"], st.model_errors["propose"] = 5, 1, 1
    st.sink_rows["sales_1m"], st.watermarks[0] = 9, 1_767_225_600_000
    st.accounting[0] = {k: [1, 2] for k in ("accepted", "emitted", "open", "late", "duplicate")}
    st.accounting[0]["unaccounted"] = [0, 0]
    return metrics_text(rp, Progress())


def test_every_exported_metric_follows_the_naming_rules() -> None:
    fams = parse_prometheus(exposition())
    assert len(fams) > 30
    wrong = {name: p for name, fam in fams.items() if (p := problems(fam))}
    assert not wrong, wrong
    for name in (
        "repricer_tick_duration_seconds",
        "repricer_close_to_publish_seconds",
        "repricer_sink_insert_duration_seconds",
        "repricer_faust_commit_duration_seconds",
        "repricer_faust_rebalance_duration_seconds",
    ):
        assert fams[name].type == "histogram", name
        assert fams.value(name, __name__=f"{name}_count") == 1, name
    assert fams.value("repricer_faust_rebalances_total") == 1
    lag = fams.value("repricer_event_time_lag_seconds", partition="0")
    assert lag > 0  # the watermark (2026-01-01) against now
    assert "repricer_consumer_lag_total" not in fams  # the gauge named like a counter is gone
    assert fams.value("repricer_consumer_lag_messages", topic="orders", partition="0") == 3


def test_the_reference_parser_reads_the_same_families() -> None:
    text = exposition()
    ours = parse_prometheus(text)
    theirs = {f.name: f for f in text_string_to_metric_families(text)}
    for name, fam in ours.items():
        ref = theirs[name.removesuffix("_total") if fam.type == "counter" else name]
        assert ref.type == fam.type, name
        if fam.type in ("counter", "gauge"):
            assert len(ref.samples) == len(fam.samples), name


@pytest.mark.parametrize(
    ("name", "typ", "why"),
    [
        ("repricer_consumer_lag_total", "gauge", "must not end in 'total'"),
        ("repricer_events", "counter", "must end in _total"),
        ("repricer_commit_latency_ms", "histogram", "base units"),
        ("repricer_commit_latency", "histogram", "_seconds"),
        ("repricer_TickTime", "gauge", "snake_case"),
        ("faust_total_rebalances", "gauge", "prefix"),
        ("repricer_uptime", "gauge", "_seconds"),
        ("repricer_rows_sum", "gauge", "must not end in 'sum'"),
    ],
)
def test_the_rules_catch_bad_names(name: str, typ: str, why: str) -> None:
    fam = Family(name, typ, help="something")
    assert any(why in p for p in problems(fam)), problems(fam)


def test_a_label_and_help_are_checked() -> None:
    fam = Family("repricer_x_total", "counter", help="")
    fam.samples[(("Bad-Label", "v"),)] = 1.0
    assert set(problems(fam)) == {"bad label 'Bad-Label'", "no HELP"}
    ok = Family("repricer_x_total", "counter", help="X.", samples={(("topic", "a"),): 1.0})
    assert problems(ok) == []
