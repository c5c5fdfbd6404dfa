"""``/health`` decisions and the Prometheus text of a worker, without Kafka (stubbed consumer)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from repricer.models.decider import ModelDecider
from repricer.streams.metrics import Progress, consumer_lag, health, metrics_text
from repricer.streams.settings import Settings
from repricer.streams.worker import Stats
from tests.integration.promtext import parse_prometheus


class TP(SimpleNamespace):
    topic: str
    partition: int

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


class FakeConsumer:
    def __init__(self, highwater: dict[Any, int], committed: dict[Any, int]) -> None:
        self.hw, self._committed_offset = highwater, committed

    def assignment(self) -> set[Any]:
        return set(self.hw)

    def highwater(self, tp: Any) -> int:
        return self.hw[tp]


def fake_rp(lag: int = 0, *, members: tuple[Any, ...] = ()) -> Any:
    orders, changelog = TP(topic="orders", partition=0), TP(topic="x-changelog", partition=0)
    consumer = FakeConsumer({orders: 100, changelog: 50}, {orders: 100 - lag, changelog: 0})
    topic = SimpleNamespace(get_topic_name=lambda: "orders")
    return SimpleNamespace(
        settings=Settings(health_stall_s=60, health_sink_stall_s=30),
        stats=Stats(),
        topics={"orders": topic},
        app=SimpleNamespace(consumer=consumer, monitor=SimpleNamespace(events_total=0)),
        engine=SimpleNamespace(decider=ModelDecider(members=list(members))),
        consumers={},
    )


def test_lag_counts_only_consumed_topics() -> None:
    assert consumer_lag(fake_rp(7)) == {("orders", 0): 7}


def test_idle_without_lag_is_healthy() -> None:
    rp, p = fake_rp(0), Progress(last_progress_at=0.0)
    assert health(rp, p, now=1000.0)[0]


def test_stalled_with_lag_is_unhealthy() -> None:
    rp, p = fake_rp(5), Progress(last_progress_at=1000.0)
    assert health(rp, p, now=1059.0)[0]
    ok, details = health(rp, p, now=1061.0)
    assert not ok and "not consuming" in details["problems"][0]


def test_progress_resets_the_stall_clock() -> None:
    rp, p = fake_rp(5), Progress()
    p.observe(rp, now=1000.0)
    rp.stats.ingested["orders"] += 1
    p.observe(rp, now=1100.0)
    assert health(rp, p, now=1150.0)[0]


def test_stuck_sink_is_unhealthy() -> None:
    rp, p = fake_rp(0), Progress(last_progress_at=1000.0)
    rp.stats.sink_pending, rp.stats.sink_pending_since, rp.stats.sink_last_ok_at = 10, 990.0, 0.0
    assert health(rp, p, now=1019.0)[0]
    ok, details = health(rp, p, now=1021.0)
    assert not ok and "sink stuck" in details["problems"][0]
    rp.stats.sink_last_ok_at = 1020.0  # another table's batch got through: not stuck
    assert health(rp, p, now=1021.0)[0]


def test_metrics_text_parses() -> None:
    from repricer.models.lstm_model import LstmDemand
    from repricer.models.river_model import RiverDemand

    lstm = LstmDemand()
    rp = fake_rp(3, members=(RiverDemand(), lstm))
    rp.stats.ingested["orders"] = 5
    rp.stats.dlq['bad "quote"\n'] = 1
    rp.stats.model_errors["learn_pooled"] = 2
    fam = parse_prometheus(metrics_text(rp))
    assert fam.value("repricer_model_errors_total", stage="learn_pooled") == 2
    assert fam.value("repricer_events_total", topic="orders") == 5
    assert fam.value("repricer_dlq_total", reason='bad "quote"\n') == 1
    assert fam.value("repricer_consumer_lag", topic="orders", partition="0") == 3
    samples = fam["repricer_model_info"].samples  # River runs on no execution provider
    want = {"model": "lstm", "provider": lstm.provider, "version": lstm.version}
    assert samples == {tuple(sorted(want.items())): 1.0}
    assert lstm.version.startswith("lstm-")


def test_an_unaccounted_event_makes_the_worker_unhealthy_and_shows_in_metrics() -> None:
    from repricer.streams.engine import Accounting

    rp, p = fake_rp(0), Progress(last_progress_at=0.0)
    good = Accounting(accepted=[10, 25], emitted=[7, 20], open=[2, 5], late=[1, 0])
    rp.stats.accounting[0] = good.to_dict()
    assert health(rp, p, now=1000.0)[0]
    lost = Accounting(accepted=[10, 25], emitted=[7, 20], open=[0, 0], late=[1, 0])
    rp.stats.accounting[1] = lost.to_dict()
    ok, details = health(rp, p, now=1000.0)
    assert not ok and "unaccounted events: 2 events (5 units)" in details["problems"][0]
    assert (details["unaccounted_events"], details["unaccounted_units"]) == (2, 5)
    fams = parse_prometheus(metrics_text(rp))
    units = fams.value
    assert units("repricer_accounted_units", partition="1", state="unaccounted") == 5
    assert units("repricer_accounted_units", partition="0", state="unaccounted") == 0
    assert units("repricer_accounted_units", partition="0", state="accepted") == 25


def test_lost_envelopes_make_the_worker_unhealthy_and_rewinds_show_in_metrics() -> None:
    rp, p = fake_rp(0), Progress(last_progress_at=0.0)
    rp.stats.offset_rewinds = 2
    assert health(rp, p, now=1000.0)[0]  # a rewind is the guard working: not a problem
    rp.stats.envelopes_lost = 3
    ok, details = health(rp, p, now=1000.0)
    assert not ok and details["problems"][0].startswith("lost envelopes: 3 ")
    fams = parse_prometheus(metrics_text(rp))
    assert fams.value("repricer_offset_rewinds_total") == 2
    assert fams.value("repricer_envelopes_lost_total") == 3
