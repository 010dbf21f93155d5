"""Detection: the pure core that turns request and verdict facts into alert notifications.

Functional core: no I/O, no Kafka, no ClickHouse, no clock — event time is always passed in.

- :mod:`telemetry.detect.facts` — ``RequestFact``, ``VerdictFact`` (the inputs);
- :mod:`telemetry.detect.engine` — ``DetectionEngine``: ``observe_requests``,
  ``observe_verdicts``, ``evaluate(now_ms)``, ``snapshot``/``restore``;
- one module per detector: :mod:`~telemetry.detect.quality` (QualityRegression),
  :mod:`~telemetry.detect.cost` (CostSpike), :mod:`~telemetry.detect.tier` (TierSwitch),
  :mod:`~telemetry.detect.latency` (LatencySLOBreach), :mod:`~telemetry.detect.storm`
  (ErrorStorm), :mod:`~telemetry.detect.retry` (RetryAmplification),
  :mod:`~telemetry.detect.truncation` (TruncationSpike), :mod:`~telemetry.detect.budget`
  (BudgetOverrun);
- :mod:`~telemetry.detect.window` — bounded per-route aggregates shared by request-side detectors;
- :mod:`~telemetry.detect.stats` — Wilson interval, exact binomial tails, CUSUM design;
- :mod:`~telemetry.detect.simulation` — seeded simulation of false alarms and detection delays
  (``python -m telemetry.detect.simulation``); :mod:`~telemetry.detect.testing` — test builders.

The alert lifecycle (pending -> firing -> resolved) is :mod:`telemetry.alerting.lifecycle`; the
per-route configuration is :mod:`telemetry.routes`. This package imports nothing on purpose:
``telemetry.routes`` imports :mod:`telemetry.detect.names` without pulling in the engine.
"""
