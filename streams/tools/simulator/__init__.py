"""The closed-loop market simulator: pure logic, no Kafka, deterministic for a seed.

- ``truth``: the hidden demand truth per SKU, its demand functions and the oracle price.
- ``market``: ``Market``, a simulated shop whose truths react to the prices applied to it.
- ``families``: demand families (constant elasticity, linear, logit against a promoting
  competitor, regime change, long tail, weekly season, finite stock), each with its exact
  dynamic oracle.
- ``family_market``: ``FamilyMarket``, the market drawn from those families (or ``mix``).
"""
