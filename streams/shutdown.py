"""A clean stop on SIGTERM (or SIGINT), bounded by a deadline.

Order: ingest stops polling and finishes the batch in hand (forwarded, acknowledged by the broker,
committed); the sink stops after the insert in hand (committed once ClickHouse holds its rows;
an insert still failing is abandoned uncommitted); Faust stops feeding the window agent and waits
until the envelope in hand is fully processed, so the agent is cancelled between envelopes and
Faust commits only envelopes whose state and outputs are durable. Every step is bounded; what
does not finish is abandoned *uncommitted* and re-read on restart.

A watchdog thread ends the process ``shutdown_timeout_s`` after the signal whatever else happens
(a dead broker makes Faust's own commit and producer flush retry for minutes), with exit code
``EXIT_DEADLINE`` and an error in the log. That is safe because nothing is committed before it is
durable: ingest commits after the broker acknowledged the forwarded envelopes, the sink after
ClickHouse returned, Faust after the state changelog writes were acknowledged. Whatever was not
committed is read again by the next worker: ingest re-forwards (the window agent drops replayed
events by source partition and offset), the sink re-inserts (ReplacingMergeTree keyed by the
natural key, read with FINAL), the window agent replays envelopes (deduplicated by offset).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust

log = logging.getLogger(__name__)

EXIT_DEADLINE = 75
"""Exit code when the deadline forced the exit (EX_TEMPFAIL): some progress was not committed
and is read again by the next worker."""

T = TypeVar("T")

_deadline: float | None = None  # time.monotonic() by which the process is gone, once stopping


def begin(timeout_s: float) -> None:
    """Shutdown starts now: it must be over within ``timeout_s`` seconds."""
    global _deadline
    if _deadline is None:
        _deadline = time.monotonic() + timeout_s


def remaining(cap: float) -> float:
    """Seconds a shutdown step may take: at most ``cap``, and it leaves 1.5 s of the deadline for
    the steps after it (Faust's own stop, closing the loop)."""
    if _deadline is None:
        return cap
    return max(0.0, min(cap, _deadline - time.monotonic() - 1.5))


async def bounded(aw: Awaitable[T], cap: float, what: str) -> tuple[bool, T | None]:
    """(True, result) if ``aw`` finished within ``remaining(cap)`` s; else (False, None), logged.

    ``aw`` is cancelled when it runs out of time; errors are logged, never raised: a stop must
    go on whatever one step does.
    """
    timeout = remaining(cap)
    try:
        return True, await asyncio.wait_for(aw, timeout)
    except TimeoutError:
        log.warning("shutdown: %s did not finish within %.1fs; abandoned", what, timeout)
    except Exception as exc:
        log.warning("shutdown: %s failed (%r); abandoned", what, exc)
    return False, None


class Watchdog:
    """Ends the process ``timeout_s`` after ``start()`` with ``EXIT_DEADLINE``, logged."""

    def __init__(self, timeout_s: float, exit: Callable[[int], Any] = os._exit) -> None:
        self.timeout_s = timeout_s
        self._exit = exit
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.timeout_s, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        abort(f"shutdown deadline of {self.timeout_s:.1f}s passed", self._exit)


def abort(why: str, exit: Callable[[int], Any] = os._exit) -> None:
    """Exit now with ``EXIT_DEADLINE``, committing nothing more (logged as an error)."""
    log.error(
        "%s: exiting now with code %d. Nothing uncommitted is lost: the next worker reads it "
        "again (ingest re-forwards, replays are dropped by offset; the sink re-inserts, "
        "idempotently)",
        why,
        EXIT_DEADLINE,
    )
    for h in logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:  # exiting anyway
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    exit(EXIT_DEADLINE)


class GracefulWorker(faust.Worker):
    """``faust.Worker`` whose stop on SIGTERM/SIGINT is bounded by ``shutdown_timeout_s``."""

    def __init__(self, app: faust.App, *args: Any, shutdown_timeout_s: float, **kw: Any) -> None:
        super().__init__(app, *args, **kw)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.watchdog = Watchdog(shutdown_timeout_s)

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        if not self._signal_stop_time:
            begin(self.shutdown_timeout_s)
            self.watchdog.start()
            log.info(
                "%s: stopping within %.0fs: ingest and sink finish the batch in hand and commit "
                "it, the window agent finishes its envelope; the rest is read again on restart",
                sig.name,
                self.shutdown_timeout_s,
            )
        super()._schedule_shutdown(sig)


class RepricerApp(faust.App):
    """``faust.App`` that stops ingest and sink first and cancels agents only between events."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stop_hooks: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        if self.stop_hooks:
            await asyncio.gather(*(hook() for hook in self.stop_hooks))
        await super().on_stop()

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        await super()._consumer_wait_empty(consumer, logger)
        if self.should_stop:  # a rebalance needs none of this: its agents are not cancelled
            await self._agents_idle()

    async def _agents_idle(self) -> None:
        """Until no agent is inside an event (Faust's flow is stopped: none gets a new one).

        Faust cancels agents right after; an agent cancelled inside an event would have that
        event acknowledged (and committed) by the stream without having processed it.
        """

        def busy() -> list[str]:
            return [
                f"{name}@{e.message.partition}:{e.message.offset}"
                for name, agent in self.agents.items()
                for actor in getattr(agent, "_actors", ())
                if (e := getattr(getattr(actor, "stream", None), "current_event", None)) is not None
            ]

        async def wait() -> None:
            while busy():
                await asyncio.sleep(0.02)

        if busy():
            ok, _ = await bounded(wait(), 5.0, "the window agent's envelope in hand")
            if ok:
                log.info("shutdown: the window agent finished its envelope in hand")
            else:  # cancelled now, the stream would acknowledge the half-processed envelope
                abort(f"the window agent is still inside {busy()}")
