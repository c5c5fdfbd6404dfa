"""What a window engine is configured with (``WindowEngine`` builds it; every step reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from repricer.models.decider import Decider
from repricer.models.guardrails import GuardrailConfig
from repricer.streams.engine.clock import Clock


@dataclass
class EngineConfig:
    clock: Clock
    guardrails: GuardrailConfig
    decider: Decider
    policy_version: str = "model-v2"
    rate_limit_per_tick: int = 10_000  # price changes one tick may publish (guardrail rule)
    history_len: int = 23  # LSTM feature rows kept per SKU
    dedupe: bool = True  # False only to prove the fault tests can fail

    @property
    def window_ms(self) -> int:
        return self.clock.window_ms
