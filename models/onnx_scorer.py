"""Runtime scoring of the ONNX LSTM demand forecaster (onnxruntime + numpy only, no torch).

:class:`LstmScorer` loads ``demand_lstm.onnx`` and its metadata ``demand_lstm.json`` (feature
order, ``seq_len``, normalisation constants, ``version``), picks the execution provider with
:func:`select_providers` (CUDA only when it really works, else CPU), scores batches of raw
feature sequences and hot-reloads the model file when it changes (:meth:`LstmScorer.maybe_reload`).

Input layout: see :mod:`models.lstm_features` (:func:`build_input` builds it from per-SKU window
histories and candidate prices). Output: expected units of the target window per row, float64;
rows the model cannot score (non-finite input, non-finite or negative output) come back as
``nan`` so the caller can fall back to another forecast. Outputs are never negative.

A scale-free model (metadata ``"scale": "level"``, :attr:`LstmScorer.scale_free`) needs each
SKU's level: :meth:`LstmScorer.forecast` divides the counts by it
(:func:`models.lstm_features.scale_counts`) and multiplies the output back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from repricer.models.lstm_features import (
    FEATURES,
    LEVEL_FLOOR,
    N_FEATURES,
    SEQ_LEN,
    TARGET_MASKED_IDX,
    pad_history,
    scale_counts,
    target_row,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "artifacts" / "demand_lstm.onnx"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# A minimal ONNX model (y = Identity(x), float[1], opset 13) used to probe execution providers
# without touching the real model file.
_PROBE_MODEL = base64.b64decode(
    "CAgSDnJlcHJpY2VyLXByb2JlOjsKEAoBeBIBeSIISWRlbnRpdHkSBXByb2JlWg8KAXgSCgoICAESBAoCCAFiDwoBeRIK"
    "CggIARIECgIIAUIECgAQDQ=="
)
_probe_lock = threading.Lock()
_probe_cache: dict[tuple[str, ...], list[str]] = {}


def _provider_works(provider: str) -> bool:
    """True if a real session created with ``provider`` first actually runs on it."""
    so = ort.SessionOptions()
    # onnxruntime-gpu without the CUDA libraries logs an ERROR ("Failed to load library ...") and
    # a WARNING, then silently falls back to CPU. Severity 3 (ERROR) still lets the first through
    # in onnxruntime 1.31, so the probe runs at 4 (FATAL) and the default goes back to 3 after.
    so.log_severity_level = 4
    ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(_PROBE_MODEL, so, providers=[provider, CPU])
        return bool(sess.get_providers()) and sess.get_providers()[0] == provider
    except Exception as exc:  # a broken provider install must not break scoring
        log.debug("provider %s unusable: %s", provider, exc)
        return False
    finally:
        ort.set_default_logger_severity(3)


def select_providers(preferred: Sequence[str] = (CUDA, CPU)) -> list[str]:
    """The usable subset of ``preferred`` (in order), always ending with the CPU provider.

    A non-CPU provider is kept only if it is in ``ort.get_available_providers()`` *and* a probe
    session created with it reports it first in ``get_providers()`` (onnxruntime-gpu lists CUDA
    as available even when the CUDA/cuDNN libraries are missing, then falls back to CPU). The
    result is cached per process and per ``preferred`` tuple. Probing sets onnxruntime's default
    logger severity to 3 (errors only) for the rest of the process.
    """
    key = tuple(preferred)
    with _probe_lock:
        cached = _probe_cache.get(key)
        if cached is not None:
            return list(cached)
        available = set(ort.get_available_providers())
        chosen: list[str] = []
        for p in key:
            if p == CPU or p in chosen:
                continue
            if p in available and _provider_works(p):
                chosen.append(p)
        chosen.append(CPU)
        _probe_cache[key] = chosen
        log.info("onnxruntime providers selected: %s", chosen)
        return list(chosen)


# --------------------------------------------------------------------------------- inputs


def build_input(
    histories: Sequence[np.ndarray | Sequence[Sequence[float]]],
    candidate_prices: float | Sequence[float] | np.ndarray,
    ref_prices: float | Sequence[float] | np.ndarray,
    next_window_start_ms: int | Sequence[int] | np.ndarray,
    *,
    seq_len: int = SEQ_LEN,
) -> np.ndarray:
    """Raw model input (N·K, seq_len, F) for N SKUs x K candidate prices, SKU-major.

    * ``histories[i]``: SKU ``i``'s closed windows, oldest first, as raw feature rows
      (``models.lstm_features.window_features``), shape (n_i, F) with n_i ≥ 1. The last
      ``seq_len - 1`` rows are used; a shorter history is left-padded by repeating its first
      (oldest) row. An empty history raises ``ValueError`` (no basis for a forecast: fall back).
    * ``candidate_prices``: scalar, (N,) or (N, K); row ``i * K + k`` of the result is SKU ``i``
      at its ``k``-th candidate (``scorer.score(x).reshape(N, K)`` gives the forecasts per SKU).
    * ``ref_prices``: scalar or (N,), the SKU's reference (catalog base) price.
    * ``next_window_start_ms``: scalar or (N,), start of the window being forecast (epoch ms UTC).

    The last row of every sequence is the target window: counts 0, ``log(candidate/ref)`` and the
    target window's hour features.
    """
    n = len(histories)
    cand = np.asarray(candidate_prices, dtype=np.float64)
    if cand.ndim == 0:
        cand = np.full((n, 1), float(cand))
    elif cand.ndim == 1:
        if cand.shape[0] != n:
            raise ValueError(f"candidate_prices has {cand.shape[0]} entries for {n} histories")
        cand = cand[:, None]
    elif cand.ndim != 2 or cand.shape[0] != n:
        raise ValueError(f"candidate_prices must be scalar, (N,) or (N, K); got {cand.shape}")
    k = cand.shape[1]
    ref = np.broadcast_to(np.asarray(ref_prices, dtype=np.float64), (n,))
    start = np.broadcast_to(np.asarray(next_window_start_ms, dtype=np.int64), (n,))
    x = np.empty((n, k, seq_len, N_FEATURES), dtype=np.float32)
    for i, hist in enumerate(histories):
        try:
            x[i, :, : seq_len - 1, :] = pad_history(np.asarray(hist, dtype=np.float32), seq_len - 1)
        except ValueError as exc:
            raise ValueError(f"history {i}: {exc}") from None
    x[:, :, seq_len - 1, :] = target_row(cand, ref[:, None], start[:, None])
    return x.reshape(n * k, seq_len, N_FEATURES)


# --------------------------------------------------------------------------------- scorer


@dataclass(frozen=True)
class _Loaded:
    """Everything that belongs to one loaded model file (swapped as one reference)."""

    session: ort.InferenceSession
    meta: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    seq_len: int
    stat: tuple[int, int]  # (mtime_ns, size) of the .onnx when it was read
    input_name: str
    output_name: str


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


class LstmScorer:
    """Scores raw feature sequences with the ONNX LSTM; thread-safe, hot-reloadable."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        providers: Sequence[str] | None = None,
        device_id: int = 0,
    ) -> None:
        self.path = Path(path) if path is not None else DEFAULT_MODEL_PATH
        self.meta_path = self.path.with_suffix(".json")
        self._providers = list(providers) if providers is not None else select_providers()
        self._device_id = device_id
        self._reload_lock = threading.Lock()
        self._failed_stat: tuple[int, int] | None = None
        self._state: _Loaded = self._load()

    # -- loading -------------------------------------------------------------------
    def _load(self) -> _Loaded:
        stat = _stat_key(self.path)
        data = self.path.read_bytes()
        meta = json.loads(self.meta_path.read_text())
        version = hashlib.sha256(data).hexdigest()[:16]
        if meta.get("version") != version:
            raise ValueError(
                f"metadata {self.meta_path.name} is for model version {meta.get('version')!r}, "
                f"but {self.path.name} is version {version!r}"
            )
        features = tuple(meta.get("features", ()))
        if features != FEATURES:
            raise ValueError(f"model features {features} differ from this code's {FEATURES}")
        mean = np.asarray(meta["norm"]["mean"], dtype=np.float32)
        std = np.asarray(meta["norm"]["std"], dtype=np.float32)
        if mean.shape != (N_FEATURES,) or std.shape != (N_FEATURES,) or not np.all(std > 0):
            raise ValueError("invalid normalisation constants in the model metadata")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        providers: list[Any] = [
            (p, {"device_id": self._device_id}) if p == CUDA else p for p in self._providers
        ]
        session = ort.InferenceSession(data, so, providers=providers)
        return _Loaded(
            session=session,
            meta=meta,
            mean=mean,
            std=std,
            seq_len=int(meta["seq_len"]),
            stat=stat,
            input_name=session.get_inputs()[0].name,
            output_name=session.get_outputs()[0].name,
        )

    def maybe_reload(self) -> bool:
        """Load the model file again if its mtime or size changed; True if a new model is live.

        The new session and metadata replace the old ones in one reference swap, so concurrent
        :meth:`score` calls use either the old or the new model, never a mix. If the file is
        missing, unreadable or its metadata does not match it yet (e.g. the .json is still being
        written), the old model stays live and False is returned; a version mismatch is retried
        on the next call, any other failure only after the file changes again.
        """
        try:
            stat = _stat_key(self.path)
        except OSError:
            return False
        if stat == self._state.stat or stat == self._failed_stat:
            return False
        with self._reload_lock:
            if stat == self._state.stat:
                return False
            try:
                new = self._load()
            except ValueError as exc:
                if "version" in str(exc):
                    log.info("model %s not ready yet: %s", self.path, exc)
                else:
                    log.warning("model %s not reloaded: %s", self.path, exc)
                    self._failed_stat = stat
                return False
            except Exception as exc:
                log.warning("model %s not reloaded: %s", self.path, exc)
                self._failed_stat = stat
                return False
            old = self._state.meta.get("version")
            self._state = new
            self._failed_stat = None
            log.info("demand model reloaded: %s -> %s", old, new.meta.get("version"))
            return True

    # -- properties -----------------------------------------------------------------
    @property
    def provider(self) -> str:
        """The execution provider actually in use (first of ``session.get_providers()``)."""
        return self._state.session.get_providers()[0]

    @property
    def version(self) -> str:
        """Model version: the first 16 hex digits of the sha256 of the .onnx file."""
        return str(self._state.meta["version"])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._state.meta)

    @property
    def seq_len(self) -> int:
        return self._state.seq_len

    @property
    def scale_free(self) -> bool:
        """True if the model takes counts ÷ the SKU's level and forecasts a multiple of it."""
        return self._state.meta.get("scale") == "level"

    # -- scoring ----------------------------------------------------------------------
    def score(self, x: np.ndarray) -> np.ndarray:
        """Expected units (B,) float64 for a batch ``x`` (B, seq_len, F) of *raw* features.

        The target-row count features are zeroed (the layout requires it) and the features are
        normalised with the model's constants before the run. Rows with a non-finite input or a
        non-finite / negative output are returned as ``nan`` (caller falls back); all others are
        finite and ≥ 0.
        """
        st = self._state  # one consistent model for the whole call
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[1:] != (st.seq_len, N_FEATURES):
            raise ValueError(
                f"x must have shape (batch, {st.seq_len}, {N_FEATURES}), got {arr.shape}"
            )
        b = arr.shape[0]
        if b == 0:
            return np.zeros(0, dtype=np.float64)
        arr = arr.copy()
        arr[:, -1, list(TARGET_MASKED_IDX)] = 0.0
        bad_in = ~np.isfinite(arr).all(axis=(1, 2))
        if bad_in.any():
            arr[bad_in] = 0.0
        xn = np.ascontiguousarray((arr - st.mean) / st.std, dtype=np.float32)
        if st.session.get_providers()[0] == CUDA:
            out = self._run_cuda(st, xn)
        else:
            out = st.session.run([st.output_name], {st.input_name: xn})[0]
        units = np.asarray(out, dtype=np.float64).reshape(b)
        bad = bad_in | ~np.isfinite(units) | (units < 0)
        units[bad] = np.nan
        return units

    def _run_cuda(self, st: _Loaded, xn: np.ndarray) -> np.ndarray:
        """Run with IO binding: input from host memory, output allocated on the GPU, copied back."""
        binding = st.session.io_binding()  # one binding per call: bindings are not thread-safe
        binding.bind_cpu_input(st.input_name, xn)
        binding.bind_output(st.output_name, "cuda", self._device_id)
        st.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def forecast(
        self,
        histories: Sequence[np.ndarray | Sequence[Sequence[float]]],
        candidate_prices: float | Sequence[float] | np.ndarray,
        ref_prices: float | Sequence[float] | np.ndarray,
        next_window_start_ms: int | Sequence[int] | np.ndarray,
        levels: float | Sequence[float] | np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, K) expected units: :func:`build_input` + :meth:`score` in one call.

        ``levels`` (scalar or (N,)): each SKU's long-run units per window; a scale-free model
        needs them (``ValueError`` without), a raw-count model ignores them.
        """
        st = self._state  # the model whose metadata decides the scaling scores the batch too
        x = build_input(
            histories, candidate_prices, ref_prices, next_window_start_ms, seq_len=st.seq_len
        )
        n = len(histories)
        if st.meta.get("scale") != "level":
            return self.score(x).reshape(n, -1)
        if levels is None:
            raise ValueError("this model is scale-free: forecast() needs each SKU's level")
        lv = np.maximum(np.broadcast_to(np.asarray(levels, dtype=np.float64), (n,)), LEVEL_FLOOR)
        rows = np.repeat(lv, x.shape[0] // n if n else 0)
        return (self.score(scale_counts(x, rows)) * rows).reshape(n, -1)


def model_file_exists(path: str | Path | None = None) -> bool:
    """True if the model file and its metadata exist (cheap check for optional wiring)."""
    p = Path(path) if path is not None else DEFAULT_MODEL_PATH
    return p.is_file() and p.with_suffix(".json").is_file() and os.access(p, os.R_OK)
