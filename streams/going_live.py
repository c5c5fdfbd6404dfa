"""Going live, read from ClickHouse: the prices in force at a past time (what a rollback
restores) and what the policy would have changed in shadow mode.

A *target* names SKUs the way ``repricer control`` does: a SKU, ``category:NAME`` or ``*``.
Every query reads with ``FINAL`` and runs on ClickHouse 18.16 and chdb.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from repricer.infra.clickhouse import ClickHouseBackend, check_ident
from repricer.infra.clickhouse.tables import PRICE_CHANGES, SHADOW_DECISIONS


def parse_time(text: str) -> datetime:
    """An operator's time: ISO 8601 (an offset, or UTC when it has none) or epoch seconds.

    >>> parse_time("2026-11-24T09:00").isoformat()
    '2026-11-24T09:00:00+00:00'
    >>> parse_time("1767225600").isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _where(target: str) -> tuple[str, dict[str, Any]]:
    """The SQL condition on ``price_changes`` for a target, and its parameters."""
    if target == "*":
        return "1", {}
    if target.startswith("category:"):
        return "category = %(target)s", {"target": target.removeprefix("category:")}
    return "sku = %(target)s", {"target": target}


def prices_at(ch: ClickHouseBackend, at: datetime, target: str = "*") -> dict[str, float]:
    """The price in force at ``at`` of every SKU of ``target`` that has a price change on
    record: the new price of its latest change at or before ``at``, else the old price of its
    first change after it (it had not changed yet: that was the price then)."""
    db = check_ident(ch.database, "database")
    cond, params = _where(target)
    t = PRICE_CHANGES.at(db)
    rows = ch.query(
        f"SELECT sku, "
        f"countIf(effective_at <= toDateTime(%(at)s)) AS before, "
        f"argMaxIf(new_price, effective_at, effective_at <= toDateTime(%(at)s)) AS last_new, "
        f"argMinIf(old_price, effective_at, effective_at > toDateTime(%(at)s)) AS first_old "
        f"FROM {t} FINAL WHERE {cond} GROUP BY sku ORDER BY sku",
        {"at": int(at.timestamp()), **params},
    )
    return {str(sku): float(last if n else first) for sku, n, last, first in rows}


def shadow_summary(ch: ClickHouseBackend, limit: int = 10) -> dict[str, Any]:
    """What the policy would have changed for SKUs it does not price (shadow, holdout).

    Each SKU counts once, with its latest would-be change (a SKU in shadow is decided again
    every window, since its price does not move): ``expected_gain_per_window`` is the sum over
    SKUs of the forecast profit of one window at the would-be price minus at the current one.
    """
    db = check_ident(ch.database, "database")
    t = SHADOW_DECISIONS.at(db)
    latest = (
        f"SELECT sku, mode, argMax(current_price, decided_at) AS current, "
        f"argMax(would_price, decided_at) AS would, argMax(expected_gain, decided_at) AS gain, "
        f"count() AS decisions FROM {t} FINAL GROUP BY sku, mode"
    )
    by_mode = ch.query(
        f"SELECT mode, count() AS skus, sum(decisions), sum(would > current), "
        f"sum(would < current), round(sum(gain), 4) FROM ({latest}) GROUP BY mode ORDER BY mode"
    )
    top = ch.query(
        f"SELECT sku, mode, current, would, round(gain, 4) FROM ({latest}) "
        f"ORDER BY gain DESC, sku LIMIT %(limit)s",
        {"limit": limit},
    )
    return {
        "by_mode": [
            {
                "mode": m,
                "skus": int(n),
                "decisions": int(d),
                "would_raise": int(up),
                "would_lower": int(down),
                "expected_gain_per_window": float(g),
            }
            for m, n, d, up, down, g in by_mode
        ],
        "top_skus_by_expected_gain": [
            {"sku": s, "mode": m, "current_price": c, "would_price": w, "expected_gain": g}
            for s, m, c, w, g in top
        ],
    }
