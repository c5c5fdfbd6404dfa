"""Checking and converting the values of a batch, column by column, before an insert (both
backends)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from repricer.infra.clickhouse.backends import (
    Columns,
)
from repricer.infra.clickhouse.tables import COLUMN_TYPES, TABLES, row_type
from repricer.infra.clickhouse.tables import INT_RANGES as _INT_RANGES

# --------------------------------------------------------------------------- values in

# Integer columns are range-checked by building a C array of the matching width once per column
# (OverflowError names the problem; much cheaper than min() and max() over Python ints).
_INT_ARRAY_CODES = {"UInt32": "I", "UInt64": "Q", "Int32": "i", "Int64": "q"}
assert all(array(c).itemsize * 8 == int(t[-2:]) for t, c in _INT_ARRAY_CODES.items())


def _ms_to_seconds(value: Any, column: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{column}: expected epoch milliseconds, got bool")
    if isinstance(value, int):
        return value // 1000
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value / 1000)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return math.floor(aware.timestamp())
    raise TypeError(f"{column}: expected epoch milliseconds (int), got {value!r}")


def _first_bad(values: Sequence[Any], ok: Any) -> Any:
    return next(v for v in values if not ok(v))


def _check_range(values: Sequence[int], ch_type: str, column: str, what: str = "") -> None:
    try:
        array(_INT_ARRAY_CODES[ch_type], values)
    except OverflowError:
        lo, hi = _INT_RANGES[ch_type]
        bad = _first_bad(values, lambda v: lo <= v <= hi)
        raise ValueError(f"{column}: {bad!r} is outside {what or ch_type}") from None


def _check_column(values: Sequence[Any], ch_type: str, column: str) -> list[Any]:
    """One column normalised for ``ch_type`` (DateTime: int epoch seconds), checked as a whole.

    The fast paths look at the set of value types once (``set(map(type, values))`` runs in C),
    and at min/max for integer ranges; only a column that fails them is walked value by value,
    to name the offending value.
    """
    types = set(map(type, values))
    if ch_type == "DateTime":
        if types <= {int}:
            seconds = [v // 1000 for v in values]
        else:
            seconds = [_ms_to_seconds(v, column) for v in values]
        _check_range(seconds, "UInt32", column, "DateTime (epoch seconds)")
        return seconds
    if ch_type == "String":
        if types <= {str} or all(isinstance(v, str) for v in values):
            return values if isinstance(values, list) else list(values)
        bad = _first_bad(values, lambda v: isinstance(v, str))
        raise TypeError(f"{column}: expected str, got {type(bad).__name__}")
    if ch_type == "Float64":
        if types <= {float}:
            return values if isinstance(values, list) else list(values)
        if bool in types or not all(issubclass(t, int | float | Decimal) for t in types):
            bad = _first_bad(
                values, lambda v: isinstance(v, int | float | Decimal) and not isinstance(v, bool)
            )
            raise TypeError(f"{column}: expected a number, got {bad!r}")
        return [float(v) for v in values]
    if ch_type in _INT_RANGES:
        if not types <= {int}:
            bad = _first_bad(values, lambda v: type(v) is int)
            raise TypeError(f"{column}: expected int, got {bad!r}")
        _check_range(values, ch_type, column)
        return values if isinstance(values, list) else list(values)
    if ch_type == "Array(String)":
        out = []
        for value in values:
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(f"{column}: expected a list of str, got {value!r}")
            items = list(value)
            if not all(isinstance(v, str) for v in items):
                raise TypeError(f"{column}: expected a list of str, got {value!r}")
            out.append(items)
        return out
    raise TypeError(f"{column}: unsupported column type {ch_type}")  # pragma: no cover


def _seconds(values: Sequence[int]) -> list[int]:
    return [v // 1000 for v in values]


def _prepare_columns(
    table: str, columns: Columns, *, checked: bool = False
) -> tuple[int, list[list[Any]]]:
    """Validate a column batch against the table: (rows, columns in DDL order, normalised).

    ``checked``: the columns of ``row_type(table)`` were decoded against it, so they only
    need converting (DateTime to seconds); the others are checked as usual.
    """
    if table not in COLUMN_TYPES:
        raise ValueError(f"unknown table: {table!r}")
    names = TABLES[table]
    if columns.keys() != set(names):
        extra = sorted(set(columns) - set(names))
        missing = [n for n in names if n not in columns]
        raise ValueError(f"{table}: unknown columns {extra}, missing columns {missing}")
    lengths = {len(columns[n]) for n in names}
    if len(lengths) != 1:
        raise ValueError(f"{table}: columns of different lengths {sorted(lengths)}")
    n = lengths.pop()
    trusted = row_type(table).__struct_fields__ if checked else ()
    return n, [
        (_seconds(columns[name]) if t == "DateTime" else list(columns[name]))
        if name in trusted
        else _check_column(columns[name], t, name)
        for name, t in COLUMN_TYPES[table]
    ]


def rows_to_columns(table: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Transpose row mappings into columns, checking every row has exactly the table's columns."""
    if table not in COLUMN_TYPES:
        raise ValueError(f"unknown table: {table!r}")
    names = TABLES[table]
    want = set(names)
    for i, row in enumerate(rows):
        if row.keys() != want:
            extra = set(row) - want
            if extra:
                raise ValueError(f"{table} row {i}: unknown columns {sorted(extra)}")
            missing = [n for n in names if n not in row]
            raise ValueError(f"{table} row {i}: missing columns {missing}")
    return {name: [row[name] for row in rows] for name in names}
