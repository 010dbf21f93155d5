-- Analyst-facing views. route_window(bucket_seconds=N) is the one definition of every metric
-- (DOMAIN formulas); route_minute, route_hour and route_day are that view at 60 s, 1 h and 1 d.
-- Ratios are NULL (not 0, not inf) when their denominator is 0.

CREATE VIEW IF NOT EXISTS {database}.route_window AS
SELECT
    toStartOfInterval(minute, toIntervalSecond({bucket_seconds:UInt32})) AS bucket,
    route,
    model,
    max(team) AS team,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sumMap(errors_by_type) AS errors_by_type,
    sum(cost_usd) AS cost_usd,
    sum(priced_requests) AS priced_requests,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(system_prompt_tokens) AS system_prompt_tokens,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(latency_state) AS latency_q,
    quantilesDDMerge(0.01, 0.5, 0.95, 0.99)(ttft_state) AS ttft_q,
    latency_q[1] AS latency_p50_ms,
    latency_q[2] AS latency_p95_ms,
    latency_q[3] AS latency_p99_ms,
    if(isNaN(ttft_q[1]), NULL, ttft_q[1]) AS ttft_p50_ms,
    if(isNaN(ttft_q[2]), NULL, ttft_q[2]) AS ttft_p95_ms,
    if(isNaN(ttft_q[3]), NULL, ttft_q[3]) AS ttft_p99_ms,
    sum(truncations) AS truncations,
    sum(attempts) AS attempts,
    sum(first_attempts) AS first_attempts,
    sum(judged) AS judged,
    sum(passed) AS passed,
    sum(late_verdicts) AS late_verdicts,
    sum(eval_cost_usd) AS eval_cost_usd,
    if(judged = 0, NULL, passed / judged) AS pass_rate,
    if(priced_requests = 0, NULL, cost_usd / priced_requests) AS cost_per_request,
    if(passed = 0 OR priced_requests = 0, NULL, (cost_usd / priced_requests) / (passed / judged)) AS cost_per_correct,
    if(requests = 0, NULL, judged / requests) AS judged_fraction,
    if(requests = 0, NULL, errors / requests) AS error_rate,
    if(requests = errors, NULL, truncations / (requests - errors)) AS truncation_rate,
    if(first_attempts = 0, NULL, attempts / first_attempts) AS retry_amplification,
    if(input_tokens + output_tokens = 0, NULL, 1000 * cost_usd / (input_tokens + output_tokens)) AS cost_per_1k_tokens,
    if(input_tokens = 0, NULL, system_prompt_tokens / input_tokens) AS system_prompt_share
FROM {database}.route_minute_state
GROUP BY bucket, route, model;

CREATE VIEW IF NOT EXISTS {database}.route_minute AS
SELECT bucket AS minute, * EXCEPT (bucket, latency_q, ttft_q) FROM {database}.route_window(bucket_seconds = 60);

CREATE VIEW IF NOT EXISTS {database}.route_hour AS
SELECT bucket AS hour, * EXCEPT (bucket, latency_q, ttft_q) FROM {database}.route_window(bucket_seconds = 3600);

CREATE VIEW IF NOT EXISTS {database}.route_day AS
SELECT bucket AS day, * EXCEPT (bucket, latency_q, ttft_q) FROM {database}.route_window(bucket_seconds = 86400);

-- Pass rate per evaluator (name incl. version) and kind: closed_book / gold_context results,
-- human labels, user feedback. Never mixes judge versions.
CREATE VIEW IF NOT EXISTS {database}.route_evaluator_hour AS
SELECT
    toStartOfHour(request_ts) AS hour,
    route,
    served_model AS model,
    evaluator,
    kind,
    count() AS judged,
    countIf(passed = 1) AS passed,
    passed / judged AS pass_rate,
    avg(score) AS mean_score,
    countIf(late = 1) AS late_verdicts,
    sum(ifNull(eval_cost_usd, 0)) AS eval_cost_usd
FROM {database}.verdicts
GROUP BY hour, route, model, evaluator, kind;

-- Models seen without a price: their cost is NULL, never 0. Add them to the price overrides.
CREATE VIEW IF NOT EXISTS {database}.unpriced_models AS
SELECT provider, served_model AS model, count() AS requests, min(ts) AS first_seen, max(ts) AS last_seen
FROM {database}.requests
WHERE cost_usd IS NULL
GROUP BY provider, model;

-- Verdicts whose request has not arrived (yet). Older than the join horizon = orphaned.
CREATE VIEW IF NOT EXISTS {database}.verdicts_unjoined AS
SELECT p.*
FROM {database}.verdicts_pending AS p
LEFT ANTI JOIN {database}.verdicts AS v ON p.request_id = v.request_id AND p.evaluator = v.evaluator;

-- Dead letters per hour, topic and reason.
CREATE VIEW IF NOT EXISTS {database}.dead_letter_counts AS
SELECT toStartOfHour(received_at) AS hour, source_topic, reason, count() AS messages
FROM {database}.dead_letters
GROUP BY hour, source_topic, reason;
