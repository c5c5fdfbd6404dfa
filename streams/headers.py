"""Kafka headers on every record repricer produces, so consumers can route without parsing.

Every record carries ``content-type`` (``application/json``), ``repricer-schema`` (the name of
its contract in ``schemas/json``, e.g. ``PriceChange``), ``repricer-schema-version`` and who
produced it: ``repricer-producer`` (``repricer/<version>``) and ``repricer-worker`` (host and
process id). Dead letters add their provenance (``streams.dead_letters``); a record that
``repricer dlq resend`` sends again carries ``repricer-resend-of``.

The header tuples are built once per schema; each send passes ``list(...)`` of them (a list of
its own: Faust's tracing sensor adds to the list it is given).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterable

Headers = tuple[tuple[str, bytes], ...]

CONTENT_TYPE = "content-type"
SCHEMA = "repricer-schema"
SCHEMA_VERSION = "repricer-schema-version"
PRODUCER = "repricer-producer"
WORKER = "repricer-worker"
RESEND_OF = "repricer-resend-of"
JSON = "application/json"

# contract name -> schema version of what repricer writes today
SCHEMA_VERSIONS: dict[str, int] = {
    "PriceChange": 1,
    "PriceState": 1,
    "DeadLetter": 2,
    "SalesWindow": 1,
    "ClicksWindow": 1,
    "ForecastRow": 1,
    "ShadowDecision": 1,  # would-be changes in shadow mode (topic price-changes-shadow)
    "Envelope": 1,  # the internal messages on <app_id>-sku-events (streams.envelope)
    "ControlCommand": 1,  # `repricer control`
    "Order": 1,  # `repricer dlq resend` sends input records again
    "Click": 1,
    "CatalogItem": 1,
}


@functools.cache
def repricer_version() -> str:
    """The installed package's version (``0+unknown`` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("repricer")
    except PackageNotFoundError:  # pragma: no cover - always installed in the venv
        return "0+unknown"


@functools.cache
def worker_id() -> str:
    """This process: ``<host>/<pid>``."""
    return f"{socket.gethostname()}/{os.getpid()}"


@functools.cache
def produced(schema: str) -> Headers:
    """The headers of a record whose value is a ``schema`` message (a name in
    :data:`SCHEMA_VERSIONS`), produced by this process.

    >>> dict(produced("PriceChange"))["repricer-schema-version"]
    b'1'
    """
    return (
        (CONTENT_TYPE, JSON.encode()),
        (SCHEMA, schema.encode()),
        (SCHEMA_VERSION, str(SCHEMA_VERSIONS[schema]).encode()),
        (PRODUCER, f"repricer/{repricer_version()}".encode()),
        (WORKER, worker_id().encode()),
    )


def header(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The last value of header ``name`` as text, or None.

    >>> header([("a", b"1"), ("a", b"2")], "a")
    '2'
    """
    found: str | None = None
    for k, v in headers or ():
        if k == name:
            found = "" if v is None else v.decode("utf-8", errors="replace")
    return found
