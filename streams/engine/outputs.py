"""What one envelope produced (``Outputs``), and the price records a decision publishes."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field

from repricer.models.decider import Proposal
from repricer.models.guardrails import Guarded
from repricer.schemas.events import (
    ClicksWindow,
    Forecast,
    ForecastRow,
    PriceChange,
    PriceState,
    SalesWindow,
)
from repricer.streams.engine.state import Accounting, PartitionState, SkuState
from repricer.streams.envelope import EventEnv, OrderEnv


@dataclass
class Outputs:
    """What one envelope produced; the agent publishes these."""

    sales: list[SalesWindow] = field(default_factory=list)
    clicks: list[ClicksWindow] = field(default_factory=list)
    changes: list[PriceChange] = field(default_factory=list)
    prices: list[PriceState] = field(default_factory=list)
    late: list[EventEnv] = field(default_factory=list)
    duplicates: list[OrderEnv] = field(default_factory=list)  # dead-lettered as duplicate_order
    forecasts: list[ForecastRow] = field(default_factory=list)
    windows_closed: int = 0  # windows emitted (they held events or carry late counts)
    quiet_windows: int = 0  # windows closed without a row: no event in them
    decisions: int = 0
    labels: int = 0
    folded: int = 0  # events folded into open windows
    skipped_replay: bool = False
    # phase 1 of a tick: the partition record (shared model, learned_upto, closing) that must be
    # durable before any SKU record of the tick, while the final one (closing done, offset) must
    # come after them; a caller staging writes publishes this one first (agents/windows.py)
    tick_meta: tuple[str, PartitionState] | None = None
    # the partition's conservation counts after a tick (None when no tick ran)
    accounting: Accounting | None = None
    # decider calls that raised, by stage (learn_pooled, learn_local_batch, propose, predict_at):
    # the tick went on without them (see streams/engine/tick.py)
    model_errors: Counter[str] = field(default_factory=Counter)

    @property
    def duplicate_orders(self) -> int:
        return len(self.duplicates)


def decision_id(sku: str, window_start: int, old: float, new: float, policy: str) -> str:
    """Deterministic PriceChange id: the same decision always gets the same id."""
    raw = f"{sku}|{window_start}|{old:.6f}|{new:.6f}|{policy}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def publish_change(
    sku: str,
    st: SkuState,
    ws: int,
    g: Guarded,
    prop: Proposal,
    now: int,
    policy_version: str,
    out: Outputs,
) -> None:
    """A price change the guardrails let through: its ``PriceChange`` and ``PriceState``, and
    the SKU's price, version and last change moved on."""
    old, cat = st.price, st.catalog
    assert old is not None and cat is not None  # only SKUs with a catalog record are decided
    reasons = ["manual_override"] if st.override is not None else list(prop.reasons)
    if not math.isfinite(prop.price):
        reasons.append("fallback")
    at_new = prop.forecast_at_new
    if (
        math.isfinite(prop.forecast_at_old)
        and math.isfinite(prop.elasticity)
        and prop.price != g.price
    ):
        at_new = prop.forecast_at_old * (g.price / old) ** prop.elasticity
    out.changes.append(
        PriceChange(
            event_id=decision_id(sku, ws, old, g.price, policy_version),
            sku=sku,
            old_price=old,
            new_price=g.price,
            currency=cat.currency,
            decided_at=now,
            effective_at=now,
            window_start=ws,
            reasons=reasons,
            forecast=Forecast(
                units_at_old=_finite(prop.forecast_at_old), units_at_new=_finite(at_new)
            ),
            elasticity=_finite(prop.elasticity),
            model_versions=prop.model_versions,
            guardrails=list(g.applied),
            policy_version=policy_version,
        )
    )
    st.price, st.since, st.last_change = g.price, now, now
    st.version += 1
    out.prices.append(
        PriceState(sku=sku, price=g.price, currency=cat.currency, since=now, version=st.version)
    )


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0
