"""Per-SKU draws: fixed for a SKU and period (a replay decides the same), new for the next
period, and distributed as they claim over many SKUs."""

from __future__ import annotations

import numpy as np

from repricer.models.base import SkuView
from repricer.models.draws import unit_normals, unit_random, unit_signs

HOUR = 3_600_000


def _views(n: int, start: int) -> list[SkuView]:
    return [
        SkuView(sku=f"S{i}", price=1.0, ref_price=1.0, cost=0.5, next_window_start=start)
        for i in range(n)
    ]


def test_a_draw_is_fixed_within_a_period_and_new_in_the_next() -> None:
    a = unit_signs(_views(400, 0), "pool", 3 * HOUR)
    assert np.array_equal(a, unit_signs(_views(400, 3 * HOUR - 1), "pool", 3 * HOUR))
    b = unit_signs(_views(400, 3 * HOUR), "pool", 3 * HOUR)
    assert 0.3 < float(np.mean(a != b)) < 0.7  # about half the signs change
    assert unit_random("S1", 5, "ts") != unit_random("S1", 5, "pool")  # the salt separates


def test_signs_are_balanced_and_normals_standard_over_many_skus() -> None:
    signs = unit_signs(_views(4000, 0), "pool", HOUR)
    assert set(np.unique(signs).tolist()) == {-1.0, 1.0}
    assert abs(float(signs.mean())) < 0.05  # 4000 fair signs: sd of the mean 0.016
    z = unit_normals(_views(4000, 0), "ts", HOUR)
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05
