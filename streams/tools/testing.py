"""Test doubles shipped with the code: drive the window engine without models or Kafka."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from repricer.models.base import DemandModel, SkuView
from repricer.models.decider import Proposal
from repricer.models.guardrails import Bounds


class FixedDecider:
    """Proposes ``current price x factor`` and records every label it learns.

    ``pooled`` lists (sku, window, units) learned in the shared phase; each SKU's ``state``
    counts its local learns. ``snapshot``/``restore`` carry the pooled list, like a real model.
    """

    def __init__(self, factor: float = 1.05) -> None:
        self.factor = factor
        self.pooled: list[tuple[str, int, float]] = []

    def propose(
        self, views: Sequence[SkuView], bounds: Sequence[Bounds], min_margin: float
    ) -> list[Proposal]:
        return [
            Proposal(
                price=v.price * self.factor,
                reasons=("test",),
                forecast_at_old=v.units_ewma,
                forecast_at_new=v.units_ewma,
                elasticity=-1.0,
                model_versions={"fixed": "1"},
            )
            for v in views
        ]

    def predict_at(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        return {"fixed": np.array([v.units_ewma for v in views], dtype=np.float64)}

    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        self.pooled.extend(
            (v.sku, v.next_window_start, float(u)) for v, u in zip(views, units, strict=True)
        )

    def learn_local_batch(
        self, views: Sequence[SkuView], saveds: Sequence[Mapping[str, Any]], units: np.ndarray
    ) -> None:
        for v in views:
            v.state["local"] = v.state.get("local", 0) + 1

    def snapshot(self) -> str | None:
        return json.dumps(self.pooled)

    def restore(self, blob: str) -> None:
        self.pooled = [tuple(x) for x in json.loads(blob)]  # type: ignore[misc]

    def models(self) -> Sequence[DemandModel]:
        return ()  # no demand models behind the fixed factor
