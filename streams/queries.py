"""The SQL over the sink's tables: the documented analyst queries, and the dashboard's
(``History``, served by the web agent's ``/api/...``).

Every one reads with ``FINAL`` so replays never double-count. All of it runs on ClickHouse 18.16
and on current ClickHouse (chdb): no window functions, no DateTime64, no aliases that shadow a
column inside an aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from repricer.infra.clickhouse import ClickHouseBackend, check_ident, connect
from repricer.infra.clickhouse.tables import (
    CLICKS_1M,
    DEAD_LETTERS,
    FORECASTS,
    PRICE_CHANGES,
    REGISTRY,
    SALES_1M,
)
from repricer.streams.uplift import report as uplift_report

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


# ------------------------------------------------------------------ the dashboard's queries


def _ms(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


def _num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(row: Iterable[Any]) -> list[Any]:
    out = []
    for v in row:
        if isinstance(v, list):
            out.append([_ms(x) for x in v])
        else:
            out.append(_num(_ms(v)))
    return out


# Columns the API returns as they are stored, under their own names (checked against the
# registry when this module is imported).
_RECENT_CHANGE = PRICE_CHANGES.pick(
    "event_id", "sku", "old_price", "new_price", "currency", "decided_at",
    "window_start", "reasons", "guardrails", "elasticity",
)  # fmt: skip
_SKU_SALES = SALES_1M.pick("window_start", "orders", "units", "revenue", "price")
_SKU_CLICKS = CLICKS_1M.pick("window_start", "views", "add_to_cart", "remove_from_cart")
_SKU_CHANGES = PRICE_CHANGES.pick(
    "window_start", "decided_at", "old_price", "new_price", "event_id"
)
_SKU_FORECASTS = FORECASTS.pick("window_start", "model", "predicted", "actual")


class History:
    """The dashboard's ClickHouse queries; blocking, run them in :attr:`pool`."""

    def __init__(self, url: str, *, window_s: int) -> None:
        self._url = url
        self._backend: ClickHouseBackend | None = None
        self.window_s = window_s
        # one thread: chdb serialises anyway, and the native client holds one connection
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-clickhouse")

    @property
    def db(self) -> str:
        return check_ident(self.ch.database, "database")  # the only unparameterised SQL text

    @property
    def ch(self) -> ClickHouseBackend:
        if self._backend is None:
            # A second backend next to the sink's: a separate server connection, or a second
            # chdb connection to the same path (chdb allows any number of those in a process;
            # the backend's process-wide lock serialises the calls). init() is idempotent and
            # makes the tables exist even before the sink's first insert.
            backend = connect(self._url)
            backend.init()
            self._backend = backend
        return self._backend

    def q(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return [_clean(r) for r in self.ch.query(sql, params)]

    def recent_changes(self, limit: int) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT {', '.join(_RECENT_CHANGE)} FROM {PRICE_CHANGES.at(self.db)} FINAL "
            f"ORDER BY decided_at DESC, window_start DESC, event_id LIMIT %(limit)s",
            {"limit": limit},
        )
        return [dict(zip(_RECENT_CHANGE, r, strict=True)) for r in rows]

    def skus(self, limit: int) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT sku, count() AS n_windows, sum(units) AS total_units, "
            f"max(window_start) AS last_window FROM {SALES_1M.at(self.db)} FINAL "
            f"GROUP BY sku ORDER BY total_units DESC, sku LIMIT %(limit)s",
            {"limit": limit},
        )
        return [{"sku": r[0], "windows": r[1], "units": r[2], "last_window": r[3]} for r in rows]

    def sku(self, sku: str, windows: int) -> dict[str, Any]:
        p = {"sku": sku, "n": windows}
        db = self.db
        sales = self.q(
            f"SELECT {', '.join(_SKU_SALES)} FROM {SALES_1M.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC LIMIT %(n)s",
            p,
        )
        clicks = self.q(
            f"SELECT {', '.join(_SKU_CLICKS)} FROM {CLICKS_1M.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC LIMIT %(n)s",
            p,
        )
        changes = self.q(
            f"SELECT {', '.join(_SKU_CHANGES)} FROM {PRICE_CHANGES.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC, decided_at DESC LIMIT %(n)s",
            p,
        )
        forecasts = self.q(
            f"SELECT {', '.join(_SKU_FORECASTS)} FROM {FORECASTS.at(db)} FINAL "
            f"WHERE sku = %(sku)s ORDER BY window_start DESC, model LIMIT %(nf)s",
            {**p, "nf": windows * 8},
        )
        return {
            "sku": sku,
            "window_ms": self.window_s * 1000,
            "sales": [dict(zip(_SKU_SALES, r, strict=True)) for r in reversed(sales)],
            "clicks": [dict(zip(_SKU_CLICKS, r, strict=True)) for r in reversed(clicks)],
            "price_changes": [dict(zip(_SKU_CHANGES, r, strict=True)) for r in reversed(changes)],
            "forecasts": [dict(zip(_SKU_FORECASTS, r, strict=True)) for r in reversed(forecasts)],
        }

    def model_errors(self, bucket_windows: int, buckets: int) -> dict[str, Any]:
        bucket_s = max(1, bucket_windows) * self.window_s
        rows = self.q(
            f"SELECT model, intDiv(toUInt32(window_start), %(bucket)s) * %(bucket)s AS bucket_start, "
            f"avg(abs(predicted - actual)) AS mae, count() AS n "
            f"FROM {FORECASTS.at(self.db)} FINAL "
            f"WHERE predicted = predicted AND actual = actual "
            f"AND toUInt32(window_start) >= "
            f"(SELECT toUInt32(max(window_start)) FROM {FORECASTS.at(self.db)} FINAL) - %(span)s "
            f"GROUP BY model, bucket_start ORDER BY model, bucket_start",
            {"bucket": bucket_s, "span": bucket_s * buckets},
        )
        series: dict[str, list[dict[str, Any]]] = {}
        for model, start, mae, n in rows:
            series.setdefault(model, []).append({"t": int(start) * 1000, "mae": mae, "n": n})
        return {"bucket_windows": bucket_windows, "bucket_ms": bucket_s * 1000, "models": series}

    def guardrails(self) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT arrayJoin(guardrails) AS rule, count() AS n "
            f"FROM {PRICE_CHANGES.at(self.db)} FINAL GROUP BY rule ORDER BY n DESC, rule"
        )
        return [{"rule": r, "n": n} for r, n in rows]

    def dlq(self) -> list[dict[str, Any]]:
        rows = self.q(
            f"SELECT reason, count() AS n FROM {DEAD_LETTERS.at(self.db)} FINAL "
            f"GROUP BY reason ORDER BY n DESC, reason"
        )
        return [{"reason": r, "n": n} for r, n in rows]

    def uplift(
        self,
        holds: Callable[[str], bool],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]:
        """``repricer report --uplift``'s estimate (``streams.uplift.report``), by default
        around the policy's first live decision and up to now."""
        return uplift_report(self.ch, holds=holds, window_s=self.window_s, since=since, until=until)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self.pool.shutdown(wait=False)
