"""The worker container's healthcheck: liveness, then readiness (stdlib only, run as a script).

``python healthcheck.py PORT``. Docker has one health probe per container and restarts a
container only when its process exits, so: if ``/livez`` answers 503 (the event loop or an
agent is dead: a restart cures it), the worker (PID 1 of the container) is sent SIGTERM, stops cleanly and the restart
policy starts it again; the container is healthy when ``/readyz`` answers 200 (state recovered,
consumer groups joined), which is what ``depends_on: service_healthy`` waits for. A worker not
answering at all (still starting) is only unhealthy, never killed.
"""

from __future__ import annotations

import os
import signal
import sys
import urllib.error
import urllib.request


def status(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return None


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else int(os.environ.get("REPRICER_WEB_PORT", "6066"))
    if status(port, "/livez") == 503:
        print("not live: stopping the worker so its restart policy starts it again")
        os.kill(int(os.environ.get("REPRICER_HEALTHCHECK_PID", "1")), signal.SIGTERM)
        return 1
    ready = status(port, "/readyz")
    print(f"/readyz: {ready}")
    return 0 if ready == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
