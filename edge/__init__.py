"""The edge agent: readers, pipeline, durable outbox and publisher."""
