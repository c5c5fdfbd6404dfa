"""The table registry: every ClickHouse table repricer writes, described once.

Each :class:`Table` says, for one table: its columns with their ClickHouse types in DDL order
(``version UInt64`` last), its natural key (the ``ORDER BY`` of its ReplacingMergeTree), the
column its ``PARTITION BY toYYYYMM(...)`` uses, which column the ``version`` is copied from
when a row is written, and the message struct its rows arrive as on Kafka. From that come the
row type the sink decodes against (:func:`row_type`: every column typed and bounded like in
ClickHouse), the tag of the ``aggregates`` messages (``{"t": table.tag, "r": row}``) and the
names every query puts into SQL text (:meth:`Table.at`, :meth:`Table.pick`).

The DDL itself stays in ``schema.sql``, written by hand: it is the file operators read and
review, ``docker-compose.yml`` mounts it into the ClickHouse container's init directory (so a
server gets its tables without any Python), and it must run unchanged on ClickHouse 18.16 and
on chdb, which is easiest to guarantee for SQL one can read. The registry is checked against it
on both backends instead (``tests/unit/infra/test_tables.py`` reads schema.sql;
``tests/integration/test_clickhouse_backends.py`` creates the tables on the 18.16 server and on
chdb and compares columns, types, key, partition and version column).

Adding a table
--------------
1. Write its ``CREATE TABLE IF NOT EXISTS repricer.<name>`` in ``schema.sql`` (the rules at the
   top of that file: no DateTime64, LowCardinality, TTL, Map or JSON), with
   ``ENGINE = ReplacingMergeTree(version)``, ``PARTITION BY toYYYYMM(<a DateTime column>)``,
   ``ORDER BY (<natural key>)`` and ``version UInt64`` as the last column.
2. Define one :class:`Table` below and add it to :data:`REGISTRY`: the same columns and types
   in the same order, ``key``, ``partition_by``, ``version_from`` and ``message``. Column types
   are those the backends convert (:data:`COLUMN_KINDS`); a new one needs support in
   ``values.py``. An entry that contradicts itself fails when the module is imported.
3. Its rows reach the sink either as window-agent aggregates -- ``aggregate=True``; the message
   struct's fields must then be exactly the columns but ``version``, the sink decodes them by
   ``tag`` without further code, and the engine sends ``{"t": TABLE.tag, "r": row}`` on the
   ``aggregates`` topic -- or from a topic of their own, whose messages the sink turns into
   columns (``agents/sink.py``: a ``*_columns`` function and an entry in ``register``).

Nothing else lists tables: the backends, ``repricer report``'s row counts and the sink's
decoder pick the new table up from the registry.
``pytest tests/unit/infra/test_tables.py tests/integration/test_clickhouse_backends.py`` then checks
the entry against the DDL on ClickHouse 18.16 and chdb (``test_adding_a_table_by_the_recipe``
follows these steps on a copy of ``infra/`` and writes through the sink on chdb).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Struct

from repricer.schemas.events import (
    ClicksWindow,
    DeadLetter,
    ForecastRow,
    PriceChange,
    SalesWindow,
    ShadowDecision,
)

__all__ = [
    "AGGREGATES",
    "CLICKS_1M",
    "COLUMN_KINDS",
    "COLUMN_TYPES",
    "DEAD_LETTERS",
    "FORECASTS",
    "PRICE_CHANGES",
    "REGISTRY",
    "SALES_1M",
    "SHADOW_DECISIONS",
    "TABLES",
    "Table",
    "check_ident",
    "row_type",
]

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Integer ClickHouse types the backends range-check, with their bounds.
INT_RANGES = {
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}
# Every column type the backends can validate and convert (``values._check_column``).
COLUMN_KINDS = frozenset({"String", "Float64", "DateTime", "Array(String)", *INT_RANGES})


def check_ident(name: str, what: str = "identifier") -> str:
    """``name`` if it is a plain SQL identifier (``^[A-Za-z_][A-Za-z0-9_]*$``), else ValueError.

    The only thing ever put into SQL text unescaped; every value goes in as a parameter.

    >>> check_ident("repricer", "database")
    'repricer'
    >>> check_ident("x; DROP TABLE y", "database")
    Traceback (most recent call last):
    ...
    ValueError: invalid database name: 'x; DROP TABLE y'
    """
    if not _IDENT_RE.match(name):
        raise ValueError(f"invalid {what} name: {name!r}")
    return name


@dataclass(frozen=True)
class Table:
    """One ClickHouse table: see the module docstring. Checked when it is built."""

    name: str
    columns: tuple[tuple[str, str], ...]
    """(column, ClickHouse type) in DDL order; the last is ``("version", "UInt64")``."""
    key: tuple[str, ...]
    """The natural key: ``ORDER BY`` of the ReplacingMergeTree (rows with equal keys collapse)."""
    partition_by: str
    """The DateTime column of ``PARTITION BY toYYYYMM(...)``."""
    version_from: str
    """The column whose value a written row's ``version`` is (the highest version wins)."""
    message: type[Struct]
    """The struct the rows arrive as on Kafka (the sink decodes from it)."""
    aggregate: bool = False
    """Rows travel on the ``aggregates`` topic as ``{"t": tag, "r": message}``."""

    def __post_init__(self) -> None:
        check_ident(self.name, "table")
        names = [c for c, _ in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate columns")
        for column, ch_type in self.columns:
            check_ident(column, "column")
            if ch_type not in COLUMN_KINDS:
                raise ValueError(f"{self.name}.{column}: unsupported type {ch_type}")
        if self.columns[-1:] != (("version", "UInt64"),):
            raise ValueError(f"{self.name}: the last column must be `version UInt64`")
        types = dict(self.columns)
        for column in (*self.key, self.partition_by, self.version_from):
            if column not in types:
                raise ValueError(f"{self.name}: {column!r} is not a column")
        if types[self.partition_by] != "DateTime":
            raise ValueError(f"{self.name}: partition_by must be a DateTime column")
        if self.aggregate and self.message.__struct_fields__ != tuple(names[:-1]):
            raise ValueError(
                f"{self.name}: {self.message.__name__}'s fields must be the columns but version"
            )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    @property
    def tag(self) -> str:
        """The ``t`` of this table's ``aggregates`` messages: ``{"t": tag, "r": row}``."""
        if not self.aggregate:
            raise ValueError(f"{self.name} rows are not sent as aggregates")
        return self.name

    @property
    def row_type(self) -> type[Struct]:
        """:func:`row_type` of this table."""
        return row_type(self.name)

    def at(self, database: str) -> str:
        """``database.table`` for SQL text, the database name checked first.

        >>> SALES_1M.at("shop_1")
        'shop_1.sales_1m'
        """
        return f"{check_ident(database, 'database')}.{self.name}"

    def pick(self, *names: str) -> tuple[str, ...]:
        """``names``, each checked to be a column of this table (ValueError otherwise).

        >>> ", ".join(CLICKS_1M.pick("sku", "views"))
        'sku, views'
        """
        have = set(self.column_names)
        unknown = [n for n in names if n not in have]
        if unknown:
            raise ValueError(f"{self.name} has no columns {unknown}")
        return names


SALES_1M = Table(
    "sales_1m",
    (
        ("sku", "String"),
        ("window_start", "DateTime"),
        ("window_end", "DateTime"),
        ("orders", "UInt32"),
        ("units", "UInt64"),
        ("revenue", "Float64"),
        ("price", "Float64"),
        ("late_events", "UInt32"),
        ("cost", "Float64"),  # added for the uplift's profit (``migrate.py`` adds it)
        ("version", "UInt64"),
    ),
    key=("sku", "window_start"),
    partition_by="window_start",
    version_from="window_end",
    message=SalesWindow,
    aggregate=True,
)

CLICKS_1M = Table(
    "clicks_1m",
    (
        ("sku", "String"),
        ("window_start", "DateTime"),
        ("window_end", "DateTime"),
        ("views", "UInt32"),
        ("add_to_cart", "UInt32"),
        ("remove_from_cart", "UInt32"),
        ("version", "UInt64"),
    ),
    key=("sku", "window_start"),
    partition_by="window_start",
    version_from="window_end",
    message=ClicksWindow,
    aggregate=True,
)

PRICE_CHANGES = Table(
    "price_changes",
    (
        ("event_id", "String"),
        ("sku", "String"),
        ("old_price", "Float64"),
        ("new_price", "Float64"),
        ("currency", "String"),
        ("decided_at", "DateTime"),
        ("effective_at", "DateTime"),
        ("window_start", "DateTime"),
        ("reasons", "Array(String)"),
        ("forecast_old", "Float64"),
        ("forecast_new", "Float64"),
        ("elasticity", "Float64"),
        ("model_versions", "String"),
        ("guardrails", "Array(String)"),
        ("policy_version", "String"),
        ("category", "String"),
        ("issued_by", "String"),
        ("note", "String"),
        ("version", "UInt64"),
    ),
    key=("sku", "window_start", "event_id"),
    partition_by="window_start",
    version_from="decided_at",
    message=PriceChange,
)

DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("source_topic", "String"),
        ("source_partition", "Int32"),
        ("source_offset", "Int64"),
        ("reason", "String"),
        ("detail", "String"),
        ("payload_excerpt", "String"),
        ("received_at", "DateTime"),
        # added with DeadLetter v2 (an existing table gets them from ``migrate.py``)
        ("payload", "String"),
        ("payload_encoding", "String"),
        ("payload_size", "Int64"),
        ("payload_truncated", "UInt32"),
        ("payload_kind", "String"),
        ("record_key", "String"),
        ("key_encoding", "String"),
        ("source_timestamp", "Int64"),
        ("repricer_version", "String"),
        ("resend_of", "String"),
        ("version", "UInt64"),
    ),
    key=("source_topic", "source_partition", "source_offset"),
    partition_by="received_at",
    version_from="received_at",
    message=DeadLetter,
)

FORECASTS = Table(
    "forecasts",
    (
        ("sku", "String"),
        ("window_start", "DateTime"),
        ("model", "String"),
        ("predicted", "Float64"),
        ("actual", "Float64"),
        ("version", "UInt64"),
    ),
    key=("sku", "window_start", "model"),
    partition_by="window_start",
    version_from="window_start",
    message=ForecastRow,
    aggregate=True,
)

SHADOW_DECISIONS = Table(
    "shadow_decisions",
    (
        ("event_id", "String"),
        ("sku", "String"),
        ("mode", "String"),
        ("current_price", "Float64"),
        ("would_price", "Float64"),
        ("cost", "Float64"),
        ("currency", "String"),
        ("decided_at", "DateTime"),
        ("window_start", "DateTime"),
        ("reasons", "Array(String)"),
        ("guardrails", "Array(String)"),
        ("forecast_old", "Float64"),
        ("forecast_new", "Float64"),
        ("expected_gain", "Float64"),
        ("model_versions", "String"),
        ("policy_version", "String"),
        ("version", "UInt64"),
    ),
    key=("sku", "window_start", "event_id"),
    partition_by="window_start",
    version_from="decided_at",
    message=ShadowDecision,
    aggregate=True,
)

REGISTRY: Mapping[str, Table] = {
    t.name: t
    for t in (
        SALES_1M,
        CLICKS_1M,
        PRICE_CHANGES,
        DEAD_LETTERS,
        FORECASTS,
        SHADOW_DECISIONS,
    )
}
"""Every table by name, in schema.sql order."""

AGGREGATES: tuple[Table, ...] = tuple(t for t in REGISTRY.values() if t.aggregate)
"""The tables whose rows the window agent sends on the ``aggregates`` topic."""

# table -> ((column, ClickHouse type), ...) in DDL order
COLUMN_TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    name: t.columns for name, t in REGISTRY.items()
}
# table -> column names in DDL order
TABLES: dict[str, tuple[str, ...]] = {name: t.column_names for name, t in REGISTRY.items()}


def _field_type(ch_type: str) -> Any:
    if ch_type == "String":
        return str
    if ch_type == "Float64":
        return float
    if ch_type == "Array(String)":
        return list[str]
    if ch_type == "DateTime":  # epoch milliseconds, as every repricer timestamp
        return Annotated[int, msgspec.Meta(ge=0, le=(2**32 - 1) * 1000 + 999)]
    lo, hi = INT_RANGES[ch_type]
    if hi >= 2**63:  # msgspec bounds must fit an int64; its ints end at 2**64 - 1 anyway
        return Annotated[int, msgspec.Meta(ge=lo)]
    return Annotated[int, msgspec.Meta(ge=lo, le=hi)]


@functools.cache
def row_type(table: str) -> type[Struct]:
    """A msgspec Struct of ``table``'s columns but ``version`` (set by whoever writes the row),
    each typed and bounded like its ClickHouse column, DateTime as epoch ms.

    Decoding JSON against it *is* the validation ``insert_columns`` does, done in C while
    decoding; columns taken from such decoded rows can be inserted with ``checked=True``.

    >>> import msgspec
    >>> Row = row_type("forecasts")
    >>> msgspec.json.decode(
    ...     b'{"sku":"A","window_start":60000,"model":"m","predicted":1.5,"actual":2}', type=Row
    ... )
    ForecastsRow(sku='A', window_start=60000, model='m', predicted=1.5, actual=2.0)
    >>> msgspec.json.decode(b'{"sku":"A","window_start":-1}', type=Row)
    Traceback (most recent call last):
    ...
    msgspec.ValidationError: Expected `int` >= 0 - at `$.window_start`
    >>> msgspec.json.decode(b'{"sku":"A","window_start":0,"window_end":60000,"orders":1,'
    ...     b'"units":2,"revenue":5.0,"price":2.5,"late_events":0}', type=row_type("sales_1m")).cost
    0.0
    """
    if table not in REGISTRY:
        raise ValueError(f"unknown table: {table!r}")
    name = "".join(part.title() for part in table.split("_")) + "Row"
    t = REGISTRY[table]
    # an aggregate's field its message struct gives a default (a column added later) may be
    # absent: a message from before the column existed decodes with that default
    defaults = {
        f.name: f.default
        for f in (msgspec.structs.fields(t.message) if t.aggregate else ())
        if f.default is not msgspec.NODEFAULT
    }
    fields = [
        (c, _field_type(ct), defaults[c]) if c in defaults else (c, _field_type(ct))
        for c, ct in t.columns
        if c != "version"
    ]
    # only str/int/float/list[str] fields: never in a reference cycle, so untracked by the gc
    return msgspec.defstruct(name, fields, kw_only=True, frozen=True, gc=False)
