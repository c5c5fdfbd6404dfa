"""The one contract every demand model implements, and the per-SKU view models read.

Agents and the decision step depend on :class:`DemandModel` only; River, the ONNX LSTM, the
naive baselines, the seasonal model and the ensemble all implement it, and ``models.checks``
runs the same conformance checks over each. Models work on *batches* (every SKU closing in one
tick, at every candidate price) so the LSTM is scored in one call and linear models vectorise.

Persistence is part of the contract. A model keeps two kinds of state:

* per-SKU state in ``SkuView.state``: persisted with the SKU's record, atomically with the
  window it learned from (nothing to do beyond writing it there);
* shared (pooled) state, e.g. one regressor over all SKUs: :meth:`DemandModel.snapshot` returns
  it (``None`` when there is none) and :meth:`DemandModel.restore` puts it back. The decider
  persists the snapshots of all its members with every tick, keyed by member name, so a model
  that learns shared state and does not snapshot it forgets it on restart — the persistence
  round-trip check in ``models.checks`` fails for such a model.

In the window engine a label is learned in two phases, each exactly once across crashes:
:meth:`DemandModel.learn_pooled` (shared state, once per tick and partition) and
:meth:`DemandModel.learn_local` (per-SKU state, with the SKU's record), the latter from what
:meth:`DemandModel.decision_memo` asked to save with the decision. :meth:`DemandModel.learn` is
both at once, for offline use. :class:`ModelBase` gives every optional part a default (no shared
state, no split, no hot reload), so a simple model writes ``forecast`` and ``learn`` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from repricer.models.lstm_features import hour_features


@dataclass(slots=True)
class SkuView:
    """What a model may know about one SKU when it forecasts the next window.

    ``state`` is the model's per-SKU memory. It is persisted with the SKU's record (a
    changelog-backed table in the worker), so whatever a model writes there survives restarts
    and moves with the partition, atomically with the window it learned from.
    """

    sku: str
    price: float  # price in force
    ref_price: float  # catalog base price
    cost: float
    next_window_start: int  # epoch ms of the window being forecast
    units_ewma: float = 0.0
    views_ewma: float = 0.0
    last_units: float = 0.0
    last_views: float = 0.0
    windows_seen: int = 0
    history: Sequence[Sequence[float]] = ()  # LSTM feature rows of closed windows, oldest first
    stock: float | None = None  # units left (catalog stock minus units sold since); None: untracked
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a loaded model says about itself (metrics, dashboard, logs)."""

    name: str
    version: str
    provider: str | None = None  # execution provider of a model that runs on one (ONNX)


Snapshot = bytes | str | None


@runtime_checkable
class DemandModel(Protocol):
    """Forecast next-window units per SKU at candidate prices; learn from observed labels;
    persist shared state; describe itself. See the module docstring."""

    name: str  # unique among a decider's members: the key of its forecasts and snapshot

    @property
    def version(self) -> str: ...

    def forecast(self, views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
        """(N, K) expected units for SKU ``i`` at ``prices[i, k]``; ``nan`` where it cannot."""
        ...

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        """Learn that SKU ``i`` sold ``units[i]`` in its window at ``prices[i]``.

        ``views`` are the views the forecast was made from (saved at decision time), so the
        model learns the delayed label against the features it actually saw.
        """
        ...

    # -- learning in the engine's two phases ------------------------------------------------
    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        """Learn a tick's labels into the shared state (the part :meth:`snapshot` returns)."""
        ...

    def decision_memo(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        """(N,) arrays to save with the decision at ``prices`` (N,), for :meth:`learn_local`.

        Keys start with ``_`` (internal, not forecasts) and are unique to the model.
        """
        ...

    def learn_local(
        self,
        views: Sequence[SkuView],
        prices: np.ndarray,
        units: np.ndarray,
        saved: Sequence[Mapping[str, float]],
    ) -> None:
        """Learn one label per SKU into ``views[i].state``; ``saved[i]`` holds what the decision
        saved (every member's forecasts and :meth:`decision_memo` keys, if it got that far)."""
        ...

    # -- persistence of shared state, hot reload, description -------------------------------
    def snapshot(self) -> Snapshot:
        """The shared state (``None``: the model has none); must not change with later learning."""
        ...

    def restore(self, blob: bytes | str) -> None:
        """Replace the shared state with a :meth:`snapshot` of this model (or a fresh one)."""
        ...

    def maybe_reload(self) -> bool:
        """Pick up a new model file if one was published; True if a new model is live."""
        ...

    def info(self) -> ModelInfo: ...


class ModelBase:
    """Defaults for the optional parts of :class:`DemandModel`.

    No shared state (``snapshot`` is ``None``, ``restore`` ignores a blob), no split learning (the whole :meth:`learn`
    runs in the shared phase, where the decider has always called it), nothing to reload.
    A model that keeps shared state overrides ``snapshot``/``restore``; one with per-SKU state
    learned from labels overrides ``learn_pooled``/``decision_memo``/``learn_local``.
    """

    name: str

    @property
    def version(self) -> str:
        raise NotImplementedError

    def learn(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        return None

    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        self.learn(views, prices, units)

    def decision_memo(self, views: Sequence[SkuView], prices: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def learn_local(
        self,
        views: Sequence[SkuView],
        prices: np.ndarray,
        units: np.ndarray,
        saved: Sequence[Mapping[str, float]],
    ) -> None:
        return None

    def snapshot(self) -> Snapshot:
        return None

    def restore(self, blob: bytes | str) -> None:
        return None  # nothing shared: a blob can only be from another version of the model

    def maybe_reload(self) -> bool:
        return False

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, version=self.version)


def context_features(v: SkuView, level: float = 1.0) -> dict[str, float]:
    """Price-free features of a SKU for tabular (River) models.

    The counts are divided by ``level`` (a scale-free model passes the SKU's level, as the LSTM
    scales its counts: ``lstm_features.scale_counts``) before ``log1p``.
    """
    hs, hc = hour_features(v.next_window_start)
    return {
        "bias": 1.0,
        "log_units_ewma": math.log1p(max(v.units_ewma, 0.0) / level),
        "log_views_ewma": math.log1p(max(v.views_ewma, 0.0) / level),
        "log_last_units": math.log1p(max(v.last_units, 0.0) / level),
        "log_last_views": math.log1p(max(v.last_views, 0.0) / level),
        "hour_sin": float(hs),
        "hour_cos": float(hc),
        "log_price_level": math.log(v.price / v.ref_price)
        if v.price > 0 and v.ref_price > 0
        else 0.0,
    }


CONTEXT_FEATURES: tuple[str, ...] = (
    "bias",
    "log_units_ewma",
    "log_views_ewma",
    "log_last_units",
    "log_last_views",
    "hour_sin",
    "hour_cos",
    "log_price_level",
)


def context_matrix(views: Sequence[SkuView], levels: np.ndarray | None = None) -> np.ndarray:
    """(N, 8) :func:`context_features` of every view, columns in :data:`CONTEXT_FEATURES` order
    (counts divided by ``levels`` (N,) if given).

    The same values as the per-view dicts (``math`` logs, not numpy's, which differ in the last
    bit), built once per batch.
    """
    n = len(views)
    raw = np.array(
        [
            (v.units_ewma, v.views_ewma, v.last_units, v.last_views, v.price, v.ref_price)
            for v in views
        ],
        dtype=np.float64,
    ).reshape(n, 6)
    counts = np.maximum(raw[:, :4], 0.0)
    if levels is not None:
        counts = counts / np.asarray(levels, dtype=np.float64).reshape(n, 1)
    logs = [math.log1p(x) for x in counts.ravel().tolist()]
    level = [math.log(p / r) if p > 0 and r > 0 else 0.0 for p, r in raw[:, 4:].tolist()]
    hs, hc = hour_features(np.array([v.next_window_start for v in views], dtype=np.int64))
    out = np.empty((n, len(CONTEXT_FEATURES)), dtype=np.float64)
    out[:, 0] = 1.0
    out[:, 1:5] = np.array(logs, dtype=np.float64).reshape(n, 4)
    out[:, 5], out[:, 6] = hs, hc
    out[:, 7] = level
    return out


def log_price_ratio(prices: np.ndarray, views: Sequence[SkuView]) -> np.ndarray:
    """``log(price / ref_price)`` per row, same shape as ``prices`` ((N,) or (N, K))."""
    ref = np.array([max(v.ref_price, 1e-9) for v in views], dtype=np.float64)
    ref = ref.reshape((-1,) + (1,) * (np.ndim(prices) - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(prices, dtype=np.float64) / ref)


def log_price_change(prices: np.ndarray, views: Sequence[SkuView]) -> np.ndarray:
    """``log(candidate / price in force)`` per row, same shape as ``prices`` ((N,) or (N, K)).

    Demand models see price as a *change* from the price the recent windows were sold at: the
    recent demand level already reflects the current price, so only a change is informative
    (and exploration makes changes vary, which identifies the elasticity).
    """
    cur = np.array([max(v.price, 1e-9) for v in views], dtype=np.float64)
    cur = cur.reshape((-1,) + (1,) * (np.ndim(prices) - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(np.asarray(prices, dtype=np.float64) / cur)
    return np.where(np.isfinite(d), d, 0.0)


def clean(units: np.ndarray) -> np.ndarray:
    """Forecasts as non-negative floats with ``nan`` for anything unusable."""
    u = np.asarray(units, dtype=np.float64)
    return np.where(np.isfinite(u) & (u >= 0), u, np.nan)
