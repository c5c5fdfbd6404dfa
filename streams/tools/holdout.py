"""``repricer holdout draw``: a holdout stratified by category and sales level, to a file.

Reads each SKU's category from the compacted ``catalog`` topic (the latest record per SKU, up
to the topic's end: ``streams.topic_read``) and its units sold since ``since`` from
ClickHouse ``sales_1m``, draws the holdout (``streams.holdout_draw.draw``) and writes the file
that ``REPRICER_HOLDOUT_FILE`` names. Only catalogued SKUs are drawn (the engine prices no other);
catalog records that do not decode are counted, and the SKUs with sales but no catalog record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from repricer.infra.clickhouse import ClickHouseBackend, check_ident, connect
from repricer.infra.clickhouse.tables import SALES_1M
from repricer.schemas import CatalogItem, Rejection, decode
from repricer.streams.holdout_draw import Draw, check_fraction, draw, write_file
from repricer.streams.settings import Settings
from repricer.streams.topic_read import Progress, latest_per_key, read_topic


class NoCatalog(RuntimeError):
    """The catalog topic is missing or holds no SKU: there is nothing to draw from."""


@dataclass(frozen=True)
class Catalog:
    """SKU -> category (``""`` for none) of the latest record per SKU; records read; latest
    records that do not decode (ingest dead-lettered them)."""

    categories: dict[str, str]
    records: int
    undecodable: int


def latest_catalog_records(
    settings: Settings,
    topic: str,
    *,
    timeout_s: float = 600.0,
    progress: Progress | None = None,
) -> tuple[dict[bytes, bytes | None], int]:
    """The latest value per key of ``topic`` (None: a tombstone) and the records read, from the
    start of every partition to its end (``topic_read.read_topic``: the end offsets when the
    read starts, and ``REPRICER_TOPIC_READ_SETTLE_S`` for brokers whose end offsets lag);
    TimeoutError after ``timeout_s``."""
    latest, n = latest_per_key(read_topic(settings, topic, timeout_s=timeout_s, progress=progress))
    if progress:
        progress(f"{topic}: {len(latest)} keys")
    return latest, n


def read_catalog(settings: Settings, *, progress: Progress | None = None) -> Catalog:
    """The catalog topic's latest record per SKU, decoded as ingest decodes it; a tombstone
    removes its SKU; ``NoCatalog`` if no SKU is left."""
    topic = settings.topic_catalog
    latest, records = latest_catalog_records(settings, topic, progress=progress)
    categories: dict[str, str] = {}
    bad = 0
    for value in latest.values():
        if value is None:
            continue
        item = decode(value, CatalogItem, max_bytes=settings.max_payload_bytes)
        if isinstance(item, Rejection):
            bad += 1
        else:
            categories[item.sku] = item.category or ""
    if not categories:
        raise NoCatalog(
            f"no catalog: topic {topic!r} on {settings.broker} holds no SKU "
            f"({records} records read; is REPRICER_TOPIC_CATALOG right?)"
        )
    return Catalog(categories, records, bad)


def units_since(ch: ClickHouseBackend, since: datetime) -> dict[str, float]:
    """Units sold per SKU in the ``sales_1m`` windows starting at or after ``since``."""
    db = check_ident(ch.database, "database")
    rows = ch.query(
        f"SELECT sku, sum(units) FROM {SALES_1M.at(db)} FINAL "
        f"WHERE window_start >= toDateTime(%(s)s) GROUP BY sku",
        {"s": int(since.timestamp())},
    )
    return {str(sku): float(u) for sku, u in rows}


@dataclass(frozen=True)
class Drawn:
    """What ``draw_to_file`` did: the draw and what it read."""

    draw: Draw
    catalog: Catalog
    skus_with_sales: int
    sales_not_in_catalog: int


def draw_to_file(
    settings: Settings,
    *,
    fraction: float,
    salt: str,
    since: datetime,
    out: Path,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> Drawn:
    """Read the catalog and the sales, draw, write ``out`` (see the module docstring)."""
    say = progress or (lambda _msg: None)
    check_fraction(fraction)
    catalog = read_catalog(settings, progress=progress)
    say(f"catalog: {len(catalog.categories)} SKUs ({catalog.undecodable} undecodable records)")
    say(f"reading units sold since {since.isoformat()} from ClickHouse sales_1m")
    ch = connect(settings.clickhouse_url.get_secret_value())
    try:
        units = units_since(ch, since)
    finally:
        ch.close()
    sold = {s: u for s, u in units.items() if u > 0}
    stray = sum(1 for s in sold if s not in catalog.categories)
    say(f"sales: {len(sold)} SKUs sold something ({stray} of them not in the catalog: not drawn)")
    d = draw(catalog.categories, units, fraction=fraction, salt=salt)
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    header = [
        "repricer holdout: SKUs held out at their price (REPRICER_HOLDOUT_FILE)",
        f"drawn {when} from catalog topic {settings.topic_catalog!r} and units sold since "
        f"{since.isoformat(timespec='seconds')}",
    ]
    write_file(out, d, header)
    return Drawn(d, catalog, len(sold), stray)
