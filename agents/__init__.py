"""Thin Faust agents: each module has ``register(rp)`` that attaches its agents to an app.

The logic they call lives in plain modules below them (``schemas.decode``, ``streams.engine``,
``streams.source_watermarks``, ``streams.metrics``, ``streams.queries``, ``infra.clickhouse``) so
it is testable without Kafka; what they share is in ``streams.worker``, ``streams.consumers``
and ``streams.dead_letters``. Agents never import ``streams.app`` (it imports them) nor each
other (``tests/unit/test_architecture.py``).
"""

from repricer.agents import ingest, sink, web, windows

__all__ = ["ingest", "sink", "web", "windows"]
