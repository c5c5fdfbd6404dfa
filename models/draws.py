"""Deterministic per-SKU random draws: the same SKU and period give the same number.

A replay of the same events must decide the same prices (the PriceChange keeps its
``event_id``), so every random choice a decision makes (Thompson draws, the pool experiment's
signs) is a hash of the SKU, a period of event time and a salt naming the choice, not a call
to a random generator whose state a restart would lose.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from repricer.models.base import SkuView


def unit_hash(key: str) -> float:
    """A number in [0, 1), uniform over keys and fixed for ``key``: the first 8 bytes of
    ``blake2b(key)`` (also the holdout draw's bucket)."""
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def unit_random(sku: str, period: int, salt: str = "") -> float:
    """:func:`unit_hash` of ``sku|period|salt``: fixed for the SKU, the period and the salt."""
    return unit_hash(f"{sku}|{period}|{salt}")


def _uniforms(views: Sequence[SkuView], salt: str, period_ms: int) -> np.ndarray:
    """(N,) :func:`unit_random` per SKU and ``period_ms`` of its next window's start."""
    step = max(period_ms, 1)
    return np.array([unit_random(v.sku, v.next_window_start // step, salt) for v in views])


def unit_normals(views: Sequence[SkuView], salt: str, period_ms: int) -> np.ndarray:
    """(N,) standard normal draws, one per SKU and ``period_ms`` of its next window's start."""
    nd = NormalDist()
    u = _uniforms(views, salt, period_ms).tolist()
    return np.array([nd.inv_cdf(min(max(x, 1e-12), 1 - 1e-12)) for x in u])


def unit_signs(views: Sequence[SkuView], salt: str, period_ms: int) -> np.ndarray:
    """(N,) ±1, one per SKU and ``period_ms`` of its next window's start, each equally likely."""
    return np.where(_uniforms(views, salt, period_ms) < 0.5, -1.0, 1.0)
