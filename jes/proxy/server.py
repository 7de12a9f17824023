"""The proxy's listeners: the trusted one of the distributor, and the scoped one tasks reach.

* trusted: ``JES_API_PROXY_HOST:API_PROXY_PORT`` (``127.0.0.1`` by default, as the distributor binds
  localhost: only the containers of the pod reach it) — no token needed, as with the distributor;
* scoped (only when ``JES_API_PROXY_TASK_PORT`` is set): ``0.0.0.0:<port>``, where task pods reach
  it; every route but ``/health`` needs a token minted for the task (:mod:`jes.proxy.scopes`).

Both are the same app (:func:`jes.proxy.app.proxy_app`) over the same shared client, served by
uvicorn in the caller's event loop.
"""

from __future__ import annotations

import httpx

from jes import errors
from jes.clients.keptn.auth import KeptnAuth
from jes.proxy.app import ASGIApp, ErrorLog, ForwardEvent, Secrets, proxy_app
from jes.proxy.routes import Routes, routes_for
from jes.proxy.scopes import ScopeStore
from jes.settings import Settings
from jes.util.asgiserver import AsgiServer

#: ``API_PROXY_PORT`` when it is not set (the distributor's default; ``jes serve`` passes its own choice).
DEFAULT_PORT = 8081
TASK_HOST = "0.0.0.0"


class ProxyServer:
    """One or two listeners; :meth:`start` and :meth:`stop` both of them."""

    def __init__(
        self,
        trusted_app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        task_app: ASGIApp | None = None,
        task_port: int | None = None,
        task_host: str = TASK_HOST,
    ) -> None:
        self.trusted = AsgiServer(trusted_app, host=host, port=port, setting="API_PROXY_PORT", name="jes-api-proxy")
        self.task: AsgiServer | None = None
        if task_app is not None and task_port is not None:
            self.task = AsgiServer(
                task_app, host=task_host, port=task_port, setting="JES_API_PROXY_TASK_PORT", name="jes-api-proxy-tasks"
            )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        http: httpx.AsyncClient,
        forward_event: ForwardEvent,
        on_error_log: ErrorLog | None = None,
        scopes: ScopeStore | None = None,
        secrets: Secrets | None = None,
        routes: Routes | None = None,
    ) -> ProxyServer:
        """Both listeners as the settings say. ``scopes`` is the store the service mints task
        tokens in (needed when ``JES_API_PROXY_TASK_PORT`` is set); ``secrets`` defaults to what the
        shared client's auth knows plus the token and OAuth secret of the settings."""
        if settings.api_proxy_task_port is not None and scopes is None:
            raise errors.JesError("JES_API_PROXY_TASK_PORT is set but no ScopeStore was given to mint task tokens")
        chosen_routes = routes or routes_for(settings)
        chosen_secrets = secrets or default_secrets(settings, http)

        def build(scoped: bool) -> ASGIApp:
            return proxy_app(
                http=http,
                routes=chosen_routes,
                forward_event=forward_event,
                on_error_log=on_error_log,
                api_proxy_path=settings.api_proxy_path,
                event_forwarding_path=settings.event_forwarding_path,
                max_payload_bytes=settings.api_proxy_max_payload_bytes_kb * 1024,
                timeout_s=settings.api_proxy_http_timeout_s,
                secrets=chosen_secrets,
                scopes=scopes,
                require_scoped_token=scoped,
            )

        port = settings.api_proxy_port if settings.api_proxy_port is not None else DEFAULT_PORT
        return cls(
            build(scoped=False),
            host=settings.api_proxy_host,
            port=port,
            task_app=build(scoped=True) if settings.api_proxy_task_port is not None else None,
            task_port=settings.api_proxy_task_port,
        )

    async def start(self) -> None:
        """Listen on both ports; :class:`errors.JesError` naming the port and its setting if one is taken."""
        await self.trusted.start()
        if self.task is None:
            return
        try:
            await self.task.start()
        except errors.JesError:
            await self.trusted.stop()
            raise

    async def stop(self) -> None:
        """Stop both (requests in flight get a few seconds)."""
        if self.task is not None:
            await self.task.stop()
        await self.trusted.stop()


def default_secrets(settings: Settings, http: httpx.AsyncClient) -> Secrets:
    """The values no answer may show: the token(s), the OAuth client secret and access token."""
    configured = tuple(s for s in (settings.keptn_api_token, settings.oauth_client_secret) if s)

    def secrets() -> tuple[str, ...]:
        auth = http.auth
        known = auth.secrets() if isinstance(auth, KeptnAuth) else ()
        return tuple(dict.fromkeys((*configured, *known)))

    return secrets
