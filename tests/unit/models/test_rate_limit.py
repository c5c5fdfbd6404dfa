"""The rate limits: what each bounds, on its own and through the engine's durable state."""

from __future__ import annotations

from typing import Any

from repricer.models.guardrails import (
    RULES,
    Bounds,
    GuardrailConfig,
    apply_guardrails,
    remember_change,
    sku_rate_limit,
)
from repricer.streams.build import guardrail_config
from repricer.streams.engine import OpenWindows, PartitionState, SkuState, WindowEngine
from repricer.streams.engine.state import decode, encode
from repricer.streams.envelope import CatalogEnv, OrderEnv, WatermarkEnv
from repricer.streams.settings import Settings
from repricer.streams.tools.testing import FixedDecider

B = Bounds(cost=10.0, min_price=11.0, max_price=30.0)
HOUR = 3_600_000
T0 = 1_767_225_600_000
W = 60_000


def g(recent: list[int], now: int, **cfg: Any):  # type: ignore[no-untyped-def]
    c = GuardrailConfig(cooldown_ms=0, min_change=0.0, **cfg)
    return apply_guardrails(
        current=20.0,
        proposed=20.5,
        bounds=B,
        cfg=c,
        now_ms=now,
        last_change_ms=None,
        recent_changes=recent,
    )


def test_sku_rate_limit_counts_changes_inside_the_period_only() -> None:
    lim = dict(max_changes_per_sku=2, change_period_ms=HOUR)
    assert g([], HOUR, **lim).changed
    assert g([10], HOUR, **lim).changed
    assert g([HOUR - 10, HOUR - 5], HOUR, **lim).applied == ("sku_rate_limit",)
    # the older of the two left the period: one change in the last hour, one more may go
    assert g([0, HOUR - 5], HOUR, **lim).changed
    assert g([HOUR - 10, HOUR - 5], HOUR).changed  # 0: off


def test_sku_rate_limit_holds_the_policy_only_and_sits_after_the_cooldown() -> None:
    c = GuardrailConfig(max_changes_per_sku=1, change_period_ms=HOUR)
    r = apply_guardrails(
        current=20.0,
        proposed=20.5,
        bounds=B,
        cfg=c,
        now_ms=HOUR,
        last_change_ms=None,
        recent_changes=[HOUR - 1],
        override=25.0,
    )
    assert r.changed and r.price == 25.0  # an override still goes
    names = [r.__name__ for r in RULES]
    assert names.index("cooldown") < names.index("sku_rate_limit") < names.index("rate_limit")
    assert sku_rate_limit.__doc__


def test_remember_change_keeps_only_what_the_limit_reads() -> None:
    c = GuardrailConfig(max_changes_per_sku=3)
    rec: list[int] = []
    for t in range(10):
        rec = remember_change(rec, t, c)
    assert rec == [7, 8, 9]
    assert remember_change([1], 2, GuardrailConfig()) == []


def test_settings_carry_the_limit_to_the_guardrails() -> None:
    cfg = guardrail_config(Settings(max_changes_per_sku=4, change_period_s=600))
    assert (cfg.max_changes_per_sku, cfg.change_period_ms) == (4, 600_000)


META: dict[str, PartitionState] = {}
OPENS: dict[str, OpenWindows] = {}


def _run(engine: WindowEngine, skus: dict[str, SkuState], start: int, windows: int) -> int:
    """Feed one order per window to SKU A and close each window; returns the changes published."""
    meta, opens = META, OPENS
    n, off = 0, 1000 * start
    for w in range(start, start + windows):
        for env in (
            OrderEnv(
                sku="A",
                ts=T0 + w * W + 1,
                qty=1,
                price=6.0,
                order_id=f"o{w}",
                src="orders/0",
                off=w,
            ),
            WatermarkEnv(src="orders/0", ts=T0 + (w + 1) * W + 5_000),
        ):
            off += 1
            out = engine.handle(env, partition=0, offset=off, skus=skus, meta=meta, opens=opens)
            n += len(out.changes)
    return n


def test_the_per_sku_limit_holds_across_a_restart_and_another_worker() -> None:
    """Two changes per 10 windows: the SKU's record carries its recent changes, so a new
    engine (a restarted or different worker) reading it from the changelog still holds."""
    cfg = GuardrailConfig(
        cooldown_ms=0, min_change=0.0, max_changes_per_sku=2, change_period_ms=10 * W
    )

    def engine() -> WindowEngine:
        return WindowEngine(window_ms=W, lateness_ms=5_000, guardrails=cfg, decider=FixedDecider())

    skus: dict[str, SkuState] = {}
    first = engine()
    first.handle(
        CatalogEnv(
            sku="A",
            cost=5.0,
            base_price=6.0,
            min_price=5.5,
            max_price=25.0,
            currency="EUR",
            stock=None,
        ),
        partition=0,
        offset=0,
        skus=skus,
        meta=META,
        opens=OPENS,
    )
    assert _run(first, skus, 0, 3) == 2  # the FixedDecider proposes +5% every window
    # the SKU's record through its changelog form, into a fresh engine
    skus = {k: decode(SkuState, encode(v)) for k, v in skus.items()}
    assert len(skus["A"].recent_changes) == 2
    assert _run(engine(), skus, 3, 5) == 0  # still inside the 10-window period
    assert _run(engine(), skus, 8, 6) == 2  # the period has passed: two more, then held
