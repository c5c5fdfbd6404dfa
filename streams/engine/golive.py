"""Going live safely: who prices a SKU (live, shadow, holdout), shadow decisions, rollback.

Who prices a SKU, the first that applies:

1. **holdout**: a SKU in the holdout group (``Holdout``: an explicit list, or the hash of the
   salt and the SKU below the fraction) is never priced by the engine; it is the control group
   ``repricer report --uplift`` compares against;
2. its own mode (``repricer control shadow|live SKU``);
3. its category's (``repricer control shadow|live category:NAME``);
4. every SKU's (``repricer control shadow|live '*'``);
5. the ``REPRICER_MODE`` setting.

(``Holdout`` lives in ``config.py``.) A SKU priced ``live`` publishes its changes (``PriceChange``/``PriceState``). One in ``shadow``
or ``holdout`` is decided the same way, through the same guardrails, but its would-be change is
a ``ShadowDecision`` (shadow topic, ClickHouse ``shadow_decisions``) and its price, version and
change history stay as they were: nothing reaches ``prices``/``price-changes``.

A rollback (``ControlEnv`` action ``rollback``) publishes the price the operator's command
carries (the price in force at the time they chose) at once, through the floor and ceiling (the
guardrails treat it as a manual price: no max step, cooldown or rate limit holds an operator's
restore), with reason ``rollback``, and freezes the SKU until it is unfrozen.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Literal

from repricer.models.decider import Proposal
from repricer.models.guardrails import Bounds, Guarded, apply_guardrails
from repricer.schemas.events import ShadowDecision
from repricer.streams.engine.config import EngineConfig
from repricer.streams.engine.outputs import Outputs, decision_id, forecast_at, publish_change
from repricer.streams.engine.state import PartitionState, SkuState
from repricer.streams.envelope import ControlEnv

log = logging.getLogger(__name__)

Mode = Literal["live", "shadow", "holdout"]
MODES = ("live", "shadow")  # what a control command or the setting can set


def mode_of(cfg: EngineConfig, sku: str, st: SkuState, pm: PartitionState) -> Mode:
    """Who prices ``sku`` now (the order in the module docstring)."""
    if cfg.holdout.holds(sku):
        return "holdout"
    if st.mode is not None:
        return st.mode  # type: ignore[return-value]
    if st.category is not None and st.category in pm.category_modes:
        return pm.category_modes[st.category]  # type: ignore[return-value]
    if pm.mode is not None:
        return pm.mode  # type: ignore[return-value]
    return cfg.mode  # type: ignore[return-value]


def apply_mode_control(env: ControlEnv, pm: PartitionState) -> bool:
    """A ``shadow``/``live`` command for ``*`` or ``category:NAME`` into the partition's
    record; False if ``env`` is no such command."""
    if env.action not in MODES:
        return False
    if env.sku == "*":
        pm.mode = env.action
    else:
        pm.category_modes[env.sku.removeprefix("category:")] = env.action
    log.info("%s: %s (by %s: %s)", env.sku, env.action, env.who, env.why)
    return True


def record_shadow(
    cfg: EngineConfig,
    sku: str,
    st: SkuState,
    ws: int,
    g: Guarded,
    prop: Proposal,
    now: int,
    mode: Mode,
    out: Outputs,
) -> None:
    """The change the guardrails would let through for a SKU not priced live: recorded, with
    the gain it expected, and nothing of the SKU's price moved."""
    old, cat = st.price, st.catalog
    assert old is not None and cat is not None
    reasons = ["manual_override"] if st.override is not None else list(prop.reasons)
    at_new = forecast_at(prop, old, g.price)
    at_old = prop.forecast_at_old if math.isfinite(prop.forecast_at_old) else 0.0
    gain = (g.price - cat.cost) * at_new - (old - cat.cost) * at_old
    out.shadow.append(
        ShadowDecision(
            event_id=decision_id(sku, ws, old, g.price, cfg.policy_version),
            sku=sku,
            mode=mode,
            current_price=old,
            would_price=g.price,
            cost=cat.cost,
            currency=cat.currency,
            decided_at=now,
            window_start=ws,
            reasons=reasons,
            guardrails=list(g.applied),
            forecast_old=at_old,
            forecast_new=at_new,
            expected_gain=round(gain, 6),
            model_versions=json.dumps(prop.model_versions, sort_keys=True),
            policy_version=cfg.policy_version,
        )
    )


def apply_rollback(
    cfg: EngineConfig, env: ControlEnv, st: SkuState, pm: PartitionState, out: Outputs
) -> None:
    """Publish the command's price now, inside floor and ceiling, and freeze the SKU.

    A SKU with no catalog record or price yet, or a command without a price, is only frozen
    (logged): there is nothing to restore. The change's ``window_start`` and ``decided_at`` are
    the partition's watermark (event time), so a replay of the command decides the same.
    """
    cat = st.catalog
    if cat is None or st.price is None or env.price is None:
        log.warning("rollback of %s: no price to restore (frozen only)", env.sku)
        st.frozen = True
        return
    now = pm.watermark if pm.watermark is not None else st.since
    g = apply_guardrails(
        current=st.price,
        proposed=env.price,
        bounds=Bounds(cost=cat.cost, min_price=cat.min_price, max_price=cat.max_price),
        cfg=cfg.guardrails,
        now_ms=now,
        last_change_ms=st.last_change,
        override=env.price,
    )
    if g.changed:
        prop = Proposal(math.nan, ("rollback",), math.nan, math.nan, math.nan)
        publish_change(
            env.sku, st, now, g, prop, now, cfg, out,
            reasons=["rollback"], issued_by=env.who, note=env.why,
        )  # fmt: skip
    st.frozen = True
