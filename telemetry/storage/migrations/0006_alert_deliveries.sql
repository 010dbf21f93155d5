-- Webhook outbox: one version per state change of each (notification, channel) delivery.
-- A delivery is recorded `pending` before its first attempt; each attempt writes a new version
-- (attempts, last status, next attempt time); `delivered` and `failed` are final. The newest
-- version (largest updated_at) is the delivery's state; alert_delivery_status shows only that.

CREATE TABLE IF NOT EXISTS {database}.alert_deliveries
(
    alert_id String,
    channel LowCardinality(String),
    channel_kind LowCardinality(String),
    fingerprint String,
    alertname LowCardinality(String),
    route LowCardinality(String),
    status LowCardinality(String),
    sequence UInt32,
    state LowCardinality(String),
    attempts UInt32,
    last_status LowCardinality(String),
    last_error String,
    next_attempt_at DateTime64(3, 'UTC'),
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC'),
    payload String
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (alert_id, channel)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE VIEW IF NOT EXISTS {database}.alert_delivery_status AS
SELECT
    alert_id, channel, channel_kind, fingerprint, alertname, route, status, sequence, state, attempts,
    last_status, last_error, next_attempt_at, created_at, updated_at
FROM {database}.alert_deliveries
ORDER BY alert_id, channel, updated_at DESC
LIMIT 1 BY alert_id, channel;
