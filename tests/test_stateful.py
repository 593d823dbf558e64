"""A stateful test: hypothesis chooses client actions *and* provider behaviour (faults, 429
bursts, forced failures, clock jumps, expiry). The client never hangs, never loses a task, and
reports every outcome as the provider decided it."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule
from wanmock.contracts.client import errors
from wanmock.contracts.client.engine import WanClient
from wanmock.contracts.client.models import TaskHandle
from wanmock.contracts.client.transport import ASGIThreadTransport
from wanmock.contracts.testing import strategies
from wanmock.mockserver.app import create_app
from wanmock.mockserver.clock import ManualClock
from wanmock.mockserver.config import ServerConfig
from wanmock.schemas import catalog

PROVIDERS = sorted(catalog().providers)


class ClientAgainstMisbehavingProvider(RuleBasedStateMachine):
    handles = Bundle("handles")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.app = create_app(ServerConfig(clock=self.clock, timing="fast", seed=11))
        self.transport = ASGIThreadTransport(self.app)
        self.admin = httpx.Client(transport=self.transport, base_url="http://mock")
        self.clients = {
            p: WanClient(
                p,
                "test-key",
                base_url=f"http://mock/{p}",
                transport=self.transport,
                sleep=self.clock.advance,
                clock=self.clock.now,
                poll_retries=2,
            )
            for p in PROVIDERS
        }
        self.submitted: dict[tuple[str, str], str] = {}  # (provider, task id) -> expected end
        self.pending_faults = 0

    def teardown(self) -> None:
        self.admin.close()
        self.transport.shutdown()
        self.app.state.wanmock.media.close()

    def truth(self, provider: str, task_id: str) -> dict[str, Any]:
        response = self.admin.get(f"/__admin/tasks/{provider}/{task_id}")
        assert response.status_code == 200, f"the mock lost task {provider}/{task_id}"
        return response.json()  # type: ignore[no-any-return]

    @rule(target=handles, provider=st.sampled_from(PROVIDERS), data=st.data())
    def submit(self, provider: str, data: st.DataObject) -> Any:
        request = data.draw(strategies.video_requests(provider))
        try:
            handle = self.clients[provider].submit(request)
        except (errors.RateLimitedError, errors.ServerError, errors.TransportError) as exc:
            if self.pending_faults == 0:
                raise AssertionError(f"unexpected {type(exc).__name__}: {exc}") from exc
            self.pending_faults -= 1
            return None
        self.submitted[(provider, handle.task_id)] = "succeeded"
        return handle

    @rule(
        provider=st.sampled_from(PROVIDERS),
        status=st.sampled_from([429, 500, 503]),
        count=st.integers(1, 3),
        action=st.sampled_from(["error", "drop"]),
    )
    def misbehave_on_submit(self, provider: str, status: int, count: int, action: str) -> None:
        rule_ = {"action": action, "provider": provider, "endpoint": "submit", "count": count}
        if action == "error":
            rule_ |= {"status": status, "retry_after": 1}
        assert self.admin.post("/__admin/faults", json=rule_).status_code == 201
        self.pending_faults += count

    @rule(status=st.sampled_from([429, 503]), count=st.integers(1, 2))
    def burst_on_polls(self, status: int, count: int) -> None:
        rule_ = {"action": "error", "endpoint": "poll", "status": status, "retry_after": 2, "count": count}
        assert self.admin.post("/__admin/faults", json=rule_).status_code == 201

    @rule(seconds=st.floats(0, 10))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(handle=handles, code=st.sampled_from(["InvalidParameter", "DataInspectionFailed"]))
    def provider_fails_it(self, handle: TaskHandle | None, code: str) -> None:
        if handle is None:
            return
        response = self.admin.post(f"/__admin/tasks/{handle.provider}/{handle.task_id}/fail", json={"code": code})
        if response.status_code == 200:
            self.submitted[(handle.provider, handle.task_id)] = "failed"
        else:
            assert response.status_code == 409  # already finished: terminal states are sticky

    @rule(handle=handles)
    def provider_expires_it(self, handle: TaskHandle | None) -> None:
        if handle is None:
            return
        if self.admin.post(f"/__admin/tasks/{handle.provider}/{handle.task_id}/expire").status_code == 200:
            self.submitted[(handle.provider, handle.task_id)] = "expired"

    @precondition(lambda self: self.submitted)
    @rule(handle=consumes(handles))
    def client_waits(self, handle: TaskHandle | None) -> None:
        if handle is None:
            return
        client = self.clients[handle.provider]
        started = self.clock.now()
        try:
            status = client.wait(handle, timeout=600)
            outcome = status.state
        except errors.TaskFailedError:
            outcome = "failed"
        except errors.TaskExpiredError:
            outcome = "expired"
        except (errors.RateLimitedError, errors.ServerError):
            self.admin.delete("/__admin/faults")  # a poll burst outlasted the retries; the next wait recovers
            return
        assert self.clock.now() - started <= 600 + 60, "the client waited past its timeout"
        truth = self.truth(handle.provider, handle.task_id)["state"]
        assert outcome == truth, f"client reported {outcome}, the provider says {truth}"
        assert outcome == self.submitted[(handle.provider, handle.task_id)]

    @invariant()
    def no_task_is_lost(self) -> None:
        for provider, task_id in self.submitted:
            self.truth(provider, task_id)


ClientAgainstMisbehavingProvider.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestClientAgainstMisbehavingProvider = ClientAgainstMisbehavingProvider.TestCase
