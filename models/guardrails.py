"""Hard guardrails: the last word on every price repricer publishes.

``apply_guardrails`` takes whatever a policy proposes (NaN and negative included) and returns a
price that satisfies every rule, or no change. The rules are the functions of ``RULES``, applied
in order of precedence: kill switch, infeasible bounds, floor/ceiling (they beat every other
rule, including max step, so a SKU whose catalog bounds moved is brought back inside them),
fallback to the last good price, cooldown, the per-SKU rate limit (at most
``max_changes_per_sku`` changes of one SKU in any ``change_period_ms``), the partition's budget
per window close, max step, rounding, minimum change. To add a guardrail: write its rule function here and put it in ``RULES`` at its place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    # the per-SKU rate limit: at most this many policy changes of one SKU in any
    # ``change_period_ms`` of event time (0: no limit but the cooldown)
    max_changes_per_sku: int = 0
    change_period_ms: int = 86_400_000


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


@dataclass(slots=True)
class Pricing:
    """One SKU's price decision as the rules see it, from the proposal to the price to publish.

    The inputs are set by ``apply_guardrails``; the rules narrow ``[lo, hi]`` around ``target``,
    set ``price`` and name themselves in ``applied`` when they bind.
    """

    current: float
    proposed: float
    bounds: Bounds
    cfg: GuardrailConfig
    now_ms: int
    last_change_ms: int | None
    frozen: bool = False  # the SKU's or its partition's kill switch
    override: float | None = None
    rate_ok: bool = True  # the tick's budget of price changes is not spent
    recent_changes: Sequence[int] = ()  # event times (ms) of the SKU's latest price changes
    floor: float = math.nan
    ceiling: float = math.nan
    out_of_bounds: bool = False  # the current price is outside [floor, ceiling] (or not valid)
    target: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    price: float = math.nan
    applied: list[str] = field(default_factory=list)

    @property
    def policy_led(self) -> bool:
        """The policy's proposal decides (no override, current price inside its bounds)."""
        return self.override is None and not self.out_of_bounds

    def keep(self, *why: str) -> Guarded:
        return Guarded(price=self.current, changed=False, applied=why)


# A rule returns a final outcome (hold the price), or None to hand the pricing to the next rule.
Rule = Callable[[Pricing], Guarded | None]


def kill_switch(p: Pricing) -> Guarded | None:
    """A frozen SKU (or partition) holds its price, whatever else holds."""
    return p.keep("kill_switch") if p.frozen else None


def infeasible_bounds(p: Pricing) -> Guarded | None:
    """No price can satisfy bounds that are not finite or whose floor is above the ceiling."""
    p.floor, p.ceiling = p.bounds.floor(p.cfg.min_margin), p.bounds.max_price
    if not (math.isfinite(p.floor) and math.isfinite(p.ceiling)) or p.floor > p.ceiling:
        return p.keep("infeasible_bounds")
    return None


def catalog_bounds(p: Pricing) -> Guarded | None:
    """Floor and ceiling beat every other rule: a manual override, or a current price outside
    its bounds (they moved), is brought inside them, past max step and cooldown."""
    c = p.current
    p.out_of_bounds = not (p.floor <= c <= p.ceiling) or not math.isfinite(c) or c <= 0
    p.lo, p.hi = p.floor, p.ceiling
    if p.override is not None:
        p.target = p.override
        p.applied.append("override")
    elif p.out_of_bounds:
        p.target = c if math.isfinite(c) else p.floor
    else:
        p.target = p.proposed
    return None


def fallback_last_good(p: Pricing) -> Guarded | None:
    """No usable proposal (NaN, not positive: a model that failed) holds the last good price."""
    if p.policy_led and not (math.isfinite(p.proposed) and p.proposed > 0):
        return p.keep("fallback_last_good")
    return None


def cooldown(p: Pricing) -> Guarded | None:
    """A price changed less than ``cooldown_ms`` ago holds."""
    since = p.last_change_ms
    if p.policy_led and since is not None and p.now_ms - since < p.cfg.cooldown_ms:
        return p.keep("cooldown")
    return None


def sku_rate_limit(p: Pricing) -> Guarded | None:
    """A SKU whose price changed ``max_changes_per_sku`` times in the last ``change_period_ms``
    (event time, from its durable record: it holds across workers and restarts) holds."""
    n = p.cfg.max_changes_per_sku
    if p.policy_led and n > 0:
        since = p.now_ms - p.cfg.change_period_ms
        if sum(1 for t in p.recent_changes if t > since) >= n:
            return p.keep("sku_rate_limit")
    return None


def rate_limit(p: Pricing) -> Guarded | None:
    """Once the partition's budget of price changes for this window close is spent, the rest
    hold (``ChangeBudget``)."""
    return p.keep("rate_limit") if p.policy_led and not p.rate_ok else None


def max_step(p: Pricing) -> Guarded | None:
    """A policy move is at most ``max_step`` of the current price either way."""
    if p.policy_led:
        p.lo = max(p.floor, p.current * (1.0 - p.cfg.max_step))
        p.hi = min(p.ceiling, p.current * (1.0 + p.cfg.max_step))
    return None


def clamp(p: Pricing) -> Guarded | None:
    """The target into ``[lo, hi]``, naming the bound that binds (floor, ceiling or max step)."""
    if p.target < p.lo:
        p.applied.append("floor" if p.lo == p.floor else "max_step")
    elif p.target > p.hi:
        p.applied.append("ceiling" if p.hi == p.ceiling else "max_step")
    p.price = min(max(p.target, p.lo), p.hi)
    return None


def rounding(p: Pricing) -> Guarded | None:
    """The price onto the rounding grid inside ``[lo, hi]`` (or ``lo`` if no cent fits)."""
    clamped = p.price
    price = _round_within(clamped, p.lo, p.hi, p.cfg.rounding)
    if price is None:
        # The interval is narrower than a cent: publish its exact lower bound (still inside).
        p.price = p.lo
    else:
        p.price = price
        if price != clamped:
            p.applied.append("rounding")
    return None


def min_change(p: Pricing) -> Guarded | None:
    """A policy move smaller than ``min_change`` of the current price is not worth publishing."""
    if p.policy_led and abs(p.price - p.current) < p.cfg.min_change * p.current:
        return p.keep(*p.applied, "min_change")
    return None


def unchanged(p: Pricing) -> Guarded | None:
    """The same price as now is no change."""
    return p.keep(*p.applied) if p.price == p.current else None


# The guardrails, in order of precedence: the first rule that returns an outcome decides.
RULES: tuple[Rule, ...] = (
    kill_switch,
    infeasible_bounds,
    catalog_bounds,
    fallback_last_good,
    cooldown,
    sku_rate_limit,
    rate_limit,
    max_step,
    clamp,
    rounding,
    min_change,
    unchanged,
)


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
    recent_changes: Sequence[int] = (),
    rules: Sequence[Rule] = RULES,
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
    p = Pricing(
        current=current,
        proposed=proposed,
        bounds=bounds,
        cfg=cfg,
        now_ms=now_ms,
        last_change_ms=last_change_ms,
        frozen=frozen,
        override=override,
        rate_ok=rate_ok,
        recent_changes=recent_changes,
    )
    for rule in rules:
        outcome = rule(p)
        if outcome is not None:
            return outcome
    return Guarded(price=p.price, changed=True, applied=tuple(p.applied))


@dataclass(slots=True)
class ChangeBudget:
    """The price changes one partition's window close may still publish (the ``rate_limit``
    rule's budget)."""

    left: int

    @property
    def ok(self) -> bool:
        return self.left > 0

    def spend(self, outcome: Guarded) -> None:
        if outcome.changed:
            self.left -= 1


def remember_change(recent: list[int], now_ms: int, cfg: GuardrailConfig) -> list[int]:
    """The SKU's recent change times after a change at ``now_ms``: only as many as the per-SKU
    rate limit reads (none when it is off), so the record stays small.

    >>> remember_change([1, 2, 3], 4, GuardrailConfig(max_changes_per_sku=2))
    [3, 4]
    """
    n = cfg.max_changes_per_sku
    return [*recent, now_ms][-n:] if n > 0 else []


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
