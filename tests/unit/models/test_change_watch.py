"""The elasticity's change watch (a two-sided CUSUM on each SKU's one-step-ahead labels): it
finds a moderate change of a SKU's elasticity within a day of labels, and it stays quiet on
stationary SKUs."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from repricer.models.base import SkuView
from repricer.models.elasticity import Elasticity, PooledPrior

QTY = np.array([1, 2, 3])
QTY_P = np.array([0.85, 0.10, 0.05])  # the simulator's orders: Var/mean 1.42


def _views(n: int, traffic: float = 20.0) -> list[SkuView]:
    return [
        SkuView(
            sku=f"S{i}",
            price=26.0,
            ref_price=20.0,
            cost=10.0,
            next_window_start=0,
            views_ewma=traffic,
        )
        for i in range(n)
    ]


def _run(
    el: Elasticity,
    views: list[SkuView],
    e_of_w,
    windows: int,
    seed: int,
    *,
    centre: float = 26.0,
    spread: float = 0.1,
    level: float | Callable[[int], float] = 1.5,
) -> list[list[int]]:
    """Over-dispersed sales (orders of 1-3 units) at prices that wander (log sd ``spread``)
    around ``centre`` (a reference of 20), ``level`` units a window at the reference (or
    ``level(window)``); the
    windows at which each SKU's watch fired."""
    rng = np.random.default_rng(seed)
    fired: list[list[int]] = [[] for _ in views]
    mean_qty = float((QTY * QTY_P).sum())
    for w in range(windows):
        prices = centre * np.exp(rng.normal(0.0, spread, len(views)))
        at = level(w) if callable(level) else level
        lam = at * (prices / 20.0) ** e_of_w(w)
        orders = rng.poisson(lam / mean_qty)
        units = np.array([rng.choice(QTY, size=o, p=QTY_P).sum() for o in orders], dtype=float)
        el.learn_pooled(views, prices, units)
        before = [v.state.get("el", [0.0] * 5)[0] for v in views]
        el.learn_local_batch(views, prices, units)
        for i, v in enumerate(views):
            # a change found drops most of the SKU's own information (whatever the watch)
            if v.state["el"][0] < 0.5 * before[i]:
                fired[i].append(w)
    return fired


def test_a_moderate_change_of_elasticity_is_found_within_a_day() -> None:
    """Elasticity -2.0 → -2.9 at prices 30% above the reference: demand falls by a fifth, too
    little for a four-hour window of residuals to tell from noise (the watch this one
    replaced: its standardised sum stays near -2.5, under its threshold of 3)."""
    el = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75))
    views = _views(8)
    switch = 1500
    fired = _run(el, views, lambda w: -2.0 if w < switch else -2.9, switch + 1440, seed=3)
    after = _first_after(fired, switch)
    assert all(d is not None and d < 1440 for d in after), after
    # re-learned: by the end the estimate is far nearer the new truth than the old one
    e, _ = el.elasticity(views)
    assert np.median(e) < -2.5, e


def test_a_stationary_sku_is_not_flagged() -> None:
    """Twenty stationary SKUs over two days of labels each: after the first half day (while
    the SKU's own estimate still moves, the watch may take the learning for a change) at most
    two false alarms in 43,200 labels, one per 15 days of a label a minute."""
    warm_up, late = 720, 0
    for seed in (5, 6):
        el = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75))
        views = _views(10)
        fired = _run(el, views, lambda w: -2.4, 2880, seed=seed)
        late += sum(1 for fs in fired for f in fs if f >= warm_up)
        e, _ = el.elasticity(views)
        assert abs(float(np.median(e)) + 2.4) < 0.1, e
    assert late <= 2


def test_the_watch_judges_only_with_evidence_of_its_own() -> None:
    """A new SKU (its own likelihood still below ``detect_min_var`` expected units) is not
    judged: its CUSUM stays at zero, however far the prior is from the truth."""
    el = Elasticity(prior=PooledPrior(mean_a=0.0, mean_e=-2.0), detect_min_var=1e9)
    views = _views(3)
    fired = _run(el, views, lambda w: -4.0, 300, seed=1)
    assert fired == [[], [], []]
    assert all(v.state["cd"][:2] == [0.0, 0.0] and v.state["cd"][2] == 300 for v in views)


def test_a_record_of_the_earlier_watch_keeps_its_counts() -> None:
    el = Elasticity()
    (v,) = _views(1)
    v.state["cd"] = [-12.0, 250.0, 1000.0, 800.0]  # residual and variance sums, labels, units
    el.learn_local(v, 26.0, 1.0)
    assert len(v.state["cd"]) == 9
    assert v.state["cd"][2:5] == [1001.0, 801.0, 0.0]
    assert math.isfinite(v.state["cd"][0]) and v.state["cd"][1] < 6.0


def test_a_record_of_the_level_watch_alone_keeps_its_cusums() -> None:
    """A five-float record (level CUSUMs, labels, units, changes) loads as it was, and the
    price-response CUSUMs start at 0."""
    el = Elasticity()
    (v,) = _views(1)
    v.state["el"] = [100.0, 26.0, 7.0, -300.0, -80.0]  # enough of its own to be judged
    v.state["cd"] = [3.0, 0.5, 1000.0, 800.0, 2.0]
    el.learn_local(v, 26.0, 1.0)
    cd = v.state["cd"]
    assert len(cd) == 9
    assert cd[2:5] == [1001.0, 801.0, 2.0]
    assert cd[0] != 0.0 and abs(cd[0] - 3.0) < 1.0  # carried on from 3, not restarted
    assert 0.0 <= cd[5] < 1.0 and 0.0 <= cd[6] < 1.0  # one label's evidence from 0
    assert cd[7:] == [0.0, 0.0]  # no level alarm on record to come back from


def test_a_record_of_both_watches_keeps_its_cusums() -> None:
    """A seven-float record (both watches, before the level's return was watched) loads as it
    was, with no level alarm on record."""
    el = Elasticity()
    (v,) = _views(1)
    v.state["el"] = [100.0, 26.0, 7.0, -300.0, -80.0]
    v.state["cd"] = [3.0, 0.5, 1000.0, 800.0, 2.0, 4.0, 1.5]
    el.learn_local(v, 26.0, 1.0)
    cd = v.state["cd"]
    assert len(cd) == 9 and cd[2:5] == [1001.0, 801.0, 2.0] and cd[7:] == [0.0, 0.0]
    assert abs(cd[5] - 4.0) < 1.0 and abs(cd[6] - 1.5) < 1.0  # carried on


def _first_after(fired: list[list[int]], switch: int) -> list[int | None]:
    return [next((f - switch for f in fs if f >= switch), None) for fs in fired]


def _steepens_at_the_reference(el: Elasticity, seed: int) -> list[int | None]:
    """Eight SKUs priced around the reference (log sd 0.08, 6 units a window there) whose elasticity
    goes from -2.0 to -3.0 at window 1500, pivoting at the reference: demand at the price
    charged moves by under 1% on average, so only the response to the price tells."""
    views = _views(8, traffic=80.0)
    switch = 1500
    fired = _run(
        el,
        views,
        lambda w: -2.0 if w < switch else -3.0,
        switch + 1440,
        seed=seed,
        centre=20.0,
        spread=0.08,
        level=6.0,
    )
    return _first_after(fired, switch)


def test_a_changed_price_response_at_the_reference_is_found() -> None:
    """The price-response watch finds seven of the eight SKUs within a day of labels, half of
    them within half a day; the level watch alone (``detect_slope=0``) finds at most one."""
    after = _steepens_at_the_reference(Elasticity(prior=PooledPrior(mean_e=-2.0)), seed=4)
    found = sorted(d for d in after if d is not None and d < 1440)
    assert len(found) >= 7 and found[3] < 720, after
    level_only = Elasticity(prior=PooledPrior(mean_e=-2.0), detect_slope=0.0)
    missed = _steepens_at_the_reference(level_only, seed=4)
    assert sum(d is not None for d in missed) <= 1, missed


def test_the_price_response_watch_is_quiet_on_stationary_skus() -> None:
    """Twenty stationary SKUs priced as above (log sd 0.08 around the reference, 6 units a window):
    after the first half day at most two false alarms in 43,200 labels."""
    warm_up, late = 720, 0
    for seed in (5, 6):
        el = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75))
        views = _views(10, traffic=80.0)
        fired = _run(
            el, views, lambda w: -2.4, 2880, seed=seed, centre=20.0, spread=0.08, level=6.0
        )
        late += sum(1 for fs in fired for f in fs if f >= warm_up)
    assert late <= 2


def _promotion(el: Elasticity, seed: int) -> tuple[list[list[int]], list[SkuView]]:
    """Eight SKUs at elasticity -2.4 whose demand at every price falls by 40% from window 1500
    to 1900 (a competitor's promotion) and then comes back."""
    views = _views(8, traffic=80.0)
    fired = _run(
        el, views, lambda w: -2.4, 2300, seed=seed, level=lambda w: 3.6 if 1500 <= w < 1900 else 6.0
    )
    return fired, views


def test_a_level_that_comes_back_keeps_the_response_shape() -> None:
    """The level watch finds the promotion's start and its end. The start is a change for all
    the watch can tell, and the SKU forgets (explores again); the end, a level alarm opposite
    to the last one within ``detect_return`` labels, is the level coming back: the SKU forgets
    only its level and keeps what it knew of its response, so it leaves the promotion with a
    narrower elasticity than if it had forgotten everything again (``detect_return=0``).
    Both without the other regime (``recall=0``): this is the level-only path it falls back
    on when the regime it left does not explain the labels better."""
    el = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75), recall=0.0)
    fired, views = _promotion(el, seed=8)
    forgot = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75), detect_return=0.0, recall=0.0)
    fired0, views0 = _promotion(forgot, seed=8)
    for got in (fired, fired0):
        assert all(d is not None and d < 200 for d in _first_after(got, 1500)), got
        assert all(d is not None and d < 200 for d in _first_after(got, 1900)), got
    e, sd = el.elasticity(views)
    _, sd0 = forgot.elasticity(views0)
    assert float(np.median(sd)) < 0.85 * float(np.median(sd0)), (sd, sd0)
    assert abs(float(np.median(e)) + 2.4) < 0.25, e


def _promotions(recall: float, windows: int) -> tuple[list[list[int]], list[SkuView], Elasticity]:
    """Eight SKUs whose competitor runs two promotions (windows 1500-1900 and 3000-3400) that
    take 40% of their demand and steepen their elasticity from -2.4 to -3.4 while they last."""

    def on(w: int) -> bool:
        return 1500 <= w < 1900 or 3000 <= w < 3400

    el = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75), recall=recall)
    views = _views(8, traffic=80.0)
    fired = _run(
        el,
        views,
        lambda w: -3.4 if on(w) else -2.4,
        windows,
        seed=8,
        level=lambda w: 3.6 if on(w) else 6.0,
    )
    return fired, views, el


def test_the_regime_a_sku_left_is_taken_back_when_demand_returns_to_it() -> None:
    """A promotion that changes the response as well as the level: at its end the SKU takes
    back the regime it left (elasticity -2.4, learned over 1500 windows) instead of keeping the
    one learned during the promotion, and at the next promotion it takes back the promotion's.
    Against the same SKUs without the other regime (``recall=0``), which only forget."""
    between = {}
    for recall in (0.5, 0.0):
        _, views, el = _promotions(recall, 2300)
        e, sd = el.elasticity(views)
        between[recall] = (abs(float(np.median(e)) + 2.4), float(np.median(sd)))
        assert all(len(v.state.get("el_alt", [])) == (10 if recall else 0) for v in views)
    assert between[0.5][0] < 0.5 * between[0.0][0], between  # measured 0.06 against 0.32
    assert between[0.5][1] < 0.75 * between[0.0][1], between  # 0.15 against 0.29
    second = {}
    for recall in (0.5, 0.0):
        fired, views, el = _promotions(recall, 3150)
        e, _ = el.elasticity(views)
        alarms = sum(1 for fs in fired for f in fs if f >= 2900)
        second[recall] = (abs(float(np.median(e)) + 3.4), alarms)
    # in the second promotion: nearer its elasticity (0.21 against 0.47 off), and one alarm
    # per SKU (its start) where forgetting raises an echo as the level re-learns
    assert second[0.5][0] < 0.75 * second[0.0][0], second
    assert second[0.5][1] < second[0.0][1], second


def test_a_change_keeps_the_regime_it_left_and_still_relearns() -> None:
    """The elasticity steepens for good (-2.0 to -2.9 at prices 30% above the reference): each
    SKU keeps the regime it left (ten floats: its likelihood then and the evidence for it) and
    prices by the one it re-learns; no level comes back, so none is taken back."""
    el = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75))
    views = _views(8)
    _run(el, views, lambda w: -2.0 if w < 1500 else -2.9, 1500 + 2880, seed=3)
    e, _ = el.elasticity(views)
    assert all(len(v.state.get("el_alt", [])) == 10 for v in views)  # each changed once
    assert float(np.median(e)) < -2.6, e


def test_the_slope_fades_as_fast_as_the_catalogue_changes() -> None:
    """The pooled rate of changes found (``PooledPrior.hazard``: changes found ÷ labels plus
    50,000) stays at 0 on stationary SKUs and rises where the watches find changes: what a SKU
    knows of its elasticity does not fade in a catalogue that does not change."""
    still = Elasticity(prior=PooledPrior(mean_e=-2.0, sd_e=0.75))
    _run(still, _views(8, traffic=80.0), lambda w: -2.4, 2940, seed=4, centre=20.0, spread=0.08)
    changing = Elasticity(prior=PooledPrior(mean_e=-2.0))
    found = _steepens_at_the_reference(changing, seed=4)
    assert sum(d is not None for d in found) >= 7
    assert still.prior.hazard == 0.0, still.prior.hazard  # no change found, no fading
    # the changes found in 23,520 labels (+ 50,000): measured 1.2e-4, one in 8,000 labels
    assert changing.prior.hazard > 6e-5, changing.prior.hazard
