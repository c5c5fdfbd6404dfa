"""Tools around the engine: simulation, backtests, benchmarks, the demo, history import.

Nothing the worker runs imports from here (tests/unit/project/test_tools_layer.py; the CLI
excepted); tools build the engine the worker runs with
:func:`streams.build.build_engine`, or run ``repricer worker`` processes.

- ``backtest``: ``repricer backtest``, the real engine in process over the market simulator
  (static vs policy vs oracle), and ``run_market``, which the forecast benchmark reuses.
- ``markets``: ``repricer backtest --market``, static vs policy vs a dynamic oracle over the
  demand families and several seeds, per family (median, min, max).
- ``price_audit``: published changes checked against the hard rules apart from the guardrails.
- ``bench/``: ``repricer bench`` (see its package docstring, one line per benchmark module).
- ``demo``: ``repricer demo``, a local broker, embedded ClickHouse, the simulator and a worker.
- ``replay/``: ``repricer replay``, history files into Kafka, then the end-of-input markers.
- ``runner``: a worker as a child process, watched through its stats file (demo, benches, tests).
- ``screenshot``: ``repricer demo --screenshot``, a PNG of the dashboard by headless Chromium.
- ``simulate``: ``repricer simulate``, the market simulator driven through Kafka, closed loop.
- ``simulator/``: the closed-loop market simulator (hidden demand truths, the market).
- ``tail``: ``repricer tail``, the example downstream consumer of ``price-changes``.
- ``holdout``: ``repricer holdout draw``, the catalog topic and ``sales_1m`` read, the stratified
  holdout drawn and written to its file.
- ``uplift_backtest``: ``repricer backtest --holdout``, shadow then live with a holdout over the
  simulator; does the uplift report's interval cover the true effect?
- ``train``: ``repricer train``, the LSTM's training windows (simulated, or read from the sink),
  then training and export with ``models.lstm_train``.
- ``testing``: test doubles shipped with the code (a fixed decider for the engine's tests).
"""
