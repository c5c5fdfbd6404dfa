"""What a window engine is configured with (``WindowEngine`` builds it; every step reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from repricer.models.decider import Decider
from repricer.models.draws import unit_hash
from repricer.models.guardrails import GuardrailConfig
from repricer.streams.engine.clock import Clock


@dataclass(frozen=True)
class Holdout:
    """The control group: ``skus`` always, and each SKU whose ``bucket`` is below ``fraction``.

    The bucket is the first 8 bytes of ``blake2b(salt + "|" + sku)`` as a number in [0, 1):
    deterministic, independent of partitions and workers, and the same in the engine and in
    ``repricer report --uplift``. Changing the salt draws a new group.

    >>> h = Holdout(fraction=0.2, salt="s1")
    >>> sum(h.holds(f"sku-{i}") for i in range(10_000)) / 10_000  # about 0.2
    0.1997
    >>> Holdout(fraction=0.0, skus=frozenset({"A"})).holds("A")
    True
    """

    fraction: float = 0.0
    salt: str = "repricer-holdout"
    skus: frozenset[str] = frozenset()

    def holds(self, sku: str) -> bool:
        return sku in self.skus or bucket(sku, self.salt) < self.fraction


def bucket(sku: str, salt: str) -> float:
    """The SKU's place in [0, 1) for the holdout draw with ``salt``."""
    return unit_hash(f"{salt}|{sku}")


@dataclass
class EngineConfig:
    clock: Clock
    guardrails: GuardrailConfig
    decider: Decider
    policy_version: str = "model-v2"
    rate_limit_per_tick: int = 10_000  # price changes one tick may publish (guardrail rule)
    history_len: int = 23  # LSTM feature rows kept per SKU
    dedupe: bool = True  # False only to prove the fault tests can fail
    mode: str = "live"  # who prices by default: "live" or "shadow" (streams/engine/golive.py)
    holdout: Holdout = field(default_factory=Holdout)  # the control group, never priced

    @property
    def window_ms(self) -> int:
        return self.clock.window_ms
