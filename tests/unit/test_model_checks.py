"""Every shipped demand model passes every conformance check."""

from __future__ import annotations

import pytest

from models.checks import CHECKS, Factory, shipped_models


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_conformance(name: str, check) -> None:  # type: ignore[no-untyped-def]
    factory: Factory = shipped_models()[name]
    check(factory)


def test_checks_can_fail() -> None:
    """A model returning negative units must be caught (the checks are not vacuous)."""
    import numpy as np

    from models.baselines import LastWindow
    from models.checks import check_shape_and_finite

    class Broken(LastWindow):
        def forecast(self, views, prices):  # type: ignore[no-untyped-def,override]
            return -np.ones(np.shape(prices))

    with pytest.raises(AssertionError, match="negative"):
        check_shape_and_finite(Broken)
