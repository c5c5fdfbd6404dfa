"""Per-SKU price elasticity: a Bayesian Poisson regression per SKU with a pooled prior.

Units sold in a window are counts, so the elasticity is learned on the count scale, not on
``log1p(units)`` (which biases slopes toward zero when counts are small). Per SKU::

    units ~ Poisson(exposure * exp(a + e * x + k * x**2 / 2)),   x = log(price / ref_price)

where ``exposure`` is the product-page traffic expected in the window (the views EWMA saved at
decision time: traffic does not depend on our price, so it carries the time-of-day level and
leaves ``a`` — units per view at the reference price — and ``e`` — the elasticity — stationary).

``k`` is the curvature of the log response: 0 is constant elasticity; linear or logit demand
fall faster than that at high prices (``k < 0``), and the elasticity at price ``p`` is
``e + k·x``. Its prior is ``N(0, sd_k²)`` with ``sd_k`` learned across the pool from the SKUs'
own evidence on ``k`` (:mod:`models.bend_prior`): near 0 on a catalogue that does not bend, so
the price is the constant-elasticity one, wide where SKUs bend.

Each SKU keeps the Gaussian (Laplace) approximation of *its own likelihood* in information form:
five floats in ``SkuView.state["el"]`` (precision ``J`` and ``h = J·θ`` of ``(a, e)``) and four
in ``state["ek"]`` (the rows of ``k``: ``J02, J12, J22, h2``; a state saved before ``k`` existed
has none, so its ``k`` sits at the prior). One
iteratively-reweighted-least-squares step per label, linearised at the current posterior mean,
adds that label's curvature and score (an online Newton / extended-Kalman update). The prior is
*not* stored per SKU: it is the pooled population prior (mean elasticity and mean level learned
across all SKUs in ``learn_pooled``), combined with the SKU's likelihood whenever the posterior
is needed. So a new or slow SKU starts from what all SKUs taught, and improves with the pool.

Change detection (:mod:`models.change_watch`): each SKU's watch judges every label against
the posterior's one-step-ahead prediction; when the SKU's demand level or its price response
has changed, the SKU forgets (all but ``keep_on_change`` of its own information, or only its
level when the level came back) and re-learns, and it keeps the regime it left, to take it
back whole when demand returns to it.

The slope's fading memory: what a SKU knows of its elasticity at its own mean price fades, each
label keeping ``1 - h`` of it, where ``h`` is the catalogue's rate of changes (the changes its
watches found per label, pooled across SKUs: ``PooledPrior.hazard``; 0 until they find one);
its level there and its curvature do not fade. An elasticity that changes pivoting near the
price a SKU charges moves demand there by next to nothing, so neither watch sees it once the
SKU has settled: its posterior has narrowed, Thompson sampling hardly moves the price, and
with every label weighted alike the estimate would move to the new elasticity only as fast as
new labels outweigh all the old ones. Fading keeps the posterior from collapsing, so the SKU
keeps exploring a little and follows such a change. Remembering about as long as the
catalogue's responses last between changes (``1/h`` labels) is what a change-point prior of
that rate asks for: a catalogue whose demand keeps changing fades faster, one whose watches
find nothing does not fade (measured: README, "Pricing per demand family").

Why ``detect_slope`` 1: the watch's evidence per label grows with ``D·δ - D²/2`` for a true
change ``δ`` of the elasticity, so it gathers evidence only for changes larger than ``D/2``
and fastest for changes of ``D``. At an elasticity near -2 to -3, pricing for an elasticity
off by 0.25 costs about 1.5% of the profit, off by 0.5 about 5%, off by 1 about 15% (the loss
is about quadratic): a change under 0.5 is left to the posterior's own learning, one of
about 1 is worth a re-learn. A smaller ``D`` would also count a SKU's ordinary learning (a
posterior still a little off its truth) as evidence of a change.

Learning keeps the engine's exactly-once split: ``learn_pooled`` updates the shared prior and
the dispersion (snapshotted with the offsets it covers), ``learn_local`` only the SKU's record.
Everything the decision needs is vectorised over SKUs (batched 3x3 algebra in numpy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from repricer.models.base import SkuView
from repricer.models.bend_prior import SD_K_FLOOR, bend_evidence, spread, spread_moment
from repricer.models.change_watch import (
    OTHER,
    OTHER_WIDTH,
    Watch,
    llr_step,
    own_mean_x,
    watch_state,
)

_MAX_ETA = 12.0  # exp(12) ≈ 160k units per window: beyond that the linearisation is meaningless
_MIN_EXPOSURE = 0.5  # views; a SKU nobody looked at recently still has a finite offset
# the catalogue's rate of changes is the changes found ÷ (labels + these): it starts at 0 (no
# fading) and comes to count as the labels pass this (35 days of one-minute windows)
HAZARD_LABELS = 50_000.0
_MIN_MEMORY = 1000.0  # labels: the slope fades at most this fast, however often SKUs change


@dataclass
class PooledPrior:
    """The shared part: population prior of (level, elasticity) and the count dispersion."""

    mean_a: float = -3.0  # log units per view at the reference price (≈ 5% conversion)
    mean_e: float = -2.0  # the elasticity a keystone (cost x 2) price is optimal for
    sd_a: float = 1.5
    sd_e: float = 0.75
    # curvature, prior mean 0 (constant elasticity): its spread is learned from how far the
    # SKUs' own evidence bends (models/bend_prior.py); ``var_k`` is the running moment estimate
    sd_k: float = SD_K_FLOOR
    var_k: float = 0.0
    dispersion: float = 1.0  # Var(units) ÷ mean (several units per order make it > 1)
    n: int = 0  # labels the pool has seen
    # changes the SKUs' watches found per label (over HAZARD_LABELS more labels, none found):
    # how fast what a SKU knows of its elasticity fades
    hazard: float = 0.0


def _rows(views: Sequence[SkuView], key: str, width: int) -> np.ndarray:
    """(N, width) the floats each SKU keeps under ``state[key]`` (zeros where it has none)."""
    out = np.zeros((len(views), width))
    for i, v in enumerate(views):
        got = v.state.get(key)
        if got and len(got) == width:
            out[i] = got
    return out


def _state(views: Sequence[SkuView]) -> np.ndarray:
    """(N, 5) per-SKU likelihood of (a, e) in information form: J00, J01, J11, h0, h1."""
    return _rows(views, "el", 5)


def _bend_state(views: Sequence[SkuView]) -> np.ndarray:
    """(N, 4) per-SKU likelihood rows of the curvature: J02, J12, J22, h2 (zeros: none yet)."""
    return _rows(views, "ek", 4)


def _add_labels(
    s: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    lam: np.ndarray,
    phi: float,
) -> None:
    """Add one label per row (an IRLS step at ``theta`` = (a, e, k)) to ``s`` and ``b`` in place:
    the label's curvature ``w·z·zᵀ`` and ``w·z·(θ·z) + score`` with ``z = (1, x, x²/2)``."""
    w = lam / phi
    half = x * x / 2.0
    r = w * (theta[:, 0] + theta[:, 1] * x + theta[:, 2] * half) + (y - lam) / phi
    s[:, 0] += w
    s[:, 1] += w * x
    s[:, 2] += w * x * x
    s[:, 3] += r
    s[:, 4] += r * x
    b[:, 0] += w * half
    b[:, 1] += w * x * half
    b[:, 2] += w * half * half
    b[:, 3] += r * half


def _eta(off: np.ndarray, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(N,) log expected units of one label per row at log price ``x`` under ``θ = (a, e, k)``
    with exposure offset ``off``."""
    return off + theta[:, 0] + theta[:, 1] * x + theta[:, 2] * x * x / 2.0


def _info(s: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 3) information and (N, 3) score of (a, e, k) from the SKUs' rows (``_state``,
    ``_bend_state``): the one place that knows where each entry is stored."""
    j = np.empty((len(s), 3, 3))
    j[:, 0, 0], j[:, 1, 1], j[:, 2, 2] = s[:, 0], s[:, 2], b[:, 2]
    j[:, 0, 1] = j[:, 1, 0] = s[:, 1]
    j[:, 0, 2] = j[:, 2, 0] = b[:, 0]
    j[:, 1, 2] = j[:, 2, 1] = b[:, 1]
    return j, np.stack([s[:, 3], s[:, 4], b[:, 3]], axis=1)


def _forget_along(
    s: np.ndarray, b: np.ndarray, rows: np.ndarray, v: np.ndarray, keep: float
) -> None:
    """In place on ``rows`` of the SKUs' rows (``_state``, ``_bend_state``): keep ``keep`` of
    the information along the direction ``v`` of (a, e, k) (one per row) and all of the rest,
    ``J - (1 - keep)·J·v·vᵀ·J / (vᵀ·J·v)`` (and ``h`` alike). Along ``v = (1, 0, 0)``: the
    level, the response shape kept whole (the Schur complement); along ``(-x̄, 1, 0)``: the
    elasticity with the level at ``x̄`` kept."""
    j, h = _info(s[rows], b[rows])
    jv = np.einsum("nij,nj->ni", j, v)
    vjv = np.einsum("ni,ni->n", v, jv)
    # along a direction the rows hold (next to) no information of there is nothing to forget:
    # there ``vᵀ·J·v`` is a difference of rounded terms (a SKU sold at one price: the slope at
    # its mean price), and dividing by it would amplify their rounding
    scale = np.einsum("ni,ni->n", np.abs(v), np.einsum("nij,nj->ni", np.abs(j), np.abs(v)))
    some = vjv > 1e-6 * scale
    c = np.where(some[:, None], jv / np.where(some, vjv, 1.0)[:, None], 0.0)
    vh = np.einsum("ni,ni->n", v, h)
    j -= (1.0 - keep) * c[:, :, None] * jv[:, None, :]
    h -= (1.0 - keep) * c * vh[:, None]
    s[rows] = np.stack([j[:, 0, 0], j[:, 0, 1], j[:, 1, 1], h[:, 0], h[:, 1]], axis=1)
    b[rows] = np.stack([j[:, 0, 2], j[:, 1, 2], j[:, 2, 2], h[:, 2]], axis=1)


def units_per_label(views: Sequence[SkuView]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) labels learned and mean units per labelled window of each SKU (its own volume)."""
    cd = watch_state(views)
    return cd[:, 2], cd[:, 3] / np.maximum(cd[:, 2], 1.0)


def _x(views: Sequence[SkuView], prices: np.ndarray) -> np.ndarray:
    p = np.asarray(prices, dtype=np.float64)
    ref = np.array([max(v.ref_price, 1e-9) for v in views], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(p / ref.reshape((-1,) + (1,) * (p.ndim - 1)))
    return np.where(np.isfinite(x), x, 0.0)


def _offset(views: Sequence[SkuView]) -> np.ndarray:
    return np.log(np.array([max(v.views_ewma, 0.0) + _MIN_EXPOSURE for v in views]))


@dataclass(frozen=True, slots=True)
class Response:
    """(N,) posterior of each SKU's response: elasticity at the reference price and its sd,
    curvature and its sd, and their posterior correlation."""

    e: np.ndarray
    e_sd: np.ndarray
    k: np.ndarray
    k_sd: np.ndarray
    rho: np.ndarray


class Elasticity:
    """Posterior of each SKU's (level, elasticity); learns from labelled windows."""

    version = "elasticity-poisson-2"

    def __init__(
        self,
        *,
        forget: float = 1.0,
        prior: PooledPrior | None = None,
        detect: float = 7.5,
        detect_shift: float = 0.25,
        detect_min_var: float = 30.0,
        detect_slope: float = 1.0,
        keep_on_change: float = 0.05,
        detect_return: float = 5760.0,
        recall: float = 0.5,
        fade_slope: bool = True,
        learn_spread: bool = True,
    ) -> None:
        self.forget = forget
        self.prior = prior or PooledPrior()
        self.pool_rate = 0.02  # per tick: how fast the pooled prior follows the SKUs
        self.detect = detect  # log-likelihood ratio (CUSUM) that signals a change; 0: never
        self.detect_shift = detect_shift  # the watch tests demand x (1 + shift) and ÷ (1 + shift)
        # expected units ÷ dispersion the SKU's own likelihood holds before the watch judges
        self.detect_min_var = detect_min_var
        # the price-response watch tests elasticity ± this (pivoting at the SKU's mean price)
        self.detect_slope = detect_slope
        self.keep_on_change = keep_on_change  # share of the SKU's own information kept
        # labels (4 days of the default one-minute windows) within which a level alarm opposite
        # to the last level alarm is the level coming back: only the level is forgotten; 0: never
        self.detect_return = detect_return
        # share of ``detect`` by which the regime a SKU left must explain its labels better
        # than its current one to be taken back when the level comes back; 0: never kept
        self.recall = recall
        # what a SKU knows of its elasticity at its own mean price fades at the catalogue's
        # pooled rate of changes found (``PooledPrior.hazard``); False: never
        self.fade_slope = fade_slope
        self.learn_spread = learn_spread  # False: the curvature prior's spread stays as given

    # -- persistence of the pooled part (the per-SKU part lives in SkuView.state) -------------
    def snapshot(self) -> str:
        return json.dumps(asdict(self.prior))

    def restore(self, blob: str) -> None:
        got = json.loads(blob)
        self.prior = PooledPrior(**got)
        if "var_k" not in got:  # saved before the spread was learned: it starts where it was
            self.prior.var_k = self.prior.sd_k**2

    # -- posterior -----------------------------------------------------------------------------
    def posterior3(self, views: Sequence[SkuView]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) posterior means of (a, e, k) and (N, 3, 3) covariances."""
        return self._solve(_state(views), _bend_state(views))

    def _solve(self, s: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`posterior3` from the SKUs' rows (``_state``, ``_bend_state``) read once."""
        pr = self.prior
        pa, pe, pk = 1.0 / pr.sd_a**2, 1.0 / pr.sd_e**2, 1.0 / max(pr.sd_k, 1e-6) ** 2
        j, h = _info(s, b)
        j[:, 0, 0] += pa
        j[:, 1, 1] += pe
        j[:, 2, 2] += pk
        h[:, 0] += pa * pr.mean_a
        h[:, 1] += pe * pr.mean_e
        cov = np.linalg.inv(j)
        return np.einsum("nij,nj->ni", cov, h), cov

    def posterior(self, views: Sequence[SkuView]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) posterior means of (a, e) and (N, 3) covariances (Saa, Sae, See)."""
        mean, cov = self.posterior3(views)
        return mean[:, :2], np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]], axis=1)

    def elasticity(self, views: Sequence[SkuView]) -> tuple[np.ndarray, np.ndarray]:
        """(N,) posterior mean and standard deviation of each SKU's elasticity."""
        mean, cov = self.posterior(views)
        return mean[:, 1], np.sqrt(np.maximum(cov[:, 2], 0.0))

    def response(self, views: Sequence[SkuView]) -> Response:
        """Each SKU's posterior of elasticity and curvature (what the decision draws from)."""
        mean, cov = self.posterior3(views)
        sd_e = np.sqrt(np.maximum(cov[:, 1, 1], 0.0))
        sd_k = np.sqrt(np.maximum(cov[:, 2, 2], 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.clip(np.nan_to_num(cov[:, 1, 2] / (sd_e * sd_k)), -1.0, 1.0)
        return Response(mean[:, 1], sd_e, mean[:, 2], sd_k, rho)

    def own_e(self, views: Sequence[SkuView]) -> tuple[np.ndarray, np.ndarray]:
        """(N,) each SKU's own information on its elasticity (its level profiled out under the
        pooled prior on levels; 0 for a SKU only ever sold at one price) and that information
        times its own estimate: what the SKU tells about the pooled mean elasticity."""
        s = _state(views)
        pa = 1.0 / self.prior.sd_a**2
        j00 = s[:, 0] + pa
        info = s[:, 2] - s[:, 1] ** 2 / j00
        return np.maximum(info, 0.0), s[:, 4] - s[:, 1] * (s[:, 3] + pa * self.prior.mean_a) / j00

    def expected_units(
        self, views: Sequence[SkuView], prices: np.ndarray, mean: np.ndarray | None = None
    ) -> np.ndarray:
        """Posterior-mean units at ``prices`` ((N,) or (N, K)) given the saved traffic
        (``mean``: the posterior means of (a, e, k) if the caller has them)."""
        if mean is None:
            mean, _ = self.posterior3(views)
        p = np.asarray(prices, dtype=np.float64)
        shape = (len(views),) + (1,) * (p.ndim - 1)
        x = _x(views, p)
        a, e, k = (mean[:, i].reshape(shape) for i in range(3))
        eta = _offset(views).reshape(shape) + a + e * x + k * x * x / 2.0
        return np.exp(np.clip(eta, -50.0, _MAX_ETA))

    # -- learning --------------------------------------------------------------------------
    def learn_pooled(self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray) -> None:
        """Move the shared prior toward the SKUs' estimates; track the count dispersion.

        The prior means follow the average of the SKUs' posterior means, each weighted by how
        much the SKU's own data speaks (0: prior only, 1: data only), so SKUs without data do
        not vote for the prior they were given. The curvature's prior spread follows the SKUs'
        own evidence on it (models/bend_prior.py).
        """
        p = np.asarray(prices, dtype=np.float64)
        y = np.asarray(units, dtype=np.float64)
        left = np.array([math.inf if v.stock is None else v.stock for v in views])
        ok = np.isfinite(y) & (y >= 0) & np.isfinite(p) & (p > 0) & (y < left)
        if not ok.any():
            return
        vs = [v for v, k in zip(views, ok, strict=True) if k]
        p, y = p[ok], y[ok]
        s, b = _state(vs), _bend_state(vs)
        mean, _ = self._solve(s, b)
        pr = self.prior
        w_a = s[:, 0] / (s[:, 0] + 1.0 / pr.sd_a**2)
        w_e = s[:, 2] / (s[:, 2] + 1.0 / pr.sd_e**2)
        if w_a.sum() > 1e-9:
            target = float((w_a * mean[:, 0]).sum() / w_a.sum())
            pr.mean_a += self.pool_rate * float(w_a.mean()) * (target - pr.mean_a)
        if w_e.sum() > 1e-9:
            target = float((w_e * mean[:, 1]).sum() / w_e.sum())
            pr.mean_e += self.pool_rate * float(w_e.mean()) * (target - pr.mean_e)
        self._learn_spread(s, b)
        cd = watch_state(vs)  # the changes found per label, over the SKUs' whole lives
        rate = float(cd[:, 4].sum()) / (float(cd[:, 2].sum()) + HAZARD_LABELS)
        pr.hazard += self.pool_rate * (rate - pr.hazard)
        lam = self.expected_units(vs, p, self._solve(s, b)[0])  # at the prior just moved
        big = lam > 0.5  # Pearson residuals of tiny means are mostly noise
        if big.any():
            pearson = float(np.mean((y[big] - lam[big]) ** 2 / lam[big]))
            pr.dispersion += self.pool_rate * (min(max(pearson, 0.5), 5.0) - pr.dispersion)
        pr.n += int(ok.sum())

    def _learn_spread(self, el: np.ndarray, ek: np.ndarray) -> None:
        """Move the curvature prior's spread toward the moment estimate of the SKUs' own
        evidence on ``k`` (models/bend_prior.py), as fast as the share of SKUs it rests on."""
        pr = self.prior
        if not self.learn_spread:
            return
        prec = (1.0 / pr.sd_a**2, 1.0 / pr.sd_e**2)
        got = spread_moment(*bend_evidence(el, ek, prec, (pr.mean_a, pr.mean_e)))
        if got is None:
            return
        est, share = got
        pr.var_k += self.pool_rate * share * (min(est, 1e3) - pr.var_k)
        pr.sd_k = spread(pr.var_k)

    def learn_local_batch(
        self, views: Sequence[SkuView], prices: np.ndarray, units: np.ndarray
    ) -> None:
        """:meth:`learn_local` for a batch of labels, one per SKU, in one vectorised pass.

        Each row reads and writes only its own SKU's state and the prior does not move here,
        so the batch is the same as learning the labels one by one (tests/unit/test_elasticity).
        Per label: an IRLS step at the posterior mean ``θ = (a, e, k)`` adds the label's
        curvature and score to the SKU's information (``_add_labels``), and the change watch
        judges the label against the SKU's own information before it; the regime the SKU left
        at its last change (if any) gathers its evidence of fitting better, and is taken back
        when the level comes back and that evidence is strong (:mod:`models.change_watch`).
        """
        p = np.asarray(prices, dtype=np.float64).reshape(-1)
        y = np.asarray(units, dtype=np.float64).reshape(-1)
        left = np.array([math.inf if v.stock is None else v.stock for v in views])
        with np.errstate(invalid="ignore"):
            # a sold-out window is a censored label (demand was at least this): skipped
            ok = np.isfinite(p) & (p > 0) & np.isfinite(y) & (y >= 0) & (y < left)
        idx = np.flatnonzero(ok).tolist()
        if not idx:
            return
        vs = [views[i] for i in idx]
        p, y = p[idx], y[idx]
        s, b = _state(vs), _bend_state(vs)
        theta, _ = self._solve(s, b)
        x = _x(vs, p)
        off = _offset(vs)
        eta = _eta(off, theta, x)
        # math.exp per row, not np.exp: the figures measured so far, to the last bit
        lam = np.array([math.exp(t) for t in np.minimum(eta, _MAX_ETA).tolist()])
        phi = max(self.prior.dispersion, 1e-3)
        own = s.copy()  # the SKU's own likelihood before the label (the watch judges by it)
        s *= self.forget
        b *= self.forget
        watch = Watch(
            self.detect,
            self.detect_shift,
            self.detect_min_var,
            self.detect_slope,
            self.detect_return,
        )
        fade = min(max(self.prior.hazard, 0.0), 1.0 / _MIN_MEMORY) if self.fade_slope else 0.0
        settled = watch.judges(own)  # the SKUs the watch judges: not the long tail
        if fade > 0 and settled.any():  # the slope at the SKU's own mean price fades
            xbar = own_mean_x(own[settled])
            slope = np.stack([-xbar, np.ones_like(xbar), np.zeros_like(xbar)], axis=1)
            _forget_along(s, b, settled, slope, 1.0 - fade)
        _add_labels(s, b, theta, x, y, lam, phi)
        other = _rows(vs, OTHER, OTHER_WIDTH)  # the regime left at the last change, if any
        has = (other[:, 0] > 0) & (self.recall > 0)
        if has.any():  # the evidence that the regime the SKU left fits its labels better
            t_o, _ = self._solve(other[has, :5], other[has, 5:9])
            lam_o = np.exp(np.minimum(_eta(off[has], t_o, x[has]), _MAX_ETA))
            other[has, 9] = np.maximum(other[has, 9] + llr_step(y[has], lam_o, lam[has], phi), 0.0)
        before = watch_state(vs)
        cd, changed, back = watch.step(before, y, lam, phi, own, x)
        swap = np.zeros_like(back)  # the level came back to the regime the SKU left
        kept = np.zeros_like(back)  # rows whose other regime becomes the one they leave now
        if self.recall > 0:
            swap = back & (other[:, 9] > self.recall * self.detect)
            # a first change keeps the regime it left; an echo of the same shift keeps the one
            # from before it; a swap keeps the regime it left as the other
            kept = (changed & ~back & ~(has & watch.echo(before, cd))) | swap
        was = np.concatenate([s[kept], b[kept]], axis=1)  # the regime as it stood
        self._forget(s, b, changed & ~swap, back & ~swap)
        s[swap], b[swap] = other[swap, :5], other[swap, 5:9]
        cd[swap, 5:7] = 0.0  # the price-response watch restarts on the new regime
        other[kept, :9] = was
        other[changed, 9] = 0.0
        for v, row, bend, c, o in zip(
            vs, s.tolist(), b.tolist(), cd.tolist(), other.tolist(), strict=True
        ):
            v.state["el"] = [float(f"{t:.8g}") for t in row]
            v.state["ek"] = [float(f"{t:.8g}") for t in bend]
            v.state["cd"] = [float(f"{t:.8g}") for t in c]
            if o[0] > 0:
                v.state[OTHER] = [float(f"{t:.8g}") for t in o]

    def _forget(self, s: np.ndarray, b: np.ndarray, changed: np.ndarray, back: np.ndarray) -> None:
        """Forget in place what a change made stale: all but ``keep_on_change`` of the SKU's
        own information; where the level came ``back``, only that share of its level. What it
        knows of its response shape with the level profiled out (the Schur complement
        ``J - J·e₀e₀ᵀ·J / J00``: the shape as learned from how its price varied) stays whole."""
        keep = self.keep_on_change
        full = changed & ~back
        s[full] *= keep
        b[full] *= keep
        if not back.any():
            return
        level = np.zeros((int(back.sum()), 3))
        level[:, 0] = 1.0
        _forget_along(s, b, back, level, keep)

    def learn_local(self, view: SkuView, price: float, units: float) -> None:
        """One IRLS step of the SKU's own likelihood for a label, at its current posterior: the
        batch update (:meth:`learn_local_batch`) of one row, the one information update there is."""
        self.learn_local_batch(
            [view], np.array([price], dtype=np.float64), np.array([units], dtype=np.float64)
        )
