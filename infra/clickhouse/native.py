"""``NativeBackend``: a ClickHouse server over the native TCP protocol (clickhouse-driver)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from repricer.infra.clickhouse.backends import (
    _AUTH_ERROR_CODES,
    DEFAULT_DATABASE,
    ClickHouseAuthError,
    ClickHouseError,
    ClickHouseUnavailable,
    mask_url,
    substitute_params,
)
from repricer.infra.clickhouse.base import BackendBase
from repricer.infra.clickhouse.tables import check_ident

# --------------------------------------------------------------------------- native


def _utc(value: datetime, server_tz: Any) -> datetime:
    if value.tzinfo is None:
        value = server_tz.localize(value) if server_tz is not None else value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _normalise_native(value: Any, server_tz: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value, server_tz)
    if isinstance(value, list):
        return [_normalise_native(v, server_tz) for v in value]
    if isinstance(value, tuple):
        return tuple(_normalise_native(v, server_tz) for v in value)
    return value


_NATIVE_FLOAT_OPTS = ("connect_timeout", "send_receive_timeout", "sync_request_timeout")
_NATIVE_BOOL_OPTS = ("verify", "compression")
_NATIVE_STR_OPTS = ("ca_certs", "client_name")


class NativeBackend(BackendBase):
    """ClickHouse server over the native protocol (clickhouse-driver, columnar inserts)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        user: str = "default",
        password: str = "",
        database: str = DEFAULT_DATABASE,
        secure: bool = False,
        connect_timeout: float = 5.0,
        send_receive_timeout: float = 30.0,
        sync_request_timeout: float = 5.0,
        **client_kwargs: Any,
    ) -> None:
        from clickhouse_driver import Client

        self.database = check_ident(database, "database")
        self.host = host
        self.port = port
        self.user = user
        self.secure = secure
        self._lock = threading.RLock()
        # The client connects lazily on first execute(); it reconnects after failures.
        # The database may not exist yet, so connect to `default` and fully qualify names.
        self._client = Client(
            host=host,
            port=port,
            user=user,
            password=password,
            database="default",
            secure=secure,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
            sync_request_timeout=sync_request_timeout,
            **client_kwargs,
        )

    @classmethod
    def from_url(cls, url: str) -> NativeBackend:
        parts = urlsplit(url)
        if parts.scheme not in ("clickhouse", "clickhouses"):
            raise ValueError(f"not a clickhouse:// URL: {mask_url(url)}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        secure = parts.scheme == "clickhouses" or query.pop("secure", "0").lower() in (
            "1",
            "true",
            "yes",
        )
        kwargs: dict[str, Any] = {}
        for key in _NATIVE_FLOAT_OPTS:
            if key in query:
                kwargs[key] = float(query.pop(key))
        for key in _NATIVE_BOOL_OPTS:
            if key in query:
                kwargs[key] = query.pop(key).lower() in ("1", "true", "yes")
        for key in _NATIVE_STR_OPTS:
            if key in query:
                kwargs[key] = query.pop(key)
        database = query.pop("database", None) or unquote(parts.path.lstrip("/"))
        if query:
            raise ValueError(f"unsupported URL options: {sorted(query)}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (9440 if secure else 9000),
            user=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=database or DEFAULT_DATABASE,
            secure=secure,
            **kwargs,
        )

    def __repr__(self) -> str:
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"NativeBackend({scheme}://{self.user}:***@{self.host}:{self.port}/{self.database})"

    __str__ = __repr__

    def _execute(self, sql: str, data: Any = None, **kwargs: Any) -> Any:
        from clickhouse_driver import errors

        try:
            with self._lock:
                return self._client.execute(sql, data, **kwargs)
        except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
            self._client.disconnect()
            raise ClickHouseUnavailable(f"{self!r}: {exc}") from exc
        except errors.Error as exc:
            # Server messages never carry the password; the masked repr says where and as whom.
            msg = str(exc).split("Stack trace:")[0].strip()
            if getattr(exc, "code", None) in _AUTH_ERROR_CODES:
                raise ClickHouseAuthError(f"{self!r}: authentication failed: {msg}") from exc
            raise ClickHouseError(msg) from exc

    def _insert_prepared(self, table: str, into: str, values: list[list[Any]]) -> None:
        # DateTime columns go in as int epoch seconds, which the driver sends as they are
        self._execute(f"INSERT INTO {into} VALUES", values, columnar=True)

    def _server_tz(self) -> Any:
        import pytz

        info = self._client.connection.server_info
        return pytz.timezone(info.get_timezone()) if info is not None else None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows = self._execute(substitute_params(sql, params))
        if not isinstance(rows, list):
            return []
        tz = self._server_tz()
        return [tuple(_normalise_native(v, tz) for v in row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()
