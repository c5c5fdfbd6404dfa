"""Launch a throw-away ClickHouse server process (Debian's 18.16 or any newer binary).

Used by the integration tests and local demos. Everything -- config.xml, users.xml, data,
logs -- lives under one ``data_dir``; the server listens on 127.0.0.1 only, on free ports,
with a passwordless ``default`` user and, optionally, password-protected users
(``password_sha256_hex`` in users.xml, which 18.16 understands) and a TLS native port
(``tcp_port_secure``) with a given certificate. Runs fine as root (18.16 does not refuse to).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote
from xml.sax.saxutils import escape

from repricer.infra.local.process import terminate

__all__ = ["ClickHouseServer", "find_clickhouse_server", "start_clickhouse_server"]

_DEFAULT_BINARY = "/usr/sbin/clickhouse-server"

_CONFIG_XML = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{log}</log>
        <errorlog>{errorlog}</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <uncompressed_cache_size>134217728</uncompressed_cache_size>
    <mark_cache_size>134217728</mark_cache_size>
    <path>{path}</path>
    <tmp_path>{tmp_path}</tmp_path>
    <user_files_path>{user_files_path}</user_files_path>
    <format_schema_path>{format_schema_path}</format_schema_path>
    <users_config>{users_config}</users_config>{tls}
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
</yandex>
"""

_USERS_XML = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
            <poll_interval>1</poll_interval>
        </default>
    </profiles>
    <users>{users}
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


_USER_XML = """
        <{name}>
            {password}
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </{name}>"""

_TLS_XML = """
    <tcp_port_secure>{tcp_port_secure}</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>{cert}</certificateFile>
            <privateKeyFile>{key}</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>"""


def _users_xml(users: Mapping[str, str]) -> str:
    """users.xml with the passwordless ``default`` user plus ``users`` (name -> password)."""
    xml = [_USER_XML.format(name="default", password="<password></password>")]
    for name, password in users.items():
        if not name.isidentifier() or name == "default":
            raise ValueError(f"invalid ClickHouse user name: {name!r}")
        sha = hashlib.sha256(password.encode()).hexdigest()
        pw = f"<password_sha256_hex>{sha}</password_sha256_hex>"
        xml.append(_USER_XML.format(name=name, password=pw))
    return _USERS_XML.format(users="".join(xml))


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def find_clickhouse_server() -> str | None:
    """``$REPRICER_CLICKHOUSE_BIN``, ``/usr/sbin/clickhouse-server``, or one on ``PATH``."""
    env = os.environ.get("REPRICER_CLICKHOUSE_BIN")
    if env:
        return env
    if os.access(_DEFAULT_BINARY, os.X_OK):
        return _DEFAULT_BINARY
    return shutil.which("clickhouse-server")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ClickHouseServer:
    """A ClickHouse server child process bound to 127.0.0.1."""

    host: str
    tcp_port: int
    http_port: int
    data_dir: Path
    binary: str = _DEFAULT_BINARY
    timeout: float = 60.0
    # name -> password of extra users; only their SHA-256 is written to disk
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    # (certificate, private key) PEM files: serve native TLS on ``tcp_port_secure``
    tls: tuple[Path, Path] | None = None
    tcp_port_secure: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.xml"

    @property
    def error_log(self) -> Path:
        return self.data_dir / "log" / "clickhouse-server.err.log"

    @property
    def stdout_log(self) -> Path:
        return self.data_dir / "log" / "stdout.log"

    def url(self, database: str = "repricer", *, user: str = "default", password: str = "") -> str:
        """``clickhouse://`` URL of ``database`` as ``user`` (password percent-encoded)."""
        auth = user + (f":{quote(password, safe='')}" if password else "")
        return f"clickhouse://{auth}@{self.host}:{self.tcp_port}/{database}"

    def tls_url(
        self, database: str, *, ca_certs: Path, user: str = "default", password: str = ""
    ) -> str:
        """``clickhouses://`` URL of the TLS port, verifying the server against ``ca_certs``."""
        if self.tcp_port_secure is None:
            raise RuntimeError("this server was started without TLS")
        auth = user + (f":{quote(password, safe='')}" if password else "")
        return (
            f"clickhouses://{auth}@{self.host}:{self.tcp_port_secure}/{database}"
            f"?ca_certs={quote(str(ca_certs), safe='/')}"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self) -> None:
        d = self.data_dir
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "users.xml").write_text(_users_xml(self.users), encoding="utf-8")
        tls = ""
        if self.tls is not None:
            cert, key = self.tls
            tls = _TLS_XML.format(
                tcp_port_secure=self.tcp_port_secure,
                cert=escape(str(Path(cert).resolve())),
                key=escape(str(Path(key).resolve())),
            )

        def p(sub: str) -> str:
            return escape(str((d / sub).resolve())) + "/"

        self.config_file.write_text(
            _CONFIG_XML.format(
                log=escape(str((d / "log" / "clickhouse-server.log").resolve())),
                errorlog=escape(str(self.error_log.resolve())),
                tcp_port=self.tcp_port,
                http_port=self.http_port,
                path=p("data"),
                tmp_path=p("tmp"),
                user_files_path=p("user_files"),
                format_schema_path=p("format_schemas"),
                users_config=escape(str((d / "users.xml").resolve())),
                tls=tls,
            ),
            encoding="utf-8",
        )

    def start(self) -> None:
        """Start (or restart after :meth:`stop`) on the same ports and data; wait for SELECT 1."""
        if self.running:
            return
        if not self.config_file.exists():
            self.write_config()
        self.stdout_log.parent.mkdir(parents=True, exist_ok=True)
        with self.stdout_log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary, f"--config-file={self.config_file.resolve()}"],
                cwd=str(self.data_dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        from clickhouse_driver import Client

        deadline = time.monotonic() + self.timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"clickhouse-server exited with code {code} during startup\n"
                    f"--- {self.error_log} ---\n{_tail(self.error_log)}\n"
                    f"--- {self.stdout_log} ---\n{_tail(self.stdout_log)}"
                )
            try:  # cheap TCP probe first: the driver logs every refused connection
                with socket.create_connection((self.host, self.tcp_port), timeout=1):
                    pass
            except OSError as exc:
                last = exc
                time.sleep(0.1)
                continue
            client = Client(
                host=self.host,
                port=self.tcp_port,
                connect_timeout=1,
                send_receive_timeout=5,
                sync_request_timeout=2,
            )
            try:
                if client.execute("SELECT 1") == [(1,)]:
                    return
            except Exception as exc:
                last = exc
            finally:
                client.disconnect()
            time.sleep(0.1)
        raise TimeoutError(
            f"clickhouse-server not ready on {self.host}:{self.tcp_port} after {self.timeout}s "
            f"(last error: {last})\n--- {self.error_log} ---\n{_tail(self.error_log)}"
        )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Data stays in ``data_dir``."""
        terminate(self.process, timeout)
        self.process = None

    def __enter__(self) -> ClickHouseServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_clickhouse_server(
    data_dir: Path,
    *,
    binary: str | None = None,
    timeout: float = 60,
    users: Mapping[str, str] | None = None,
    tls: tuple[Path, Path] | None = None,
) -> ClickHouseServer:
    """Write a minimal config under ``data_dir``, start the server and wait until it answers.

    ``users`` adds password-protected users (name -> password); ``tls`` = (certificate, key)
    also serves the native protocol over TLS on :attr:`ClickHouseServer.tcp_port_secure`.
    """
    exe = binary or find_clickhouse_server()
    if exe is None:
        raise FileNotFoundError(
            "clickhouse-server not found (looked at $REPRICER_CLICKHOUSE_BIN, "
            f"{_DEFAULT_BINARY} and PATH)"
        )
    if not os.access(exe, os.X_OK):
        raise FileNotFoundError(f"clickhouse-server binary {exe!r} is missing or not executable")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    tcp_port, http_port, tcp_port_secure = _free_ports(3)
    server = ClickHouseServer(
        host="127.0.0.1",
        tcp_port=tcp_port,
        http_port=http_port,
        data_dir=data_dir,
        binary=exe,
        timeout=timeout,
        users=dict(users or {}),
        tls=tls,
        tcp_port_secure=tcp_port_secure if tls is not None else None,
    )
    server.write_config()
    server.start()
    return server
