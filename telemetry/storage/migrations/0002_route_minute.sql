-- Per route x served model x minute of request time. route_minute_state is written only by
-- the two materialized views; analysts read the route_minute / route_hour / route_day views.

CREATE TABLE IF NOT EXISTS {database}.route_minute_state
(
    minute DateTime('UTC'),
    route LowCardinality(String),
    model LowCardinality(String),
    team SimpleAggregateFunction(max, LowCardinality(String)),
    requests SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    errors_by_type SimpleAggregateFunction(sumMap, Map(String, UInt64)),
    cost_usd SimpleAggregateFunction(sum, Float64),
    priced_requests SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    cached_input_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    system_prompt_tokens SimpleAggregateFunction(sum, UInt64),
    latency_state AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    ttft_state AggregateFunction(quantilesDD(0.01, 0.5, 0.95, 0.99), Float64),
    truncations SimpleAggregateFunction(sum, UInt64),
    attempts SimpleAggregateFunction(sum, UInt64),
    first_attempts SimpleAggregateFunction(sum, UInt64),
    judged SimpleAggregateFunction(sum, UInt64),
    passed SimpleAggregateFunction(sum, UInt64),
    judged_cost_usd SimpleAggregateFunction(sum, Float64),
    late_verdicts SimpleAggregateFunction(sum, UInt64),
    verdict_rows SimpleAggregateFunction(sum, UInt64),
    eval_cost_usd SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (route, model, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.route_minute_requests_mv
TO {database}.route_minute_state AS
SELECT
    toStartOfMinute(ts) AS minute,
    route,
    served_model AS model,
    max(r.team) AS team,
    count() AS requests,
    countIf(status = 'error') AS errors,
    sumMap(CAST(if(status = 'error', map(error_type, 1), map()), 'Map(String, UInt64)')) AS errors_by_type,
    sum(ifNull(r.cost_usd, 0)) AS cost_usd,
    countIf(r.cost_usd IS NOT NULL) AS priced_requests,
    sum(r.input_tokens) AS input_tokens,
    sum(r.output_tokens) AS output_tokens,
    sum(r.cached_input_tokens) AS cached_input_tokens,
    sum(r.reasoning_tokens) AS reasoning_tokens,
    sum(r.system_prompt_tokens) AS system_prompt_tokens,
    quantilesDDState(0.01, 0.5, 0.95, 0.99)(latency_ms) AS latency_state,
    quantilesDDStateIf(0.01, 0.5, 0.95, 0.99)(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL) AS ttft_state,
    countIf(status = 'ok' AND finish_reason = 'length') AS truncations,
    sum(attempt) AS attempts,
    countIf(attempt = 1) AS first_attempts
FROM {database}.requests AS r
GROUP BY minute, route, model;

-- Quality columns count verdicts of kind 'online' (the continuous judge); every kind is in
-- the verdicts table and the route_evaluator_hour view.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.route_minute_verdicts_mv
TO {database}.route_minute_state AS
SELECT
    toStartOfMinute(request_ts) AS minute,
    route,
    served_model AS model,
    max(v.team) AS team,
    countIf(v.kind = 'online') AS judged,
    countIf(v.kind = 'online' AND v.passed = 1) AS passed,
    sumIf(ifNull(v.cost_usd, 0), v.kind = 'online') AS judged_cost_usd,
    countIf(late = 1) AS late_verdicts,
    count() AS verdict_rows,
    sum(ifNull(v.eval_cost_usd, 0)) AS eval_cost_usd
FROM {database}.verdicts AS v
GROUP BY minute, route, model;
