"""The control plane's page in headless Chromium: the hello-world triggered from the form runs and
finishes live with its output, an unhandled task is flagged, abort, integrations, the token."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from jes.devtools import examples
from jes.devtools.controlplane.server import LocalControlPlane
from tests.browser.conftest import TOKEN, JesThread, Watched, connect

pytestmark = pytest.mark.browser

LONELY_SHIPYARD = """\
apiVersion: "spec.keptn.sh/0.2.2"
kind: "Shipyard"
metadata:
  name: "shipyard-lonely"
spec:
  stages:
    - name: "qa"
      sequences:
        - name: "check"
          tasks:
            - name: "nobody"
"""
NOBODY = "sh.keptn.event.nobody.triggered"
#: Long enough for the 1 s polling, the datastore's lag and jes's run, never for a stuck page.
LIVE_TIMEOUT_MS = 15_000


def lonely_project(plane: LocalControlPlane) -> None:
    """A project whose only task no integration subscribes to."""
    plane.create_project("lonely", LONELY_SHIPYARD)
    plane.create_service("lonely", "svc")


def lonely_trigger() -> dict[str, Any]:
    return {
        "data": {"project": "lonely", "stage": "qa", "service": "svc"},
        "source": "test",
        "specversion": "1.0",
        "type": "sh.keptn.event.qa.check.triggered",
    }


def send_as_integration(plane: LocalControlPlane, triggered: dict[str, Any], phase: str, **data: Any) -> None:
    """What an integration sends for an open task event (POST /v1/event with the token)."""
    event = {
        "type": triggered["type"].removesuffix(".triggered") + f".{phase}",
        "source": "a-test-integration",
        "specversion": "1.0",
        "shkeptncontext": triggered["shkeptncontext"],
        "triggeredid": triggered["id"],
        "data": {k: triggered["data"][k] for k in ("project", "stage", "service")} | data,
    }
    answer = httpx.post(f"{plane.url}/v1/event", json=event, headers={"x-token": plane.token}, timeout=5)
    assert answer.status_code == 200, answer.text


def details(page: Page) -> Any:
    return page.get_by_role("region", name="Sequence details")


def test_the_hello_world_triggered_from_the_form_runs_and_finishes_live(
    page: Page, plane: LocalControlPlane, jes: JesThread
) -> None:
    connect(page)
    page.get_by_text("Trigger a sequence").click()
    body = page.get_by_label("Event (JSON")
    # the form is filled after the first poll has read the shipyards
    expect(page.get_by_label("Sequence", exact=True)).to_have_value('["my-first-project","dev","sequence1"]')
    expect(body).to_have_value(re.compile('"location": "APAC"'))
    page.get_by_label("EU").check()
    assert '"location": "EU"' in body.input_value()
    page.get_by_label("APAC").check()
    assert json.loads(body.input_value()) == examples.hello_world_trigger("APAC")

    page.get_by_role("button", name="Trigger", exact=True).click()

    expect(page.get_by_role("status").filter(has_text="Triggered")).to_contain_text("keptnContext")
    (context,) = [s["shkeptncontext"] for s in plane.sequences(project="my-first-project")]
    listed = page.locator(f'#sequences [data-context="{context}"]')
    expect(listed).to_contain_text("sequence1")
    expect(listed).to_contain_text("finished · pass", timeout=LIVE_TIMEOUT_MS)
    output = details(page).get_by_label("Message of sayhello.finished (the task's logs)")
    expect(output).to_contain_text("Hello, world from APAC!")
    assert output.evaluate("e => getComputedStyle(e).fontFamily").startswith("ui-monospace")
    task = details(page).locator('[data-task="sayhello"]')
    rows = task.locator("table.events tbody tr")
    expect(rows.locator("td:first-child")).to_have_text(
        [".triggered", ".started", ".status.changed", ".status.changed", ".finished"]
    )
    expect(rows.nth(0)).to_contain_text("shipyard-controller")
    expect(rows.nth(4)).to_contain_text("job-executor-service")
    expect(rows.nth(4).locator("td").nth(3)).to_have_text(re.compile(r"^\+\d+(\.\d+)? (ms|s)$"))
    jes_table = task.locator("table.values", has=page.locator("caption", has_text=re.compile(r"^data\.jes$")))
    expect(jes_table.locator("tr", has=page.locator("th", has_text="executor"))).to_contain_text("keptn-jes")
    tasks_table = task.locator("table.grid", has=page.locator("caption", has_text="data.jes.tasks"))
    expect(tasks_table.locator("tbody tr")).to_have_count(1)
    expect(tasks_table.locator("tbody tr")).to_contain_text("Say Hello World")
    expect(details(page).locator(".flag")).to_have_count(0)


def test_a_sequence_updates_live_as_its_events_arrive(page: Page, plane: LocalControlPlane) -> None:
    lonely_project(plane)
    connect(page)
    context = plane.trigger_sequence(lonely_trigger())  # sent elsewhere: the page learns it by polling
    page.locator(f'#sequences [data-context="{context}"]').click()
    expect(details(page).locator("h2")).to_contain_text("started")
    flag = details(page).get_by_role("note")
    expect(flag).to_contain_text(f"No integration subscribes to {NOBODY}")

    (triggered,) = plane.open_triggered(NOBODY)
    send_as_integration(plane, triggered, "started")
    rows = details(page).locator('[data-task="nobody"] table.events tbody tr td:first-child')
    expect(rows).to_have_text([".triggered", ".started"])
    send_as_integration(
        plane, triggered, "finished", status="succeeded", result="pass", message="checked\n  all 3 things"
    )

    expect(details(page).locator("h2")).to_contain_text("finished · pass")
    expect(rows).to_have_text([".triggered", ".started", ".finished"])
    expect(details(page).get_by_label("Message of nobody.finished (the task's logs)")).to_have_text(
        "checked\n  all 3 things"
    )
    expect(flag).to_have_count(0)
    expect(details(page).get_by_role("button", name=re.compile("^Abort"))).to_have_count(0)


def test_the_trigger_form_offers_every_seeded_sequence(page: Page, plane: LocalControlPlane) -> None:
    lonely_project(plane)
    connect(page)
    page.get_by_text("Trigger a sequence").click()
    choice = page.get_by_label("Sequence", exact=True)
    expect(choice.locator("option")).to_have_text(["my-first-project › dev › sequence1", "lonely › qa › check"])
    choice.select_option(label="lonely › qa › check")
    expect(page.get_by_role("group", name=re.compile("Hello-world region"))).to_be_hidden()
    assert json.loads(page.get_by_label("Event (JSON").input_value()) == lonely_trigger() | {"source": "jes-page"}

    page.get_by_role("button", name="Trigger", exact=True).click()

    expect(details(page).get_by_role("note")).to_contain_text(f"No integration subscribes to {NOBODY}")
    assert [s["name"] for s in plane.sequences(project="lonely")] == ["check"]


def test_abort_sends_keptns_sequence_control_request(page: Page, plane: LocalControlPlane) -> None:
    lonely_project(plane)
    context = plane.trigger_sequence(lonely_trigger())
    connect(page)
    page.locator(f'#sequences [data-context="{context}"]').click()
    abort = details(page).get_by_role("button", name=f"Abort sequence check ({context})")

    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/control")) as sent:
        abort.click()

    request = sent.value
    assert request.url == f"{plane.url}/controlPlane/v1/sequence/lonely/{context}/control"
    assert request.post_data_json == {"state": "abort", "stage": ""}
    assert request.headers["x-token"] == TOKEN
    expect(details(page).locator("h2")).to_contain_text("aborted")
    expect(details(page).locator('[data-task="nobody"] .badge')).to_have_text("unfinished")
    expect(details(page).get_by_role("note")).to_have_count(0)  # no longer waiting for anybody
    expect(page.locator(f'#sequences [data-context="{context}"]')).to_contain_text("aborted")
    expect(page.get_by_role("alert").filter(has_text="Abort failed")).to_have_count(0)


def test_a_refused_abort_is_shown(page: Page, plane: LocalControlPlane, watched: Watched) -> None:
    lonely_project(plane)
    context = plane.trigger_sequence(lonely_trigger())
    plane.faults.add(method="POST", path=r"/controlPlane/v1/sequence/.*/control", status=503)
    watched.expect_console("status of 503")
    connect(page)
    page.locator(f'#sequences [data-context="{context}"]').click()

    details(page).get_by_role("button", name=re.compile("^Abort")).click()

    expect(page.get_by_role("alert").filter(has_text="Abort failed")).to_have_text(
        "Abort failed: 503 service unavailable"
    )
    assert plane.sequences(keptn_context=context)[0]["state"] == "started"


def test_the_integrations_page_shows_jes_with_its_heartbeat(
    page: Page, plane: LocalControlPlane, jes: JesThread
) -> None:
    connect(page)
    page.get_by_role("button", name="Integrations").click()
    row = page.locator('tr[data-integration="job-executor-service"]')
    expect(row).to_contain_text("remote-execution-plane")
    expect(row).to_contain_text("sh.keptn.event.sayhello.triggered")
    heartbeat = row.locator("td").nth(3)
    expect(heartbeat).to_contain_text(re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} \(\d+ s ago\)$"))
    age_s = int(re.search(r"\((\d+) s ago\)", heartbeat.inner_text()).group(1))  # type: ignore[union-attr]
    assert age_s <= 5, "jes pings every second; the page polls every second"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row.locator("time").get_attribute("datetime") or "")
    expect(page.get_by_role("button", name="Integrations")).to_have_attribute("aria-pressed", "true")


def test_the_token_is_asked_once_per_session_and_sent_only_as_a_header(
    page: Page, plane: LocalControlPlane, watched: Watched
) -> None:
    watched.expect_console("status of 401")
    connect(page, token="wrong")
    expect(page.get_by_role("alert").filter(has_text="refused")).to_contain_text("401")
    page.get_by_label("Keptn API token").fill(TOKEN)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_role("button", name="my-first-project")).to_be_visible()

    page.reload()
    expect(page.get_by_role("button", name="my-first-project")).to_be_visible()
    expect(page.get_by_label("Keptn API token")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('jes.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []
    api_calls = [r for r in watched.requests if "/api/" in r.url]
    assert api_calls and all(r.headers.get("x-token") in (TOKEN, "wrong") for r in api_calls)
    assert all("x-token" not in r.headers for r in watched.requests if "/api/" not in r.url)

    page.get_by_role("button", name="Forget token").click()
    expect(page.get_by_label("Keptn API token")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('jes.token')") is None


def test_every_control_has_an_accessible_name(page: Page, plane: LocalControlPlane) -> None:
    lonely_project(plane)
    plane.trigger_sequence(lonely_trigger())
    connect(page)
    page.get_by_text("Trigger a sequence").click()
    page.locator("#sequences button").first.click()
    expect(details(page).get_by_role("button", name=re.compile("^Abort"))).to_be_visible()
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll("button, input, select, textarea, [tabindex]")]
              .filter((e) => e.offsetParent !== null)
              .filter((e) => !(e.getAttribute("aria-label") || (e.labels && e.labels.length) || e.textContent.trim()))
              .map((e) => e.outerHTML)"""
    )
    assert unnamed == []


def test_the_page_fits_1280_by_800_and_its_screenshot(
    page: Page, plane: LocalControlPlane, jes: JesThread, tmp_path: Path
) -> None:
    """Also writes the README's screenshot when ``JES_PAGE_SCREENSHOT`` names a file."""
    contexts = [plane.trigger_sequence(examples.hello_world_trigger(region)) for region in ("EU", "APAC")]
    connect(page)
    page.locator(f'#sequences [data-context="{contexts[1]}"]').click()
    expect(details(page).get_by_label("Message of sayhello.finished (the task's logs)")).to_contain_text(
        "Hello, world from APAC!", timeout=LIVE_TIMEOUT_MS
    )
    expect(page.locator("#sequences .sequence")).to_have_count(2)
    expect(page.locator(".sequence").first).to_contain_text("finished · pass", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator(".sequence").nth(1)).to_contain_text("finished · pass", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    shot = tmp_path / "page.png"
    page.screenshot(path=shot)
    assert shot.stat().st_size < 300 * 1024
    if os.environ.get("JES_PAGE_SCREENSHOT"):
        Path(os.environ["JES_PAGE_SCREENSHOT"]).write_bytes(shot.read_bytes())


def test_projects_stages_and_services_narrow_the_newest_first_list(page: Page, plane: LocalControlPlane) -> None:
    lonely_project(plane)
    first = plane.trigger_sequence(examples.hello_world_trigger("EU"))  # nobody runs it here: it stays open
    time.sleep(0.002)  # Keptn's times have milliseconds: three triggers in one would have no order
    second = plane.trigger_sequence(lonely_trigger())
    time.sleep(0.002)
    third = plane.trigger_sequence(examples.hello_world_trigger("APAC"))  # waits behind the first
    connect(page)
    listed = page.locator("#sequences .sequence")
    expect(listed).to_have_count(3)
    assert [listed.nth(i).get_attribute("data-context") for i in range(3)] == [third, second, first]
    expect(listed.nth(0)).to_contain_text("waiting")

    tree = page.get_by_role("navigation", name="Projects")
    tree.get_by_role("button", name="qa", exact=True).click()
    expect(listed).to_have_count(1)
    expect(listed.nth(0)).to_have_attribute("data-context", second)
    expect(tree.get_by_role("button", name="qa", exact=True)).to_have_attribute("aria-current", "true")
    tree.get_by_role("button", name="service1", exact=True).click()
    expect(listed).to_have_count(2)
    expect(page.locator("#sequences-scope")).to_have_text("my-first-project › dev › service1")
    tree.get_by_role("button", name="lonely", exact=True).click()
    expect(listed).to_have_count(1)
