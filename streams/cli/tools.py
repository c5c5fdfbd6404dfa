"""Commands of the tools: simulator, demo, tail, backtest, benches, trainer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repricer.streams.cli.common import Subparsers, err, load_settings

if TYPE_CHECKING:
    from repricer.streams.settings import Settings

# The simulator's MARKETS (streams/tools/simulator/families.py), written out so that parsing the
# command line does not import the simulator and numpy; a unit test keeps the two equal.
MARKETS = ("constant", "linear", "logit", "regime", "longtail", "weekly", "stock", "mix")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from repricer.streams.tools.simulate import run_simulation

    settings = load_settings()

    def progress(rep: Any) -> None:
        if rep.minutes % 10 == 0:
            print(
                f"minute {rep.minutes}: {rep.events} events sent, "
                f"{rep.price_changes_applied} price changes applied",
                file=sys.stderr,
            )

    rep = asyncio.run(
        run_simulation(
            settings,
            skus=args.skus,
            minutes=args.minutes,
            speed=args.speed,
            seed=args.seed,
            poison_every=args.poison_every,
            on_minute=progress,
        )
    )
    print(
        json.dumps(
            {
                "minutes": rep.minutes,
                "orders": rep.orders,
                "clicks": rep.clicks,
                "poison": rep.poison,
                "price_changes_applied": rep.price_changes_applied,
            }
        )
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from repricer.streams.tools.demo import print_report, run_demo
    from repricer.streams.tools.screenshot import ChromiumMissing

    try:
        report = run_demo(
            workdir=Path(args.workdir),
            skus=args.skus,
            minutes=args.minutes,
            speed=args.speed,
            seed=args.seed,
            poison_every=args.poison_every,
            quiet=args.json,
            screenshot=Path(args.screenshot) if args.screenshot else None,
        )
    except ChromiumMissing as e:
        err(f"repricer demo: {e}")
        return 2
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print_report(report)
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from repricer.streams.tools.tail import tail

    return asyncio.run(
        tail(
            load_settings(),
            group=args.group,
            from_beginning=args.from_beginning,
            max_events=args.max,
            idle_timeout=args.timeout,
        )
    )


def _cmd_backtest(args: argparse.Namespace) -> int:
    from repricer.streams.tools.backtest import backtest

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    settings = load_settings()
    if args.restock_days is not None:
        settings = load_settings(restock_s=round(args.restock_days * 86_400))
    if args.no_lstm:
        settings = settings.model_copy(update={"lstm": False})
    if args.holdout is not None:
        return _holdout_backtest(args, settings, progress)
    if args.stratified:
        raise SystemExit("repricer backtest: --stratified goes with --holdout FRACTION")
    if args.market is not None:
        return _backtest_markets(args, settings)
    report = backtest(
        skus=args.skus,
        days=args.days,
        seed=args.seed,
        settings=settings,
        markup=args.markup,
        stocked=args.stocked,
        progress=progress,
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["guardrail_violations"] == 0 else 1


def _backtest_markets(args: argparse.Namespace, settings: Settings) -> int:
    from repricer.streams.tools.markets import backtest_markets, table

    report = backtest_markets(
        market=args.market,
        skus=args.skus,
        days=args.days,
        seeds=args.seeds,
        seed=args.seed,
        settings=settings,
        markup=args.markup,
        progress=err,
    )
    print(json.dumps(report) if args.json else table(report))
    return 0 if report["guardrail_violations"] == 0 else 1


def _holdout_backtest(
    args: argparse.Namespace, settings: Settings, progress: Callable[[str], None]
) -> int:
    from repricer.streams.tools.uplift_backtest import holdout_backtest

    report = holdout_backtest(
        skus=args.skus,
        days=args.days,
        before_days=args.before_days,
        seeds=list(range(args.seed, args.seed + args.seeds)),
        settings=settings.model_copy(update={"holdout_fraction": args.holdout}),
        markup=args.markup,
        stratified=args.stratified,
        progress=progress,
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from repricer.streams.tools.bench.run import run_bench

    if args.market is not None:
        if args.what != "forecast":
            raise SystemExit("repricer bench: --market goes with `forecast` only")
        if args.seeds is not None and args.seeds < 1:
            raise SystemExit("repricer bench: --seeds must be at least 1")
        from repricer.streams.tools.bench.forecast_markets import forecast_markets_seeds

        given = {k: v for k, v in (("seeds", args.seeds), ("seed", args.seed)) if v is not None}
        out = forecast_markets_seeds(
            args.market, quick=args.quick, progress=None if args.json else err, **given
        )
        print(json.dumps(out, indent=None if args.json else 2))
        return 0
    if args.seed is not None or args.seeds is not None:
        raise SystemExit("repricer bench: --seed and --seeds go with `forecast --market` only")

    report = run_bench(args.what, quick=args.quick, progress=None if args.json else err)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from repricer.streams.tools.train import (
        main as train_main,  # training needs torch: `pip install torch`
    )

    return int(train_main(args.train_args) or 0)


def _sim_args(sp: argparse.ArgumentParser, *, minutes: int, speed: float, poison: int) -> None:
    sp.add_argument("--skus", type=int, default=30, help="number of simulated SKUs (default 30)")
    sp.add_argument(
        "--minutes",
        type=int,
        default=minutes,
        help=f"simulated minutes to run (default {minutes})",
    )
    sp.add_argument(
        "--speed",
        type=float,
        default=speed,
        help=f"simulated seconds per wall second (default {speed:g})",
    )
    sp.add_argument("--seed", type=int, default=7, help="random seed of the market (default 7)")
    sp.add_argument(
        "--poison-every",
        type=int,
        default=poison,
        help=f"send one malformed order every N events, 0 = never (default {poison})",
    )


def add_simulate(sub: Subparsers) -> None:
    s = sub.add_parser("simulate", help="run the closed-loop market simulator against Kafka")
    _sim_args(s, minutes=60, speed=240.0, poison=0)
    s.set_defaults(func=_cmd_simulate)


def add_demo(sub: Subparsers) -> None:
    d = sub.add_parser(
        "demo", help="everything local: Tansu broker + chdb + simulator + worker, then a report"
    )
    _sim_args(d, minutes=90, speed=240.0, poison=5000)
    d.add_argument("--workdir", default=".repricer/demo", help="scratch directory (wiped first)")
    d.add_argument("--json", action="store_true", help="print the final report as one JSON object")
    d.add_argument(
        "--screenshot",
        metavar="PATH",
        help="before the worker stops, save a PNG of its dashboard to PATH (needs chromium)",
    )
    d.set_defaults(func=_cmd_demo)


def add_tail(sub: Subparsers) -> None:
    t = sub.add_parser("tail", help="example downstream consumer: print price changes as they come")
    t.add_argument("--group", default="repricer-tail", help="consumer group id")
    t.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    t.add_argument("--max", type=int, default=0, help="stop after N events (0 = never)")
    t.add_argument(
        "--timeout", type=float, default=0, help="stop after this many idle seconds (0 = never)"
    )
    t.set_defaults(func=_cmd_tail)


def add_backtest(sub: Subparsers) -> None:
    b = sub.add_parser("backtest", help="static vs policy vs oracle prices on the simulated market")
    b.add_argument("--skus", type=int, default=200, help="simulated SKUs (default 200)")
    b.add_argument("--days", type=float, default=7, help="simulated days (default 7)")
    b.add_argument("--seed", type=int, default=7, help="market seed (default 7)")
    b.add_argument(
        "--markup",
        type=float,
        default=2.0,
        help="initial prices: cost x markup, a keystone rule by default (2.0)",
    )
    b.add_argument(
        "--stocked",
        type=float,
        default=0.0,
        help="share of SKUs with finite stock and no replenishment (default 0: none)",
    )
    b.add_argument(
        "--restock-days",
        type=float,
        default=None,
        help="inventory awareness: stock must cover this many days of demand "
        "(default REPRICER_RESTOCK_S; 0 ignores stock)",
    )
    b.add_argument("--no-lstm", action="store_true", help="River only (faster)")
    b.add_argument(
        "--market",
        choices=MARKETS,
        default=None,
        help="demand drawn from one family (or mix: every family in turn) against a dynamic "
        "oracle, reported per family over --seeds seeds (default: the constant-elasticity market)",
    )
    b.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="with --market or --holdout: seeds --seed, --seed+1, ... (default 5)",
    )
    b.add_argument(
        "--holdout",
        type=float,
        metavar="FRACTION",
        help="go live the way a shop does instead: shadow for --before-days, then live with "
        "this share of SKUs held out; reports the uplift estimate against the simulator's true "
        "effect, and how often its interval covers it over --seeds seeds",
    )
    b.add_argument(
        "--before-days", type=float, default=1.0, help="with --holdout: days in shadow (1)"
    )
    b.add_argument(
        "--stratified",
        action="store_true",
        help="with --holdout: draw it at the switch by category and shadow-period sales "
        "(as `repricer holdout draw` does) instead of by hash",
    )
    b.add_argument("--json", action="store_true", help="one-line JSON report")
    b.set_defaults(func=_cmd_backtest)


def add_bench(sub: Subparsers) -> None:
    be = sub.add_parser("bench", help="benchmarks (ratios measured side by side in one run)")
    be.add_argument(
        "what",
        choices=[
            "forecast",
            "ingest",
            "scaleout",
            "decisions",
            "sink",
            "memory",
            "recovery",
            "all",
        ],
        help="forecast: model WAPE vs naive baselines, LSTM batching; ingest: worker vs Faust "
        "count-only (same event loop) and Quix Streams count-only events/s; scaleout: two "
        "workers in one consumer group vs one, events/s; decisions: SKUs decided/s at window close; sink: the sink's decode + insert path vs "
        "one bulk clickhouse-driver insert, rows/s; memory: state bytes per SKU; recovery: "
        "seconds to process again after kill -9; all: everything in one report",
    )
    be.add_argument(
        "--quick",
        action="store_true",
        help="a reduced smoke run: `all` takes about 1.5 min on 2 cores (the figures: full runs)",
    )
    be.add_argument(
        "--market",
        choices=MARKETS,
        default=None,
        help="forecast only: score every model per demand family of this market (mix: all)",
    )
    be.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="with forecast --market: run seeds --seed .. --seed+N-1 and report every ratio per "
        "family as median [min-max] over them, with ensemble_p50_vs_bound (the ensemble's "
        "median forecast / the attainable bound) and each seed's report under per_seed "
        "(default 1: the one-seed report)",
    )
    be.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="with forecast --market: the market's (first) seed (default 11)",
    )
    be.add_argument("--json", action="store_true", help="one-line JSON report")
    be.set_defaults(func=_cmd_bench)


def add_train(sub: Subparsers) -> None:
    tr = sub.add_parser(
        "train",
        help="train the LSTM (simulator or ClickHouse history) and export ONNX",
        add_help=False,
        # every argument, --help included, is the trainer's: none is an option of this parser
        # (with "-" as a prefix, a leading --source is refused before REMAINDER can take it)
        prefix_chars="\0",
    )
    tr.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="arguments of `python -m streams.tools.train` (see `repricer train --help`)",
    )
    tr.set_defaults(func=_cmd_train)
