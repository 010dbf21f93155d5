"""The detection owner's canary source: each declared canary's running totals, for CanaryVerdict.

Every input refresh (``telemetry.worker.stored_inputs``), for every route whose routes-file table
declares a canary (:class:`telemetry.detect.canary.CanarySpec`), two queries read the totals of
both arms from the canary's start up to the detectors' event time ``now_ms``
(:class:`telemetry.detect.canary.CanaryInput`, under ``extra["canary"][route]``):

- ``requests``: per arm, requests, errors, ok requests, ok requests slower than each latency
  target of the criteria, priced requests and the sum and sum of squares of their cost;
- ``verdicts`` of the canary's ``kinds`` (and ``evaluator`` when set) on those requests: judged
  and passed, per arm (joined to ``requests`` for the arm when arms are experiment values).

Arms: the canary is the requests served by ``model`` (``served_model``), or with ``arm`` those
whose ``experiment`` is ``arm``; the control is every other request of the route, or with
``control`` those of that arm. The start is the declared ``start``, else the first canary request
within the last ``deadline`` (a canary running longer than its deadline is decided by then).
Both tables are ordered by route first, so each query reads one route's rows since the start.
Blocks (runs in the refresher's thread); raises the client's errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry.detect.canary import ArmTotals, CanaryInput, CanaryPolicy, CanarySpec
from telemetry.reports.query import ms_sql, sql_string
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.storage.store import Store


def arm_conditions(spec: CanarySpec, prefix: str = "") -> tuple[str, str]:
    """SQL conditions ``(canary, control)`` on a ``requests`` row (columns prefixed by ``prefix``)."""
    canary = (f"{prefix}experiment = {sql_string(spec.arm)}" if spec.arm
              else f"{prefix}served_model = {sql_string(spec.model)}")  # fmt: skip
    control = f"{prefix}experiment = {sql_string(spec.control)}" if spec.control else f"NOT ({canary})"
    return canary, control


def read_canary(store: Store, route: str, spec: CanarySpec, now_ms: int) -> CanaryInput:
    """The totals of ``route``'s canary up to ``now_ms``. Blocks."""
    db, r = store.db, sql_string(route)
    canary, control = arm_conditions(spec)
    key = spec.key(route)
    start = spec.start_ms
    if start is None:
        first = store.client.query(
            f"SELECT count() AS n, toUnixTimestamp64Milli(min(ts)) AS first_ms FROM {db}.requests "
            f"WHERE route = {r} AND {canary} AND ts >= {ms_sql(now_ms - spec.deadline)} AND ts <= {ms_sql(now_ms)}"
        ).result_rows[0]
        if not int(first[0]):
            return CanaryInput(route, key, None, now_ms, ArmTotals(), ArmTotals())
        start = int(first[1])
    targets = spec.latency_targets
    slow = "".join(f", countIf(status = 'ok' AND latency_ms > {t!r}) AS slow_{i}" for i, t in enumerate(targets))
    result = store.client.query(
        f"SELECT {canary} AS is_canary, count() AS requests, countIf(status = 'error') AS errors, "
        f"countIf(status = 'ok') AS ok{slow}, countIf(cost_usd IS NOT NULL) AS priced, "
        f"sum(ifNull(cost_usd, 0)) AS cost, sum(ifNull(cost_usd, 0) * ifNull(cost_usd, 0)) AS cost_sq "
        f"FROM {db}.requests WHERE route = {r} AND ts >= {ms_sql(start)} AND ts <= {ms_sql(now_ms)} "
        f"AND (({canary}) OR ({control})) GROUP BY is_canary"
    )  # fmt: skip
    requests: dict[bool, dict[str, Any]] = {bool(row[0]): dict(zip(result.column_names, row)) for row in result.result_rows}
    kinds = ", ".join(sql_string(k) for k in spec.kinds)
    judge_filter = f"v.kind IN ({kinds})" + (f" AND v.evaluator = {sql_string(spec.evaluator)}" if spec.evaluator else "")
    window = f"v.request_ts >= {ms_sql(start)} AND v.request_ts <= {ms_sql(now_ms)}"
    if spec.arm or spec.control:  # arms are experiment values: the verdicts table has none, join
        q_canary, q_control = arm_conditions(spec, "q.")
        sql = (f"SELECT {q_canary} AS is_canary, count() AS judged, countIf(v.passed = 1) AS passed "
               f"FROM {db}.verdicts AS v INNER JOIN (SELECT request_id, experiment, served_model FROM {db}.requests "
               f"WHERE route = {r} AND ts >= {ms_sql(start)} AND ts <= {ms_sql(now_ms)}) AS q ON v.request_id = q.request_id "
               f"WHERE v.route = {r} AND {judge_filter} AND {window} AND (({q_canary}) OR ({q_control})) GROUP BY is_canary")  # fmt: skip
    else:
        v_canary, v_control = arm_conditions(spec, "v.")
        sql = (f"SELECT {v_canary} AS is_canary, count() AS judged, countIf(v.passed = 1) AS passed "
               f"FROM {db}.verdicts AS v WHERE v.route = {r} AND {judge_filter} AND {window} "
               f"AND (({v_canary}) OR ({v_control})) GROUP BY is_canary")  # fmt: skip
    verdicts = {bool(row[0]): (int(row[1]), int(row[2])) for row in store.client.query(sql).result_rows}

    def arm(is_canary: bool) -> ArmTotals:
        row = requests.get(is_canary)
        judged, passed = verdicts.get(is_canary, (0, 0))
        if row is None:
            return ArmTotals(judged=judged, passed=passed)
        return ArmTotals(
            requests=int(row["requests"]), errors=int(row["errors"]), ok=int(row["ok"]),
            slow={t: int(row[f"slow_{i}"]) for i, t in enumerate(targets)}, priced=int(row["priced"]),
            cost=float(row["cost"] or 0.0), cost_sq=float(row["cost_sq"] or 0.0), judged=judged, passed=passed,
        )  # fmt: skip

    return CanaryInput(route, key, start, now_ms, arm(True), arm(False))


def canary_source(store: Store, settings: Settings, routes: RoutesConfig, now_ms: int) -> Mapping[str, Any]:
    """The source of ``telemetry.worker.stored_inputs``: ``{"extra": {"canary": {route: CanaryInput}}}``
    for every route declaring a canary. Blocks."""
    out: dict[str, CanaryInput] = {}
    for route, policy in routes.routes.items():
        spec = policy.section(CanaryPolicy).canary
        if spec.model:
            out[route] = read_canary(store, route, spec, now_ms)
    return {"extra": {"canary": out}}
