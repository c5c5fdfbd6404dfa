"""``WindowEngine``: per-SKU event-time tumbling windows and the decision step at window close.

``WindowEngine.handle`` applies one envelope of a partition and returns what to publish; it only
dispatches, each step lives in its own module of this package:

* ``clock.py``: windows, the watermark and the boundary before which windows are closed;
* ``fold.py``: events into open windows (replays, late events, duplicate orders), catalog and
  control records into the SKU's state;
* ``tick.py``: a boundary that moves closes windows (``close.py``: rows, quiet gaps, labels,
  accounting), learns (``learn.py``) and decides (``decide.py``: forecast, policy, guardrails);
* ``outputs.py``: what an envelope produced; ``state.py``: the records the tables hold.

The tables are three mutable mappings (in the worker, changelog-backed Faust tables; in tests
and the backtest, dicts): ``skus[sku]`` (``SkuState``), ``opens[sku]`` (``OpenWindows``) and
``meta[str(partition)]`` (``PartitionState``).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from repricer.models.decider import Decider, default_decider
from repricer.models.guardrails import GuardrailConfig
from repricer.streams.engine.clock import Clock
from repricer.streams.engine.config import EngineConfig
from repricer.streams.engine.fold import apply_partition_control, apply_record, fold_event
from repricer.streams.engine.learn import PooledLearner
from repricer.streams.engine.outputs import Outputs
from repricer.streams.engine.state import OpenWindows, PartitionState, SkuState
from repricer.streams.engine.tick import gc_paused, run_tick
from repricer.streams.envelope import (
    BatchEnv,
    ClickEnv,
    ControlEnv,
    CountsEnv,
    Envelope,
    OrderEnv,
    WatermarkEnv,
)


class WindowEngine:
    """Folds envelopes into per-SKU windows and decides prices when windows close."""

    def __init__(
        self,
        *,
        window_ms: int,
        lateness_ms: int,
        guardrails: GuardrailConfig,
        decider: Decider | None = None,
        policy_version: str = "model-v2",
        rate_limit_per_tick: int = 10_000,
        history_len: int = 23,
        dedupe: bool = True,
    ) -> None:
        self.config = EngineConfig(
            clock=Clock(window_ms, lateness_ms),
            guardrails=guardrails,
            decider=decider
            if decider is not None
            else default_decider(max_step=guardrails.max_step),
            policy_version=policy_version,
            rate_limit_per_tick=rate_limit_per_tick,
            history_len=history_len,
            dedupe=dedupe,
        )
        self.learner = PooledLearner()

    @property
    def decider(self) -> Decider:
        return self.config.decider

    @decider.setter
    def decider(self, decider: Decider) -> None:
        self.config.decider = decider

    @property
    def guardrails(self) -> GuardrailConfig:
        return self.config.guardrails

    # the configuration, read-only (the worker's, the backtest's and the benches' checks)
    @property
    def window_ms(self) -> int:
        return self.config.clock.window_ms

    @property
    def lateness_ms(self) -> int:
        return self.config.clock.lateness_ms

    @property
    def policy_version(self) -> str:
        return self.config.policy_version

    @property
    def rate_limit_per_tick(self) -> int:
        return self.config.rate_limit_per_tick

    @property
    def history_len(self) -> int:
        return self.config.history_len

    @property
    def dedupe(self) -> bool:
        return self.config.dedupe

    def handle(
        self,
        env: Envelope,
        *,
        partition: int,
        offset: int,
        skus: MutableMapping[str, SkuState],
        meta: MutableMapping[str, PartitionState],
        opens: MutableMapping[str, OpenWindows],
    ) -> Outputs:
        """Apply one envelope of ``partition`` at ``offset``; returns what to publish.

        ``skus`` holds each SKU's state (written at window close, catalog and control), ``opens``
        each SKU's open windows (written per event: small on purpose), ``meta`` each partition's
        watermark and shared-model snapshot.
        """
        cfg, out = self.config, Outputs()
        pm = meta.get(str(partition)) or PartitionState()
        if isinstance(env, WatermarkEnv) or (isinstance(env, ControlEnv) and env.sku == "*"):
            if offset <= pm.offset:
                out.skipped_replay = True
                return out
            if isinstance(env, WatermarkEnv):
                cfg.clock.advance(pm, env.src, env.ts)
                if pm.closing:
                    with gc_paused():
                        run_tick(cfg, self.learner, pm, partition, skus, meta, opens, out)
            else:
                apply_partition_control(env, pm)
            pm.offset = offset
            meta[str(partition)] = pm
            return out
        clock, dedupe = cfg.clock, cfg.dedupe
        if isinstance(env, BatchEnv):
            for ev in env.events:
                fold_event(ev, clock=clock, dedupe=dedupe, partition=partition, offset=offset,
                           pm=pm, skus=skus, opens=opens, out=out, batched=True)  # fmt: skip
        elif isinstance(env, OrderEnv | ClickEnv | CountsEnv):
            fold_event(env, clock=clock, dedupe=dedupe, partition=partition, offset=offset,
                       pm=pm, skus=skus, opens=opens, out=out)  # fmt: skip
        else:
            apply_record(env, dedupe=cfg.dedupe, partition=partition, offset=offset, pm=pm,
                         skus=skus, out=out)  # fmt: skip
        return out
