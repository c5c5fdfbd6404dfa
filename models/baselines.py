"""Naive baselines every learned model is compared with (they are demand models too)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from repricer.models.base import ModelBase, SkuView


class LastWindow(ModelBase):
    """Next window sells what the last one did, whatever the price."""

    name = "last_window"
    version = "1"

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        last = np.array([max(v.last_units, 0.0) for v in views], dtype=np.float64)
        return np.broadcast_to(last[:, None], np.shape(prices)).copy()


class MovingAverage(ModelBase):
    """Next window sells the exponentially weighted average of recent windows (about 6)."""

    name = "moving_average"
    version = "1"

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        avg = np.array([max(v.units_ewma, 0.0) for v in views], dtype=np.float64)
        return np.broadcast_to(avg[:, None], np.shape(prices)).copy()
