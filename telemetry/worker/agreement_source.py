"""The detection owner's agreement source: (LLM judge, human) verdict pairs per route and hour.

Every input refresh (:mod:`telemetry.worker.stored_inputs`) one query over the ``verdicts``
table gives, per (route, judge, UTC hour of the *request's* time), the 2x2 counts of pairs of
verdicts on the same request: the judge's (kind ``online``, one series per evaluator name incl.
version) and the human label's (kind ``human``). Several human labels of one request count as
their majority; a tie is left out. Only verdicts made up to the detectors' event time count, so
a replay or a backfill reads the pairs as they stood then. The hours span the longest
``judge_recent_window + judge_baseline_window`` of the routes file; per route the
:data:`~telemetry.detect.judge.MAX_JUDGES_PER_ROUTE` judges with the most pairs.

Request time, not label time: a judge's behaviour belongs to when it judged (seconds after the
request), and human labels come hours or days later; an hour's counts keep filling in as they
arrive, like every bucket of this product. The input is
:data:`telemetry.detect.agreement.JudgeAgreementInput` under
:data:`~telemetry.detect.agreement.INPUT_KEY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetry.detect.agreement import HOUR_MS, INPUT_KEY, HourPairs, Pairs
from telemetry.detect.judge import MAX_JUDGES_PER_ROUTE, JudgePolicy
from telemetry.reports.query import ms_sql
from telemetry.routes import RoutesConfig
from telemetry.settings import Settings
from telemetry.storage.store import Store

_QUERY = """
WITH
    humans AS (
        SELECT request_id, any(route) AS human_route, min(request_ts) AS human_request_ts, avg(passed) AS share
        FROM {db}.verdicts
        WHERE kind = 'human' AND request_ts >= {since} AND request_ts <= {now} AND verdict_ts <= {now}
        GROUP BY request_id
        HAVING share != 0.5
    ),
    judges AS (
        SELECT request_id, evaluator, argMax(passed, verdict_ts) AS judge_passed
        FROM {db}.verdicts
        WHERE kind = 'online' AND request_ts >= {since} AND request_ts <= {now} AND verdict_ts <= {now}
          AND request_id IN (SELECT request_id FROM humans)
        GROUP BY request_id, evaluator
    ),
    buckets AS (
        SELECT h.human_route AS route, j.evaluator AS judge,
               intDiv(toUnixTimestamp64Milli(h.human_request_ts), {hour_ms}) AS hour,
               countIf(j.judge_passed = 1 AND h.share > 0.5) AS pass_pass,
               countIf(j.judge_passed = 1 AND h.share < 0.5) AS pass_fail,
               countIf(j.judge_passed = 0 AND h.share > 0.5) AS fail_pass,
               countIf(j.judge_passed = 0 AND h.share < 0.5) AS fail_fail
        FROM judges AS j INNER JOIN humans AS h ON j.request_id = h.request_id
        GROUP BY route, judge, hour
    ),
    ranked AS (
        SELECT *, dense_rank() OVER (PARTITION BY route ORDER BY judge_pairs DESC, judge) AS judge_rank
        FROM (
            SELECT *, sum(pass_pass + pass_fail + fail_pass + fail_fail) OVER (PARTITION BY route, judge) AS judge_pairs
            FROM buckets
        )
    )
SELECT route, judge, hour, pass_pass, pass_fail, fail_pass, fail_fail
FROM ranked
WHERE judge_rank <= {max_judges}
ORDER BY route, judge_rank, hour
"""


def lookback_hours(routes: RoutesConfig) -> int:
    """The most hours of request time any route's JudgeDrift windows span."""
    policies = [routes.defaults, *routes.routes.values()]
    return max(p.section(JudgePolicy).lookback_hours for p in policies)


def agreement_source(store: Store, settings: Settings, routes: RoutesConfig, now_ms: int) -> Mapping[str, Any]:
    """``{"extra": {"judge_agreement": route -> judge -> (HourPairs, ...)}}``, oldest hour first,
    judges with the most pairs first. Blocks (one query); raises what the client raises."""
    first_hour = now_ms // HOUR_MS - lookback_hours(routes) + 1

    sql = _QUERY.format(db=store.db, since=ms_sql(first_hour * HOUR_MS), now=ms_sql(now_ms), hour_ms=HOUR_MS,
                        max_judges=MAX_JUDGES_PER_ROUTE)  # fmt: skip
    out: dict[str, dict[str, list[HourPairs]]] = {}
    for route, judge, hour, a, b, c, d in store.client.query(sql).result_rows:
        pairs = Pairs(int(a), int(b), int(c), int(d))
        out.setdefault(str(route), {}).setdefault(str(judge), []).append(HourPairs(int(hour), pairs))
    data = {route: {judge: tuple(hours) for judge, hours in judges.items()} for route, judges in out.items()}
    return {"extra": {INPUT_KEY: data}}
