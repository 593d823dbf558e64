"""The test harness: schema-driven strategies, contract checks, the runner and the pytest plugin."""
