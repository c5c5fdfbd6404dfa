"""Every shipped demand model passes every conformance check."""

from __future__ import annotations

import pytest

from repricer.models.checks import CHECKS, Factory, shipped_models


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_conformance(name: str, check) -> None:  # type: ignore[no-untyped-def]
    factory: Factory = shipped_models()[name]
    check(factory)


def test_checks_can_fail() -> None:
    """A model returning negative units must be caught (the checks are not vacuous)."""
    import numpy as np

    from repricer.models.baselines import LastWindow
    from repricer.models.checks import check_shape_and_finite

    class Broken(LastWindow):
        def forecast(self, views, prices):  # type: ignore[no-untyped-def,override]
            return -np.ones(np.shape(prices))

    with pytest.raises(AssertionError, match="negative"):
        check_shape_and_finite(Broken)


class _Forgetful:
    """Learns a shared level (one float for all SKUs) and does not snapshot it."""

    name = "forgetful"
    version = "1"

    def __init__(self) -> None:
        self.level = 1.0

    def forecast(self, views, prices):  # type: ignore[no-untyped-def]
        import numpy as np

        return np.full(np.shape(prices), self.level)

    def learn(self, views, prices, units) -> None:  # type: ignore[no-untyped-def]
        self.level = 0.9 * self.level + 0.1 * float(units.mean())


def test_persistence_check_catches_a_model_that_forgets_on_restart() -> None:
    from repricer.models.base import ModelBase
    from repricer.models.checks import check_persistence

    class Forgetful(_Forgetful, ModelBase):
        pass

    with pytest.raises(AssertionError, match="does not survive snapshot/restore"):
        check_persistence(Forgetful)

    class Remembers(Forgetful):
        def snapshot(self) -> str:
            return repr(self.level)

        def restore(self, blob: bytes | str) -> None:
            self.level = float(blob)

    check_persistence(Remembers)  # the same model with its state persisted passes

    class RestoresNothing(Remembers):
        def restore(self, blob: bytes | str) -> None:
            pass

    with pytest.raises(AssertionError, match="does not survive"):
        check_persistence(RestoresNothing)


def test_every_registered_model_is_named_as_registered() -> None:
    from repricer.models.registry import MODELS

    names = [e.name for e in MODELS]
    assert len(set(names)) == len(names)
    for e in MODELS:
        assert e.build().name == e.name, e
    assert {"river", "lstm"} <= {e.name for e in MODELS if e.role == "member"}
