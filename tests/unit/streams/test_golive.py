"""Going live in the engine: shadow and live per SKU, category and '*', holdout, rollback."""

from __future__ import annotations

from typing import Any

from repricer.models.guardrails import GuardrailConfig
from repricer.streams.engine import OpenWindows, Outputs, PartitionState, SkuState, WindowEngine
from repricer.streams.engine.config import Holdout
from repricer.streams.envelope import CatalogEnv, ControlEnv, OrderEnv, WatermarkEnv
from repricer.streams.tools.testing import FixedDecider

T0 = 1_767_225_600_000
W = 60_000


class Shop:
    """One partition, SKUs in categories, one order per SKU per window."""

    def __init__(self, **kw: Any) -> None:
        cfg = GuardrailConfig(cooldown_ms=0, min_change=0.0)
        self.engine = WindowEngine(
            window_ms=W, lateness_ms=5_000, guardrails=cfg, decider=FixedDecider(), **kw
        )
        self.skus: dict[str, SkuState] = {}
        self.meta: dict[str, PartitionState] = {}
        self.opens: dict[str, OpenWindows] = {}
        self.off = 0
        self.w = 0

    def send(self, env: Any) -> Outputs:
        self.off += 1
        return self.engine.handle(
            env, partition=0, offset=self.off, skus=self.skus, meta=self.meta, opens=self.opens
        )

    def catalog(self, sku: str, category: str) -> Outputs:
        return self.send(
            CatalogEnv(sku=sku, cost=5.0, base_price=6.0, min_price=5.5, max_price=9.0,
                       currency="EUR", stock=None, category=category)
        )  # fmt: skip

    def control(self, target: str, action: str, price: float | None = None) -> Outputs:
        return self.send(ControlEnv(sku=target, action=action, price=price, who="ana", why="t"))

    def window(self) -> Outputs:
        """One order for every SKU, then the window closes: the outputs of the close."""
        for sku in list(self.skus):
            self.send(OrderEnv(sku=sku, ts=T0 + self.w * W + 1, qty=1, price=6.0,
                               order_id=f"{sku}{self.w}", src="orders/0", off=self.off))  # fmt: skip
        self.w += 1
        return self.send(WatermarkEnv(src="orders/0", ts=T0 + self.w * W + 5_000))


def test_shadow_publishes_nothing_and_records_every_would_be_change() -> None:
    shop = Shop(mode="shadow")
    assert shop.catalog("A", "toys").prices == []  # not even the starting price
    shop.catalog("B", "food")
    for _ in range(3):
        out = shop.window()
        assert out.changes == [] and out.prices == []
        assert sorted(s.sku for s in out.shadow) == ["A", "B"]
        for s in out.shadow:  # the FixedDecider proposes +5%; the price stays
            assert s.mode == "shadow" and s.current_price == 6.0 and s.would_price == 6.3
            assert s.expected_gain == round((6.3 - 5.0) * s.forecast_new - 1.0 * s.forecast_old, 6)
    assert shop.skus["A"].price == 6.0 and shop.skus["A"].version == 0


def test_a_category_goes_live_alone_and_a_sku_beats_its_category() -> None:
    shop = Shop(mode="shadow")
    for sku, cat in (("A", "toys"), ("B", "food"), ("C", "toys")):
        shop.catalog(sku, cat)
    shop.control("category:toys", "live")
    shop.control("C", "shadow")
    out = shop.window()
    assert [c.sku for c in out.changes] == ["A"] and out.changes[0].category == "toys"
    assert sorted(s.sku for s in out.shadow) == ["B", "C"]
    shop.control("*", "live")  # every SKU without a mode of its own or of its category
    out = shop.window()
    assert sorted(c.sku for c in out.changes) == ["A", "B"]
    assert [s.sku for s in out.shadow] == ["C"]


def test_holdout_skus_are_never_priced_whatever_the_mode() -> None:
    shop = Shop(holdout=Holdout(fraction=0.0, skus=frozenset({"B"})))
    shop.catalog("A", "toys")
    shop.catalog("B", "toys")
    shop.control("B", "live")
    out = shop.window()
    assert [c.sku for c in out.changes] == ["A"]
    assert [(s.sku, s.mode) for s in out.shadow] == [("B", "holdout")]


def test_rollback_publishes_the_price_inside_the_bounds_and_freezes() -> None:
    shop = Shop()
    shop.catalog("A", "toys")
    moved = [c.new_price for _ in range(3) for c in shop.window().changes]
    assert moved == [6.3, 6.61, 6.94]
    out = shop.control("A", "rollback", price=6.0)
    (c,) = out.changes
    assert (c.old_price, c.new_price, c.reasons) == (6.94, 6.0, ["rollback"])
    assert (c.issued_by, c.note) == ("ana", "t") and out.prices[-1].price == 6.0
    assert shop.skus["A"].frozen and shop.window().changes == []  # frozen until unfrozen
    # a price outside today's bounds is brought inside them (the ceiling is 9.0)
    (c,) = shop.control("A", "rollback", price=12.0).changes
    assert c.new_price == 9.0 and "ceiling" in c.guardrails
    assert [c.new_price for c in shop.control("A", "rollback", price=6.0).changes] == [6.0]
    shop.control("A", "unfreeze")
    assert [c.new_price for c in shop.window().changes] == [6.3]  # the policy prices it again


def test_an_override_names_who_set_it() -> None:
    shop = Shop()
    shop.catalog("A", "toys")
    shop.control("A", "override", price=7.5)
    (c,) = shop.window().changes
    assert (c.new_price, c.issued_by, c.note, c.reasons) == (7.5, "ana", "t", ["manual_override"])


def test_control_commands_that_cannot_apply_are_dead_lettered_not_ignored() -> None:
    from repricer.schemas import ControlCommand, Rejection, decode

    def dec(sku: str, action: str) -> object:
        raw = f'{{"sku": "{sku}", "action": "{action}", "who": "ana", "price": 5}}'.encode()
        return decode(raw, ControlCommand)

    assert isinstance(dec("category:toys", "live"), ControlCommand)
    assert isinstance(dec("*", "shadow"), ControlCommand)
    assert isinstance(dec("A", "rollback"), ControlCommand)
    for sku, action in (("category:toys", "freeze"), ("*", "rollback"), ("*", "override")):
        r = dec(sku, action)
        assert isinstance(r, Rejection) and r.reason == "invalid_value", (sku, action)
