"""The worker's liveness and readiness, as served on ``/livez`` and ``/readyz``.

* **Live** (``/livez``): the event loop runs (it answers, and the worker's 1-second timer has
  beaten within ``LOOP_STALL_S``) and the worker's parts run: the Faust app and every agent
  have not crashed, and the ingest and sink loops have not ended. A failure here is one a
  restart cures. A ClickHouse outage, a broker outage or a stalled consumer is *not* one: the
  worker keeps repricing through a ClickHouse outage and catches up when it returns, so those
  are metrics (``repricer_sink_stuck``, ``repricer_stalled``) and alert rules instead.
* **Ready** (``/readyz``): live, and the worker has joined its consumer groups and recovered its
  state: Faust's table recovery has completed and no rebalance or recovery is under way, and the
  ingest and sink consumers have joined their groups (an assignment is in force, possibly empty
  when there are more workers than partitions). During a rebalance a worker is briefly not ready.

Both read the worker's objects only (no broker round trip) and never block.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from repricer.streams.worker import Repricer

log = logging.getLogger(__name__)

LOOP_STALL_S = 30.0  # the 1 s timer not beating for this long: the loop or the timers are stuck
ROLES = ("ingest", "sink")  # the worker's own consumer groups (streams.consumers)


class Heartbeat:
    """Beaten by a 1-second timer of the worker; how long ago it last beat."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def beat(self, now: float | None = None) -> None:
        self.at = time.monotonic() if now is None else now

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.at


def _crashed(service: Any) -> bool:
    return bool(getattr(service, "crashed", False))


def liveness(
    rp: Repricer, beat: Heartbeat, now: float | None = None
) -> tuple[bool, dict[str, Any]]:
    """(live, details): the loop beats and no part of the worker has crashed or ended."""
    app = rp.app
    problems: list[str] = []
    age = beat.age(now)
    if age > LOOP_STALL_S:
        problems.append(f"event loop: the 1 s timer last ran {age:.0f}s ago")
    if _crashed(app):
        problems.append("the Faust app crashed")
    for name, agent in sorted((getattr(app, "agents", None) or {}).items()):
        if _crashed(agent):
            problems.append(f"agent {name} crashed")
    stopping = bool(getattr(app, "should_stop", False))
    for svc in getattr(app, "_extra_service_instances", None) or ():
        name = type(svc).__name__
        done = getattr(svc, "done", None)  # set when the service's loop has returned
        if _crashed(svc):
            problems.append(f"{name} crashed")
        elif done is not None and done.is_set() and not stopping:
            problems.append(f"{name} loop ended")
    return not problems, {
        "status": "live" if not problems else "dead",
        "problems": problems,
        "seconds_since_timer": round(age, 1),
    }


def group_joined(consumer: Any) -> bool:
    """Whether an aiokafka consumer is a member of its group with an assignment in force."""
    try:
        sub = consumer._subscription.subscription
        coordinator = consumer._coordinator
        return bool(sub is not None and not coordinator.need_rejoin(sub))
    except AttributeError:
        return False


def readiness(
    rp: Repricer, beat: Heartbeat, now: float | None = None
) -> tuple[bool, dict[str, Any]]:
    """(ready, details): live, state recovered, every consumer group joined."""
    live, live_details = liveness(rp, beat, now)
    app = rp.app
    problems = list(live_details["problems"])
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    completed = getattr(recovery, "completed", None)
    recovered = bool(completed is not None and completed.is_set())
    if not recovered:
        problems.append("table state not recovered yet")
    if getattr(app, "rebalancing", False):
        problems.append("rebalance under way")
    if getattr(app, "in_recovery", False):
        problems.append("table recovery under way")
    groups = {}
    for role in ROLES:
        consumer = rp.consumers.get(role)
        groups[role] = consumer is not None and group_joined(consumer)
        if not groups[role]:
            problems.append(f"{role} consumer has not joined its group")
    return not problems, {
        "status": "ready" if not problems else "not ready",
        "problems": problems,
        "live": live,
        "state_recovered": recovered,
        "groups_joined": groups,
    }
