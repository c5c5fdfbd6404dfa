"""``build_engine(settings)``: the one place the window engine is built from ``Settings``.

The worker (``streams/app.py``), ``repricer backtest`` and every benchmark build their engine
here, so what a backtest or a benchmark measures is the policy production runs: the same
demand models, decider (restock, salvage, Thompson hold), guardrails, rate limit and policy
version. A tool that needs another value (no LSTM, no allowed lateness for an in-process feed
that closes each window itself) passes ``Settings`` with that value, never its own construction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from repricer.models.base import DemandModel
from repricer.models.decider import ModelDecider, default_decider
from repricer.models.guardrails import GuardrailConfig
from repricer.models.pool_experiment import PoolExperiment
from repricer.streams.engine import WindowEngine
from repricer.streams.engine.config import Holdout
from repricer.streams.holdout_draw import read_file as read_holdout_file
from repricer.streams.settings import Settings

log = logging.getLogger(__name__)


def guardrail_config(settings: Settings) -> GuardrailConfig:
    """The hard price rules from the settings.

    >>> guardrail_config(Settings(cooldown_s=30)).cooldown_ms
    30000
    """
    return GuardrailConfig(
        min_margin=settings.min_margin,
        max_step=settings.max_step,
        min_change=settings.min_change,
        cooldown_ms=settings.cooldown_s * 1000,
        rounding=settings.rounding,
        max_changes_per_sku=settings.max_changes_per_sku,
        change_period_ms=settings.change_period_s * 1000,
    )


def build_decider(
    settings: Settings, extra_members: Sequence[Callable[[], DemandModel]] = ()
) -> ModelDecider:
    """The demand models and the pricing policy from the settings; ``extra_members`` adds
    candidate models (not yet registered) to the ensemble, for side-by-side measurements.

    >>> d = build_decider(Settings(lstm=False, restock_s=7200, thompson_hold_s=60, salvage=0.5))
    >>> [m.name for m in d.members], d.restock_windows, d.thompson_hold_ms, d.salvage
    (['river'], 120.0, 60000, 0.5)
    >>> d = build_decider(Settings(pool_experiment_delta=0, pool_experiment_block_s=86400))
    >>> d.pool.delta, d.pool.block_ms
    (0.0, 86400000)
    """
    decider = default_decider(
        max_step=settings.max_step,
        objective=settings.objective,
        lstm=settings.lstm,
        regressor=settings.river_regressor,
        restock_windows=settings.restock_s / settings.window_s,
        salvage=settings.salvage,
        thompson_hold_ms=settings.thompson_hold_s * 1000,
        windows_per_day=86_400 / settings.window_s,
        pool=PoolExperiment(
            delta=settings.pool_experiment_delta,
            block_ms=settings.pool_experiment_block_s * 1000,
        ),
    )
    if extra_members:
        decider = replace(decider, members=[*decider.members, *(f() for f in extra_members)])
    return decider


def build_engine(
    settings: Settings, *, extra_members: Sequence[Callable[[], DemandModel]] = ()
) -> WindowEngine:
    """The window engine a worker with these settings runs (see the module docstring)."""
    return WindowEngine(
        window_ms=settings.window_ms,
        lateness_ms=settings.lateness_ms,
        guardrails=guardrail_config(settings),
        decider=build_decider(settings, extra_members),
        policy_version=settings.policy_version,
        dedupe=not settings.unsafe_disable_replay_dedup,
        rate_limit_per_tick=settings.rate_limit_per_window,
        mode=settings.mode,
        holdout=holdout(settings),
    )


def holdout(settings: Settings) -> Holdout:
    """The control group from the settings (``streams.engine.config.Holdout``): the SKUs of
    REPRICER_HOLDOUT_FILE and REPRICER_HOLDOUT_SKUS, and the hash fraction besides (a union).
    A holdout file that cannot be used raises ``HoldoutFileError`` (never an empty group).

    >>> holdout(Settings(holdout_fraction=0.1, holdout_skus="A, B")).skus == {"A", "B"}
    True
    """
    skus = frozenset(s.strip() for s in settings.holdout_skus.split(",") if s.strip())
    if settings.holdout_file:
        listed = read_holdout_file(settings.holdout_file)
        log.info("holdout: %d SKUs listed in %s", len(listed), settings.holdout_file)
        skus |= listed
    return Holdout(fraction=settings.holdout_fraction, salt=settings.holdout_salt, skus=skus)
