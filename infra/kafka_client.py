"""Connection options for every Kafka client repricer creates, security included.

One place turns the ``kafka_*`` settings into the options of each client library: the Faust
app (:func:`faust_credentials`), aiokafka producers and consumers (:func:`aiokafka_config`:
the worker's ingest consumer group, simulator, ``tail``) and kafka-python clients
(:func:`kafka_python_config`: topic admin, ``replay``, ``control``). All of them get the same protocol, SASL mechanism, user, password and
TLS context, so no client can silently fall back to plaintext.

The returned dicts hold the password as a ``str`` (the libraries need it) whose ``repr`` is
masked, because kafka-python logs its configuration at DEBUG; still, never log them.
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol

__all__ = [
    "KafkaSettings",
    "aiokafka_config",
    "faust_credentials",
    "kafka_python_config",
    "producer_batch_bytes",
    "ssl_context",
]


class Secret(Protocol):
    """A secret that is only revealed on request (``pydantic.SecretStr``)."""

    def get_secret_value(self) -> str: ...


class KafkaSettings(Protocol):
    """The connection settings every Kafka client takes: read-only attributes, so repricer's
    ``Settings`` (from ``REPRICER_*``) is one, and so is any object that has them; infra does not
    depend on where the configuration comes from."""

    @property
    def bootstrap(self) -> str:
        """``host:port[,host:port]``."""
        ...

    @property
    def kafka_security_protocol(self) -> str: ...  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    @property
    def kafka_sasl_mechanism(self) -> str: ...
    @property
    def kafka_username(self) -> str | None: ...
    @property
    def kafka_password(self) -> Secret | None: ...
    @property
    def kafka_ssl_cafile(self) -> str | None: ...
    @property
    def kafka_ssl_check_hostname(self) -> bool: ...
    @property
    def kafka_ssl_certfile(self) -> str | None: ...
    @property
    def kafka_ssl_keyfile(self) -> str | None: ...
    @property
    def kafka_ssl_key_password(self) -> Secret | None: ...
    @property
    def kafka_single_record_batches(self) -> bool: ...


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for ``SSL``/``SASL_SSL`` (``None`` for the plaintext protocols).

    It verifies the broker's certificate against ``kafka_ssl_cafile`` (or the system CAs) and,
    unless ``kafka_ssl_check_hostname`` is off, its host name; a client certificate is loaded
    for mutual TLS when ``kafka_ssl_certfile`` is set.
    """
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    ctx = ssl.create_default_context(
        purpose=ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile
    )
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        key_pw = settings.kafka_ssl_key_password
        ctx.load_cert_chain(
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
            password=key_pw.get_secret_value() if key_pw else None,
        )
    return ctx


class _Password(str):
    """A password that is a plain ``str`` to the client libraries but masked in ``repr``.

    kafka-python logs its whole configuration dict at DEBUG (``Starting KafkaAdminClient with
    configuration: {...}``); the dict's repr shows this as ``'**********'``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"


def _sasl(settings: KafkaSettings) -> dict[str, Any]:
    if not settings.kafka_security_protocol.startswith("SASL"):
        return {}
    pw = settings.kafka_password
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_username,
        "sasl_plain_password": _Password(pw.get_secret_value()) if pw else None,
    }


def aiokafka_config(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``."""
    kw: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        **_sasl(settings),
    }
    ctx = ssl_context(settings)
    if ctx is not None:
        kw["ssl_context"] = ctx
    return kw


def kafka_python_config(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's ``KafkaProducer``/``KafkaConsumer``/admin client.

    The same options as :func:`aiokafka_config` (kafka-python takes the host name check from
    the SSL context too), with the bootstrap servers as a list; aiokafka accepts them as well.
    """
    kw = aiokafka_config(settings)
    kw["bootstrap_servers"] = settings.bootstrap.split(",")
    return kw


def producer_batch_bytes(settings: KafkaSettings, default: int = 16384) -> int:
    """Producer batch size in bytes: ``default``, or 1 (one record per batch: a batch always
    takes its first record) with ``kafka_single_record_batches`` (see its description).

    For ``AIOKafkaProducer(max_batch_size=...)``, ``KafkaProducer(batch_size=...)`` and Faust's
    ``producer_max_batch_size``.
    """
    return 1 if settings.kafka_single_record_batches else default


def faust_credentials(settings: KafkaSettings) -> Any:
    """``broker_credentials`` for ``faust.App`` (``None`` for plaintext)."""
    import faust

    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ctx = ssl_context(settings)
    if proto.startswith("SASL"):
        sasl = _sasl(settings)
        return faust.SASLCredentials(
            username=sasl["sasl_plain_username"] or "",
            password=sasl["sasl_plain_password"] or "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ctx,
        )
    return faust.SSLCredentials(ctx)
