-- Core tables: requests, verdicts (joined), pending verdicts, dead letters.
-- Every table the worker writes keeps a deduplication window so that a retried insert
-- (same insert_deduplication_token) never lands twice, in the table or in its views.

CREATE TABLE IF NOT EXISTS {database}.requests
(
    request_id String,
    ts DateTime64(3, 'UTC'),
    route LowCardinality(String),
    team LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    response_model LowCardinality(String),
    served_model LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    cached_input_tokens UInt64,
    reasoning_tokens UInt64,
    system_prompt_tokens UInt64,
    cost_usd Nullable(Float64),
    cost_source LowCardinality(String),
    price_version LowCardinality(String),
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    status LowCardinality(String),
    error_type LowCardinality(String),
    http_status Nullable(UInt16),
    finish_reason LowCardinality(String),
    attempt UInt16,
    prompt_version LowCardinality(String),
    experiment LowCardinality(String),
    tool_calls UInt32,
    tool_errors UInt32,
    tags Map(String, String),
    user_hash String,
    response_hash String,
    schema_version UInt16,
    ingested_at DateTime64(3, 'UTC'),
    source_partition UInt32,
    source_offset UInt64,
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (route, served_model, ts)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {database}.verdicts
(
    request_id String,
    evaluator LowCardinality(String),
    kind LowCardinality(String),
    passed UInt8,
    score Nullable(Float64),
    label String,
    eval_cost_usd Nullable(Float64),
    verdict_ts DateTime64(3, 'UTC'),
    request_ts DateTime64(3, 'UTC'),
    route LowCardinality(String),
    team LowCardinality(String),
    model LowCardinality(String),
    served_model LowCardinality(String),
    cost_usd Nullable(Float64),
    late UInt8,
    lag_seconds Float64,
    joined_at DateTime64(3, 'UTC'),
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(request_ts)
ORDER BY (route, served_model, request_ts)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {database}.verdicts_pending
(
    request_id String,
    evaluator LowCardinality(String),
    kind LowCardinality(String),
    passed UInt8,
    score Nullable(Float64),
    label String,
    eval_cost_usd Nullable(Float64),
    verdict_ts DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = MergeTree
ORDER BY (verdict_ts, request_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    received_at DateTime64(3, 'UTC'),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    reason LowCardinality(String),
    detail String,
    size_bytes UInt64,
    message_key String
)
ENGINE = MergeTree
ORDER BY (source_topic, source_partition, source_offset)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {database}.worker_state
(
    key String,
    value String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY key;
