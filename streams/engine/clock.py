"""Event time: windows, the partition watermark and the boundary before which windows are closed.

A window ``[s, s+W)`` closes when the partition watermark (the event time every source partition
has forwarded up to) minus the allowed lateness reaches ``s+W``.
"""

from __future__ import annotations

from dataclasses import dataclass

from repricer.streams.engine.state import PartitionState


@dataclass(frozen=True, slots=True)
class Clock:
    window_ms: int
    lateness_ms: int

    def window_of(self, ts: int) -> int:
        """Start of the window ``ts`` falls in."""
        return ts - ts % self.window_ms

    def boundary(self, watermark: int | None) -> int | None:
        """Windows starting before this are closed."""
        if watermark is None:
            return None
        return self.window_of(watermark - self.lateness_ms)

    def advance(self, pm: PartitionState, src: str, ts: int) -> None:
        """Record that ``src`` forwarded events up to ``ts``; a boundary that moves on starts a
        tick (``pm.closing``, cleared only when the tick finished, so a tick cut short by a crash
        is completed by the replay or the next watermark)."""
        if ts <= pm.sources.get(src, -1):
            return
        pm.sources[src] = ts
        low = watermark(pm.sources)
        if low is not None and (pm.watermark is None or low > pm.watermark):
            pm.watermark = low
            b = self.boundary(low)
            if b is not None and (pm.boundary is None or b > pm.boundary):
                pm.boundary = b
                pm.closing = True


def watermark(srcs: dict[str, int]) -> int | None:
    """Event time up to which every source partition has forwarded its events (the minimum).

    Every source partition assigned to an ingest agent is announced (with 0 until it forwards
    something), so windows never close on a subset of sources. Idle ones do not hold this back
    forever: ingest advances a caught-up, quiet source to its frontier (``advance_idle_sources``).
    """
    low = min(srcs.values()) if srcs else 0
    return low if low > 0 else None  # a known source that forwarded nothing yet holds all


def advance_idle_sources(
    forwarded: dict[str, int],
    last_event: dict[str, float],
    now: float,
    idle_s: float,
    caught_up: set[str] | None = None,
    *,
    targets: dict[str, int] | None = None,
) -> list[str]:
    """Move source partitions quiet for ``idle_s`` (wall clock) up to the newest event time.

    A quiet partition (no orders for a while, or no producer at all) would otherwise hold every
    window open. Only partitions in ``caught_up`` (nothing left to read: a partition with a
    backlog is slow, not idle) are moved; ``None`` means all. ``targets`` caps how far each may
    move (ingest: the event time forwarded elsewhere before that partition's own latest empty
    fetch). Returns the sources moved.

    >>> fwd = {"orders/0": 100, "orders/1": 500}
    >>> advance_idle_sources(fwd, {"orders/0": 0.0, "orders/1": 9.0}, now=10.0, idle_s=5.0)
    ['orders/0']
    >>> fwd
    {'orders/0': 500, 'orders/1': 500}
    """
    if not forwarded:
        return []
    frontier = max(forwarded.values())
    moved = []
    for src, ts in forwarded.items():
        if caught_up is not None and src not in caught_up:
            continue
        to = frontier if targets is None else min(frontier, targets.get(src, 0))
        if ts < to and now - last_event.get(src, now) >= idle_s:
            forwarded[src] = to
            moved.append(src)
    return moved
