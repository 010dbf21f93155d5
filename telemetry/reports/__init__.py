"""Analyst reports over the telemetry tables: ``telemetry report <name>``.

Each report is a function ``report(query, database, **options)`` returning a typed result with
``to_report()`` (sections for table / CSV / JSON output). ``query`` is any callable running one
read-only statement (:func:`telemetry.reports.query.query_function` builds the CLI's). Windows
end at the newest request in the data, never at the wall clock. Documented in docs/reports.md.
This package imports nothing eagerly, so that ``telemetry --help`` stays fast; import the modules.

- :func:`~telemetry.reports.projection.cost_projection`: a route's cost now and on a candidate model.
- :func:`~telemetry.reports.history.model_history`: served models per day, tier changes, TierSwitch alerts.
- :func:`~telemetry.reports.diagnostics.diagnostics`: closed-book / gold-context gate before a tier-up.
- :func:`~telemetry.reports.tierdown.tier_down`: cheaper models as good as the current; cost per correct rises.
- :func:`~telemetry.reports.canary.canary`: canary against control, PASS / FAIL / INCONCLUSIVE.
"""
