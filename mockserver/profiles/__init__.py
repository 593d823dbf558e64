"""One profile per provider: the shipped ones here, others named by their manifest's ``implementation``
(docs/ARCHITECTURE.md, "Adding a provider")."""

from __future__ import annotations

from wanmock.mockserver.config import ServerConfig
from wanmock.mockserver.profiles.aimlapi import AimlApi
from wanmock.mockserver.profiles.apiyi import Apiyi
from wanmock.mockserver.profiles.base import Answer, Ask, Context, Profile, describe
from wanmock.mockserver.profiles.dashscope import DashScope
from wanmock.mockserver.profiles.modellix import Modellix
from wanmock.schemas import catalog

PROFILES: dict[str, type[Profile]] = {p.name: p for p in (Modellix, AimlApi, Apiyi, DashScope)}


def profile_for(name: str, config: ServerConfig) -> Profile:
    """The profile of ``name``: a shipped one, or the one its manifest's ``implementation`` names."""
    found: type[Profile] | None = PROFILES.get(name) or catalog().provider(name).implementation("profile")
    if found is None:
        raise LookupError(f"no profile for provider {name!r}: name one in its manifest's implementation.profile")
    return found(config)


__all__ = ["PROFILES", "Answer", "Ask", "Context", "Profile", "describe", "profile_for"]
