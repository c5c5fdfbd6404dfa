"""ONNX LSTM demand forecaster: the shipped artifact, scoring, batching and hot reload."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from repricer.models.lstm_features import FEATURES, SEQ_LEN, causal_levels, window_features
from repricer.models.lstm_train import gather_sequences
from repricer.models.onnx_scorer import (
    DEFAULT_MODEL_PATH,
    LstmScorer,
    build_input,
    select_providers,
)
from repricer.streams.tools.train import generate_training_windows

ARTIFACT = DEFAULT_MODEL_PATH


@pytest.fixture(scope="module")
def scorer() -> LstmScorer:
    return LstmScorer()


@pytest.fixture(scope="module")
def sim():
    # a market the model was not trained on (other seed), 2 simulated hours
    return generate_training_windows(n_skus=120, minutes=150, seed=2024)


def _histories(ws, end: int, n_hist: int = SEQ_LEN - 1):
    """Per SKU: raw feature rows of windows [end - n_hist, end) and the target window ``end``."""
    feats = ws.features()
    hist, price, ref, start = [], [], [], []
    for i in range(len(ws.skus)):
        o = int(ws.offsets[i])
        hist.append(feats[o + end - n_hist : o + end])
        price.append(ws.price[o + end])
        ref.append(ws.ref_price[i])
        start.append(int(ws.window_start_ms[o + end]))
    return hist, np.asarray(price), np.asarray(ref), np.asarray(start)


def _levels(ws, end: int) -> np.ndarray:
    """Each SKU's level before its target window ``end`` (what training used)."""
    return causal_levels(ws.units, ws.offsets)[ws.offsets[:-1] + end]


def test_artifact_is_small_and_versioned():
    data = ARTIFACT.read_bytes()
    assert len(data) < 1_000_000
    meta = json.loads(ARTIFACT.with_suffix(".json").read_text())
    assert meta["version"] == hashlib.sha256(data).hexdigest()[:16]
    assert tuple(meta["features"]) == FEATURES
    assert meta["seq_len"] == SEQ_LEN
    assert meta["opset"] >= 17
    assert len(meta["norm"]["mean"]) == len(meta["norm"]["std"]) == len(FEATURES)
    assert meta["training"]["val_wape"] < meta["training"]["val_wape_last_window"]
    # the shipped model is scale-free: counts / the SKU's level in, a multiple of it out
    assert meta["scale"] == "level" and meta["format"] == "repricer.demand_lstm/2"


def test_cpu_provider_and_version(scorer):
    assert select_providers()[-1] == "CPUExecutionProvider"
    assert "CUDAExecutionProvider" not in select_providers()  # no GPU on the test machines
    assert scorer.provider == "CPUExecutionProvider"
    assert scorer.version == hashlib.sha256(ARTIFACT.read_bytes()).hexdigest()[:16]


def test_batch_1_equals_batch_256(scorer, sim):
    rows = []
    for end in (30, 60, 90):
        hist, price, ref, start = _histories(sim, end)
        rows.append(build_input(hist, price, ref, start))
    x = np.concatenate(rows)[:256]
    assert x.shape == (256, SEQ_LEN, len(FEATURES))
    batched = scorer.score(x)
    single = np.array([scorer.score(x[i : i + 1])[0] for i in range(len(x))])
    assert batched.shape == (256,)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(batched)) and np.all(batched >= 0)


def test_forecast_tracks_demand_level(scorer, sim):
    hist, price, ref, start = _histories(sim, 100)
    f = scorer.forecast(hist, price, ref, start, levels=_levels(sim, 100))[:, 0]
    seg = np.repeat(np.arange(len(sim.skus)), np.diff(sim.offsets))
    mean_units = np.bincount(seg, weights=sim.units) / np.diff(sim.offsets)
    assert np.corrcoef(f, mean_units)[0, 1] > 0.8


def test_higher_price_lowers_forecast(scorer, sim):
    ratios = []
    for end in (40, 80, 120):
        hist, price, ref, start = _histories(sim, end)
        both = np.stack([price, price * 1.3], axis=1)
        f = scorer.forecast(hist, both, ref, start, levels=_levels(sim, end))
        assert np.all(np.isfinite(f)) and np.all(f >= 0)
        ratios.append(f[:, 1] / f[:, 0])
    r = np.concatenate(ratios)
    assert np.mean(np.log(r)) < math.log(0.9)  # on average at least 10% fewer units
    assert np.mean(r < 1.0) > 0.8


def test_short_history_padding_and_bad_rows(scorer, sim):
    hist, price, ref, start = _histories(sim, 60)
    short = [h[-3:] for h in hist[:10]]
    x = build_input(short, price[:10], ref[:10], start[:10])
    # left-padded by repeating the first (oldest) row
    np.testing.assert_array_equal(x[0, 0], short[0][0])
    np.testing.assert_array_equal(x[0, SEQ_LEN - 4], short[0][0])
    np.testing.assert_array_equal(x[0, SEQ_LEN - 2], short[0][-1])
    out = scorer.score(x)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    x[3, 5, 0] = np.nan
    out = scorer.score(x)
    assert math.isnan(out[3]) and np.isfinite(np.delete(out, 3)).all()
    with pytest.raises(ValueError):
        build_input([np.zeros((0, len(FEATURES)))], 10.0, 10.0, 0)
    with pytest.raises(ValueError):
        scorer.score(np.zeros((2, SEQ_LEN - 1, len(FEATURES)), dtype=np.float32))
    assert scorer.score(np.zeros((0, SEQ_LEN, len(FEATURES)), dtype=np.float32)).shape == (0,)


def test_build_input_matches_training_layout(sim):
    feats = sim.features()
    hist, price, ref, start = _histories(sim, 70)
    x = build_input(hist, price, ref, start)
    targets = sim.offsets[:-1] + 70
    expect = gather_sequences(feats, targets, np.full(len(targets), SEQ_LEN - 1), SEQ_LEN)
    np.testing.assert_allclose(x, expect, rtol=0, atol=1e-6)
    row = window_features(0, 0, 0, price[0], ref[0], start[0])
    np.testing.assert_allclose(x[0, -1], row, atol=1e-6)


def test_maybe_reload(tmp_path: Path, sim):
    path = tmp_path / "demand_lstm.onnx"
    shutil.copy(ARTIFACT, path)
    shutil.copy(ARTIFACT.with_suffix(".json"), path.with_suffix(".json"))
    s = LstmScorer(path)
    assert s.maybe_reload() is False
    hist, price, ref, start = _histories(sim, 50)
    before = s.forecast(hist, price, ref, start, levels=_levels(sim, 50))

    # a different model: scale the output-head weights, new version in the metadata
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[0] == 1:  # Linear(hidden -> 1)
            init.CopyFrom(numpy_helper.from_array(arr * 0.5, init.name))
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_onnx = new_dir / "demand_lstm.onnx"
    onnx.save(model, str(new_onnx))
    data = new_onnx.read_bytes()
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["version"] = hashlib.sha256(data).hexdigest()[:16]
    old_version = s.version

    shutil.copy(new_onnx, path)  # model first, metadata not yet: not ready, keep the old one
    assert s.maybe_reload() is False
    assert s.version == old_version
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert s.maybe_reload() is True
    assert s.version == meta["version"] != old_version
    assert s.maybe_reload() is False
    after = s.forecast(hist, price, ref, start, levels=_levels(sim, 50))
    assert not np.allclose(before, after)


def test_scale_free_forecast_scales_with_the_sku(scorer, sim):
    """The same SKU at 1/1000 of the volume (counts and level alike) gets 1/1000 the forecast:
    the model sees only counts relative to the level, so a long-tail SKU is not forecast at
    the volume of the busy SKUs it was trained on."""
    end = 80
    _, price, ref, start = _histories(sim, end)
    lv = _levels(sim, end)
    rows = []
    for c in (1.0, 1e-3):
        hist = []
        for i in range(len(sim.skus)):
            sl = slice(int(sim.offsets[i]) + end - (SEQ_LEN - 1), int(sim.offsets[i]) + end)
            hist.append(
                window_features(
                    sim.units[sl] * c,
                    sim.views[sl] * c,
                    sim.carts[sl] * c,
                    sim.price[sl],
                    sim.ref_price[i],
                    sim.window_start_ms[sl],
                )
            )
        rows.append(scorer.forecast(hist, price, ref, start, levels=lv * c)[:, 0])
    assert np.all(np.isfinite(rows[0])) and np.all(rows[0] > 0)
    np.testing.assert_allclose(rows[1], rows[0] * 1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="level"):
        scorer.forecast(hist, price, ref, start)  # a scale-free model needs the levels


def test_runtime_does_not_import_torch():
    code = "import sys, models.onnx_scorer, models.lstm_features; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
