"""ClickHouse with a user and password, plain and over TLS, on the real 18.16 server.

The session server has a password user (``password_sha256_hex`` in its users.xml) and a TLS
native port with a self-signed certificate. Right credentials work; a wrong password fails with
a clear error that contains neither password; TLS verifies the server against the given CA.
"""

from __future__ import annotations

import traceback
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from repricer.infra.clickhouse import (
    ClickHouseAuthError,
    ClickHouseError,
    ClickHouseUnavailable,
    connect,
)
from repricer.infra.local.clickhouse_server import ClickHouseServer
from repricer.streams.settings import Settings
from tests.conftest import CLICKHOUSE_APP_USER

pytestmark = pytest.mark.integration

ROW = {
    "source_topic": "orders",
    "source_partition": 0,
    "source_offset": 7,
    "reason": "malformed_json",
    "detail": "x",
    "payload_excerpt": "{",
    "received_at": 1_767_225_600_000,
    "version": 1,
}


def _everything_said(exc: BaseException) -> str:
    """Message, repr and the whole formatted traceback, causes included."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _assert_absent(text: str, *secrets: str) -> None:
    for s in secrets:
        for form in {s, quote(s, safe="")}:
            assert form not in text, f"secret leaked in:\n{text}"


def test_password_user_can_write_and_read(clickhouse_server: ClickHouseServer) -> None:
    password = clickhouse_server.users[CLICKHOUSE_APP_USER]
    url = clickhouse_server.url(
        f"auth_{uuid.uuid4().hex[:8]}", user=CLICKHOUSE_APP_USER, password=password
    )
    ch = connect(Settings(clickhouse_url=url).clickhouse_url.get_secret_value())
    try:
        ch.init()
        assert ch.insert("dead_letters", [ROW]) == 1
        got = ch.query(
            f"SELECT reason, source_offset FROM {ch.database}.dead_letters FINAL "
            f"WHERE source_topic = %(t)s",
            {"t": "orders"},
        )
        assert got == [("malformed_json", 7)]
        _assert_absent(repr(ch) + str(ch), password)
    finally:
        ch.close()


def test_wrong_password_fails_clearly_without_either_password(
    clickhouse_server: ClickHouseServer,
) -> None:
    right = clickhouse_server.users[CLICKHOUSE_APP_USER]
    wrong = f"wrong-{uuid.uuid4().hex}:@/"
    ch = connect(clickhouse_server.url("default", user=CLICKHOUSE_APP_USER, password=wrong))
    with pytest.raises(ClickHouseAuthError) as info:
        ch.query("SELECT 1")
    ch.close()
    msg = str(info.value)
    assert "authentication failed" in msg and "Wrong password" in msg
    assert f"{CLICKHOUSE_APP_USER}:***@127.0.0.1:{clickhouse_server.tcp_port}" in msg
    _assert_absent(_everything_said(info.value), right, wrong)


def test_tls_with_the_ca_works_and_without_it_is_refused(
    clickhouse_server: ClickHouseServer, tls_cert: tuple[Path, Path]
) -> None:
    cert, _ = tls_cert
    password = clickhouse_server.users[CLICKHOUSE_APP_USER]
    url = clickhouse_server.tls_url(
        "default", ca_certs=cert, user=CLICKHOUSE_APP_USER, password=password
    )
    assert url.startswith("clickhouses://")
    ch = connect(Settings(clickhouse_url=url).clickhouse_url.get_secret_value())
    try:
        assert ch.query("SELECT %(x)s + 1", {"x": 41}) == [(42,)]
    finally:
        ch.close()

    # the same port verified against the system CAs: the self-signed certificate is refused
    untrusted = url.split("?", 1)[0]
    ch = connect(untrusted)
    with pytest.raises(ClickHouseUnavailable) as info:
        ch.query("SELECT 1")
    ch.close()
    assert "CERTIFICATE_VERIFY_FAILED" in _everything_said(info.value)
    _assert_absent(_everything_said(info.value), password)

    # and the TLS port does not speak plaintext
    plain = clickhouse_server.url("default", user=CLICKHOUSE_APP_USER, password=password)
    plain = plain.replace(
        f":{clickhouse_server.tcp_port}/", f":{clickhouse_server.tcp_port_secure}/"
    )
    ch = connect(plain + "?connect_timeout=2&send_receive_timeout=3")
    with pytest.raises(ClickHouseError):
        ch.query("SELECT 1")
    ch.close()
