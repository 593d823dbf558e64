"""Contract testing: a reference client, schema-driven strategies, checks and a runner."""
