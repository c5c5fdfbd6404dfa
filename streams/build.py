"""``build_engine(settings)``: the one place the window engine is built from ``Settings``.

The worker (``streams/app.py``), ``repricer backtest`` and every benchmark build their engine
here, so what a backtest or a benchmark measures is the policy production runs: the same
demand models, decider (restock, salvage, Thompson hold), guardrails, rate limit and policy
version. A tool that needs another value (no LSTM, no allowed lateness for an in-process feed
that closes each window itself) passes ``Settings`` with that value, never its own construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from repricer.models.base import DemandModel
from repricer.models.decider import ModelDecider, default_decider
from repricer.models.guardrails import GuardrailConfig
from repricer.streams.engine import WindowEngine
from repricer.streams.settings import Settings


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
    )


def build_decider(
    settings: Settings, extra_members: Sequence[Callable[[], DemandModel]] = ()
) -> ModelDecider:
    """The demand models and the pricing policy from the settings; ``extra_members`` adds
    candidate models (not yet registered) to the ensemble, for side-by-side measurements.

    >>> d = build_decider(Settings(lstm=False, restock_s=7200, thompson_hold_s=60, salvage=0.5))
    >>> [m.name for m in d.members], d.restock_windows, d.thompson_hold_ms, d.salvage
    (['river'], 120.0, 60000, 0.5)
    """
    decider = default_decider(
        max_step=settings.max_step,
        objective=settings.objective,
        lstm=settings.lstm,
        regressor=settings.river_regressor,
        restock_windows=settings.restock_s / settings.window_s,
        salvage=settings.salvage,
        thompson_hold_ms=settings.thompson_hold_s * 1000,
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
    )
