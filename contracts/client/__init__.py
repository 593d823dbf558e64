"""The reusable reference client for the Wan 2.7 video APIs: one engine, four dialects.

>>> from wanmock.contracts.client import WanClient, TextToVideo
>>> client = WanClient("dashscope", api_key="sk-...", base_url="http://127.0.0.1:8000/dashscope")  # doctest: +SKIP
"""

from wanmock.contracts.client.engine import AsyncWanClient, Engine, WanClient, api_key_from_env, api_key_variable
from wanmock.contracts.client.errors import (
    ApiError,
    AuthenticationError,
    InsufficientBalanceError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TaskExpiredError,
    TaskFailedError,
    TransportError,
    UnsupportedRequest,
    WaitTimeout,
    WanError,
)
from wanmock.contracts.client.models import (
    ImageToVideo,
    PreparedRequest,
    TaskHandle,
    TaskStatus,
    TextToVideo,
    VideoEdit,
)

__all__ = [
    "ApiError",
    "AsyncWanClient",
    "AuthenticationError",
    "Engine",
    "ImageToVideo",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "NotFoundError",
    "PreparedRequest",
    "RateLimitedError",
    "ServerError",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskHandle",
    "TaskStatus",
    "TextToVideo",
    "TransportError",
    "UnsupportedRequest",
    "VideoEdit",
    "WaitTimeout",
    "WanClient",
    "WanError",
    "api_key_from_env",
    "api_key_variable",
]
