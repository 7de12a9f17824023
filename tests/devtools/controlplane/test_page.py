"""The web page's files, served without the token beside the token-checked API (no browser here:
``make test-browser`` drives the page in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from jes.devtools import examples
from jes.devtools.controlplane import server, webpage
from tests.devtools.controlplane import helpers

MakeCp = Callable[..., server.LocalControlPlane]


def test_the_page_and_its_files_are_served_without_the_token_and_hold_none(make_cp: MakeCp) -> None:
    cp = make_cp()
    page = httpx.get(cp.base_url + "/", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, media_type in webpage.ASSETS.items():
        asset = httpx.get(f"{cp.base_url}/page/{name}", timeout=5)
        assert (asset.status_code, asset.headers["content-type"]) == (200, media_type), name
        assert helpers.TOKEN not in asset.text
    assert helpers.TOKEN not in page.text
    assert httpx.get(cp.url + "/controlPlane/v1/project", timeout=5).status_code == 401  # the API still asks


def test_everything_the_page_loads_is_served_by_the_control_plane() -> None:
    """No CDN, no build step: each file the page names is one of the served files, and none
    names another host (the page works offline)."""
    named: set[str] = set()
    for name in webpage.ASSETS:
        text = re.sub(r'xmlns="[^"]*"', "", (webpage.STATIC_DIR / name).read_text())  # a name, not a fetch
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), name
        named |= set(re.findall(r'(?:src|href)="/page/([^"]+)"', text))
        named |= set(re.findall(r'from "\./([^"]+)"', text))
    assert named and named <= set(webpage.ASSETS)
    assert {path.name for path in webpage.STATIC_DIR.iterdir()} == set(webpage.ASSETS)
    assert "main.js" in named and "page.css" in named


def test_the_page_is_told_the_api_prefix_and_the_hello_world_bodies(make_cp: MakeCp) -> None:
    cp = make_cp(api_prefix="/keptn/api")
    config = httpx.get(cp.base_url + "/page/config.json", timeout=5)
    assert config.status_code == 200 and config.headers["content-type"] == "application/json"
    body = config.json()
    assert body["apiPrefix"] == "/keptn/api"
    hello = body["helloWorld"]
    assert (hello["project"], hello["stage"], hello["sequence"]) == server.HELLO_WORLD_SEQUENCE
    assert hello["bodies"] == {region: examples.hello_world_trigger(region) for region in ("APAC", "EU")}


@pytest.mark.parametrize("path", ["/page/", "/page/nope.js", "/page/..%2Fwebpage.py", "/page/../app.py", "/index.html"])
def test_nothing_else_is_served_from_beside_the_page(make_cp: MakeCp, path: str) -> None:
    cp = make_cp()
    reply = httpx.get(cp.base_url + path, timeout=5)
    assert reply.status_code == 404 and reply.text == "404 page not found"


def test_the_banners_name_the_page(make_cp: MakeCp) -> None:
    from jes.devtools import demo

    cp = make_cp()
    assert f"Web page: {cp.base_url}/\n" in server._banner(cp)
    assert f"in a browser: {cp.base_url}/ (token {cp.token})" in demo._keep_running_help(cp)
