"""One profile per provider. Adding a provider: its schema files, one module here, its tests."""

from __future__ import annotations

from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.profiles.aimlapi import AimlApi
from wanmock.mockserver.profiles.apiyi import Apiyi
from wanmock.mockserver.profiles.base import Answer, Ask, Context, Profile, describe
from wanmock.mockserver.profiles.dashscope import DashScope
from wanmock.mockserver.profiles.modellix import Modellix

PROFILES: dict[str, type[Profile]] = {p.name: p for p in (Modellix, AimlApi, Apiyi, DashScope)}


def profile_for(name: str, config: ServerConfig) -> Profile:
    return PROFILES[name](config)


__all__ = ["PROFILES", "Answer", "Ask", "Context", "Profile", "describe", "profile_for"]
