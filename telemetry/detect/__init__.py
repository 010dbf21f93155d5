"""Detection: the pure core that turns request and verdict facts into alert notifications.

Functional core: no I/O, no Kafka, no ClickHouse, no clock — event time is always passed in.

- :mod:`telemetry.detect.facts` — ``RequestFact``, ``VerdictFact`` (the inputs);
- :mod:`telemetry.detect.engine` — ``DetectionEngine``: ``observe_requests``,
  ``observe_verdicts``, ``evaluate(now_ms)``, ``snapshot``/``restore``;
- :mod:`telemetry.detect.detector` — the ``Detector`` interface every detector implements;
  :mod:`telemetry.detect.registry` — ``DETECTORS``, the one list of them the engine drives;
  :mod:`telemetry.detect.policy` — ``PolicySection`` (each detector's keys of the routes file)
  and the read-only views of the routes file the engine uses;
- one module per detector: :mod:`~telemetry.detect.quality` (QualityRegression),
  :mod:`~telemetry.detect.cost` (CostSpike), :mod:`~telemetry.detect.tier` (TierSwitch),
  :mod:`~telemetry.detect.latency` (LatencySLOBreach), :mod:`~telemetry.detect.storm`
  (ErrorStorm), :mod:`~telemetry.detect.retry` (RetryAmplification),
  :mod:`~telemetry.detect.truncation` (TruncationSpike), :mod:`~telemetry.detect.silence`
  (TrafficStopped), :mod:`~telemetry.detect.budget` (BudgetOverrun);
- :mod:`~telemetry.detect.window` — bounded per-route aggregates shared by request-side detectors;
- :mod:`~telemetry.detect.stats` — Wilson interval, exact binomial tails, CUSUM design;
- :mod:`~telemetry.detect.simulation` — seeded simulation of false alarms and detection delays
  (``python -m telemetry.detect.simulation``); :mod:`~telemetry.detect.testing` — test builders.

The alert lifecycle (pending -> firing -> resolved) is :mod:`telemetry.alerting.lifecycle`; the
per-route configuration is :mod:`telemetry.routes`, which composes each route's policy from the
registered detectors' sections. Imports go one way: ``telemetry.routes`` imports this package,
and nothing in the detection core imports ``telemetry.routes`` (only the simulation, an
application that writes a routes file of its own, does). This package's ``__init__`` imports nothing.
"""
