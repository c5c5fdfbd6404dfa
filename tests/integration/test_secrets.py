"""Configured passwords never show: not in settings' repr/str/JSON, logs, CLI output or errors.

Distinctive Kafka (SASL), Kafka key-file and ClickHouse passwords are configured; then
everything that prints, logs or raises is collected -- settings, a worker run at debug level,
the CLI, failed connections (wrong password, wrong port, a broker refusing SASL) -- and searched
for the passwords, plain and percent-encoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import KafkaAdminClient
from pydantic import ValidationError

from repricer.infra.clickhouse import ClickHouseAuthError, ClickHouseUnavailable, connect
from repricer.infra.kafka_client import aiokafka_config, kafka_python_config
from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.infra.local.tansu import TansuBroker, free_port
from repricer.streams.app import create_app
from repricer.streams.settings import Settings, settings_reference
from repricer.streams.tools.runner import WorkerProcess, settings_env
from tests.conftest import CLICKHOUSE_APP_USER

pytestmark = pytest.mark.integration

KAFKA_PW = f"kafka-pw-{uuid.uuid4().hex}"
KEY_PW = f"key-pw-{uuid.uuid4().hex}"
CH_PW = f"ch-pw-{uuid.uuid4().hex}:@/"
SECRETS = (KAFKA_PW, KEY_PW, CH_PW, quote(CH_PW, safe=""), CH_PW.split(":")[0])


def assert_clean(text: str) -> None:
    assert text, "nothing collected: the check would pass vacuously"
    for s in SECRETS:
        i = text.find(s)
        assert i < 0, f"a password leaked:\n{text[max(0, i - 1500) : i + 200]}"


def said(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def secret_settings(broker: str, ch_port: int, tmp: Path, **kw: object) -> Settings:
    return Settings(
        app_id=f"sec-{uuid.uuid4().hex[:6]}",
        broker=broker,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_username="shop-app",
        kafka_password=KAFKA_PW,
        kafka_ssl_key_password=KEY_PW,
        clickhouse_url=f"clickhouse://{CLICKHOUSE_APP_USER}:{quote(CH_PW, safe='')}"
        f"@127.0.0.1:{ch_port}/repricer",
        data_dir=str(tmp / "faust"),
        **kw,  # type: ignore[arg-type]
    )


def test_settings_never_show_passwords(tmp_path: Path) -> None:
    s = secret_settings("kafka://127.0.0.1:9", 9, tmp_path)
    assert s.kafka_password is not None and s.kafka_password.get_secret_value() == KAFKA_PW
    texts = [
        repr(s),
        str(s),
        f"{s!s} {s!r}",
        s.model_dump_json(),
        json.dumps(s.model_dump(), default=str),
    ]
    texts.append(settings_reference())
    assert f"{CLICKHOUSE_APP_USER}:***@127.0.0.1" in repr(s)
    # the helper hands the password to the clients, and only to them
    assert aiokafka_config(s)["sasl_plain_password"] == KAFKA_PW
    assert kafka_python_config(s)["sasl_mechanism"] == "SCRAM-SHA-256"
    # validation errors do not echo the rejected input (an unencoded password, say)
    bad_urls = [f"clickhouse://app:{CH_PW}x@db:9000/x", f"clickhouse://app:{CH_PW}/x@db/x"]
    for url in bad_urls:
        with pytest.raises(ValidationError) as info:
            Settings(clickhouse_url=url)
        texts.append(said(info.value))
    with pytest.raises(ValidationError) as info:
        Settings(kafka_security_protocol="SASL_SSL", kafka_password=KAFKA_PW, partitions="x")
    texts.append(said(info.value))
    assert "kafka_username" in texts[-1] or "partitions" in texts[-1]
    assert_clean("\n".join(texts))


def test_logs_and_connection_errors_never_show_passwords(
    broker: TansuBroker,
    clickhouse_server: ClickHouseServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    s = secret_settings(broker.url, clickhouse_server.tcp_port, tmp_path)
    texts: list[str] = []

    create_app(s)  # builds the Faust app with the SASL credentials

    # ClickHouse: the real server refuses the password; nothing listens on the other port
    ch = connect(s.clickhouse_url.get_secret_value())
    texts.append(repr(ch) + str(ch))
    with pytest.raises(ClickHouseAuthError) as auth:
        ch.init()
    ch.close()
    texts.append(said(auth.value))
    dead_port = s.clickhouse_url.get_secret_value().replace(
        f":{clickhouse_server.tcp_port}/", f":{free_port()}/"
    )
    ch = connect(dead_port)
    with pytest.raises(ClickHouseUnavailable) as down:
        ch.query("SELECT 1")
    ch.close()
    texts.append(said(down.value))

    # Kafka: the plain broker refuses the SCRAM handshake; nothing listens on the other port
    async def start(settings: Settings) -> None:
        p = AIOKafkaProducer(request_timeout_ms=3000, **aiokafka_config(settings))
        try:
            await p.start()
        finally:
            await p.stop()

    for target in (s, s.model_copy(update={"broker": f"kafka://127.0.0.1:{free_port()}"})):
        with pytest.raises(Exception) as kafka_err:
            asyncio.run(start(target))
        texts.append(said(kafka_err.value))
    with pytest.raises(Exception) as admin_err:
        KafkaAdminClient(bootstrap_timeout_ms=3000, **kafka_python_config(s))
    texts.append(said(admin_err.value))

    logs = caplog.text
    # the SCRAM handshake really was attempted with the configured mechanism
    assert "UnsupportedSaslMechanism" in logs or "UnsupportedSaslMechanism" in "".join(texts)
    assert_clean(logs + "\n".join(texts))


def test_cli_and_worker_output_never_show_passwords(
    broker: TansuBroker, clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    s = secret_settings(broker.url, clickhouse_server.tcp_port, tmp_path)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **settings_env(s), "PYTHONPATH": root}
    outputs = []
    for argv in (["init", "--skip-kafka"], ["query", "SELECT 1"], ["report"]):
        r = subprocess.run(
            [sys.executable, "-m", "repricer.streams.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0, argv  # the ClickHouse password is wrong
        assert "authentication failed" in r.stderr, r.stderr[-2000:]
        outputs.append(r.stdout + r.stderr)

    # a worker at debug level: logs its settings, then fails SASL against the plain broker
    worker = WorkerProcess(s, tmp_path / "worker.log", loglevel="debug").start()
    try:
        deadline = time.monotonic() + 60
        while "UnsupportedSaslMechanism" not in worker.tail_log(10**7):
            assert time.monotonic() < deadline, worker.tail_log()
            time.sleep(0.5)
    finally:
        worker.stop()
    log = worker.tail_log(10**8)
    assert "settings: Settings(" in log and f"{CLICKHOUSE_APP_USER}:***@" in log
    assert_clean("\n".join(outputs) + log)
