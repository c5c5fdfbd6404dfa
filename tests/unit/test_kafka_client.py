"""The one Kafka security helper: the same protocol, SASL and TLS options for every client."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from repricer.infra.kafka_client import aiokafka_config, faust_credentials, kafka_python_config
from repricer.streams.settings import Settings
from tests.tls import self_signed_cert


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return self_signed_cert(tmp_path_factory.mktemp("ca"))[0]


def test_plaintext_has_no_security_options() -> None:
    s = Settings(broker="kafka://h1:9092;kafka://h2:9092")
    assert aiokafka_config(s) == {
        "bootstrap_servers": "h1:9092,h2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert kafka_python_config(s)["bootstrap_servers"] == ["h1:9092", "h2:9092"]
    assert faust_credentials(s) is None


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_scram_with_ca(ca: Path, mechanism: str) -> None:
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_username="shop",
        kafka_password="pw-1",
        kafka_ssl_cafile=str(ca),
    )
    aio, kp, cred = aiokafka_config(s), kafka_python_config(s), faust_credentials(s)
    for kw in (aio, kp):
        assert kw["security_protocol"] == "SASL_SSL"
        assert kw["sasl_mechanism"] == mechanism
        assert kw["sasl_plain_username"] == "shop"
        assert kw["sasl_plain_password"] == "pw-1" and "pw-1" not in repr(kw)
        ctx = kw["ssl_context"]
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "127.0.0.1"),),)]
    assert kp["ssl_context"].check_hostname is True  # kafka-python takes it from the context
    # Faust hands its credentials to aiokafka: the same options as ours
    assert isinstance(cred, faust.SASLCredentials)
    via_faust = credentials_to_aiokafka_auth(cred)
    assert via_faust["security_protocol"] == "SASL_SSL"
    assert via_faust["sasl_mechanism"] == mechanism
    assert via_faust["sasl_plain_password"] == "pw-1"
    assert via_faust["ssl_context"].get_ca_certs() == aio["ssl_context"].get_ca_certs()
    assert "pw-1" not in repr(cred)


def test_ssl_with_ca_and_client_certificate(ca: Path, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path, "client")
    s = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(ca),
        kafka_ssl_certfile=str(cert),
        kafka_ssl_keyfile=str(key),
        kafka_ssl_check_hostname=False,
    )
    aio = aiokafka_config(s)
    assert aio["security_protocol"] == "SSL" and "sasl_mechanism" not in aio
    assert aio["ssl_context"].check_hostname is False
    assert kafka_python_config(s)["ssl_context"].check_hostname is False
    cred = faust_credentials(s)
    assert isinstance(cred, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(cred)["security_protocol"] == "SSL"


def test_sasl_plaintext_has_no_tls() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="u", kafka_password="p")
    assert "ssl_context" not in aiokafka_config(s)
    assert credentials_to_aiokafka_auth(faust_credentials(s))["security_protocol"] == (
        "SASL_PLAINTEXT"
    )


def test_aiokafka_accepts_every_protocol(ca: Path) -> None:
    async def build() -> None:
        for proto in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            s = Settings(
                kafka_security_protocol=proto,
                kafka_username="u",
                kafka_password="p",
                kafka_ssl_cafile=str(ca),
            )
            AIOKafkaProducer(**aiokafka_config(s))  # validates the options, connects lazily
            AIOKafkaProducer(**kafka_python_config(s))  # one dict serves both libraries

    asyncio.run(build())


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="kafka_username and kafka_password"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_username="u")
