"""Deciding at a tick: forecast -> policy -> guardrails -> outputs, for every SKU closing at once.

If the decider raises while deciding, every SKU of the tick holds its price (the guardrails'
fallback), and the windows close and emit as usual.
"""

from __future__ import annotations

import math

import numpy as np

from repricer.models.base import SkuView
from repricer.models.decider import Proposal
from repricer.models.guardrails import Bounds, ChangeBudget, apply_guardrails
from repricer.streams.engine.close import LastWindow
from repricer.streams.engine.config import EngineConfig
from repricer.streams.engine.learn import model_failed
from repricer.streams.engine.outputs import Outputs, publish_change
from repricer.streams.engine.state import PartitionState, Pending, SkuState

# the SKUs deciding in a step: (sku, its state, the last window it closed)
Deciding = list[tuple[str, SkuState, LastWindow]]

# the proposal of a decider that raised: no price, so the guardrails hold the current one
UNAVAILABLE = Proposal(math.nan, ("model_unavailable",), math.nan, math.nan, math.nan)


def view_of(cfg: EngineConfig, sku: str, st: SkuState, last: LastWindow) -> SkuView:
    """What the models see of a SKU deciding after ``last``."""
    cat = st.catalog
    assert cat is not None and st.price is not None
    return SkuView(
        sku=sku,
        price=st.price,
        ref_price=cat.base_price,
        cost=cat.cost,
        next_window_start=last.start + cfg.window_ms,
        units_ewma=st.units_ewma,
        views_ewma=st.views_ewma,
        last_units=float(last.units),
        last_views=float(last.views),
        windows_seen=st.windows_seen,
        history=st.history or (),
        state=st.model_state,
        stock=st.stock_left(),
    )


def decide(
    cfg: EngineConfig, deciding: Deciding, pm: PartitionState, partition: int, out: Outputs
) -> None:
    """Phase 3: one batch of forecasts for every SKU closing now, then the guardrails per SKU.

    If the decider raises, every SKU gets a ``model_unavailable`` proposal, which the guardrails
    turn into holding the price (or into bringing it back inside its bounds, or to a manual
    override), and no forecast is saved for the next label.
    """
    if not deciding:
        return
    views = [view_of(cfg, sku, st, last) for sku, st, last in deciding]
    bounds = []
    for _, st, _ in deciding:
        cat = st.catalog
        assert cat is not None
        bounds.append(Bounds(cost=cat.cost, min_price=cat.min_price, max_price=cat.max_price))
    try:
        proposals = cfg.decider.propose(views, bounds, cfg.guardrails.min_margin)
    except Exception:
        model_failed("propose", partition, pm.boundary, len(views), out)
        proposals = [UNAVAILABLE] * len(views)
    budget = ChangeBudget(cfg.rate_limit_per_tick)
    finals = []
    for (sku, st, last), v, bd, prop in zip(deciding, views, bounds, proposals, strict=True):
        now = v.next_window_start
        assert st.price is not None
        g = apply_guardrails(
            current=st.price,
            proposed=prop.price,
            bounds=bd,
            cfg=cfg.guardrails,
            now_ms=now,
            last_change_ms=st.last_change,
            frozen=st.frozen or pm.frozen_all,
            override=st.override,
            rate_ok=budget.ok,
        )
        budget.spend(g)
        out.decisions += 1
        if g.changed:
            publish_change(sku, st, last.start, g, prop, now, cfg.policy_version, out)
        finals.append(st.price)
    forecast_next(cfg, deciding, views, finals, pm, partition, out)


def forecast_next(
    cfg: EngineConfig,
    deciding: Deciding,
    views: list[SkuView],
    finals: list[float],
    pm: PartitionState,
    partition: int,
    out: Outputs,
) -> None:
    """Forecast each SKU's next window at its price ``finals[i]``: the pending forecast its close
    labels (and the models learn from)."""
    try:
        preds = cfg.decider.predict_at(views, np.array(finals, dtype=np.float64))
        cols = [(k, np.asarray(a, dtype=np.float64).tolist()) for k, a in preds.items()]
    except Exception:
        model_failed("predict_at", partition, pm.boundary, len(views), out)
        cols = []
    for i, ((sku, st, _), v) in enumerate(zip(deciding, views, strict=True)):
        m = st.model_state
        m["nd"] = int(m.get("nd", 0)) + 1  # forecasts awaiting a label, ever
        st.pending = Pending(
            sku=sku,
            window_start=v.next_window_start,
            price=finals[i],
            units_ewma=v.units_ewma,
            views_ewma=v.views_ewma,
            last_units=v.last_units,
            last_views=v.last_views,
            windows_seen=v.windows_seen,
            predictions={k: round(a[i], 6) for k, a in cols if math.isfinite(a[i])},
        )


def forecast_only(
    cfg: EngineConfig, deciding: Deciding, pm: PartitionState, partition: int, out: Outputs
) -> None:
    """A catch-up's intermediate step: no decision, only the next window forecast at the price
    in force."""
    if not deciding:
        return
    views = [view_of(cfg, sku, st, last) for sku, st, last in deciding]
    prices = [st.price for _, st, _ in deciding]
    forecast_next(cfg, deciding, views, prices, pm, partition, out)  # type: ignore[arg-type]
