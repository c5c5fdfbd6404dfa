"""A holdout stratified by category and sales level, and the file that holds it.

``repricer holdout draw`` (and ``repricer backtest --holdout F --stratified``) split the
catalogue into *strata*: each category (a SKU without one is in category ``""``) crossed with
the SKU's sales level in it, ``none`` for a SKU that sold nothing in the window read, else the
tercile of its rank among the category's SKUs with sales, ``low``, ``mid`` or ``high`` (SKUs
with the same units share the lower level). In each stratum of ``n`` SKUs, the first
``round(fraction * n)`` (half up) in the order of ``bucket(sku, salt)`` (``blake2b`` of salt
and SKU, the hash of the plain holdout draw; ties by SKU) are held out. The draw is
deterministic for a salt; a new salt draws a new group. Every stratum is held out at the
fraction up to rounding, so the control group has the catalogue's mix of categories and sales
levels exactly, not only in expectation.

The file (``REPRICER_HOLDOUT_FILE``) lists one SKU a line; blank lines and lines starting with
``#`` (the header: fraction, salt, when drawn, the strata) are ignored. A file that cannot be
read, holds a line that is not a SKU, or lists no SKU is an error (``HoldoutFileError``): a
holdout is never silently empty.
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from repricer.schemas.events import SKU_MAX_LENGTH, SKU_PATTERN
from repricer.streams.engine.config import bucket

LEVELS = ("none", "low", "mid", "high")  # sales levels, in the order tables list them
SKU_LINE = re.compile(SKU_PATTERN)  # the catalog's SKU pattern (and SKU_MAX_LENGTH)


class HoldoutFileError(ValueError):
    """``REPRICER_HOLDOUT_FILE`` cannot be used: missing, unreadable, a bad line, no SKU."""


@dataclass(frozen=True)
class Stratum:
    """One category x sales level: its SKUs, and those held out (in draw order)."""

    category: str
    level: str
    skus: tuple[str, ...]
    held: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.category or '(none)'} / {self.level}"


@dataclass(frozen=True)
class Draw:
    """A stratified draw: its parameters and strata (sorted by category, then level)."""

    fraction: float
    salt: str
    strata: tuple[Stratum, ...]

    @property
    def held(self) -> frozenset[str]:
        return frozenset(s for st in self.strata for s in st.held)

    @property
    def skus(self) -> int:
        return sum(len(st.skus) for st in self.strata)


def check_fraction(fraction: float) -> float:
    """``fraction`` if it is in (0, 1), else ValueError."""
    if not 0.0 < fraction < 1.0:  # NaN fails too
        raise ValueError(
            f"the holdout fraction must be between 0 and 1 (exclusive), not {fraction}"
        )
    return fraction


def sales_levels(units: Mapping[str, float]) -> dict[str, str]:
    """Each SKU's level among ``units`` (one category's SKUs): ``none`` for no sales, else the
    tercile of its rank among those with sales, ties sharing the lower level.

    >>> sales_levels({"a": 0, "b": 1, "c": 1, "d": 5, "e": 9, "f": 20, "g": 30})
    {'a': 'none', 'b': 'low', 'c': 'low', 'd': 'mid', 'e': 'mid', 'f': 'high', 'g': 'high'}
    """
    sold = sorted(u for u in units.values() if u > 0)
    out = {}
    for sku, u in units.items():
        if u <= 0:
            out[sku] = "none"
        else:
            below = bisect_left(sold, u)  # SKUs that sold less
            out[sku] = LEVELS[1 + below * 3 // len(sold)]
    return out


def held_count(fraction: float, n: int) -> int:
    """``round(fraction * n)``, half up: SKUs held out of a stratum of ``n``.

    >>> [held_count(0.2, n) for n in (1, 2, 3, 5, 7, 10)]
    [0, 0, 1, 1, 1, 2]
    """
    return math.floor(fraction * n + 0.5 + 1e-9)


def draw(
    categories: Mapping[str, str], units: Mapping[str, float], *, fraction: float, salt: str
) -> Draw:
    """The stratified holdout of the SKUs of ``categories`` (SKU -> category, ``""`` for none),
    with their sales in ``units`` (a SKU absent there sold nothing); see the module docstring.

    >>> d = draw({f"s{i}": "a" if i < 10 else "b" for i in range(20)},
    ...          {f"s{i}": i % 5 for i in range(20)}, fraction=0.25, salt="x")
    >>> [(st.name, len(st.skus), len(st.held)) for st in d.strata]  # doctest: +NORMALIZE_WHITESPACE
    [('a / none', 2, 1), ('a / low', 4, 1), ('a / mid', 2, 1), ('a / high', 2, 1),
     ('b / none', 2, 1), ('b / low', 4, 1), ('b / mid', 2, 1), ('b / high', 2, 1)]
    """
    check_fraction(fraction)
    by_category: dict[str, dict[str, float]] = {}
    for sku, cat in categories.items():
        by_category.setdefault(cat, {})[sku] = float(units.get(sku, 0.0))
    strata = []
    for cat in sorted(by_category):
        levels = sales_levels(by_category[cat])
        for level in LEVELS:
            members = sorted(
                (s for s, lv in levels.items() if lv == level), key=lambda s: (bucket(s, salt), s)
            )
            if members:
                k = held_count(fraction, len(members))
                strata.append(Stratum(cat, level, tuple(members), tuple(members[:k])))
    return Draw(fraction=fraction, salt=salt, strata=tuple(strata))


def table(d: Draw) -> str:
    """The per-stratum table ``repricer holdout draw`` prints: stratum, SKUs, held out."""
    rows = [(st.name, str(len(st.skus)), str(len(st.held))) for st in d.strata]
    rows.append(("total", str(d.skus), str(len(d.held))))
    w = max(len("stratum"), *(len(r[0]) for r in rows))
    lines = [f"{'stratum':<{w}}  {'SKUs':>7}  {'held out':>8}"]
    lines += [f"{a:<{w}}  {b:>7}  {c:>8}" for a, b, c in rows]
    return "\n".join(lines)


def write_file(path: Path, d: Draw, header: Iterable[str] = ()) -> None:
    """The held-out SKUs of ``d`` to ``path``, one a line in SKU order, under a ``#`` header
    (``header`` lines first, then fraction, salt and the strata); written to a temporary file
    and renamed, so a reader never sees half of it."""
    lines = [f"# {h}" for h in header]
    lines.append(f"# fraction {d.fraction}, salt {d.salt!r}: {len(d.held)} of {d.skus} SKUs")
    lines.append("# strata (category / sales level: SKUs, held out):")
    lines += [f"#   {st.name}: {len(st.skus)}, {len(st.held)}" for st in d.strata]
    lines += sorted(d.held)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_file(path: str | Path) -> frozenset[str]:
    """The SKUs a holdout file lists; ``HoldoutFileError`` if it cannot be read, a line is not
    a SKU, or it lists none."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise HoldoutFileError(f"holdout file {str(path)!r} cannot be read: {e}") from e
    skus = set()
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > SKU_MAX_LENGTH or not SKU_LINE.match(line):
            raise HoldoutFileError(
                f"holdout file {str(path)!r}, line {no}: {line[:80]!r} is not a SKU"
            )
        skus.add(line)
    if not skus:
        raise HoldoutFileError(f"holdout file {str(path)!r} lists no SKU")
    return frozenset(skus)
