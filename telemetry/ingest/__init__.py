"""Ingest: raw Kafka messages to priced requests, joined verdicts and dead letters."""
