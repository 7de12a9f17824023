"""The local control plane's web page: ``/`` and its static files, beside the Keptn API.

A small Bridge for development: projects, sequences with their task events and messages, a trigger
form, abort, and the registered integrations. The page is plain HTML, CSS and JavaScript shipped in
the package (no build step, no CDN). It holds no secret: these routes sit outside the API prefix,
so the gateway asks no token for them; the page asks the user for the token once and sends it as
``x-token`` on every API call it makes, like any other Keptn client.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from jes.devtools import examples
from jes.devtools.controlplane import httputil

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Where the page's files are served (``/`` is ``index.html``).
ASSET_PATH = "/page"
#: The files the page consists of, and their media types; nothing else is served from the folder.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "main.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "render.js": "text/javascript; charset=utf-8",
    "model.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: The hello-world's sequence, for which the trigger form offers the users' bodies (APAC, EU).
HELLO_WORLD_SEQUENCE = ("my-first-project", "dev", "sequence1")
REGIONS = ("APAC", "EU")
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # only the page's own files and its own API; no inline script
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


def routes(api_prefix: str) -> list[Route]:
    """``/``, ``/page/config.json`` and ``/page/<asset>``; none of them needs the token."""

    async def index(request: Request) -> Response:
        return _asset("index.html")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return httputil.not_found()
        return _asset(name)

    async def config(request: Request) -> Response:
        return JSONResponse(page_config(api_prefix), headers=_HEADERS)

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Route(f"{ASSET_PATH}/config.json", config, methods=["GET"]),
        Route(f"{ASSET_PATH}/{{name}}", asset, methods=["GET", "HEAD"]),
    ]


def page_config(api_prefix: str) -> dict[str, object]:
    """What the page needs to know before it has a token: where the API is, the example bodies."""
    project, stage, sequence = HELLO_WORLD_SEQUENCE
    return {
        "apiPrefix": api_prefix,
        "helloWorld": {
            "project": project,
            "stage": stage,
            "sequence": sequence,
            "bodies": {region: examples.hello_world_trigger(region) for region in REGIONS},
        },
    }


def _asset(name: str) -> Response:
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name], headers=_HEADERS)
