-- Tier-up gates: the paper trail of a decision to serve a route with a pricier model.
-- One version per state change of each gate (open -> approved | rejected -> applied ->
-- postmortem_due -> closed); the largest `version` is the gate's state, tier_gate_status
-- shows only that. `evidence` is the JSON computed when the gate was opened (quality with
-- intervals, closed-book / gold-context results, cost projection, budget, earlier tier-ups).

CREATE TABLE IF NOT EXISTS {database}.tier_gates
(
    id String,
    version UInt32,
    route LowCardinality(String),
    team LowCardinality(String),
    direction LowCardinality(String),
    current_model LowCardinality(String),
    proposed_model LowCardinality(String),
    proposed_provider LowCardinality(String),
    state LowCardinality(String),
    hypothesis String,
    author String,
    reviewer String,
    review_note String,
    opened_at DateTime64(3, 'UTC'),
    decided_at Nullable(DateTime64(3, 'UTC')),
    applied_at Nullable(DateTime64(3, 'UTC')),
    postmortem_due_at Nullable(DateTime64(3, 'UTC')),
    closed_at Nullable(DateTime64(3, 'UTC')),
    projected_monthly_usd Nullable(Float64),
    realized_monthly_usd Nullable(Float64),
    evidence String,
    findings String,
    updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

CREATE VIEW IF NOT EXISTS {database}.tier_gate_status AS
SELECT * FROM {database}.tier_gates FINAL;
