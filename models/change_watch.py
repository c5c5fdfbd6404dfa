"""Each SKU's change watch over its elasticity model's labels, and the demand regime it
remembers from before its last shift (:mod:`models.elasticity` learns; this module judges).

The watch: each SKU keeps ``SkuView.state["cd"]``, nine floats: two two-sided CUSUMs of its
one-step-ahead labels, its label and unit counts, how often the watch fired, and its last
level alarm.
The level watch (Page's test on the quasi-Poisson log-likelihood ratio of demand
``detect_shift`` above, or as far below, what the posterior expects) and the price-response
watch (the elasticity ``detect_slope`` steeper, or as much flatter, pivoting at the SKU's own
mean log price, so that it is orthogonal to the level and learns only from how the SKU's
price varies). A CUSUM sums evidence over as long as it lasts, so a small lasting shift is
found as surely as a large one, only later; under no change it drifts down. An elasticity
that changes while the price sits near the pivot of the change hardly moves the level: the
response watch finds it from the SKU's exploration around its mean price. The watch judges
only once the SKU's own likelihood holds ``detect_min_var`` expected units (÷ dispersion) at
its level: never while the prior speaks (a new SKU, or just after a change) and rarely on the
long tail. When any side passes ``detect``, the SKU's response has changed: its own
likelihood keeps only ``keep_on_change`` of its weight, so the posterior widens, Thompson
sampling explores again and the SKU re-learns.

One exception: the level coming back. A level alarm (the response watch quiet) opposite to
the SKU's last level alarm within ``detect_return`` labels is demand returning to where it
was, as when a competitor's promotion ends: that one forgets only the level (it keeps
``keep_on_change`` of the level's information and all of the response shape's with the level
profiled out, the Schur complement) and the response watch keeps its evidence. A first level
shift cannot be told from a changed elasticity seen at the price charged (an elasticity that
changes pivoting elsewhere moves demand there too), so it still forgets everything; shifts
that come and go are the common case of a shop's demand (promotions, a competitor's stock-out)
and, from the second on, leave what the SKU knows of its response in place. The state holds
two more floats for it: the label count at the last level alarm and its direction (±1; 0
after a response alarm). Records of 4, 5 and 7 floats load as before, with none on record.

The other regime: demand that comes back usually comes back to what it was, price response
included (a competitor's promotion moves our elasticity as well as our level while it lasts,
and both return when it ends). So a change that forgets everything first keeps what the SKU
knew in ``SkuView.state["el_alt"]``: its own likelihood of ``(a, e, k)`` as it stood (the
nine floats of ``el`` and ``ek``) and one more, the evidence that this other regime explains
the SKU's labels better than its current one (Page's CUSUM of the quasi-Poisson
log-likelihood ratio of the two one-step-ahead predictions). When the level comes back and
that evidence passes ``recall`` times ``detect``, the SKU swaps: the other regime becomes its
current one, whole, and what it learned since the change is kept as the other. So the second
promotion starts from what the first one taught, and the end of each gives back the response
learned between promotions instead of the one learned during them. A level coming back that
the other regime does not explain (a regime changed for good and a level that moved again)
forgets only the level, as above. An alarm in the same direction as the last level alarm
within ``detect_return`` labels is the same shift seen again (an echo, while the level
re-learns): it keeps the other regime from before the shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repricer.models.base import SkuView

OTHER = "el_alt"  # the state key of the SKU's other regime
OTHER_WIDTH = 10  # the likelihood's nine floats (el, ek) and the evidence that it fits better


def watch_state(views: Sequence[SkuView]) -> np.ndarray:
    """(N, 9) per-SKU change watch: level CUSUM up and down, labels, units, changes found,
    price-response CUSUM steeper and flatter, labels at the last level alarm and its direction.

    A seven-float record (both watches) has no level alarm on record; a five-float record (the
    level watch alone) keeps its CUSUMs and counts, and its price-response CUSUMs start at 0;
    a four-float record (the earlier EWMA watch: residual
    and variance sums, labels, units) keeps its counts and starts the CUSUMs afresh."""
    out = np.zeros((len(views), 9))
    for i, v in enumerate(views):
        got = v.state.get("cd")
        if got and len(got) in (5, 7, 9):
            out[i, : len(got)] = got
        elif got and len(got) == 4:
            out[i, 2:4] = got[2:4]
    return out


def llr_step(y: np.ndarray, lam_other: np.ndarray, lam: np.ndarray, phi: float) -> np.ndarray:
    """Quasi-Poisson log-likelihood ratio of each label under the other regime's expected
    units ``lam_other`` against the current regime's ``lam``."""
    other, cur = np.maximum(lam_other, 1e-12), np.maximum(lam, 1e-12)
    return np.asarray((y * np.log(other / cur) - (other - cur)) / phi)


def own_mean_x(own: np.ndarray) -> np.ndarray:
    """(N,) each SKU's information-weighted mean log price ``x̄ = J01 / J00`` from its own
    likelihood (``J00, J01, …``; 0 where it holds none): the pivot the price-response watch
    tests about, and about which the elasticity's slope fades (:mod:`models.elasticity`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(own[:, 0] > 0, own[:, 1] / own[:, 0], 0.0)


@dataclass(frozen=True, slots=True)
class Watch:
    """The change watch's settings (see :class:`models.elasticity.Elasticity`)."""

    detect: float
    shift: float
    min_var: float
    slope: float
    back_within: float

    def step(
        self,
        cd: np.ndarray,
        y: np.ndarray,
        lam: np.ndarray,
        phi: float,
        own: np.ndarray,
        x: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The change watch after one label per row: (new state, rows whose response changed,
        rows where the level came back: a level alarm opposite to the last level alarm within
        ``back_within`` labels, the response watch quiet).

        ``own`` is each SKU's own likelihood before the label (``J00, J01, …``).
        Page's CUSUM, both ways, on two quasi-Poisson log-likelihood ratios against the
        posterior's expected ``λ``: the level (demand ``r·λ``, ``r = 1 + shift`` and its
        inverse) and the price response (elasticity ``± slope``, pivoting at the SKU's
        own information-weighted mean log price ``x̄ = J01 / J00``: demand
        ``λ·exp(±D·(x - x̄))``). Pivoting at ``x̄`` makes the response test orthogonal to the
        level test: it gathers evidence only from how the SKU's price varies about its mean,
        so it finds a changed elasticity where the price sits near the pivot of the change
        and the level hardly moves. The same arithmetic for one label and for a batch."""
        cd = cd.copy()
        cd[:, 2] += 1.0
        cd[:, 3] += y
        if self.detect <= 0:
            none = np.zeros(len(cd), dtype=bool)
            return cd, none, none
        judged = self.judges(own)
        lr = math.log1p(self.shift)
        up = (y * lr - lam * self.shift) / phi
        down = (lam * (1.0 - math.exp(-lr)) - y * lr) / phi
        cd[:, 0] = np.where(judged, np.maximum(cd[:, 0] + up, 0.0), 0.0)
        cd[:, 1] = np.where(judged, np.maximum(cd[:, 1] + down, 0.0), 0.0)
        if self.slope > 0:
            dx = self.slope * (x - own_mean_x(own))
            for col, sign in ((5, -1.0), (6, 1.0)):  # steeper, flatter
                llr = (y * sign * dx - lam * np.expm1(sign * dx)) / phi
                cd[:, col] = np.where(judged, np.maximum(cd[:, col] + llr, 0.0), 0.0)
        changed = judged & (np.max(cd[:, [0, 1, 5, 6]], axis=1) > self.detect)
        level_only = changed & (np.max(cd[:, [5, 6]], axis=1) <= self.detect)
        way = np.where(cd[:, 0] >= cd[:, 1], 1.0, -1.0)
        back = level_only & (cd[:, 8] == -way) & (cd[:, 2] - cd[:, 7] <= self.back_within)
        cd[np.ix_(changed, [0, 1])] = 0.0
        cd[np.ix_(changed & ~back, [5, 6])] = 0.0
        cd[level_only, 7] = cd[level_only, 2]
        cd[changed, 8] = np.where(level_only[changed], way[changed], 0.0)
        cd[changed, 4] += 1.0
        return cd, changed, back

    def judges(self, own: np.ndarray) -> np.ndarray:
        """(N,) rows the watch judges: their own likelihood ``own`` (``J00, …``) holds
        ``min_var`` expected units (÷ dispersion) at its level; not a new SKU, nor most of the
        long tail."""
        return np.asarray(own[:, 0] >= self.min_var)

    def echo(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Rows whose level alarm (``after``, from :meth:`step` on ``before``) goes the same way
        as their last level alarm within ``back_within`` labels: the same shift seen again."""
        way = after[:, 8]
        return (way != 0) & (before[:, 8] == way) & (after[:, 2] - before[:, 7] <= self.back_within)
