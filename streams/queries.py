"""The documented analyst queries. Every one reads with ``FINAL`` so replays never double-count."""

from __future__ import annotations

from typing import Any

from infra.clickhouse import ClickHouseBackend, check_ident

TABLE_NAMES = ("sales_1m", "clicks_1m", "price_changes", "dead_letters", "forecasts")


def _db(ch: ClickHouseBackend) -> str:
    """The backend's database name, checked again right where it goes into SQL text."""
    return check_ident(ch.database, "database")


def row_counts(ch: ClickHouseBackend) -> dict[str, int]:
    db = _db(ch)
    return {t: int(ch.query(f"SELECT count() FROM {db}.{t} FINAL")[0][0]) for t in TABLE_NAMES}


def top_skus_by_revenue(ch: ClickHouseBackend, limit: int = 5) -> list[tuple[Any, ...]]:
    return ch.query(
        f"SELECT sku, sum(units) AS total_units, round(sum(revenue), 2) AS total_revenue, "
        f"round(sum(revenue) / greatest(sum(units), 1), 2) AS avg_price "
        f"FROM {_db(ch)}.sales_1m FINAL GROUP BY sku ORDER BY total_revenue DESC, sku "
        f"LIMIT %(limit)s",
        {"limit": limit},
    )


def dead_letters_by_reason(ch: ClickHouseBackend) -> list[tuple[Any, ...]]:
    return ch.query(
        f"SELECT reason, count() AS n FROM {_db(ch)}.dead_letters FINAL "
        f"GROUP BY reason ORDER BY n DESC, reason"
    )


def price_changes_by_reason(ch: ClickHouseBackend) -> list[tuple[Any, ...]]:
    return ch.query(
        f"SELECT arrayJoin(reasons) AS reason, count() AS n FROM {_db(ch)}.price_changes FINAL "
        f"GROUP BY reason ORDER BY n DESC, reason"
    )


def conversion_by_sku(ch: ClickHouseBackend, limit: int = 5) -> list[tuple[Any, ...]]:
    db = _db(ch)
    return ch.query(
        f"SELECT c.sku, sum(c.views) AS total_views, sum(s.units) AS total_units, "
        f"round(sum(s.units) / greatest(sum(c.views), 1), 4) AS units_per_view "
        f"FROM (SELECT sku, window_start, views FROM {db}.clicks_1m FINAL) AS c "
        f"ANY LEFT JOIN (SELECT sku, window_start, units FROM {db}.sales_1m FINAL) AS s "
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
        f"FROM {_db(ch)}.forecasts FINAL GROUP BY model ORDER BY wape, model"
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
