"""Every demand model that ships, listed once.

:func:`models.decider.default_decider` builds its ensemble (role ``member``) and its naive
comparisons (role ``baseline``) from :data:`MODELS`; ``models.checks`` runs every conformance
check, the persistence round trip included, over every entry (tests/unit/test_model_checks.py).
A ``candidate`` is checked and can be measured beside the ensemble (``repricer bench``) without
being in it. Nothing else in the code names a model class: the decider, the worker's model
reload and the metrics only talk to models through :class:`models.base.DemandModel`.

Adding a model
--------------
1. One new file, ``models/my_model.py``, with a class implementing
   :class:`~models.base.DemandModel`: subclass :class:`~models.base.ModelBase` and write
   ``name``, ``version``, ``forecast`` and ``learn``. If it learns state shared by all SKUs,
   override ``snapshot``/``restore`` (the decider persists them with every tick, keyed by
   ``name``); if it learns per-SKU state from labels, keep it in ``SkuView.state`` and override
   ``learn_pooled``/``decision_memo``/``learn_local`` (see :mod:`models.base`); if it loads a
   file that can be replaced while running, override ``maybe_reload``.
2. One line in :data:`MODELS` below::

       Entry("my_model", "repricer.models.my_model:MyModel", role="candidate"),

   (``role="member"`` puts it in the ensemble of every worker and backtest.)

Then ``pytest tests/unit/test_model_checks.py`` checks it, persistence included.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from repricer.models.base import DemandModel

log = logging.getLogger(__name__)

Role = Literal["member", "baseline", "candidate"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One registered model.

    ``target`` is ``"module:factory"`` (usually the class), imported only when the model is
    built, so a model whose runtime is missing costs nothing until it is asked for.
    ``options`` names the :func:`build_members` keyword options the factory takes (e.g. the
    River regressor); ``variants`` are further configurations the conformance checks run
    (label: keyword arguments), the entry alone with its defaults if there are none.
    An ``optional`` member that fails to build (no model file, no usable runtime) is left out
    of the ensemble with a warning instead of stopping the worker.
    """

    name: str
    target: str
    role: Role = "candidate"
    optional: bool = False
    options: tuple[str, ...] = ()
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def factory(self) -> Callable[..., DemandModel]:
        module, _, attr = self.target.partition(":")
        factory: Callable[..., DemandModel] = getattr(importlib.import_module(module), attr)
        return factory

    def build(self, **options: Any) -> DemandModel:
        """A fresh model, given the options it takes (others are ignored)."""
        return self.factory()(**{k: options[k] for k in self.options if k in options})


MODELS: tuple[Entry, ...] = (
    Entry(
        "river",
        "repricer.models.river_model:RiverDemand",
        role="member",
        options=("regressor",),
        variants={
            "river-bayes": {"regressor": "bayes"},
            "river-linear": {"regressor": "linear"},
            "river-pa": {"regressor": "pa"},
        },
    ),
    Entry("lstm", "repricer.models.lstm_model:LstmDemand", role="member", optional=True),
    Entry("seasonal", "repricer.models.seasonal_model:SeasonalPoisson"),
    Entry("last_window", "repricer.models.baselines:LastWindow", role="baseline"),
    Entry("moving_average", "repricer.models.baselines:MovingAverage", role="baseline"),
)


def entries(role: Role | None = None) -> tuple[Entry, ...]:
    """The registered models (of one role), in registration order."""
    return tuple(e for e in MODELS if role is None or e.role == role)


def entry(name: str) -> Entry:
    for e in MODELS:
        if e.name == name:
            return e
    raise KeyError(f"no demand model {name!r} registered (known: {[e.name for e in MODELS]})")


def build_members(*, exclude: Collection[str] = (), **options: Any) -> list[DemandModel]:
    """The ensemble: every ``member`` not in ``exclude``, in registration order."""
    out: list[DemandModel] = []
    for e in entries("member"):
        if e.name in exclude:
            continue
        try:
            out.append(e.build(**options))
        except Exception as exc:
            if not e.optional:
                raise
            log.warning(
                "demand model %s unavailable, the ensemble goes on without it: %s", e.name, exc
            )
    return out


def build_baselines() -> tuple[DemandModel, ...]:
    """The naive forecasts every learned model is compared with."""
    return tuple(e.build() for e in entries("baseline"))


def check_factories() -> dict[str, Callable[[], DemandModel]]:
    """A zero-argument factory for every configuration the conformance checks run."""
    out: dict[str, Callable[[], DemandModel]] = {}
    for e in MODELS:
        for label, kw in (e.variants or {e.name: {}}).items():
            out[label] = _factory(e, kw)
    return out


def _factory(e: Entry, kw: Mapping[str, Any]) -> Callable[[], DemandModel]:
    def make() -> DemandModel:
        return e.factory()(**kw)

    make.__name__ = make.__qualname__ = e.name
    return make
