"""The services one server process holds, built once at start-up and shared by every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from outcrop.core.catalog import Catalog
from outcrop.core.crypto import MasterKey
from outcrop.core.governance import CallContext
from outcrop.core.identity import IdentityService
from outcrop.core.inference import InferenceService, ModelPool
from outcrop.plugins import engine_classes, plugin_manager
from outcrop.server.auth import authenticate
from outcrop.settings import Settings
from outcrop.storage.db import make_engine, migrate, session_factory


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    inference: InferenceService
    identity: IdentityService

    @classmethod
    def build(cls, settings: Settings, plugins: list[object] | None = None) -> Services:
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.home.chmod(0o700)
        db = make_engine(settings.database_url)
        migrate(db)
        identity = IdentityService(session_factory(db), MasterKey.from_file(settings.home / "master.key"),
                                   settings.home / "credentials.json")
        catalog = Catalog.load(settings)
        pool = ModelPool(settings, engine_classes(plugin_manager(plugins)))
        return cls(settings, catalog, InferenceService(settings, catalog, pool), identity)

    def close(self) -> None:
        self.inference.pool.close()


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def operation(name: str, bearer_only: bool = False) -> Callable[[Request], Awaitable[CallContext]]:
    """A route dependency: authenticate the request and describe it for the governance hook."""

    async def dependency(request: Request) -> CallContext:
        who = await authenticate(request, services(request).identity, bearer_only=bearer_only)
        client = request.client.host if request.client else None
        return CallContext(who, name, source_ip=client, user_agent=request.headers.get("user-agent"))

    return dependency
