"""Stopping child processes the same way everywhere (broker, ClickHouse server, workers)."""

from __future__ import annotations

import signal
import subprocess


def terminate(
    proc: subprocess.Popen[bytes] | None, timeout: float, kill_timeout: float = 10.0
) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_timeout)
