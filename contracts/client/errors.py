"""The reference client's exceptions, one tree for all providers::

    WanError
    ├── UnsupportedRequest        the provider cannot express this request (raised before any I/O)
    ├── ApiError                  the provider answered with an error
    │   ├── AuthenticationError   missing, invalid or expired key
    │   ├── InvalidRequestError   the provider rejected the request (its message is kept)
    │   ├── RateLimitedError      slow down; ``retry_after`` seconds when the provider says
    │   ├── InsufficientBalanceError  Modellix 402, AI/ML API 403, APIYI 429, DashScope Arrearage
    │   ├── NotFoundError         unknown path or resource
    │   └── ServerError           5xx (on a submit ``outcome_unknown`` is set: the task may exist)
    ├── TaskFailedError           the task ended failed (``code`` is the provider's)
    ├── TaskExpiredError          the task is unknown or past its retention
    ├── WaitTimeout               wait() gave up; the task may still finish
    └── TransportError            no usable answer (connection, timeout, broken body); for a
                                  submit the outcome is unknown and it is never retried blindly

Contract failures are a different family: ``wanmock.contracts.testing.checks.ContractFailure`` (an
AssertionError).
"""

from __future__ import annotations

from typing import Any


class WanError(Exception):
    """Base of every reference-client error."""

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class UnsupportedRequest(WanError):
    """The provider has no way to express this request (checked before any network call)."""


class ApiError(WanError):
    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        code: str | None = None,
        body: Any = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.code = code
        self.body = body
        # A submit answered 5xx may still have created (and billed) the task: check before resubmitting.
        self.outcome_unknown = outcome_unknown


class AuthenticationError(ApiError):
    pass


class InvalidRequestError(ApiError):
    pass


class RateLimitedError(ApiError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InsufficientBalanceError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class ServerError(ApiError):
    pass


class TaskFailedError(WanError):
    def __init__(self, message: str, *, provider: str, task_id: str, code: str | None) -> None:
        super().__init__(message, provider=provider)
        self.task_id = task_id
        self.code = code


class TaskExpiredError(WanError):
    def __init__(self, message: str, *, provider: str, task_id: str) -> None:
        super().__init__(message, provider=provider)
        self.task_id = task_id


class WaitTimeout(WanError):
    def __init__(self, message: str, *, provider: str, task_id: str, last_state: str | None) -> None:
        super().__init__(message, provider=provider)
        self.task_id = task_id
        self.last_state = last_state


class TransportError(WanError):
    def __init__(self, message: str, *, provider: str | None = None, outcome_unknown: bool = False) -> None:
        super().__init__(message, provider=provider)
        self.outcome_unknown = outcome_unknown
