"""Thin Faust agents: each module has ``register(rp)`` that attaches its agents to an app.

The logic they call lives in plain modules (``schemas.decode``, ``streams.engine``,
``infra.clickhouse``) so it is testable without Kafka.
"""

from agents import ingest, sink, web, windows

__all__ = ["ingest", "sink", "web", "windows"]
