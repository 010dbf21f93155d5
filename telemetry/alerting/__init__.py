"""Alert lifecycle, payload formats and delivery to the topic, the table and webhooks."""
