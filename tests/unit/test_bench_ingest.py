"""The ingest bench's report: the keys the README and `bench all` rely on, and its ratios."""

from __future__ import annotations

from repricer.streams.tools.bench.ingest import QUIX_LOOP, ingest_report


def _report(quix: list[float]) -> dict[str, object]:
    return ingest_report(
        n=1000,
        avg_bytes=179.4,
        pipeline=[11_000.0, 12_000.0, 9_000.0],
        faust=[10_000.0, 8_000.0, 9_000.0],
        quix=quix,
        loops={"pipeline": "uvloop.Loop", "faust_count_only": "uvloop.Loop"},
        quix_version="3.28.1" if quix else None,
        event_loop_setting="uvloop",
    )


def test_report_has_both_ratios_with_ranges_and_each_sides_loop() -> None:
    r = _report([44_000.0, 60_000.0, 45_000.0])
    for key in (
        "ingest_ratio",
        "ingest_ratio_quix",
        "ingest_events_per_s_pipeline",
        "ingest_events_per_s_faust_count_only",
        "ingest_events_per_s_quix_count_only",
    ):
        assert key in r and f"{key}_min_median_max" in r, key
    # per-repeat ratios: 11/10, 12/8, 9/9 and 11/44, 12/60, 9/45
    assert r["ingest_ratio_min_median_max"] == [1.0, 1.1, 1.5]
    assert r["ingest_ratio"] == 1.1
    assert r["ingest_ratio_quix_min_median_max"] == [0.2, 0.2, 0.25]
    assert r["ingest_events_per_s_quix_count_only"] == 45_000
    assert r["ingest_events_per_s_quix_count_only_min_median_max"] == [44_000.0, 45_000.0, 60_000.0]
    assert r["ingest_event_loop"] == {
        "setting": "uvloop",
        "pipeline": "uvloop.Loop",
        "faust_count_only": "uvloop.Loop",
        "quix_count_only": QUIX_LOOP,
    }
    assert r["ingest_quixstreams_version"] == "3.28.1"
    assert r["ingest_repeats"] == 3 and r["ingest_event_bytes"] == 179


def test_without_quixstreams_its_figures_are_null_and_the_note_says_why() -> None:
    r = _report([])
    assert r["ingest_ratio"] == 1.1
    assert r["ingest_ratio_quix"] is None
    assert r["ingest_events_per_s_quix_count_only"] is None
    assert r["ingest_event_loop"]["quix_count_only"] is None  # type: ignore[index]
    assert "quixstreams is not installed" in str(r["ingest_note"])
