"""The dashboard: a live, read-only picture of cost, quality and latency per route x model.

Served by the worker at ``/`` of its HTTP port and by ``telemetry ui`` against any DSN; the same
charts go into ``telemetry report ... --html FILE``. Layers, each testable alone:

- :mod:`telemetry.dashboard.queries`: the SQL text, one template per panel, filled in for the
  built-in pages or for Grafana (``tools/grafana.py`` writes ``deploy/grafana`` from them).
- :mod:`telemetry.dashboard.views`: runs the queries through a :data:`telemetry.sql.Query`
  (blocking) and turns rows into page models (pure builders, explicit times).
- :mod:`telemetry.dashboard.charts` and :mod:`telemetry.dashboard.pages`: pure SVG and HTML.
- :mod:`telemetry.dashboard.auth`: the token decision (pure).
- :mod:`telemetry.dashboard.web`: HTTP glue for the worker's Faust app and ``telemetry ui``.
"""
