"""The closed-loop market simulator: pure logic, no Kafka, deterministic for a seed.

- ``truth``: the hidden demand truth per SKU, its demand functions and the oracle price.
- ``market``: ``Market``, a simulated shop whose truths react to the prices applied to it.
"""
