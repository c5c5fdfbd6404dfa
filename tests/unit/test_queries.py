"""The documented queries: values go in as parameters, the database name only if it is plain."""

from __future__ import annotations

from typing import Any

import pytest

from repricer.streams import queries

ALL = (
    queries.row_counts,
    queries.top_skus_by_revenue,
    queries.dead_letters_by_reason,
    queries.price_changes_by_reason,
    queries.conversion_by_sku,
    queries.forecast_accuracy,
)


class Recorder:
    def __init__(self, database: str) -> None:
        self.database = database
        self.calls: list[tuple[str, Any]] = []

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.calls.append((sql, params))
        return [(0,)] if "count()" in sql and "GROUP BY" not in sql else []


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_a_database_name_that_is_not_plain_never_reaches_sql(fn: Any) -> None:
    ch = Recorder("repricer.sales_1m; DROP TABLE repricer.sales_1m --")
    with pytest.raises(ValueError, match="invalid database name"):
        fn(ch)
    assert ch.calls == []


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_queries_read_final_and_pass_values_as_parameters(fn: Any) -> None:
    ch = Recorder("shop_1")
    fn(ch)
    assert ch.calls
    for sql, params in ch.calls:
        assert "shop_1." in sql and "FINAL" in sql
        if "LIMIT" in sql:
            assert "LIMIT %(limit)s" in sql and params == {"limit": 5}
