-- Alert history: one row per notification (first firing, repeats, resolution).

CREATE TABLE IF NOT EXISTS {database}.alerts
(
    emitted_at DateTime64(3, 'UTC'),
    id String,
    fingerprint String,
    status LowCardinality(String),
    alertname LowCardinality(String),
    route LowCardinality(String),
    model LowCardinality(String),
    team LowCardinality(String),
    severity LowCardinality(String),
    env LowCardinality(String),
    sequence UInt32,
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    decided_at DateTime64(3, 'UTC'),
    summary String,
    description String,
    labels Map(String, String),
    annotations Map(String, String),
    evidence String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(starts_at)
ORDER BY (route, alertname, starts_at, fingerprint, sequence)
SETTINGS non_replicated_deduplication_window = 10000;
