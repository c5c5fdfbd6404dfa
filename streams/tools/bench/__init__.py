"""``repricer bench``: benchmarks that report ratios of two things measured side by side.

- ``run``: dispatch by name, and ``all`` merged into one report.
- ``common``: figures (min/median/max), machine label, bench settings, producing test events.
- ``forecast``: WAPE of each demand model ÷ the best naive baseline; LSTM batching speed-up.
- ``forecast_markets``: ``bench forecast --market``: the same scores per demand family.
- ``ingest``: the worker's events/s ÷ Faust and Quix Streams count-only apps.
- ``scaleout``: two workers in one consumer group ÷ one.
- ``decisions``: the worker's engine in process: decisions/s per tick, state bytes per SKU.
- ``sink``: the project's ClickHouse sink path ÷ one bulk columnar insert.
- ``recovery``: seconds to process again after kill -9, beside a cold start.
"""
