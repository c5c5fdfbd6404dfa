"""Pricing policies: turn a closed window's demand signal into a proposed price.

``RulePolicy`` is the demand-responsive baseline: it nudges the price up when demand runs above
its recent average and down when it runs below, then leans toward the profit-maximising price of
a constant-elasticity prior. Whatever it proposes, ``models.guardrails`` has the last word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PRIOR_ELASTICITY = -2.0


@dataclass(frozen=True, slots=True)
class DemandSignal:
    """What the policy sees for one SKU at one window close."""

    sku: str
    price: float
    cost: float
    units: int
    views: int
    units_ewma: float
    views_ewma: float
    windows_seen: int


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposed price with its explanation."""

    price: float
    reasons: tuple[str, ...]
    forecast_at_old: float
    forecast_at_new: float
    elasticity: float
    model_versions: dict[str, str] = field(default_factory=dict)


def units_at(price: float, ref_price: float, ref_units: float, elasticity: float) -> float:
    """Constant-elasticity demand: units at ``price`` given units at ``ref_price``."""
    if ref_price <= 0 or price <= 0:
        return 0.0
    return ref_units * (price / ref_price) ** elasticity


@dataclass(frozen=True, slots=True)
class RulePolicy:
    """Demand-responsive rule with a constant-elasticity profit anchor.

    >>> s = DemandSignal(sku="A", price=10.0, cost=5.0, units=30, views=300, units_ewma=10.0,
    ...                  views_ewma=300.0, windows_seen=10)
    >>> RulePolicy().propose(s).price > 10.0
    True
    """

    elasticity: float = PRIOR_ELASTICITY
    sensitivity: float = 0.1
    anchor_weight: float = 0.2
    warmup_windows: int = 3
    version: str = "rule-v1"

    def propose(self, s: DemandSignal) -> Proposal:
        base = max(s.units_ewma, 0.0)
        reasons: list[str] = []
        if s.windows_seen < self.warmup_windows:
            move = 0.0
            reasons.append("warmup")
        else:
            # log ratio of observed to expected demand, +1 smoothing so zero windows are finite
            ratio = math.log((s.units + 1.0) / (base + 1.0))
            move = max(-1.0, min(1.0, ratio)) * self.sensitivity
            if move > 0.01:
                reasons.append("demand_up")
            elif move < -0.01:
                reasons.append("demand_down")
        e = self.elasticity
        anchor = s.cost * e / (1.0 + e) if e < -1.0 and s.cost > 0 else s.price
        log_target = (
            math.log(s.price) + move + self.anchor_weight * (math.log(anchor) - math.log(s.price))
        )
        if abs(math.log(anchor) - math.log(s.price)) > 0.02:
            reasons.append("margin_anchor_up" if anchor > s.price else "margin_anchor_down")
        target = math.exp(log_target)
        return Proposal(
            price=target,
            reasons=tuple(reasons) or ("hold",),
            forecast_at_old=base,
            forecast_at_new=units_at(target, s.price, base, e),
            elasticity=e,
            model_versions={"rule": self.version},
        )
