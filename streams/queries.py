"""The documented analyst queries. Every one reads with ``FINAL`` so replays never double-count."""

from __future__ import annotations

from typing import Any

from infra.clickhouse import ClickHouseBackend, check_ident
from infra.clickhouse.tables import (
    CLICKS_1M,
    DEAD_LETTERS,
    FORECASTS,
    PRICE_CHANGES,
    REGISTRY,
    SALES_1M,
)

TABLE_NAMES = tuple(REGISTRY)


def _db(ch: ClickHouseBackend) -> str:
    """The backend's database name, checked again right where it goes into SQL text."""
    return check_ident(ch.database, "database")


def row_counts(ch: ClickHouseBackend) -> dict[str, int]:
    db = _db(ch)
    return {
        name: int(ch.query(f"SELECT count() FROM {t.at(db)} FINAL")[0][0])
        for name, t in REGISTRY.items()
    }


def top_skus_by_revenue(ch: ClickHouseBackend, limit: int = 5) -> list[tuple[Any, ...]]:
    return ch.query(
        f"SELECT sku, sum(units) AS total_units, round(sum(revenue), 2) AS total_revenue, "
        f"round(sum(revenue) / greatest(sum(units), 1), 2) AS avg_price "
        f"FROM {SALES_1M.at(_db(ch))} FINAL GROUP BY sku ORDER BY total_revenue DESC, sku "
        f"LIMIT %(limit)s",
        {"limit": limit},
    )


def dead_letters_by_reason(ch: ClickHouseBackend) -> list[tuple[Any, ...]]:
    return ch.query(
        f"SELECT reason, count() AS n FROM {DEAD_LETTERS.at(_db(ch))} FINAL "
        f"GROUP BY reason ORDER BY n DESC, reason"
    )


def price_changes_by_reason(ch: ClickHouseBackend) -> list[tuple[Any, ...]]:
    return ch.query(
        f"SELECT arrayJoin(reasons) AS reason, count() AS n FROM {PRICE_CHANGES.at(_db(ch))} FINAL "
        f"GROUP BY reason ORDER BY n DESC, reason"
    )


def conversion_by_sku(ch: ClickHouseBackend, limit: int = 5) -> list[tuple[Any, ...]]:
    db = _db(ch)
    return ch.query(
        f"SELECT c.sku, sum(c.views) AS total_views, sum(s.units) AS total_units, "
        f"round(sum(s.units) / greatest(sum(c.views), 1), 4) AS units_per_view "
        f"FROM (SELECT sku, window_start, views FROM {CLICKS_1M.at(db)} FINAL) AS c "
        f"ANY LEFT JOIN (SELECT sku, window_start, units FROM {SALES_1M.at(db)} FINAL) AS s "
        f"USING (sku, window_start) GROUP BY c.sku ORDER BY total_views DESC, c.sku LIMIT %(limit)s",
        {"limit": limit},
    )


def forecast_accuracy(ch: ClickHouseBackend) -> list[dict[str, Any]]:
    """MAE, RMSE, MAPE (non-zero actuals) and WAPE per model over every scored forecast."""
    rows = ch.query(
        f"SELECT model, count() AS n, avg(abs(predicted - actual)) AS mae, "
        f"sqrt(avg((predicted - actual) * (predicted - actual))) AS rmse, "
        f"avgIf(abs(predicted - actual) / actual, actual > 0) AS mape, "
        f"sum(abs(predicted - actual)) / greatest(sum(actual), 1e-9) AS wape "
        f"FROM {FORECASTS.at(_db(ch))} FINAL GROUP BY model ORDER BY wape, model"
    )
    return [
        {
            "model": m,
            "n": int(n),
            "mae": round(float(mae), 4),
            "rmse": round(float(rmse), 4),
            "mape": round(float(mape), 4) if mape == mape else None,
            "wape": round(float(wape), 4),
        }
        for m, n, mae, rmse, mape, wape in rows
    ]


DEMAND_SERIES_SQL = """
SELECT sku, window_start, sum(orders) AS orders, sum(units) AS units,
       round(sum(revenue), 6) AS revenue, sum(views) AS views
FROM
(
    SELECT sku, window_start, toUInt64(orders) AS orders, units, revenue,
           toUInt64(0) AS views
    FROM {sales} FINAL
    WHERE sku = %(sku)s AND window_start >= toDateTime(%(start)s)
      AND window_start < toDateTime(%(end)s)
    UNION ALL
    SELECT sku, window_start, toUInt64(0) AS orders, toUInt64(0) AS units,
           toFloat64(0) AS revenue, toUInt64(views) AS views
    FROM {clicks} FINAL
    WHERE sku = %(sku)s AND window_start >= toDateTime(%(start)s)
      AND window_start < toDateTime(%(end)s)
    UNION ALL
    SELECT %(sku)s AS sku, toDateTime(%(start)s + number * %(step)s) AS window_start,
           toUInt64(0) AS orders, toUInt64(0) AS units, toFloat64(0) AS revenue,
           toUInt64(0) AS views
    FROM system.numbers LIMIT %(n)s
)
GROUP BY sku, window_start
ORDER BY window_start
"""


def demand_series(
    ch: ClickHouseBackend, sku: str, start_s: int, end_s: int, window_s: int
) -> list[tuple[Any, ...]]:
    """One row per window of ``sku`` in ``[start_s, end_s)`` (epoch seconds, aligned to
    ``window_s``), quiet windows included as zeros: (sku, window_start, orders, units, revenue,
    views).

    Only windows that held events are stored (a quiet window is zero demand, and zero rows for
    every SKU every minute would be 144M rows a day per table at 100k SKUs); this fills the gaps
    at query time. Runs on ClickHouse 18.16 and current ClickHouse (no ``WITH FILL``).
    """
    if window_s <= 0 or start_s % window_s or end_s % window_s or end_s < start_s:
        raise ValueError("start and end must be multiples of window_s, start <= end")
    n = (end_s - start_s) // window_s
    return ch.query(
        DEMAND_SERIES_SQL.format(sales=SALES_1M.at(_db(ch)), clicks=CLICKS_1M.at(_db(ch))),
        {"sku": sku, "start": start_s, "end": end_s, "step": window_s, "n": n},
    )
