"""For any model output and any catalog, the published price satisfies every guardrail."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from repricer.models.guardrails import Bounds, GuardrailConfig, apply_guardrails, check_price

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)
anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.just(-1.0), st.just(1e300)
)


@st.composite
def catalogs(draw):  # type: ignore[no-untyped-def]
    cost = draw(st.floats(min_value=0.0, max_value=1e4))
    lo = draw(prices)
    hi = draw(st.floats(min_value=lo, max_value=lo * 20))
    return Bounds(cost=cost, min_price=lo, max_price=hi)


configs = st.builds(
    GuardrailConfig,
    min_margin=st.floats(0, 1),
    max_step=st.floats(0.001, 1),
    min_change=st.floats(0, 0.1),
    cooldown_ms=st.integers(0, 10**6),
    rounding=st.sampled_from(["cent", "ninety_nine"]),
)


@settings(max_examples=1500, deadline=None)
@given(
    bounds=catalogs(),
    cfg=configs,
    current=prices,
    proposed=anything,
    frozen=st.booleans(),
    rate_ok=st.booleans(),
    override=st.one_of(st.none(), prices),
    since=st.one_of(st.none(), st.integers(0, 2 * 10**6)),
)
def test_published_price_always_satisfies_guardrails(
    bounds, cfg, current, proposed, frozen, rate_ok, override, since
):  # type: ignore[no-untyped-def]
    now = 2 * 10**6
    r = apply_guardrails(
        current=current,
        proposed=proposed,
        bounds=bounds,
        cfg=cfg,
        now_ms=now,
        last_change_ms=since,
        frozen=frozen,
        override=override,
        rate_ok=rate_ok,
    )
    if not r.changed:
        assert r.price == current
        return
    assert not frozen, "a frozen SKU never changes"
    assert math.isfinite(r.price) and r.price > 0
    assert check_price(r.price, bounds=bounds, cfg=cfg) == []
    floor = bounds.floor(cfg.min_margin)
    in_bounds = floor <= current <= bounds.max_price
    if in_bounds and override is None:
        assert abs(r.price - current) <= cfg.max_step * current * (1 + 1e-12) + 1e-9
        assert abs(r.price - current) >= cfg.min_change * current * (1 - 1e-12)
        assert since is None or now - since >= cfg.cooldown_ms
        assert rate_ok
