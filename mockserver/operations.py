"""The mock's provider operations: submit, poll, cancel and list, on the task store.

This is the "operation" stage of the pipeline (``pipeline.py``) for the live mock: the request
arrives routed, authenticated, with its body decoded once and its fault rules applied.
"""

from __future__ import annotations

import dataclasses

from starlette.responses import Response
from wanmock.mockserver import timing
from wanmock.mockserver.errors import ApiError
from wanmock.mockserver.limits import JOURNAL_BODY_BYTES
from wanmock.mockserver.pipeline import Pipeline, RequestContext
from wanmock.mockserver.profiles import Ask
from wanmock.mockserver.scrub import Scrubber
from wanmock.mockserver.state import AppState
from wanmock.mockserver.tasks import Task

PER_KEY_ALWAYS = "always"
PER_KEY_OPTION = "option"


class TaskOperations:
    """The live mock's operation stage for one provider."""

    def __init__(self, state: AppState, name: str) -> None:
        self.state = state
        self.name = name
        self.profile = state.served[name].profile
        self.pipeline = Pipeline(state, name, self)
        self.per_key = self.tasks_per_key() or state.config.tasks_per_key

    def tasks_per_key(self) -> bool:
        """Whether a task is readable only with the key that created it (manifest ``task.per_key``:
        "always", or "option" where only the config option ``<provider>_tasks_per_key`` says so)."""
        per_key = self.profile.provider.task_fields.get("per_key")
        if per_key == PER_KEY_OPTION:
            return bool(getattr(self.state.config.options, f"{self.name}_tasks_per_key", False))
        return per_key == PER_KEY_ALWAYS

    def refusal(self, rc: RequestContext, error: ApiError) -> Response | None:
        return None

    async def run(self, rc: RequestContext) -> None:
        name = rc.endpoint
        if name == "submit":
            await self.submit(rc)
            return
        self.state.limiter.check(self.name, rc.owner, rc.now)
        assert rc.match is not None
        if rc.match.endpoint.answered_by == "profile":  # account and upload endpoints
            key_valid = rc.token is not None and self.state.config.key_accepted(rc.token)
            ask = Ask(name or "", rc.query_params, key_valid, rc.ctx)
            rc.reply(*self.profile.serve(ask))
        elif name == "poll":
            await self.poll(rc)
        elif name == "cancel":
            await self.cancel(rc)
        else:
            await self.list_tasks(rc)

    async def submit(self, rc: RequestContext) -> None:
        assert rc.match is not None
        state, profile, io = self.state, self.profile, self.state.io
        limit = state.config.rate_limits.get(self.name)
        unfinished = None
        if limit is not None and limit.concurrency is not None:  # a shared store would load every task
            unfinished = sum(
                1
                for t in await io.run(state.store.tasks, self.name)
                if t.owner == rc.owner and not t.is_terminal(rc.now)
            )
        state.limiter.check(self.name, rc.owner, rc.now, unfinished)
        body = self.pipeline.json_object(rc)
        model = profile.model_for(rc.match.params, body)
        rc.warnings = profile.validate(model, body)
        params = profile.video_params(model, body)
        if params.prompt:  # the prompt is shown in task dumps: without the request's credentials
            prompt = Scrubber.cached(rc.secrets).text(params.prompt)
            params = params if prompt == params.prompt else dataclasses.replace(params, prompt=prompt)
        queue, run = timing.plan(state.config.timing, profile.provider, model.kind, params, state.rng)
        requested_id = rc.match.params.get("model") or body.get("model") or model.id
        small = io.direct and len(rc.raw) <= JOURNAL_BODY_BYTES
        task = Task(
            id=profile.new_task_id(state.rng),
            provider=self.name,
            kind=model.kind,
            model_id=str(requested_id),
            params=params,
            created_at=rc.now,
            started_at=rc.now + queue,
            finished_at=rc.now + queue + run,
            retention_seconds=profile.retention_seconds,
            test_id=rc.test_id,
            owner=rc.owner,
            # the memory store keeps a small body raw, made into the record when read; others
            # write the record (bounded, scrubbed) now: no credential is ever written anywhere
            request={} if small else rc.clean_body,
            request_raw=(rc.raw, rc.joined_secrets) if small else None,
            seq=0,  # numbered by the store as it adds the task (one round trip)
        )
        if rc.rules_set:
            scope = {**rc.scope, "kind": model.kind, "model_id": str(requested_id)}
            for rule in await io.run(state.faults.take, scope, ("fail",)):
                task.final_state, task.error_code, task.error_message = "failed", rule.code, rule.message
        failure = profile.failure_at_submit(model, body)  # accepted now, refused by the task later
        if failure is not None:
            task.final_state, (task.error_code, task.error_message) = "failed", failure
        if io.direct:
            state.store.add(task)
        else:
            await io.run(state.store.add, task)
        rc.task_id = task.id
        rc.reply(200, profile.submit_body(task, rc.ctx))

    async def poll(self, rc: RequestContext) -> None:
        assert rc.task_id is not None  # the poll endpoint always names one
        io = self.state.io
        if rc.prefetched is not None:
            (task,) = rc.prefetched
        elif io.memory is not None:  # the task as last built, read only
            task = io.memory.peek(self.name, rc.task_id)
        elif io.direct:
            task = io.store.get(self.name, rc.task_id)
        else:
            task = await io.run(io.store.get, self.name, rc.task_id)
        if task is None or (self.per_key and task.owner != rc.owner):
            rc.reply(*self.profile.missing_task(rc.task_id, rc.ctx))
        else:
            rc.reply(*self.profile.answer(task, rc.ctx))

    async def cancel(self, rc: RequestContext) -> None:
        assert rc.task_id is not None
        task_id = rc.task_id

        def cancel_if_queued(task: Task) -> None:  # run atomically by the store (compare-and-set)
            if task.is_expired(rc.now) or (self.per_key and task.owner != rc.owner):
                raise ApiError("not_found", f"task {task_id} not found")
            current = task.state_at(rc.now)
            if current != "queued":
                word = self.profile.word(current) if current in self.profile.provider.states else current
                raise ApiError("conflict", f"only a {self.profile.word('queued')} task can be canceled; it is {word}")
            task.finish(rc.now, "canceled")

        if await self.state.io.run(self.state.store.transition, self.name, task_id, cancel_if_queued) is None:
            raise ApiError("not_found", f"task {task_id} not found")
        rc.reply(200, {"request_id": rc.ctx.request_id})

    async def list_tasks(self, rc: RequestContext) -> None:
        tasks = await self.state.io.run(self.state.store.tasks, self.name, rc.test_id)
        if self.per_key:  # another account's tasks are not listed
            tasks = [t for t in tasks if t.owner == rc.owner]
        rc.reply(*self.profile.task_list(tasks, rc.query_params, rc.ctx))
