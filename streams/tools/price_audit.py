"""An audit of published price changes against the hard rules, written apart from the
guardrail code (:mod:`models.guardrails`) so a backtest can count what the guardrails let
through instead of trusting them to check themselves.

Rules (for changes the policy led; backtests send no manual overrides): a finite positive price
on the cent grid, inside ``[max(min_price, cost·(1 + min_margin)), max_price]``; when the old
price was inside those bounds, a move of at most ``max_step`` and at least ``min_change`` of
the old price; and no two changes of one SKU less than ``cooldown_ms`` apart.
"""

from __future__ import annotations

import math

from repricer.models.guardrails import GuardrailConfig

_EPS = 1e-9


class PriceAudit:
    """Checks each published change of a run; ``bounds`` maps SKU to (cost, min, max price)."""

    def __init__(self, cfg: GuardrailConfig, bounds: dict[str, tuple[float, float, float]]):
        self.cfg = cfg
        self.bounds = bounds
        self.last_change: dict[str, int] = {}

    def check(self, sku: str, old: float, new: float, t_ms: int) -> list[str]:
        """The rules the change of ``sku`` from ``old`` to ``new`` at ``t_ms`` breaks."""
        cfg = self.cfg
        cost, lo_cat, hi = self.bounds[sku]
        floor = max(lo_cat, cost * (1.0 + cfg.min_margin))
        bad: list[str] = []
        if not (math.isfinite(new) and new > 0):
            return ["not_finite_positive"]
        if abs(new * 100.0 - round(new * 100.0)) > 1e-6:
            bad.append("off_cent_grid")
        if new < floor - _EPS:
            bad.append("below_floor")
        if new > hi + _EPS:
            bad.append("above_ceiling")
        if floor - _EPS <= old <= hi + _EPS:
            move = abs(new - old)
            if move > cfg.max_step * old + _EPS:
                bad.append("over_max_step")
            if move < cfg.min_change * old - _EPS:
                bad.append("under_min_change")
        last = self.last_change.get(sku)
        if last is not None and t_ms - last < cfg.cooldown_ms:
            bad.append("inside_cooldown")
        self.last_change[sku] = t_ms
        return bad
