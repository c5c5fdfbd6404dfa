"""Each guardrail on its own."""

from __future__ import annotations

import math
from typing import Any

import pytest

from repricer.models.guardrails import (
    RULES,
    Bounds,
    ChangeBudget,
    Guarded,
    GuardrailConfig,
    Pricing,
    apply_guardrails,
    catalog_bounds,
    clamp,
    cooldown,
    fallback_last_good,
    infeasible_bounds,
    kill_switch,
    max_step,
    min_change,
    rate_limit,
    rounding,
    unchanged,
)

B = Bounds(cost=10.0, min_price=11.0, max_price=30.0)
CFG = GuardrailConfig(min_margin=0.05, max_step=0.05, min_change=0.005, cooldown_ms=60_000)


def g(current: float = 20.0, proposed: float = 20.5, **kw):  # type: ignore[no-untyped-def]
    args = dict(
        current=current, proposed=proposed, bounds=B, cfg=CFG, now_ms=1_000_000, last_change_ms=None
    )
    args.update(kw)
    return apply_guardrails(**args)


def test_max_step_caps_the_move() -> None:
    assert g(proposed=100.0).price == 21.0 and "max_step" in g(proposed=100.0).applied
    assert g(proposed=1.0).price == 19.0


def test_floor_uses_margin_over_cost() -> None:
    b = Bounds(cost=20.0, min_price=11.0, max_price=30.0)  # floor = 21.0 from the margin
    r = g(current=21.5, proposed=15.0, bounds=b)
    assert r.price == 21.0 and "floor" in r.applied


def test_ceiling() -> None:
    r = g(current=29.5, proposed=40.0)
    assert r.price == 30.0 and "ceiling" in r.applied


def test_out_of_bounds_current_is_brought_inside_even_beyond_max_step() -> None:
    r = g(current=50.0, proposed=50.0)
    assert r.changed and r.price == 30.0
    r = g(current=5.0, proposed=5.0, last_change_ms=999_999)  # cooldown does not keep it outside
    assert r.changed and r.price == 11.0


def test_cooldown_blocks_and_expires() -> None:
    assert g(last_change_ms=1_000_000 - 59_999).applied == ("cooldown",)
    assert g(last_change_ms=1_000_000 - 60_000).changed


def test_min_change_hysteresis() -> None:
    r = g(proposed=20.05)
    assert not r.changed and "min_change" in r.applied


def test_rounding_to_cents_and_ninety_nine() -> None:
    assert g(proposed=20.456).price == 20.46
    cfg = GuardrailConfig(max_step=0.2, min_change=0.0, rounding="ninety_nine")
    assert g(proposed=22.3, cfg=cfg).price == 21.99
    # no x.99 point inside the allowed range: falls back to cents, still inside
    cfg = GuardrailConfig(max_step=0.01, min_change=0.0, rounding="ninety_nine")
    r = g(current=20.0, proposed=20.15, cfg=cfg)
    assert r.price == 20.15 or r.price == 20.2 or 19.8 <= r.price <= 20.2


def test_kill_switch_and_rate_limit() -> None:
    assert g(proposed=25.0, frozen=True).applied == ("kill_switch",)
    assert g(proposed=25.0, rate_ok=False).applied == ("rate_limit",)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -3.0])
def test_bad_model_output_falls_back_to_last_good_price(bad: float) -> None:
    r = g(proposed=bad)
    assert not r.changed and r.price == 20.0 and r.applied == ("fallback_last_good",)


def test_infeasible_bounds_never_publish() -> None:
    b = Bounds(cost=40.0, min_price=11.0, max_price=30.0)  # floor 42 > ceiling 30
    assert g(bounds=b, proposed=25.0).applied == ("infeasible_bounds",)


def test_override_is_clamped_to_bounds_and_ignores_step() -> None:
    r = g(override=28.0)
    assert r.price == 28.0 and "override" in r.applied
    assert g(override=99.0).price == 30.0


# -- each rule of RULES alone --------------------------------------------------------------------


def pricing(current: float = 20.0, proposed: float = 20.5, **kw: Any) -> Pricing:
    """A pricing as the rules before the one under test leave it (bounds set, policy-led)."""
    args: dict[str, Any] = {"bounds": B, "cfg": CFG, "now_ms": 1_000_000, "last_change_ms": None}
    p = Pricing(current=current, proposed=proposed, **(args | kw))
    p.floor, p.ceiling = p.bounds.floor(p.cfg.min_margin), p.bounds.max_price
    p.lo, p.hi, p.target = p.floor, p.ceiling, proposed
    return p


def test_rules_are_applied_in_order_of_precedence() -> None:
    assert [r.__name__ for r in RULES] == [
        "kill_switch",
        "infeasible_bounds",
        "catalog_bounds",
        "fallback_last_good",
        "cooldown",
        "rate_limit",
        "max_step",
        "clamp",
        "rounding",
        "min_change",
        "unchanged",
    ]


def test_rule_kill_switch() -> None:
    assert kill_switch(pricing(frozen=True)) == Guarded(20.0, False, ("kill_switch",))
    assert kill_switch(pricing()) is None


def test_rule_infeasible_bounds() -> None:
    p = pricing(bounds=Bounds(cost=10.0, min_price=31.0, max_price=30.0))
    assert infeasible_bounds(p) == Guarded(20.0, False, ("infeasible_bounds",))
    p = pricing()
    assert infeasible_bounds(p) is None and (p.floor, p.ceiling) == (11.0, 30.0)


def test_rule_catalog_bounds() -> None:
    p = pricing(current=50.0)
    assert catalog_bounds(p) is None
    assert p.out_of_bounds and not p.policy_led and (p.target, p.lo, p.hi) == (50.0, 11.0, 30.0)
    p = pricing(override=12.0)
    assert catalog_bounds(p) is None and p.target == 12.0 and p.applied == ["override"]
    p = pricing(proposed=25.0)
    assert catalog_bounds(p) is None and p.policy_led and p.target == 25.0


def test_rule_fallback_last_good() -> None:
    for bad in (math.nan, -1.0, 0.0):
        assert fallback_last_good(pricing(proposed=bad)) == Guarded(
            20.0, False, ("fallback_last_good",)
        )
    assert fallback_last_good(pricing()) is None
    p = pricing(proposed=math.nan)
    p.out_of_bounds = True  # bounds first: a price outside them is moved in all the same
    assert fallback_last_good(p) is None


def test_rule_cooldown() -> None:
    assert cooldown(pricing(last_change_ms=1_000_000 - 59_999)).applied == ("cooldown",)  # type: ignore[union-attr]
    assert cooldown(pricing(last_change_ms=1_000_000 - 60_000)) is None
    assert cooldown(pricing(last_change_ms=1_000_000, override=12.0)) is None


def test_rule_rate_limit_and_its_budget() -> None:
    assert rate_limit(pricing(rate_ok=False)) == Guarded(20.0, False, ("rate_limit",))
    assert rate_limit(pricing(rate_ok=True)) is None
    assert rate_limit(pricing(rate_ok=False, override=12.0)) is None  # an override still goes
    budget = ChangeBudget(1)
    budget.spend(Guarded(20.0, False, ("cooldown",)))
    assert budget.ok
    budget.spend(Guarded(21.0, True, ()))
    assert not budget.ok and budget.left == 0


def test_rule_max_step() -> None:
    p = pricing()
    assert max_step(p) is None and (p.lo, p.hi) == (19.0, 21.0)
    p = pricing(current=11.2)
    max_step(p)
    assert p.lo == 11.0  # never below the floor
    p = pricing(override=12.0)
    max_step(p)
    assert (p.lo, p.hi) == (11.0, 30.0)  # an override is not stepped


def test_rule_clamp() -> None:
    p = pricing(proposed=40.0)
    p.lo, p.hi = 19.0, 21.0
    assert clamp(p) is None and p.price == 21.0 and p.applied == ["max_step"]
    p = pricing(proposed=40.0)
    assert clamp(p) is None and p.price == 30.0 and p.applied == ["ceiling"]
    p = pricing(proposed=5.0)
    assert clamp(p) is None and p.price == 11.0 and p.applied == ["floor"]


def test_rule_rounding() -> None:
    p = pricing()
    p.price = 20.456
    assert rounding(p) is None and p.price == 20.46 and p.applied == ["rounding"]
    p = pricing(cfg=GuardrailConfig(rounding="ninety_nine"))
    p.price = 20.2
    assert rounding(p) is None and p.price == 19.99
    p = pricing()
    p.lo, p.hi, p.price = 20.001, 20.004, 20.002  # no cent inside: the exact lower bound
    assert rounding(p) is None and p.price == 20.001 and p.applied == []


def test_rule_min_change() -> None:
    p = pricing()
    p.price = 20.05  # 0.25 % < 0.5 %
    assert min_change(p) == Guarded(20.0, False, ("min_change",))
    p.price = 20.1
    assert min_change(p) is None
    p = pricing(override=20.05)
    p.price = 20.05
    assert min_change(p) is None


def test_rule_unchanged() -> None:
    p = pricing()
    p.price, p.applied = 20.0, ["max_step"]
    assert unchanged(p) == Guarded(20.0, False, ("max_step",))
    p.price = 20.5
    assert unchanged(p) is None
