"""One engine construction: every setting the policy reads reaches the engine that build_engine
returns, and the decisions benchmark runs that engine (restock, salvage, Thompson hold)."""

from __future__ import annotations

import pytest

from repricer.streams.build import build_engine
from repricer.streams.settings import Settings


def test_build_engine_carries_every_policy_setting() -> None:
    s = Settings(
        window_s=30,
        lateness_s=4,
        min_margin=0.07,
        max_step=0.03,
        min_change=0.01,
        cooldown_s=90,
        rounding="ninety_nine",
        rate_limit_per_window=17,
        policy_version="model-test",
        restock_s=3600,
        salvage=0.25,
        thompson_hold_s=600,
        objective="revenue",
        lstm=False,
        river_regressor="pa",
        unsafe_disable_replay_dedup=True,
    )
    e = build_engine(s)
    assert (e.window_ms, e.lateness_ms) == (30_000, 4_000)
    g = e.guardrails
    assert (g.min_margin, g.max_step, g.min_change, g.cooldown_ms, g.rounding) == (
        0.07,
        0.03,
        0.01,
        90_000,
        "ninety_nine",
    )
    assert (e.rate_limit_per_tick, e.policy_version, e.dedupe) == (17, "model-test", False)
    d = e.decider
    assert (d.restock_windows, d.salvage, d.thompson_hold_ms) == (120.0, 0.25, 600_000)
    assert (d.objective, d.max_step) == ("revenue", 0.03)
    assert [m.name for m in d.members] == ["river"]


def test_extra_members_join_the_ensemble() -> None:
    from repricer.models.seasonal_model import SeasonalPoisson

    e = build_engine(Settings(lstm=False), extra_members=(SeasonalPoisson,))
    assert [m.name for m in e.decider.members] == ["river", SeasonalPoisson().name]


def test_decisions_bench_runs_the_workers_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from repricer.streams.tools.bench.decisions import _engine

    monkeypatch.setenv("REPRICER_RESTOCK_S", "7200")
    monkeypatch.setenv("REPRICER_SALVAGE", "0.5")
    monkeypatch.setenv("REPRICER_THOMPSON_HOLD_S", "60")
    monkeypatch.setenv("REPRICER_LATENESS_S", "10")
    e = _engine()
    assert (e.decider.restock_windows, e.decider.salvage, e.decider.thompson_hold_ms) == (
        120.0,
        0.5,
        60_000,
    )
    assert e.lateness_ms == 0  # the in-process feed closes each window with its own watermark
