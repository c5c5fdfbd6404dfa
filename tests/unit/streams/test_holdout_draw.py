"""The holdout stratified by category and sales level, and its file (``REPRICER_HOLDOUT_FILE``)."""

from __future__ import annotations

import math
import os
import random
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from repricer.streams.build import holdout
from repricer.streams.cli import main
from repricer.streams.engine.config import Holdout, bucket
from repricer.streams.holdout_draw import (
    HoldoutFileError,
    check_fraction,
    draw,
    read_file,
    sales_levels,
    table,
    write_file,
)
from repricer.streams.settings import Settings

CATEGORIES = ("toys", "food", "garden", "")  # "": SKUs without a category


def catalogue(n: int = 2000, seed: int = 1) -> tuple[dict[str, str], dict[str, float]]:
    """``n`` SKUs over uneven categories; units long-tailed, a quarter sold nothing."""
    rng = random.Random(seed)
    cats = {f"S-{i:05d}": rng.choices(CATEGORIES, weights=(5, 3, 1, 1))[0] for i in range(n)}
    units = {
        s: 0.0 if rng.random() < 0.25 else float(int(rng.lognormvariate(2, 1.5)) + 1) for s in cats
    }
    return cats, units


def test_every_stratum_holds_out_round_f_n_in_hash_order() -> None:
    cats, units = catalogue()
    d = draw(cats, units, fraction=0.2, salt="s1")
    assert d.skus == len(cats)
    assert {s for st in d.strata for s in st.skus} == set(cats)  # every SKU in one stratum
    assert sum(len(st.skus) for st in d.strata) == len(cats)
    assert len(d.strata) == 16  # 4 categories x (none, low, mid, high)
    for st in d.strata:
        n = len(st.skus)
        assert len(st.held) == math.floor(0.2 * n + 0.5), st.name
        assert all(cats[s] == st.category for s in st.skus)
        # the first in blake2b(salt|sku) order: every held SKU's bucket is below every other's
        rest = set(st.skus) - set(st.held)
        if st.held and rest:
            assert max(bucket(s, "s1") for s in st.held) < min(bucket(s, "s1") for s in rest)
    # the levels: none is exactly the SKUs without sales; the terciles split the sellers
    for cat in CATEGORIES:
        by = {st.level: st for st in d.strata if st.category == cat}
        assert set(by["none"].skus) == {s for s, c in cats.items() if c == cat and units[s] == 0}
        lo, mid, hi = (max(units[s] for s in by[lv].skus) for lv in ("low", "mid", "high"))
        assert lo < min(units[s] for s in by["mid"].skus) and mid < min(
            units[s] for s in by["high"].skus
        )
        assert lo <= mid <= hi


def test_a_salt_draws_the_same_group_and_a_new_salt_another() -> None:
    cats, units = catalogue()
    a = draw(cats, units, fraction=0.2, salt="s1")
    assert draw(dict(reversed(cats.items())), units, fraction=0.2, salt="s1") == a  # order-free
    b = draw(cats, units, fraction=0.2, salt="s2")
    assert len(a.held) == len(b.held)  # the same counts per stratum...
    assert [len(x.held) for x in a.strata] == [len(x.held) for x in b.strata]
    overlap = len(a.held & b.held) / len(a.held)
    assert overlap < 0.4, overlap  # ...but another group (about 0.2 of it by chance)


def test_the_held_out_and_treated_groups_have_the_same_mix_of_sales_levels() -> None:
    cats, units = catalogue()
    levels = {}
    for cat in CATEGORIES:
        levels.update(sales_levels({s: units[s] for s, c in cats.items() if c == cat}))
    d = draw(cats, units, fraction=0.2, salt="s1")
    held = Counter(levels[s] for s in d.held)
    treated = Counter(levels[s] for s in cats if s not in d.held)
    strata_per_level = len(CATEGORIES)
    for level in ("none", "low", "mid", "high"):
        n = held[level] + treated[level]
        # each stratum is off the fraction by at most half a SKU of rounding
        assert abs(held[level] - 0.2 * n) <= 0.5 * strata_per_level, level
    by_category = Counter(cats[s] for s in d.held)
    for cat in CATEGORIES:
        n = sum(1 for c in cats.values() if c == cat)
        assert abs(by_category[cat] - 0.2 * n) <= 0.5 * 4, cat  # 4 levels per category


def test_stratified_draws_balance_sales_better_than_the_hash_draw() -> None:
    """Over 40 salts, the gap in mean log(1 + units) between held-out and treated SKUs: the
    stratified draw's spreads less than half as wide as the hash draw's of the same fraction,
    and never exceeds 0.1 (the hash draw's reaches about 0.17 on this catalogue)."""
    cats, units = catalogue()
    log_units = {s: math.log1p(u) for s, u in units.items()}

    def gap(held: set[str] | frozenset[str]) -> float:
        h = [log_units[s] for s in held]
        t = [log_units[s] for s in cats if s not in held]
        return sum(h) / len(h) - sum(t) / len(t)

    salts = [f"salt-{i}" for i in range(40)]
    strat = [gap(draw(cats, units, fraction=0.2, salt=x).held) for x in salts]
    hashed = [gap({s for s in cats if bucket(s, x) < 0.2}) for x in salts]
    assert statistics.pstdev(strat) < 0.5 * statistics.pstdev(hashed)
    assert max(map(abs, strat)) < 0.1 < max(map(abs, hashed))


def test_sales_levels_are_terciles_of_the_sellers_ties_together() -> None:
    assert sales_levels({"a": 0, "b": 3}) == {"a": "none", "b": "low"}
    got = sales_levels({f"s{i}": float(i) for i in range(1, 10)})
    assert Counter(got.values()) == {"low": 3, "mid": 3, "high": 3}
    assert [got[f"s{i}"] for i in (1, 3, 4, 6, 7, 9)] == [
        "low",
        "low",
        "mid",
        "mid",
        "high",
        "high",
    ]
    tied = sales_levels({f"s{i}": 5.0 for i in range(6)})
    assert set(tied.values()) == {"low"}  # equal sales, one level
    assert sales_levels({}) == {}


def test_small_strata_round_half_up() -> None:
    cats = {"a": "x", "b": "x", "c": "y"}
    d = draw(cats, {}, fraction=0.5, salt="s")  # nobody sold anything: one stratum a category
    assert [(st.name, len(st.skus), len(st.held)) for st in d.strata] == [
        ("x / none", 2, 1),
        ("y / none", 1, 1),
    ]
    assert "total" in table(d) and "x / none" in table(d)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_a_fraction_outside_0_1_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        check_fraction(bad)
    with pytest.raises(ValueError, match="between 0 and 1"):
        draw({"a": "x"}, {}, fraction=bad, salt="s")


def test_the_file_round_trip(tmp_path: Path) -> None:
    cats, units = catalogue(300)
    d = draw(cats, units, fraction=0.3, salt="s1")
    path = tmp_path / "holdout.txt"
    write_file(path, d, ["drawn for a test"])
    text = path.read_text()
    assert text.startswith("# drawn for a test\n# fraction 0.3, salt 's1'")
    assert "#   toys / high: " in text
    assert read_file(path) == d.held
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed
    # the settings read it: a union with the listed SKUs and the hash fraction
    h = holdout(Settings(holdout_file=str(path), holdout_skus="EXTRA-1", holdout_fraction=0.1))
    assert h.skus == d.held | {"EXTRA-1"}
    assert all(h.holds(s) for s in d.held)
    extra = [s for s in cats if s not in d.held and bucket(s, h.salt) < 0.1]
    assert extra and all(h.holds(s) for s in extra)  # the fraction still adds its own
    assert holdout(Settings(holdout_file="")) == Holdout()


def test_bad_holdout_files_are_errors_never_an_empty_holdout(tmp_path: Path) -> None:
    with pytest.raises(HoldoutFileError, match="cannot be read"):
        holdout(Settings(holdout_file=str(tmp_path / "missing.txt")))
    with pytest.raises(HoldoutFileError, match="cannot be read"):
        read_file(tmp_path)  # a directory
    (tmp_path / "empty.txt").write_text("# fraction 0.2\n\n")
    with pytest.raises(HoldoutFileError, match="lists no SKU"):
        read_file(tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_text("A-1\nB 2\n")
    with pytest.raises(HoldoutFileError, match=r"line 2: 'B 2' is not a SKU"):
        read_file(tmp_path / "bad.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(HoldoutFileError, match="cannot be read"):
        read_file(tmp_path / "bin.txt")
    (tmp_path / "ok.txt").write_text("  A-1  \n# comment\n\nB.2/x\n")
    assert read_file(tmp_path / "ok.txt") == {"A-1", "B.2/x"}


def test_the_cli_refuses_bad_arguments_before_reading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "h.txt"
    assert main(["holdout", "draw", "--fraction", "1.2", "--out", str(out)]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert (
        main(["holdout", "draw", "--fraction", "0.2", "--since", "yesterday", "--out", str(out)])
        == 2
    )
    assert "Invalid isoformat" in capsys.readouterr().err
    out.write_text("A-1\n")
    assert main(["holdout", "draw", "--fraction", "0.2", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "A-1\n"
    assert main(["holdout", "draw", "--fraction", "0.2", "--out", str(tmp_path / "no" / "h")]) == 2
    assert "no directory" in capsys.readouterr().err


def test_a_worker_with_a_missing_holdout_file_stops_at_start_up(tmp_path: Path) -> None:
    missing = tmp_path / "holdout.txt"
    env = {
        **os.environ,
        "REPRICER_HOLDOUT_FILE": str(missing),
        "REPRICER_DATA_DIR": str(tmp_path / "faust"),
        "REPRICER_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
        "REPRICER_LSTM": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "repricer.streams.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"repricer worker: holdout file {str(missing)!r} cannot be read" in done.stderr
