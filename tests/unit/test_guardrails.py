"""Each guardrail on its own."""

from __future__ import annotations

import math

import pytest

from models.guardrails import Bounds, GuardrailConfig, apply_guardrails

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
