"""Additive upgrades of a database created by an older repricer: the columns it lacks, added.

``schema.sql`` creates missing tables (``CREATE TABLE IF NOT EXISTS``) but leaves an existing
table as it is. After it, ``init`` asks ``system.columns`` which registry columns each table
lacks and adds them with ``ALTER TABLE ... ADD COLUMN <name> <type> AFTER <previous>``, so the
column order ends up the one a fresh ``CREATE TABLE`` gives. Plain ``ADD COLUMN`` (no
``IF NOT EXISTS``, which ClickHouse 18.16 does not know) after the check runs on 18.16 and
chdb alike; old rows read the type's default ('' or 0). Only additions: a column the registry
no longer has, or one whose type changed, is left alone (that needs a written migration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from repricer.infra.clickhouse.backends import load_schema
from repricer.infra.clickhouse.tables import REGISTRY, Table, check_ident

Query = Callable[[str, Mapping[str, Any] | None], list[tuple[Any, ...]]]


def add_column_statements(database: str, table: Table, existing: Sequence[str]) -> list[str]:
    """The ``ALTER TABLE`` statements that give ``table`` the registry columns it lacks.

    >>> from repricer.infra.clickhouse.tables import FORECASTS
    >>> add_column_statements("db", FORECASTS, ["sku", "window_start", "model", "version"])
    ['ALTER TABLE db.forecasts ADD COLUMN predicted Float64 AFTER model', \
'ALTER TABLE db.forecasts ADD COLUMN actual Float64 AFTER predicted']
    >>> add_column_statements("db", FORECASTS, [])  # no such table: schema.sql creates it
    []
    """
    if not existing:
        return []
    have = set(existing)
    out: list[str] = []
    previous = None
    for column, ch_type in table.columns:
        if column not in have:
            where = f" AFTER {previous}" if previous else " FIRST"
            out.append(f"ALTER TABLE {table.at(database)} ADD COLUMN {column} {ch_type}{where}")
        previous = column
    return out


def upgrade(database: str, query: Query, run: Callable[[str], Any]) -> list[str]:
    """Add every missing registry column to the tables of ``database``; returns what ran."""
    check_ident(database, "database")
    done: list[str] = []
    for table in REGISTRY.values():
        rows = query(
            "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": database, "t": table.name},
        )
        for stmt in add_column_statements(database, table, [r[0] for r in rows]):
            run(stmt)
            done.append(stmt)
    return done


def init_schema(database: str, query: Query, run: Callable[[str], Any]) -> None:
    """What ``init`` does on either backend: ``schema.sql``'s statements, then :func:`upgrade`."""
    for stmt in load_schema(database):
        run(stmt)
    upgrade(database, query, run)
