"""`repricer bench forecast --market M --seeds N`: the forecast bench per family over seeds."""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest

from repricer.streams.settings import Settings
from repricer.streams.tools.bench import forecast_markets as fm

TINY: dict[str, Any] = {"skus": 7, "days": 0.08, "eval_days": 0.04}
REAL = fm.forecast_markets
KEYS = ("wape_ratio_ensemble", "wape_ratio_ensemble_p50", "wape_ratio_oracle", "wape_ratio_river")


def _tiny(market: str, **kw: Any) -> dict[str, Any]:
    kw.pop("quick", None)
    return REAL(market, **TINY, settings=Settings(lstm=False), **kw)


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    a, b = dict(a), dict(b)
    a.pop("seconds"), b.pop("seconds")
    assert json.dumps(a) == json.dumps(b)


def test_median_min_max_come_from_the_per_seed_reports() -> None:
    r = fm.forecast_markets_seeds("mix", seeds=3, seed=11, **TINY, settings=Settings(lstm=False))
    assert r["seeds"] == [11, 12, 13] and [p["seed"] for p in r["per_seed"]] == [11, 12, 13]
    _same(r["per_seed"][1], _tiny("mix", seed=12))  # each seed is the one-seed report
    assert list(r["families"]) == list(r["per_seed"][0]["families"])
    spread = checked = 0
    for fam, got in r["families"].items():
        seeds = [p["families"][fam] for p in r["per_seed"]]
        # a SKU may sell nothing in so short a run: that seed has no ratio, the others count
        sold = [s for s in seeds if not s.get("no_sales")]
        assert got["seeds_no_sales"] == len(seeds) - len(sold)
        for key in KEYS if sold else ():
            v = [s[key] for s in sold]
            want = {"median": statistics.median(v), "min": min(v), "max": max(v)}
            assert got[key] == pytest.approx(want, abs=1e-4), (fam, key)
            spread += got[key]["min"] < got[key]["max"]
            checked += 1
        bound = [
            None if s.get("no_sales") else s["wape_ratio_ensemble_p50"] / s["wape_ratio_oracle"]
            for s in seeds
        ]
        assert got["ensemble_p50_vs_bound_by_seed"] == pytest.approx(bound, abs=1e-6)
        b = [x for x in bound if x is not None]
        assert got["ensemble_p50_vs_bound"]["median"] == (
            pytest.approx(statistics.median(b), abs=1e-4) if b else None
        )
        assert r["ensemble_p50_vs_bound"][fam] == got["ensemble_p50_vs_bound"]
    assert checked >= 4 * len(KEYS)
    assert spread > 0  # the seeds differ: a summary of one seed copied would not pass


def test_one_seed_is_the_single_seed_report() -> None:
    one = fm.forecast_markets_seeds("mix", seeds=1, seed=11, **TINY, settings=Settings(lstm=False))
    assert "per_seed" not in one and one["seed"] == 11
    _same(one, _tiny("mix"))
    with pytest.raises(ValueError, match="seeds"):
        fm.forecast_markets_seeds("mix", seeds=0)


def test_cli_parses_the_seed_flags_and_refuses_them_elsewhere() -> None:
    from repricer.streams.cli import build_parser, main

    p = build_parser()
    a = p.parse_args(["bench", "forecast", "--market", "mix", "--seeds", "5", "--seed", "3"])
    assert (a.seeds, a.seed, a.market) == (5, 3, "mix")
    a = p.parse_args(["bench", "forecast", "--market", "mix"])
    assert (a.seeds, a.seed) == (None, None)  # the one-seed report of seed 11
    for argv, msg in (
        (["bench", "ingest", "--seeds", "3"], "go with `forecast --market` only"),
        (["bench", "forecast", "--seed", "3"], "go with `forecast --market` only"),
        (["bench", "forecast", "--market", "mix", "--seeds", "0"], "at least 1"),
    ):
        with pytest.raises(SystemExit, match=msg):
            main(argv)


def test_cli_runs_the_seeds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from repricer.streams.cli import main

    monkeypatch.setattr(fm, "forecast_markets", _tiny)  # the CLI's sizes, made tiny
    assert main(["bench", "forecast", "--market", "regime", "--json"]) == 0
    out = capsys.readouterr()
    _same(json.loads(out.out), _tiny("regime"))  # as before: seed 11, one report
    assert out.err == ""
    assert main(["bench", "forecast", "--market", "regime", "--seeds", "2", "--seed", "4"]) == 0
    out = capsys.readouterr()
    got = json.loads(out.out)
    assert got["seeds"] == [4, 5] and set(got["families"]["regime"]) >= {*KEYS}
    assert "[bench forecast regime] seed 5 (2/2)" in out.err
