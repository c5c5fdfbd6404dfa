"""``/livez`` and ``/readyz`` decisions (streams.probes) on stand-ins for the Faust app's parts.

The real worker with a real broker and ClickHouse is in tests/integration/test_probes.py; here
each condition the probes document is set one at a time.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from repricer.streams.probes import LOOP_STALL_S, Heartbeat, group_joined, liveness, readiness


class Coordinator:
    def __init__(self, rejoin: bool) -> None:
        self.rejoin = rejoin

    def need_rejoin(self, sub: Any) -> bool:
        return self.rejoin


def consumer(joined: bool = True) -> Any:
    sub = SimpleNamespace(subscription=SimpleNamespace(assignment=set()))
    return SimpleNamespace(_subscription=sub, _coordinator=Coordinator(not joined))


def fake_rp() -> Any:
    completed = asyncio.Event()
    completed.set()
    services = [SimpleNamespace(crashed=False, done=asyncio.Event()) for _ in range(2)]
    app = SimpleNamespace(
        crashed=False,
        should_stop=False,
        agents={"repricer.windows": SimpleNamespace(crashed=False)},
        _extra_service_instances=services,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
        rebalancing=False,
        in_recovery=False,
    )
    return SimpleNamespace(app=app, consumers={"ingest": consumer(), "sink": consumer()})


def test_a_running_worker_is_live_and_ready() -> None:
    rp, beat = fake_rp(), Heartbeat()
    assert liveness(rp, beat)[0]
    ok, details = readiness(rp, beat)
    assert ok, details
    assert details["groups_joined"] == {"ingest": True, "sink": True}


def test_a_crashed_agent_or_an_ended_loop_is_not_live() -> None:
    rp, beat = fake_rp(), Heartbeat()
    rp.app.agents["repricer.windows"].crashed = True
    ok, details = liveness(rp, beat)
    assert not ok and details["problems"] == ["agent repricer.windows crashed"]
    assert not readiness(rp, beat)[0]  # not live is not ready

    rp = fake_rp()
    rp.app._extra_service_instances[1].done.set()
    ok, details = liveness(rp, beat)
    assert not ok and details["problems"] == ["SimpleNamespace loop ended"]
    rp.app.should_stop = True  # the worker is stopping: its loops end on purpose
    assert liveness(rp, beat)[0]


def test_a_stuck_event_loop_timer_is_not_live() -> None:
    rp, beat = fake_rp(), Heartbeat()
    beat.beat(now=1000.0)
    assert liveness(rp, beat, now=1000.0 + LOOP_STALL_S - 1)[0]
    ok, details = liveness(rp, beat, now=1000.0 + LOOP_STALL_S + 1)
    assert not ok and details["problems"][0].startswith("event loop")


def test_not_ready_until_recovered_and_joined_but_still_live() -> None:
    beat = Heartbeat()
    for spoil, why in (
        (lambda rp: rp.app.tables.recovery.completed.clear(), "table state not recovered yet"),
        (lambda rp: setattr(rp.app, "rebalancing", True), "rebalance under way"),
        (lambda rp: setattr(rp.app, "in_recovery", True), "table recovery under way"),
        (lambda rp: rp.consumers.pop("sink"), "sink consumer has not joined its group"),
        (
            lambda rp: rp.consumers.__setitem__("ingest", consumer(joined=False)),
            "ingest consumer has not joined its group",
        ),
    ):
        rp = fake_rp()
        spoil(rp)
        ok, details = readiness(rp, beat)
        assert not ok and details["problems"] == [why], why
        assert liveness(rp, beat)[0], why


def test_group_joined_needs_a_subscription_and_no_pending_rejoin() -> None:
    assert group_joined(consumer(True))
    assert not group_joined(consumer(False))
    assert not group_joined(SimpleNamespace())  # not an aiokafka consumer yet
    c = consumer(True)
    c._subscription.subscription = None  # subscribed to nothing
    assert not group_joined(c)
