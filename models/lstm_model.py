"""The ONNX LSTM as a :class:`DemandModel`: all SKUs x candidate prices in one batch call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from repricer.models.base import ModelBase, ModelInfo, SkuView, clean
from repricer.models.calibration import sku_levels
from repricer.models.onnx_scorer import LstmScorer


class LstmDemand(ModelBase):
    """Scores the shipped (or configured) ONNX LSTM; it does not learn online.

    SKUs without any closed window yet get ``nan`` (no basis for a sequence forecast): the
    ensemble then relies on the other members. A scale-free model gets each SKU's level
    (:func:`models.calibration.sku_levels`: its discounted labels and units EWMA).
    """

    name = "lstm"

    def __init__(self, path: str | Path | None = None, *, scorer: LstmScorer | None = None) -> None:
        self.path = path
        self.scorer = scorer or LstmScorer(path)

    def __getstate__(self) -> dict[str, object]:
        # an onnxruntime session is not picklable: ship the model path, reload on the other side
        return {"path": self.path}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["path"])  # type: ignore[misc, arg-type]

    @property
    def version(self) -> str:
        return f"lstm-{self.scorer.version}"

    @property
    def provider(self) -> str:
        return self.scorer.provider

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        p = np.asarray(prices, dtype=np.float64)
        out = np.full(p.shape, np.nan)
        idx = [i for i, v in enumerate(views) if len(v.history) > 0]
        if not idx:
            return out
        sub = [views[i] for i in idx]
        units = self.scorer.forecast(
            [v.history for v in sub],
            p[idx],
            np.array([v.ref_price for v in sub]),
            np.array([v.next_window_start for v in sub], dtype=np.int64),
            levels=sku_levels(sub),
        )
        out[idx] = units.reshape(out[idx].shape)
        return clean(out)

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        return None  # retrained offline (`repricer train`) and hot-reloaded

    def maybe_reload(self) -> bool:
        """A new ``demand_lstm.onnx`` is live (``repricer train`` wrote one): see the scorer."""
        return self.scorer.maybe_reload()

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, version=self.version, provider=self.provider)
