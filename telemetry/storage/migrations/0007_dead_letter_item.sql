-- One OTLP message carries many spans and evaluations: each bad one is its own dead letter.
-- source_item is 0 for a whole message (every JSON message, an unreadable OTLP message) and
-- n >= 1 for the n-th event an OTLP message carries; (source_topic, source_partition,
-- source_offset, source_item) is a dead letter's identity.
ALTER TABLE {database}.dead_letters ADD COLUMN IF NOT EXISTS source_item UInt32 DEFAULT 0 AFTER source_offset;
