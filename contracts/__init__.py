"""Client-side wanmock, by audience.

* `wanmock.contracts.client` — the reusable reference client (engine, dialects, errors, models).
* `wanmock.contracts.testing` — the test harness: strategies, checks, runner, pytest plugin.
* `wanmock.contracts.tools` — tools for real providers: drift, recording, probes, cassettes.
"""
