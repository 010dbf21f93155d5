"""The llm-telemetry benchmark: ``python -m bench`` (see ``bench.__main__`` and BENCHMARKS.md).

Modules: ``traffic`` (seeded event bodies), ``preload`` and ``kafkautil`` (bulk produce, offsets),
``ceiling`` (bare consumer), ``throughput`` (cold worker, timed to committed), ``latency``
(incident injection, produce-to-alert), ``micro`` (per-step timings), ``probe`` (GC timer and
stack sampler around the unchanged worker), ``procstat`` (/proc figures), ``report`` (pure
assembly of the results).
"""
