-- Prompt tokens written to the provider's prompt cache (priced at the cache-write rate), part of
-- input_tokens like cached_input_tokens. Rows stored before this migration read 0.

ALTER TABLE {database}.requests ADD COLUMN IF NOT EXISTS cache_write_tokens UInt64 DEFAULT 0 AFTER cached_input_tokens;
