"""Hard guardrails: the last word on every price repricer publishes.

``apply_guardrails`` takes whatever a policy proposes (NaN and negative included) and returns a
price that satisfies every rule, or no change. Order of precedence: kill switch, infeasible
bounds, floor/ceiling (they beat every other rule, including max step, so a SKU whose catalog
bounds moved is brought back inside them), fallback to the last good price, cooldown,
global rate limit, max step, rounding, minimum change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Rounding = Literal["cent", "ninety_nine"]


@dataclass(frozen=True, slots=True)
class GuardrailConfig:
    """Guardrail parameters (see ``streams.settings.Settings`` for their meaning)."""

    min_margin: float = 0.05
    max_step: float = 0.05
    min_change: float = 0.005
    cooldown_ms: int = 120_000
    rounding: Rounding = "cent"


@dataclass(frozen=True, slots=True)
class Bounds:
    """A SKU's cost and catalog price bounds."""

    cost: float
    min_price: float
    max_price: float

    def floor(self, min_margin: float) -> float:
        return max(self.min_price, self.cost * (1.0 + min_margin))


@dataclass(frozen=True, slots=True)
class Guarded:
    """Outcome of the guardrails: the price to publish (``changed``) and the rules that bound it."""

    price: float
    changed: bool
    applied: tuple[str, ...]


def _grid(rounding: Rounding) -> tuple[int, int]:
    """(step, offset) in cents of the rounding grid."""
    return (100, 99) if rounding == "ninety_nine" else (1, 0)


def _round_within(p: float, lo: float, hi: float, rounding: Rounding) -> float | None:
    """Grid point nearest to ``p`` inside ``[lo, hi]`` (cent grid as a fallback), else ``None``."""
    for step, off in (_grid(rounding), (1, 0)):
        lo_k = math.ceil((lo * 100 - off) / step)
        while (lo_k * step + off) / 100 < lo:
            lo_k += 1
        hi_k = math.floor((hi * 100 - off) / step)
        while (hi_k * step + off) / 100 > hi:
            hi_k -= 1
        if lo_k <= hi_k:
            k = min(max(round((p * 100 - off) / step), lo_k), hi_k)
            return (k * step + off) / 100
    return None


def apply_guardrails(
    *,
    current: float,
    proposed: float,
    bounds: Bounds,
    cfg: GuardrailConfig,
    now_ms: int,
    last_change_ms: int | None,
    frozen: bool = False,
    override: float | None = None,
    rate_ok: bool = True,
) -> Guarded:
    """Clamp ``proposed`` into a publishable price; ``changed`` is False when nothing may move.

    >>> b = Bounds(cost=10.0, min_price=11.0, max_price=30.0)
    >>> apply_guardrails(current=20.0, proposed=40.0, bounds=b, cfg=GuardrailConfig(), now_ms=0,
    ...                  last_change_ms=None)
    Guarded(price=21.0, changed=True, applied=('max_step',))
    >>> apply_guardrails(current=20.0, proposed=float("nan"), bounds=b, cfg=GuardrailConfig(),
    ...                  now_ms=0, last_change_ms=None).applied
    ('fallback_last_good',)
    """
    keep = lambda *why: Guarded(price=current, changed=False, applied=why)  # noqa: E731
    if frozen:
        return keep("kill_switch")
    floor, ceiling = bounds.floor(cfg.min_margin), bounds.max_price
    if not (math.isfinite(floor) and math.isfinite(ceiling)) or floor > ceiling:
        return keep("infeasible_bounds")
    applied: list[str] = []
    out_of_bounds = not (floor <= current <= ceiling) or not math.isfinite(current) or current <= 0
    if override is not None:
        target, lo, hi = override, floor, ceiling
        applied.append("override")
    elif out_of_bounds:
        target = current if math.isfinite(current) else floor
        lo, hi = floor, ceiling
    else:
        if not (math.isfinite(proposed) and proposed > 0):
            return keep("fallback_last_good")
        if last_change_ms is not None and now_ms - last_change_ms < cfg.cooldown_ms:
            return keep("cooldown")
        if not rate_ok:
            return keep("rate_limit")
        target = proposed
        lo = max(floor, current * (1.0 - cfg.max_step))
        hi = min(ceiling, current * (1.0 + cfg.max_step))
    if target < lo:
        applied.append("floor" if lo == floor else "max_step")
    elif target > hi:
        applied.append("ceiling" if hi == ceiling else "max_step")
    clamped = min(max(target, lo), hi)
    price = _round_within(clamped, lo, hi, cfg.rounding)
    if price is None:
        # The interval is narrower than a cent: publish its exact lower bound (still inside).
        price = lo
    elif price != clamped:
        applied.append("rounding")
    if not out_of_bounds and override is None:
        if abs(price - current) < cfg.min_change * current:
            return keep(*applied, "min_change")
    if price == current:
        return keep(*applied)
    return Guarded(price=price, changed=True, applied=tuple(applied))


def check_price(price: float, *, bounds: Bounds, cfg: GuardrailConfig) -> list[str]:
    """Names of the hard bounds ``price`` violates (empty when it is publishable)."""
    bad = []
    if not math.isfinite(price) or price <= 0:
        bad.append("finite_positive")
    elif price < bounds.floor(cfg.min_margin) - 1e-9:
        bad.append("floor")
    elif price > bounds.max_price + 1e-9:
        bad.append("ceiling")
    return bad
