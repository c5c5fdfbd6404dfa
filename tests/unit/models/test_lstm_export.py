"""ONNX export of the LSTM demand model: ONNX Runtime reproduces PyTorch (needs torch)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch  # must fail, not skip, when torch is missing

from repricer.models.lstm_features import FEATURES, LEVEL_FLOOR, SEQ_LEN, scale_counts
from repricer.models.lstm_train import build_model, export_onnx
from repricer.models.onnx_scorer import LstmScorer, build_input


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_model(len(FEATURES), hidden=16, seed=123, init_units=1.5).eval()
    path = tmp_path_factory.mktemp("lstm") / "demand_lstm.onnx"
    meta = {
        "features": list(FEATURES),
        "seq_len": SEQ_LEN,
        "norm": {"mean": [0.0] * len(FEATURES), "std": [1.0] * len(FEATURES)},
    }
    written = export_onnx(model, path, meta)
    return model, path, written


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnx_matches_torch(exported, batch):
    model, path, _ = exported
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"]
    assert [o.name for o in sess.get_outputs()] == ["units"]
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # dynamic batch axis
    x = np.random.default_rng(batch).normal(size=(batch, SEQ_LEN, len(FEATURES)))
    x = x.astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = sess.run(["units"], {"x": x})[0]
    assert got.shape == (batch, 1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert np.all(got >= 0)


def test_metadata_and_scorer(exported):
    model, path, written = exported
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    assert meta == written
    assert meta["version"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    assert meta["opset"] >= 17 and meta["input"]["name"] == "x"
    scorer = LstmScorer(path)
    x = np.random.default_rng(0).normal(size=(9, SEQ_LEN, len(FEATURES))).astype(np.float32)
    x[:, -1, :3] = 0.0  # the scorer masks the target row's counts; mean 0 / std 1 = identity
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()[:, 0]
    np.testing.assert_allclose(scorer.score(x), ref, rtol=1e-4, atol=1e-4)


def test_scale_free_export_and_scoring(exported, tmp_path):
    model, raw_path, _ = exported
    assert LstmScorer(raw_path).scale_free is False
    meta = {
        "features": list(FEATURES),
        "seq_len": SEQ_LEN,
        "norm": {"mean": [0.0] * len(FEATURES), "std": [1.0] * len(FEATURES)},
        "scale": "level",
    }
    written = export_onnx(model, tmp_path / "demand_lstm.onnx", meta)
    assert written["format"] == "repricer.demand_lstm/2" and written["scale"] == "level"
    scorer = LstmScorer(tmp_path / "demand_lstm.onnx")
    assert scorer.scale_free is True
    rng = np.random.default_rng(1)
    hist = [rng.random((SEQ_LEN - 1, len(FEATURES))).astype(np.float32) for _ in range(4)]
    levels = np.array([0.01, 0.5, 2.0, 0.0])
    got = scorer.forecast(hist, 10.0, 10.0, 0, levels=levels)[:, 0]
    x = build_input(hist, 10.0, 10.0, 0)
    lv = np.maximum(levels, LEVEL_FLOOR)
    with torch.no_grad():
        ref = model(torch.from_numpy(scale_counts(x, lv))).numpy()[:, 0] * lv
    np.testing.assert_allclose(got, ref, rtol=1e-4)


class _FakeBackend:
    def __init__(self, sales, clicks):
        self.sales, self.clicks, self.sql = sales, clicks, []

    def query(self, sql, params=None):
        self.sql.append(sql)
        return self.sales if ".sales_1m FINAL" in sql else self.clicks


def test_windows_from_clickhouse_joins_and_fills_quiet_windows():
    from datetime import UTC, datetime, timedelta

    from repricer.streams.tools.train import windows_from_clickhouse

    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    m = [t0 + timedelta(minutes=i) for i in range(6)]
    sales = [
        ("A", m[0], 0, 0.0),  # no price known yet: dropped
        ("A", m[1], 2, 10.0),
        ("A", m[2], 1, 0.0),  # price forward-filled
        ("A", m[3], 0, 12.0),
        ("A", m[5], 3, 12.0),  # m[4] was quiet (no row stored): zero demand at 12.0
        ("B", m[0], 1, 5.0),
    ]
    clicks = [("A", m[1], 20, 4), ("A", m[2], 9, 1), ("B", m[0], 7, 2), ("B", m[1], 3, 0)]
    backend = _FakeBackend(sales, clicks)
    ws = windows_from_clickhouse(backend, "repricer")
    assert all("FINAL" in s for s in backend.sql)
    assert ws.skus == ["A", "B"]
    assert ws.offsets.tolist() == [0, 5, 7]
    assert ws.units.tolist() == [2, 1, 0, 0, 3, 1, 0]
    assert ws.views.tolist() == [20, 9, 0, 0, 0, 7, 3]
    assert ws.carts.tolist() == [4, 1, 0, 0, 0, 2, 0]
    assert ws.price.tolist() == [10.0, 10.0, 12.0, 12.0, 12.0, 5.0, 5.0]
    assert ws.window_start_ms.tolist()[3] == int(m[4].timestamp() * 1000)
    assert ws.ref_price.tolist() == [10.0, 5.0]
    assert int(ws.window_start_ms[0]) == int(m[1].timestamp() * 1000)
    assert np.isfinite(ws.features()).all()
    with pytest.raises(ValueError):
        windows_from_clickhouse(backend, "repricer; DROP TABLE x")
