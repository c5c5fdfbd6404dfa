"""``BackendBase``: what the two ClickHouse backends (native.py, embedded.py) share.

``init`` (schema.sql, then the additive upgrade), ``insert`` (rows transposed to columns) and
the checks of ``insert_columns`` are the same on both; a backend supplies how it runs a
statement (``_execute``), how it writes a checked batch (``_insert_prepared``) and ``query``.
The protocol callers see is ``ClickHouseBackend`` in backends.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from repricer.infra.clickhouse.backends import Columns
from repricer.infra.clickhouse.migrate import init_schema
from repricer.infra.clickhouse.tables import TABLES
from repricer.infra.clickhouse.values import _prepare_columns, rows_to_columns


class BackendBase(ABC):
    """The shared half of a backend; subclasses set ``database`` and implement the hooks."""

    database: str

    @abstractmethod
    def _execute(self, sql: str) -> Any:
        """Run one statement (the DDL of ``init``)."""

    @abstractmethod
    def _insert_prepared(self, table: str, into: str, values: list[list[Any]]) -> None:
        """Write a checked batch: ``values``, one list per column of ``table`` in DDL order;
        ``into`` is ``database.table (col, ...)`` for the ``INSERT INTO``."""

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query with ``%(name)s`` parameters; rows as tuples."""

    def init(self) -> None:
        init_schema(self.database, self.query, self._execute)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        return self.insert_columns(table, rows_to_columns(table, rows))

    def insert_columns(self, table: str, columns: Columns, *, checked: bool = False) -> int:
        n, values = _prepare_columns(table, columns, checked=checked)
        if not n:
            return 0
        cols = ", ".join(TABLES[table])
        self._insert_prepared(table, f"{self.database}.{table} ({cols})", values)
        return n
